"""The operating characteristic: how the shipped decision stack answers as a canary gets worse.

    python -m training.operating --out models/evaluation/operating.png [--episodes 300]

For three traffic levels (20, 200 and 2,000 requests/s over both versions) and a canary whose
error rate is a fixed multiple of stable's (0.5 %), it plays seeded episodes of the shipped
policy inside the shield, as the service decides (guardrails, shield, step count), and plots
P(promote), P(pause) and P(abort) against the canary's error rate relative to stable's. The
tolerance's limit and the indifference zone's edge are marked: to the left a canary is good,
beyond the zone it is bad, and between the two the curve, not a pass or fail, is the answer.
The JSON beside the picture holds the numbers.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final

from decision_service.guardrails import GuardrailConfig
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy
from decision_service.shield import ShieldConfig
from decision_service.tolerance import DEFAULT_TOLERANCE
from scenarios import Scenario
from training.env import CanaryRolloutEnv, EnvConfig
from training.seeds import episode_seed

TRAFFIC: Final = (20.0, 200.0, 2000.0)
RATIOS: Final = (0.8, 1.0, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2.0, 2.5, 3.0)
STABLE_ERROR_RATE: Final = 0.005


def scenario(rps: float, ratio: float) -> Scenario:
    """A canary equal to stable except its error rate, ``ratio`` × stable's 0.5 %."""
    return Scenario.model_validate(
        {
            "name": f"oc-{int(rps)}rps-x{ratio:g}".replace(".", "_"),
            "truth": "good" if ratio <= 1.0 else "bad",
            "traffic": {"requests_per_second": rps},
            "stable": {
                "error_rate": STABLE_ERROR_RATE,
                "latency_p50_ms": 60.0,
                "latency_spread": 0.5,
            },
            "canary": {"error_multiplier": ratio},
        }
    )


def _point(args: tuple[str, float, float, int]) -> dict[str, Any]:
    model, rps, ratio, episodes = args
    policy = OnnxPolicy(model)
    config = EnvConfig(guardrails=GuardrailConfig(), shield=ShieldConfig())
    s = scenario(rps, ratio)
    env = CanaryRolloutEnv([s], config)
    outcomes = {"promoted": 0, "paused": 0, "aborted": 0}
    for i in range(episodes):
        _, info = env.reset(
            seed=episode_seed(s.name, i, "operating"), options={"allow_terminal": True}
        )
        while "outcome" not in info:
            _, _, _, _, info = env.step_policy(policy)
        outcomes[info["outcome"]] += 1
    return {"rps": rps, "ratio": ratio, **{k: v / episodes for k, v in outcomes.items()}}


def measure(model: Path, episodes: int, workers: int) -> list[dict[str, Any]]:
    tasks = [(str(model), rps, ratio, episodes) for rps in TRAFFIC for ratio in RATIOS]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_point, tasks))


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tolerance = DEFAULT_TOLERANCE
    zone = ShieldConfig().indifference
    limit = tolerance.limit("error_rate", STABLE_ERROR_RATE) / STABLE_ERROR_RATE
    edge = tolerance.widened(zone).limit("error_rate", STABLE_ERROR_RATE) / STABLE_ERROR_RATE
    fig, axes = plt.subplots(
        1, len(TRAFFIC), figsize=(15, 4.5), sharey=True, constrained_layout=True
    )
    for ax, rps in zip(axes, TRAFFIC, strict=True):
        mine = sorted((p for p in points if p["rps"] == rps), key=lambda p: p["ratio"])
        x = [p["ratio"] for p in mine]
        for key, colour in (
            ("promoted", "tab:green"),
            ("paused", "tab:orange"),
            ("aborted", "tab:red"),
        ):
            ax.plot(x, [100 * p[key] for p in mine], marker="o", color=colour, label=f"P({key})")
        ax.axvspan(x[0], limit, color="tab:green", alpha=0.06)
        ax.axvspan(edge, x[-1], color="tab:red", alpha=0.06)
        ax.axvline(limit, color="grey", linestyle="--", linewidth=1)
        ax.axvline(edge, color="black", linestyle="--", linewidth=1)
        ax.text(limit, 102, " tolerance", fontsize=8, color="grey")
        ax.text(edge, 95, " zone edge", fontsize=8)
        ax.set_title(f"{rps:,.0f} requests/s (stable {100 * STABLE_ERROR_RATE:g} % errors)")
        ax.set_xlabel("canary error rate / stable's")
        ax.set_ylim(0, 105)
    axes[0].set_ylabel("% of rollouts")
    axes[0].legend(loc="center left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH, help="ONNX policy")
    parser.add_argument("--episodes", type=int, default=300, help="episodes per point")
    parser.add_argument("--out", type=Path, required=True, help="the PNG (JSON beside it)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    args = parser.parse_args(argv)
    points = measure(args.model, args.episodes, args.workers)
    args.out.with_suffix(".json").write_text(json.dumps(points, indent=2) + "\n")
    plot(points, args.out)
    for p in points:
        print(
            f"{p['rps']:7,.0f} req/s  x{p['ratio']:<4g} promoted {100 * p['promoted']:5.1f} %  "
            f"paused {100 * p['paused']:5.1f} %  aborted {100 * p['aborted']:5.1f} %"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
