"""What the shield's settings do to one fixed strategy, before any training.

The strategy (:class:`FixedStrategy`) holds ``windows`` measurements at each step (``top_windows``
from 60 %), then promotes when the shield allows a promote and aborts as soon as it allows an
abort. It runs inside the shield, through the same pipeline as the policy, on seeded episodes of
every library scenario and four stress families, once per shield setting compared. The printed
objective (``training.env``'s, mean per episode) shows how a setting moves what *any* agent can
reach inside the shield; it is how the defaults were chosen (``models/evaluation/NOTES.md``).

Usage: ``python scripts/shield_settings.py [--episodes 100] [--workers 2]``. Figures only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decision_service.guardrails import GuardrailConfig  # noqa: E402
from decision_service.shield import ShieldConfig  # noqa: E402
from scenarios import load_scenarios  # noqa: E402
from training.baselines import _StepTracker, _verdict  # noqa: E402
from training.env import CanaryRolloutEnv, EnvConfig  # noqa: E402
from training.episodes import Suite, run_episode  # noqa: E402

HOLD, PROMOTE, ABORT = 0, 1, 2
STRESS = ("dispersed_incidents", "load_dependent", "spikes_drift", "everything")

#: The settings compared: the shipped defaults, then one change at a time, then the old shield.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "abort_margin=1 (tolerance)": {"abort_margin": 1.0},
    "no partial proof": {"partial_proof_weight": 100.0},
    "partial proof from 10 %": {"partial_proof_weight": 10.0},
    "partial proof from 20 %": {"partial_proof_weight": 20.0},
    "partial proof from 40 %": {"partial_proof_weight": 40.0},
    "partial proof at 50 %": {"partial_proof_alpha": 0.5},
    "full proof from 80 %": {"full_proof_weight": 80.0},
    "round-2 shield (margin 1, no partial proof)": {
        "abort_margin": 1.0,
        "partial_proof_weight": 100.0,
    },
}


@dataclass
class FixedStrategy:
    shield: ShieldConfig
    windows: int = 1
    top_windows: int = 2

    name: ClassVar[str] = "fixed"

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._tracker = _StepTracker()
        self._at_step = 0

    def act(self, env: CanaryRolloutEnv, observation: np.ndarray) -> int:
        if self._tracker.new_step(env):
            self._at_step = 0
        self._at_step += 1
        verdict = _verdict(env, self.shield)
        if verdict is None:
            return HOLD
        if verdict.abort_allowed:
            return ABORT
        needed = self.top_windows if env.weight >= 60 else self.windows
        return PROMOTE if verdict.promote_allowed and self._at_step >= needed else HOLD


def _run(task: tuple[str, dict[str, Any], Suite, int]) -> tuple[str, str, float]:
    variant, settings, suite, episodes = task
    shield = ShieldConfig(**settings)
    agent = FixedStrategy(shield)
    config = replace(EnvConfig(), guardrails=GuardrailConfig(), shield=shield)
    objectives = [
        run_episode(agent, suite, suite.seed(i), config).objective for i in range(episodes)
    ]
    return variant, suite.name, statistics.mean(objectives)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100, help="per scenario and family")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    suites = [Suite.of(s) for s in load_scenarios([str(REPO_ROOT / "scenarios")])]
    suites += [Suite.stress(family) for family in STRESS]
    tasks = [(v, s, suite, args.episodes) for v, s in VARIANTS.items() for suite in suites]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_run, tasks))
    by_variant: dict[str, dict[str, float]] = {}
    for variant, suite_name, objective in results:
        by_variant.setdefault(variant, {})[suite_name] = objective
    names = [suite.name for suite in suites]
    print(f"objective of the fixed strategy, {args.episodes} episodes per scenario and family")
    print(f"{'setting':44s} {'library':>8s} {'stress':>8s}  " + " ".join(n[:12] for n in names))
    for variant, row in by_variant.items():
        library = statistics.mean(v for n, v in row.items() if not n.startswith("stress:"))
        stress = statistics.mean(v for n, v in row.items() if n.startswith("stress:"))
        cells = " ".join(f"{row[n]:+12.2f}" for n in names)
        print(f"{variant:44s} {library:+8.3f} {stress:+8.3f}  {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
