"""Where the policy holds although the shield allows an abort, and what the abort would have
given.

The shipped policy (or ``--model``) runs inside the shipped guardrails and shield, through the
same pipeline as the service, on seeded episodes of every library and held-out scenario and
every stress family (the evaluation's seeds). In each episode the script finds the first
decision at which the shield allowed an abort. If the policy did not abort there, it prices the
one counterfactual that is exact: an abort ends the episode, so its objective would have been
the objective up to that decision plus the abort's reward (+1 for a bad canary, −5 for a good
one), with nothing after it. The difference, per episode of the suite, is what the shield's own
rule ("abort when allowed") would have changed at those decisions; it says where the policy's
holds are right (good canaries in a cold start or at high traffic, where the shield's abort
null, "worse than stable", is rejected by canaries within the tolerance) and where they cost
(bad canaries whose regression shows late, kept at their step while they serve users).

Usage: ``python scripts/declined_aborts.py [--episodes 200] [--workers 2]``. Figures only.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decision_service.guardrails import GuardrailConfig  # noqa: E402
from decision_service.pipeline import Policy  # noqa: E402
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy  # noqa: E402
from decision_service.shield import ShieldConfig  # noqa: E402
from training.env import (  # noqa: E402
    COST_FALSE_ABORT,
    REWARD_ABORT_BAD,
    CanaryRolloutEnv,
    EnvConfig,
)
from training.episodes import Suite  # noqa: E402
from training.evaluate import library_suites  # noqa: E402
from training.stress import FAMILIES  # noqa: E402


@dataclass(frozen=True)
class Declined:
    """An episode whose policy held (or promoted) at the first allowed abort."""

    truth: str  # "good" or "bad"
    outcome: str  # how the episode really ended
    decision: int  # the decision's index in the episode (0: the first)
    objective: float  # the episode's real objective
    counterfactual: float  # its objective had the policy aborted there


def episode(suite: Suite, index: int, policy: Policy) -> tuple[float, bool, Declined | None]:
    """One seeded episode: its objective, whether an abort was ever allowed, and the declined
    abort (None: the policy took the first allowed abort, or none was allowed)."""
    config = EnvConfig(guardrails=GuardrailConfig(), shield=ShieldConfig())
    env = CanaryRolloutEnv(suite.source(), config)
    _, info = env.reset(seed=suite.seed(index), options={"allow_terminal": True})
    rewards: list[float] = []
    first: tuple[int, str] | None = None
    while "outcome" not in info:
        observed = env.observed_verdict
        allowed = observed is not None and observed[1].abort_allowed
        _, reward, _, _, info = env.step_policy(policy)
        if allowed and first is None:
            first = (len(rewards), info["decision"])
        rewards.append(reward)
    objective = float(info["objective"])
    if first is None or first[1] == "abort":
        return objective, first is not None, None
    at, _ = first
    bad = info["truth"] == "bad"
    abort = REWARD_ABORT_BAD if bad else -COST_FALSE_ABORT
    counterfactual = objective - sum(rewards[at:]) + abort
    return objective, True, Declined(info["truth"], info["outcome"], at, objective, counterfactual)


def declined(args: tuple[Suite, int, str]) -> tuple[str, int, float, int, list[Declined]]:
    """(suite, episodes, mean objective, episodes with an allowed abort, declined aborts)."""
    suite, episodes, model = args
    policy = OnnxPolicy(model)
    total, allowed, found = 0.0, 0, []
    for index in range(episodes):
        objective, any_allowed, item = episode(suite, index, policy)
        total += objective
        allowed += any_allowed
        if item is not None:
            found.append(item)
    return suite.name, episodes, total / episodes, allowed, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200, help="per scenario and family")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args()
    suites = library_suites([str(REPO_ROOT / "scenarios"), str(REPO_ROOT / "scenarios/holdout")])
    suites += [Suite.stress(f) for f in FAMILIES]
    tasks = [(suite, args.episodes, str(args.model)) for suite in suites]
    print(
        f"{'suite':<30}{'objective':>10}{'allowed':>9}{'declined':>10}{'bad':>6}{'good':>6}"
        f"{'abort would change':>20}  outcomes after declining"
    )
    sums: Counter[str] = Counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for name, n, objective, allowed, found in pool.map(declined, tasks):
            bad = sum(d.truth == "bad" for d in found)
            change = sum(d.counterfactual - d.objective for d in found) / n
            outcomes = Counter(d.outcome for d in found)
            group = "stress" if name.startswith("stress:") else "library and held-out"
            sums[group] += change
            sums[group + " suites"] += 1
            print(
                f"{name:<30}{objective:>+10.3f}{allowed:>9}{len(found):>10}{bad:>6}"
                f"{len(found) - bad:>6}{change:>+20.3f}  "
                + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
            )
    for group in ("library and held-out", "stress"):
        if sums[group + " suites"]:
            mean = sums[group] / sums[group + " suites"]
            print(f"mean over {group}: aborting where allowed would change {mean:+.3f}/episode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
