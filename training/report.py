"""The statistics of a set of episodes: per scenario and overall, paired CIs, acceptance checks.

:func:`summarise` turns :class:`~training.episodes.EpisodeRecord` rows into the report
(``models/evaluation/report.json``): per scenario and overall, for each agent, the share of bad
canaries promoted and good ones aborted, pauses, blast radius, decisions to promote and the mean
objective, plus hold rates and the policy's paired 95 % confidence intervals against each
agent. :func:`acceptance` computes the named acceptance checks from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from training.episodes import POLICY, EpisodeRecord

STAT_KEYS = (
    "bad_promotion_rate",
    "healthy_abort_rate",
    "blast_radius_mean",
    "decisions_to_promote_mean",
    "pause_rate",
    "objective_mean",
    "beyond_zone_promoted_rate",
    "equal_or_better_aborted_rate",
    "good_promoted_rate",
    "good_paused_rate",
    "bad_aborted_rate",
    "bad_paused_rate",
)


def _mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return float(np.mean(items)) if items else None


def stats(records: Sequence[EpisodeRecord]) -> dict[str, float | None]:
    """The contract's statistics over a set of episodes of one agent.

    Rates are shares of the *relevant* episodes: bad promotions among bad canaries, aborts
    among good ones (each episode's truth is computed from its draw, so one scenario can hold
    both; a rate over no relevant episode is 0).
    Blast radius is the mean over bad canaries; decisions to promote the mean over promoted
    good canaries (``None`` when none was promoted).
    """
    bad = [r for r in records if r.truth == "bad"]
    good = [r for r in records if r.truth == "good"]
    promoted_good = [r.decisions for r in good if r.outcome == "promoted"]
    return {
        "bad_promotion_rate": (sum(r.outcome == "promoted" for r in bad) / len(bad))
        if bad
        else 0.0,
        "healthy_abort_rate": (sum(r.outcome == "aborted" for r in good) / len(good))
        if good
        else 0.0,
        "blast_radius_mean": _mean(r.blast_radius for r in bad) or 0.0,
        "decisions_to_promote_mean": _mean(promoted_good),
        "pause_rate": sum(r.outcome == "paused" for r in records) / len(records),
        "objective_mean": float(np.mean([r.objective for r in records])),
        # the shield's guarantees: G1 (beyond the indifference zone, promoted) and G2 (equal to
        # or better than stable without canary-only faults, aborted); None without such draws
        "beyond_zone_promoted_rate": _share(records, "beyond_zone", "promoted"),
        "equal_or_better_aborted_rate": _share(records, "equal_or_better", "aborted"),
        # what happened to good and to bad releases (the README's per-100 table)
        "good_promoted_rate": _rate(good, "promoted"),
        "good_paused_rate": _rate(good, "paused"),
        "bad_aborted_rate": _rate(bad, "aborted"),
        "bad_paused_rate": _rate(bad, "paused"),
    }


def _rate(records: Sequence[EpisodeRecord], outcome: str) -> float | None:
    return sum(r.outcome == outcome for r in records) / len(records) if records else None


def _share(records: Sequence[EpisodeRecord], zone: str, outcome: str) -> float | None:
    mine = [r for r in records if r.zone == zone]
    return sum(r.outcome == outcome for r in mine) / len(mine) if mine else None


def paired_difference(records: Sequence[EpisodeRecord], agent: str, other: str) -> dict[str, float]:
    """Mean of ``objective(agent) - objective(other)`` over the same episodes, 95 % CI."""
    mine = {(r.scenario, r.seed): r.objective for r in records if r.agent == agent}
    theirs = {(r.scenario, r.seed): r.objective for r in records if r.agent == other}
    keys = sorted(mine.keys() & theirs.keys())
    diffs = np.array([mine[k] - theirs[k] for k in keys])
    mean = float(diffs.mean())
    half = 1.96 * float(diffs.std(ddof=1)) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": len(diffs)}


#: Families that make up the scenario library (the rest are stress families).
LIBRARY_FAMILIES = ("library", "holdout")


def _group(family: str) -> str:
    return "library" if family in LIBRARY_FAMILIES else "stress"


def summarise(records: Sequence[EpisodeRecord], episodes: int) -> dict[str, Any]:
    """The report: per scenario (and stress family), per family, overall; hold rates; the
    policy's paired comparisons overall and separately on the library and the stress suite."""
    agents = list(dict.fromkeys(r.agent for r in records))
    scenario_names = list(dict.fromkeys(r.scenario for r in records))
    report: dict[str, Any] = {
        "episodes_per_scenario": episodes,
        "scenarios": {},
        "families": {},
        "overall": {},
    }
    holds: dict[str, dict[str, float]] = {}
    for name in scenario_names:
        rows = [r for r in records if r.scenario == name]
        first = [r for r in rows if r.agent == rows[0].agent]
        entry: dict[str, Any] = {
            "family": rows[0].family,
            "intent": rows[0].intent or None,
            "bad_share": sum(r.truth == "bad" for r in first) / len(first),
            "agents": {},
        }
        for agent in agents:
            mine = [r for r in rows if r.agent == agent]
            entry["agents"][agent] = stats(mine)
            holds.setdefault(name, {})[agent] = sum(r.holds for r in mine) / max(
                1, sum(r.decisions for r in mine)
            )
        report["scenarios"][name] = entry
    for family in dict.fromkeys(r.family for r in records):
        rows = [r for r in records if r.family == family]
        report["families"][family] = {
            agent: stats([r for r in rows if r.agent == agent]) for agent in agents
        }
    for agent in agents:
        report["overall"][agent] = stats([r for r in records if r.agent == agent])
    report["groups"] = {
        group: {
            agent: stats([r for r in records if r.agent == agent and _group(r.family) == group])
            for agent in agents
        }
        for group in dict.fromkeys(_group(r.family) for r in records)
    }
    report["hold_rate"] = holds
    if POLICY in agents:
        others = [a for a in agents if a != POLICY]
        report["paired_objective_vs_policy"] = {
            other: paired_difference(records, POLICY, other) for other in others
        }
        report["paired_by_group"] = {}
        for group in dict.fromkeys(_group(r.family) for r in records):
            rows = [r for r in records if _group(r.family) == group]
            report["paired_by_group"][group] = {
                other: paired_difference(rows, POLICY, other) for other in others
            }
    return report


