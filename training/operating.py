"""The operating characteristic: how the shipped decision stack answers as a canary gets worse.

    python -m training.operating --out models/evaluation/operating.png [--episodes 300]

For three traffic levels (20, 200 and 2,000 requests/s over both versions) and a canary whose
error rate is a fixed multiple of stable's (0.5 %), it plays seeded episodes of the shipped
policy inside the shield, as the service decides (guardrails, shield, step count), and plots
P(promote), P(pause) and P(abort) against the canary's error rate relative to stable's. The
tolerance's limit and the indifference zone's edge are marked: to the left a canary is good,
beyond the zone it is bad, and between the two the curve, not a pass or fail, is the answer.
The JSON beside the picture holds the numbers.

**At your own traffic and schedule.** The defaults reproduce the shipped chart. A team asks
what the service would do on *its* service with ``--rps`` (one panel per level), stable's
``--error-rate`` and ``--latency-p50-ms``, and its Rollout's ``--weights`` and ``--patience``
(the AnalysisTemplate's ``count``)::

    python -m training.operating --out my-service.png --rps 20,50 --error-rate 0.002 \
        --weights 25,50,100 --patience 30

or reads the weights and the count from the Rollout itself (``--rollout rollout.yaml``: the
weight in force at each step that runs the ``rl-canary-analysis`` template, and its ``count``
arg, else the template's default when the file holds it, else 10).

The same policy, guardrails and shield decide (the policy was trained on the default schedule;
a schedule of its own is measured, not promised). Besides the three probabilities, each point
gives the median minutes a completed rollout took.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from decision_service.guardrails import GuardrailConfig
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy
from decision_service.shield import ShieldConfig
from decision_service.tolerance import DEFAULT_TOLERANCE
from scenarios import Scenario
from training.env import DEFAULT_WEIGHTS, CanaryRolloutEnv, EnvConfig
from training.seeds import episode_seed

TRAFFIC: Final = (20.0, 200.0, 2000.0)
RATIOS: Final = (0.8, 1.0, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2.0, 2.5, 3.0)
STABLE_ERROR_RATE: Final = 0.005
STABLE_LATENCY_P50_MS: Final = 60.0


@dataclass(frozen=True)
class Setting:
    """The service and the schedule the chart is measured for (defaults: the shipped chart)."""

    traffic: tuple[float, ...] = TRAFFIC
    ratios: tuple[float, ...] = RATIOS
    error_rate: float = STABLE_ERROR_RATE
    latency_p50_ms: float = STABLE_LATENCY_P50_MS
    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    patience: int = EnvConfig().patience

    def __post_init__(self) -> None:
        if not self.traffic or any(not rps > 0 for rps in self.traffic):
            raise ValueError(f"requests/s must be positive, got {self.traffic}")
        if not self.ratios or any(not r >= 0 for r in self.ratios):
            raise ValueError(f"error ratios must be 0 or more, got {self.ratios}")
        if not 0 < self.error_rate < 1:
            raise ValueError(f"stable's error rate must be within (0, 1), got {self.error_rate}")
        if not self.latency_p50_ms > 0:
            raise ValueError(f"latency p50 must be positive, got {self.latency_p50_ms}")
        self.env_config()  # the schedule's own checks

    def env_config(self) -> EnvConfig:
        """The shipped decision stack on this schedule: guardrails and shield on."""
        return EnvConfig(
            weights=self.weights,
            patience=self.patience,
            guardrails=GuardrailConfig(),
            shield=ShieldConfig(),
        )


def scenario(
    rps: float,
    ratio: float,
    error_rate: float = STABLE_ERROR_RATE,
    latency_p50_ms: float = STABLE_LATENCY_P50_MS,
) -> Scenario:
    """A canary equal to stable except its error rate, ``ratio`` × stable's.

    The name (and so the episodes' seeds) depends on the traffic and the ratio only: the same
    seeds play every stable error rate, latency and schedule."""
    return Scenario.model_validate(
        {
            "name": f"oc-{int(rps)}rps-x{ratio:g}".replace(".", "_"),
            "truth": "good" if ratio <= 1.0 else "bad",
            "traffic": {"requests_per_second": rps},
            "stable": {
                "error_rate": error_rate,
                "latency_p50_ms": latency_p50_ms,
                "latency_spread": 0.5,
            },
            "canary": {"error_multiplier": ratio},
        }
    )


def _point(args: tuple[str, Setting, float, float, int]) -> dict[str, Any]:
    model, setting, rps, ratio, episodes = args
    policy = OnnxPolicy(model)
    config = setting.env_config()
    s = scenario(rps, ratio, setting.error_rate, setting.latency_p50_ms)
    env = CanaryRolloutEnv([s], config)
    outcomes = {"promoted": 0, "paused": 0, "aborted": 0}
    minutes: list[float] = []
    for i in range(episodes):
        _, info = env.reset(
            seed=episode_seed(s.name, i, "operating"), options={"allow_terminal": True}
        )
        while "outcome" not in info:
            _, _, _, _, info = env.step_policy(policy)
        outcomes[info["outcome"]] += 1
        if info["outcome"] == "promoted":
            minutes.append(len(env.history) * config.interval_seconds / 60.0)
    return {
        "rps": rps,
        "ratio": ratio,
        **{k: v / episodes for k, v in outcomes.items()},
        "median_minutes_to_promote": round(float(np.median(minutes)), 2) if minutes else None,
    }


def measure(
    model: Path, episodes: int, workers: int, setting: Setting | None = None
) -> list[dict[str, Any]]:
    setting = setting or Setting()
    tasks = [
        (str(model), setting, rps, ratio, episodes)
        for rps in setting.traffic
        for ratio in setting.ratios
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_point, tasks))


def plot(points: list[dict[str, Any]], path: Path, setting: Setting | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setting = setting or Setting()
    rate = setting.error_rate
    limit, edge = zone_ratios(rate)
    panels = len(setting.traffic)
    fig, axes = plt.subplots(
        1, panels, figsize=(5 * panels, 4.5), sharey=True, constrained_layout=True, squeeze=False
    )
    if setting.weights != DEFAULT_WEIGHTS or setting.patience != EnvConfig().patience:
        steps = ", ".join(f"{w:g}" for w in setting.weights)
        fig.suptitle(f"weights {steps} %, {setting.patience} measurements per step")
    for ax, rps in zip(axes[0], setting.traffic, strict=True):
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
        ax.set_title(f"{rps:,.0f} requests/s (stable {100 * rate:g} % errors)")
        ax.set_xlabel("canary error rate / stable's")
        ax.set_ylim(0, 105)
    axes[0][0].set_ylabel("% of rollouts")
    axes[0][0].legend(loc="center left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: The AnalysisTemplate (or ClusterAnalysisTemplate) that asks the decision service.
TEMPLATE_NAME: Final = "rl-canary-analysis"
#: Its ``count`` arg's default in ``rollouts/`` (measurements per step).
TEMPLATE_COUNT: Final = 10
#: The analysis interval the simulator plays (the template's ``interval`` default).
INTERVAL: Final = "30s"


class RolloutError(ValueError):
    """A Rollout file whose schedule cannot be read (the message says what and where)."""


def schedule_of_rollout(
    text: str, where: str, name: str | None = None
) -> tuple[tuple[float, ...], int, list[str]]:
    """The weights at which a Rollout's canary steps run :data:`TEMPLATE_NAME`, the count they
    run it with, and notes for the reader (an interval the simulator does not play)."""
    from decision_service.replay_input import PlanError

    try:
        return _schedule(text, where, name)
    except PlanError as exc:  # the manifests' shape, as the replay reads them
        raise RolloutError(str(exc)) from None


def _schedule(text: str, where: str, name: str | None) -> tuple[tuple[float, ...], int, list[str]]:
    from decision_service.replay_input import literal_args, load_documents, step_weights

    objects = load_documents(text, where)
    rollouts = [o for o in objects if o.get("kind") == "Rollout"]
    if name is not None:
        rollouts = [r for r in rollouts if (r.get("metadata") or {}).get("name") == name]
    if len(rollouts) != 1:
        found = "no Rollout" if not rollouts else f"{len(rollouts)} Rollouts"
        raise RolloutError(
            f"{where}: {found}" + ("" if name else " (pick one with --rollout-name)")
        )
    in_force = step_weights(rollouts[0], where)  # checks the steps and their weights
    defaults: dict[str, str] = {}
    for o in objects:
        meta = o.get("metadata") or {}
        if o.get("kind") in ("AnalysisTemplate", "ClusterAnalysisTemplate") and (
            meta.get("name") == TEMPLATE_NAME
        ):
            defaults = literal_args((o.get("spec") or {}).get("args"), f"{where}: {TEMPLATE_NAME}")
    steps = rollouts[0]["spec"]["strategy"]["canary"]["steps"] if in_force else []
    weights: list[float] = []
    counts: set[str] = set()
    intervals: set[str] = set()
    for i, (step, weight) in enumerate(zip(steps, in_force, strict=True)):
        analysis = step.get("analysis")
        if not isinstance(analysis, dict):
            continue
        names = [
            t.get("templateName") for t in analysis.get("templates") or [] if isinstance(t, dict)
        ]
        if TEMPLATE_NAME not in names:
            continue
        here = f"{where}: spec.strategy.canary.steps[{i}]"
        if weight is None or weight <= 0:
            raise RolloutError(f"{here}: the analysis runs before any setWeight above 0")
        args = literal_args(analysis.get("args"), f"{here}.analysis.args")
        weights.append(weight)
        counts.add(args.get("count", defaults.get("count", str(TEMPLATE_COUNT))))
        intervals.add(args.get("interval", defaults.get("interval", INTERVAL)))
    if not weights:
        raise RolloutError(f"{where}: no canary step runs the {TEMPLATE_NAME} analysis")
    if len(counts) != 1:
        raise RolloutError(
            f"{where}: the steps run the analysis with different counts "
            f"({', '.join(sorted(counts))}); the chart plays one count for every step: pass "
            "--weights and --patience"
        )
    (count,) = counts
    try:
        patience = int(count)
    except ValueError:
        raise RolloutError(f"{where}: count {count!r} is not a whole number") from None
    notes = [
        f"the Rollout measures every {i}; the simulator plays {INTERVAL} windows"
        for i in sorted(intervals)
        if i != INTERVAL
    ]
    return tuple(weights), patience, notes


def zone_ratios(error_rate: float) -> tuple[float, float]:
    """The tolerance's limit and the indifference zone's edge, as ratios to stable's rate."""
    tolerance = DEFAULT_TOLERANCE
    limit = tolerance.limit("error_rate", error_rate) / error_rate
    edge = tolerance.widened(ShieldConfig().indifference).limit("error_rate", error_rate)
    return limit, edge / error_rate


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r}") from None


