"""Why the policy's rollouts pause: what the shield allowed at the hold that paused them.

The shipped policy (or ``--model``) runs inside the shipped guardrails and shield, through the
same pipeline as the service, on seeded episodes of every library and held-out scenario and
every stress family (the evaluation's seeds). For each episode that ends paused, the script
records whether the shield allowed a promote and/or an abort on the observation the pausing hold
was decided on:

* ``neither``: the hold was the only allowed answer; no policy, however trained, could have
  avoided that pause inside the shield;
* ``abort``/``promote``/``both``: the policy held although the shield allowed more.

It also prices the one counterfactual that is exact: a pause (−1) replaced by the allowed abort
(+1 for a bad canary, −5 for a good one). What a promote there would have led to depends on the
rest of the rollout, so it is only counted.

Usage: ``python scripts/pause_causes.py [--episodes 200] [--workers 2]``. Figures only.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decision_service.guardrails import GuardrailConfig  # noqa: E402
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy  # noqa: E402
from decision_service.shield import ShieldConfig  # noqa: E402
from training.env import (  # noqa: E402
    COST_FALSE_ABORT,
    COST_PAUSE,
    REWARD_ABORT_BAD,
    CanaryRolloutEnv,
    EnvConfig,
)
from training.episodes import Suite  # noqa: E402
from training.evaluate import library_suites  # noqa: E402
from training.stress import FAMILIES  # noqa: E402

CAUSES = ("neither", "promote", "abort", "both")


def _cause(promote: bool, abort: bool) -> str:
    return CAUSES[int(promote) + 2 * int(abort)]


def pauses(args: tuple[Suite, int, str]) -> tuple[str, int, Counter[tuple[str, str]]]:
    """(suite, episodes, Counter of (truth, cause) over the suite's paused episodes)."""
    suite, episodes, model = args
    policy = OnnxPolicy(model)
    config = EnvConfig(guardrails=GuardrailConfig(), shield=ShieldConfig())
    counts: Counter[tuple[str, str]] = Counter()
    for index in range(episodes):
        env = CanaryRolloutEnv(suite.source(), config)
        _, info = env.reset(seed=suite.seed(index), options={"allow_terminal": True})
        allowed = (False, False)
        while "outcome" not in info:
            observed = env.observed_verdict
            verdict = observed[1] if observed is not None else None
            allowed = (
                (verdict.promote_allowed, verdict.abort_allowed) if verdict else (False, False)
            )
            _, _, _, _, info = env.step_policy(policy)
        if info["outcome"] == "paused":
            counts[(info["truth"], _cause(*allowed))] += 1
    return suite.name, episodes, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200, help="per scenario and family")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args()
    suites = library_suites([str(REPO_ROOT / "scenarios"), str(REPO_ROOT / "scenarios/holdout")])
    suites += [Suite.stress(f) for f in FAMILIES]
    tasks = [(suite, args.episodes, str(args.model)) for suite in suites]
    total: Counter[tuple[str, str]] = Counter()
    episodes = 0
    print(f"{'suite':<34}{'paused':>7}  " + "  ".join(f"{c:>14}" for c in CAUSES))
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for name, n, counts in pool.map(pauses, tasks):
            total.update(counts)
            episodes += n
            paused = sum(counts.values())
            cells = "  ".join(f"{counts[('good', c)]:>6}g {counts[('bad', c)]:>5}b" for c in CAUSES)
            print(f"{name:<34}{paused:>7}  {cells}")
    paused = sum(total.values())
    forced = total[("good", "neither")] + total[("bad", "neither")]
    print(f"\n{episodes} episodes, {paused} paused ({100 * paused / episodes:.1f} %)")
    print(
        f"the shield allowed neither promote nor abort at {forced} ({100 * forced / paused:.1f} %)"
    )
    bad = total[("bad", "abort")] + total[("bad", "both")]
    good = total[("good", "abort")] + total[("good", "both")]
    gain = bad * (REWARD_ABORT_BAD + COST_PAUSE) - good * (COST_FALSE_ABORT - COST_PAUSE)
    print(
        f"abort allowed at {bad + good} (bad {bad}, good {good}): taking it instead of pausing "
        f"would change the objective by {gain:+.0f} in all, {gain / episodes:+.4f} per episode"
    )
    promote = sum(v for (_, c), v in total.items() if c == "promote")
    print(f"promote allowed (and not abort) at {promote}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