def acceptance(report: dict[str, Any]) -> dict[str, Any]:
    """The named acceptance checks, computed from a report (empty if no policy ran).

    ``beats_every_baseline``: the policy's paired 95 % CI of the objective is above zero against
    every baseline. ``error_rates_within_best``: against the best baseline (by objective), at
    most 1 pp more bad canaries promoted and 2 pp more good ones aborted.
    ``faster_or_smaller_blast``: against it, ≥ 30 % fewer decisions to promote or ≥ 30 % less
    blast radius. ``per_scenario_limits``: ``buggy`` promoted ≤ 1 %, ``healthy`` aborted ≤ 5 %,
    ``flaky`` and ``noisy_neighbour`` aborted ≤ 10 %. The figures behind them come with them.
    """
    overall = report["overall"]
    if POLICY not in overall:
        return {}
    baselines = {k: v for k, v in overall.items() if k != POLICY}
    if not baselines:
        return {}
    best = max(baselines, key=lambda k: baselines[k]["objective_mean"])
    mine, theirs = overall[POLICY], baselines[best]
    paired = report["paired_objective_vs_policy"]
    beats_all = all(paired[b]["ci_low"] > 0 for b in baselines)
    faster = None
    if mine["decisions_to_promote_mean"] and theirs["decisions_to_promote_mean"]:
        faster = 1.0 - mine["decisions_to_promote_mean"] / theirs["decisions_to_promote_mean"]
    smaller_blast = (
        1.0 - mine["blast_radius_mean"] / theirs["blast_radius_mean"]
        if theirs["blast_radius_mean"]
        else None
    )
    per = report["scenarios"]

    def rate(name: str, key: str) -> float | None:
        return per[name]["agents"][POLICY][key] if name in per else None

    checks = {
        "best_baseline": best,
        "bad_promotion_excess_pp": 100
        * (mine["bad_promotion_rate"] - theirs["bad_promotion_rate"]),
        "healthy_abort_excess_pp": 100
        * (mine["healthy_abort_rate"] - theirs["healthy_abort_rate"]),
        "fewer_decisions_to_promote": faster,
        "less_blast_radius": smaller_blast,
        "buggy_promoted": rate("buggy", "bad_promotion_rate"),
        "healthy_aborted": rate("healthy", "healthy_abort_rate"),
        "flaky_aborted": rate("flaky", "healthy_abort_rate"),
        "noisy_neighbour_aborted": rate("noisy_neighbour", "healthy_abort_rate"),
    }
    checks["beats_every_baseline"] = beats_all
    checks["error_rates_within_best"] = (
        checks["bad_promotion_excess_pp"] <= 1.0 and checks["healthy_abort_excess_pp"] <= 2.0
    )
    checks["faster_or_smaller_blast"] = (faster or 0) >= 0.30 or (smaller_blast or 0) >= 0.30
    checks["per_scenario_limits"] = (
        (checks["buggy_promoted"] or 0) <= 0.01
        and (checks["healthy_aborted"] or 0) <= 0.05
        and (checks["flaky_aborted"] or 0) <= 0.10
        and (checks["noisy_neighbour_aborted"] or 0) <= 0.10
    )
    return checks