def summary(points: list[dict[str, Any]], setting: Setting) -> list[str]:
    """One line per traffic level: what happens to a canary equal to stable (or the nearest
    ratio to it measured) and to the first one measured beyond the zone's edge."""
    _, edge = zone_ratios(setting.error_rate)
    lines = []
    for rps in setting.traffic:
        mine = sorted((p for p in points if p["rps"] == rps), key=lambda p: p["ratio"])
        equal = min(mine, key=lambda p: abs(p["ratio"] - 1.0))
        text = (
            f"{rps:,.0f} req/s: a canary at x{equal['ratio']:g} completes "
            f"{100 * equal['promoted']:.0f} % of rollouts"
        )
        if equal["median_minutes_to_promote"] is not None:
            text += f" (median {equal['median_minutes_to_promote']:g} min)"
        text += (
            f", pauses {100 * equal['paused']:.0f} %, is rolled back {100 * equal['aborted']:.0f} %"
        )
        beyond = [p for p in mine if p["ratio"] > edge * (1 + 1e-9)]
        if beyond:
            b = beyond[0]
            text += (
                f"; at x{b['ratio']:g} (beyond the zone's edge, x{edge:.2f}) it completes "
                f"{100 * b['promoted']:.1f} %, rolls back {100 * b['aborted']:.0f} %"
            )
        lines.append(text)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH, help="ONNX policy")
    parser.add_argument("--episodes", type=int, default=300, help="episodes per point")
    parser.add_argument("--out", type=Path, required=True, help="the PNG (JSON beside it)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--rps",
        type=_numbers,
        default=TRAFFIC,
        help="requests/s over both versions, comma-separated (one panel each)",
    )
    parser.add_argument(
        "--ratios",
        type=_numbers,
        default=RATIOS,
        help="the canary's error rate as multiples of stable's, comma-separated",
    )
    parser.add_argument(
        "--error-rate", type=float, default=STABLE_ERROR_RATE, help="stable's error rate (0..1)"
    )
    parser.add_argument(
        "--latency-p50-ms", type=float, default=STABLE_LATENCY_P50_MS, help="stable's p50"
    )
    parser.add_argument(
        "--weights",
        type=_numbers,
        default=DEFAULT_WEIGHTS,
        help="the Rollout's canary weights, comma-separated",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=EnvConfig().patience,
        help="measurements per step before a pause (the AnalysisTemplate's count)",
    )
    parser.add_argument(
        "--rollout",
        type=Path,
        default=None,
        help="read the weights and the count from this Rollout manifest instead",
    )
    parser.add_argument("--rollout-name", default=None, help="the Rollout, if the file has several")
    args = parser.parse_args(argv)
    weights, patience = args.weights, args.patience
    if args.rollout is not None:
        if weights != DEFAULT_WEIGHTS or patience != EnvConfig().patience:
            parser.error("--rollout reads the weights and the count: drop --weights/--patience")
        try:
            weights, patience, notes = schedule_of_rollout(
                args.rollout.read_text(), str(args.rollout), args.rollout_name
            )
        except (OSError, RolloutError) as exc:
            parser.error(str(exc))
        steps = ", ".join(f"{w:g}" for w in weights)
        print(f"{args.rollout}: weights {steps} %, count {patience}")
        for note in notes:
            print(f"note: {note}")
    try:
        setting = Setting(
            traffic=args.rps,
            ratios=args.ratios,
            error_rate=args.error_rate,
            latency_p50_ms=args.latency_p50_ms,
            weights=weights,
            patience=patience,
        )
    except ValueError as exc:
        parser.error(str(exc))
    points = measure(args.model, args.episodes, args.workers, setting)
    document = {"setting": asdict(setting), "episodes_per_point": args.episodes, "points": points}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    plot(points, args.out, setting)
    for p in points:
        minutes = p["median_minutes_to_promote"]
        print(
            f"{p['rps']:7,.0f} req/s  x{p['ratio']:<4g} promoted {100 * p['promoted']:5.1f} %  "
            f"paused {100 * p['paused']:5.1f} %  aborted {100 * p['aborted']:5.1f} %"
            + (f"  (median {minutes:g} min)" if minutes is not None else "")
        )
    print()
    print("\n".join(summary(points, setting)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
