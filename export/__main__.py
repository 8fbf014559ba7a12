"""``python -m export``: the best trained model → ONNX, then a torch/onnxruntime parity check.

python -m export --run runs/dqn --out models/canary-dqn.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

from decision_service.policy import OnnxPolicy
from export.onnx_export import (
    PARITY_ABS_TOLERANCE,
    check_parity,
    config_hash_for,
    export_onnx,
    load_q_network,
    rollout_observations,
    uniform_observations,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/dqn"), help="training run folder")
    parser.add_argument("--model", default="best_model.zip", help="SB3 zip inside the run folder")
    parser.add_argument("--out", type=Path, default=Path("models/canary-dqn.onnx"))
    parser.add_argument("--name", default="canary-dqn", help="model name in the metadata")
    parser.add_argument("--parity-samples", type=int, default=10_000)
    args = parser.parse_args(argv)

    model_zip = args.run / args.model
    network = load_q_network(model_zip)
    export_onnx(network, args.out, args.name, config_hash_for(model_zip))
    info = OnnxPolicy(args.out).info  # the service's own loader must accept it
    parity = check_parity(network, args.out, rollout_observations(args.parity_samples))
    stress = check_parity(network, args.out, uniform_observations(args.parity_samples))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) as {info.label}")
    print(
        f"parity on {parity.samples} observations of simulated rollouts: "
        f"max |dQ| = {parity.max_abs_diff:.2e}, argmax mismatches = {parity.argmax_mismatches}"
    )
    print(
        f"stress on {stress.samples} observations uniform within the feature bounds: "
        f"max |dQ| = {stress.max_abs_diff:.2e}, max |dQ|/max(1,|Q|) = "
        f"{stress.max_scaled_diff:.2e}, argmax mismatches = {stress.argmax_mismatches}"
    )
    if not parity.ok or stress.argmax_mismatches or stress.max_scaled_diff > PARITY_ABS_TOLERANCE:
        print(f"PARITY FAILED (needs max |dQ| <= {PARITY_ABS_TOLERANCE} and identical argmax)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
