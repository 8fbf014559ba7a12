"""``python -m export``: trained model(s) → one ONNX file, then a torch/onnxruntime parity check.

python -m export --run runs/dqn --out models/canary-dqn.onnx
python -m export --run runs/a --run runs/b --model best_model.zip --model final_model.zip

Every ``--run`` × ``--model`` is a member; several members export as their mean (an ensemble).
Beside the ONNX file it writes ``<stem>.config.yaml`` (the training config(s); its SHA-256 is in
the ONNX metadata) and ``<stem>.sb3/`` (the members, to re-export and check the shipped file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from decision_service.policy import OnnxPolicy
from export.onnx_export import (
    PARITY_ABS_TOLERANCE,
    check_parity,
    export_onnx,
    load_ensemble,
    rollout_observations,
    run_config,
    uniform_observations,
    write_companions,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--run-dir",
        "--run",
        dest="run",
        type=Path,
        action="append",
        help="a training run's folder (repeat: an ensemble); default runs/dqn",
    )
    parser.add_argument(
        "--model",
        action="append",
        help="SB3 zip inside each run folder (repeatable); default best_model.zip",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("models/canary-dqn.onnx"), help="the ONNX file to write"
    )
    parser.add_argument("--name", default="canary-dqn", help="model name in the metadata")
    parser.add_argument(
        "--parity-samples",
        type=int,
        default=10_000,
        help="observations the torch/ONNX parity check compares",
    )
    args = parser.parse_args(argv)

    runs = args.run or [Path("runs/dqn")]
    members = [run / model for run in runs for model in (args.model or ["best_model.zip"])]
    for member in members:
        run_config(member)  # refuse early: every member needs its training config
        if not member.is_file():
            raise FileNotFoundError(f"{member}: no such model")
    network = load_ensemble(members)
    export_onnx(network, args.out, args.name, write_companions(members, args.out))
    info = OnnxPolicy(args.out).info  # the service's own loader must accept it
    parity = check_parity(network, args.out, rollout_observations(args.parity_samples))
    stress = check_parity(network, args.out, uniform_observations(args.parity_samples))
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes) as {info.label}: "
        f"{len(members)} member(s): {', '.join(str(m) for m in members)}"
    )
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
