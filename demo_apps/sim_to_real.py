"""Sim-to-real check: the same scenario files in the simulator and live, decisions compared.

``python -m demo_apps.sim_to_real --scenarios scenarios/healthy.yaml ... [--episodes 200]
[--live-runs 1] [--json out.json]`` runs every scenario

* in the simulator (:class:`training.env.CanaryRolloutEnv`, the Rollout's weights, the
  template's patience, guardrails on as in the service) with the ONNX policy, ``--episodes``
  seeded episodes; and
* live (:func:`demo_apps.local.demo.run_demo`: real apps, Prometheus, decision service, the
  project's manifests), ``--live-runs`` runs with seeds 1, 2, ...

and prints, per scenario and for two simulations — *as trained* (the scenario file as it is:
every episode its own draw of traffic, error rates and effect sizes) and *of the live draws*
(for each live run, the scenario pinned to that run's draw — the same numbers both apps
served — at the request rate the live load generator sent, per template interval) —

=====================  ====================================================================
``sim outcomes``       share of simulated episodes promoted / aborted / paused
``live outcomes``      the live runs' verdicts
``outcome agreement``  mean over live runs of the share of simulated episodes that ended the
                       same way
``decision agreement`` mean over the live policy decisions (``no_data`` holds and errors
                       left out, as the simulator never asks the policy then) of the share of
                       simulated decisions *at the same canary weight* that were the same
``decision mix``       hold / promote / abort shares, simulated vs live
=====================  ====================================================================

The second simulation faces the same canary as the live run, with the same evidence per
decision (the live load is the scenario's rate times the time compression, within the demo's
cap; see ``demo_apps.local.demo``), so what remains between it and the live run is the
simulator's fidelity: real HTTP, real scrapes and ``increase()`` windows against binomial counts
and simulated histograms.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decision_service.actions import ACTION_NAMES
from decision_service.guardrails import GuardrailConfig
from decision_service.pipeline import Policy
from decision_service.policy import OnnxPolicy
from decision_service.shield import ShieldConfig
from demo_apps.app.behaviour import live_parameters
from demo_apps.local.demo import (
    DemoOptions,
    live_request_rate,
    run_demo,
    template_interval_seconds,
)
from demo_apps.local.driver import Event
from demo_apps.local.manifests import Manifests
from scenarios import (
    EpisodeParameters,
    Scenario,
    load_scenario,
    scenario_files,
)
from training.env import CanaryRolloutEnv, EnvConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = REPO_ROOT / "rollouts" / "base"
SEED_SCENARIOS = [
    REPO_ROOT / "scenarios" / f"{name}.yaml" for name in ("healthy", "buggy", "degrading", "flaky")
]
OUTCOMES = ("promoted", "aborted", "paused")


@dataclass
class RunRecord:
    """One rollout, simulated or live: how it ended and the policy's decisions by weight."""

    outcome: str
    final_weight: float
    decisions: list[tuple[float, str]] = field(default_factory=list)


def rollout_shape() -> tuple[tuple[float, ...], int]:
    """The weights and the patience (``count``) of the project's Rollout and template."""
    manifests = Manifests.load(MANIFESTS)
    steps = manifests.only("Rollout")["spec"]["strategy"]["canary"]["steps"]
    weights = tuple(float(s["setWeight"]) for s in steps if "setWeight" in s)
    args = manifests.only("AnalysisTemplate")["spec"]["args"]
    count = next(int(a["value"]) for a in args if a["name"] == "count")
    return weights, count


def pin_draw(scenario: Scenario, params: EpisodeParameters, requests_per_second: float) -> Scenario:
    """``scenario`` with every drawn number fixed to ``params`` (so every episode of it is that
    one canary) and its traffic set to ``requests_per_second`` (its profile kept, as drawn)."""
    p = params
    document = scenario.model_dump(mode="json")
    document["traffic"] = {
        "requests_per_second": requests_per_second,
        "profile": [{"minute": m, "factor": f} for m, f in p.traffic_profile],
    }
    document["stable"] = {
        "error_rate": p.stable_error_rate,
        "latency_p50_ms": p.stable_p50_ms,
        "latency_spread": p.latency_spread,
        "error_dispersion": p.stable_error_dispersion,
    }
    canary: dict[str, object] = {
        "error_multiplier": p.error_multiplier,
        "error_additive": p.error_additive,
        "latency_multiplier": p.latency_multiplier,
        "latency_additive_ms": p.latency_additive_ms,
        "drift": {
            "starts_after_minutes": p.drift_starts_after_minutes,
            "error_rate_per_minute": p.drift_error_per_minute,
            "latency_ms_per_minute": p.drift_latency_ms_per_minute,
        },
        "spikes": {
            "probability": p.spike_probability,
            "error_rate": p.spike_error_rate,
            "latency_multiplier": p.spike_latency_multiplier,
        },
        "latency_spread_multiplier": p.spread_multiplier,
        "error_dispersion": p.canary_error_dispersion,
    }
    if p.cold_start_minutes > 0:
        canary["cold_start"] = {
            "minutes": p.cold_start_minutes,
            "error_rate": p.cold_start_error_rate,
            "latency_multiplier": p.cold_start_latency_multiplier,
            "after_scale_up": p.cold_start_after_scale_up,
        }
    if p.load_error_rate > 0 or p.load_latency_multiplier != 1.0:
        canary["load_dependent"] = {
            "from_weight": p.load_from_weight,
            "error_rate": p.load_error_rate,
            "latency_multiplier": p.load_latency_multiplier,
        }
    document["canary"] = canary
    document["shared_incidents"].update(
        probability=p.incident_probability,
        error_rate=p.incident_error_rate,
        latency_multiplier=p.incident_latency_multiplier,
    )
    document["stable_incidents"].update(
        probability=p.stable_incident_probability,
        error_rate=p.stable_incident_error_rate,
        latency_multiplier=p.stable_incident_latency_multiplier,
    )
    return Scenario.model_validate(document)


def live_draw(
    scenario: Scenario, seed: int, *, interval_seconds: float, max_rps: float
) -> Scenario:
    """The canary a live run with ``seed`` serves, as a simulator scenario: its draw, and the
    load the demo sends expressed per second of the template's (uncompressed) time."""
    params = live_parameters(scenario, seed)
    time_scale = template_interval_seconds(Manifests.load(MANIFESTS)) / interval_seconds
    rps = live_request_rate(params.requests_per_second, time_scale, max_rps) / time_scale
    return pin_draw(scenario, params, rps)


def merge(agreements: Sequence[Agreement], simulation: str) -> Agreement:
    """One agreement from several (one per live run): live runs and decisions pooled."""
    decisions = sum(a.live_decisions for a in agreements)
    scored = [a for a in agreements if a.decision_agreement is not None]
    live_mix_weights = [a.live_decisions for a in agreements]

    def mean_mix(
        mixes: list[dict[str, float]], weights: list[int] | None = None
    ) -> dict[str, float]:
        w = weights if weights and sum(weights) else [1] * len(mixes)
        return {k: float(np.average([m[k] for m in mixes], weights=w)) for k in ACTION_NAMES}

    return Agreement(
        scenario=agreements[0].scenario,
        simulation=simulation,
        sim_outcomes={o: float(np.mean([a.sim_outcomes[o] for a in agreements])) for o in OUTCOMES},
        live_outcomes=[o for a in agreements for o in a.live_outcomes],
        outcome_agreement=float(np.mean([a.outcome_agreement for a in agreements])),
        decision_agreement=(
            float(
                np.average(
                    [a.decision_agreement for a in scored],
                    weights=[a.live_decisions for a in scored],
                )
            )
            if scored and sum(a.live_decisions for a in scored)
            else None
        ),
        sim_decision_mix=mean_mix([a.sim_decision_mix for a in agreements]),
        live_decision_mix=mean_mix([a.live_decision_mix for a in agreements], live_mix_weights),
        live_decisions=decisions,
        sim_episodes=sum(a.sim_episodes for a in agreements),
    )


def simulate(
    scenario: Scenario, policy: Policy, episodes: int, *, seed: int = 0
) -> list[RunRecord]:
    """``episodes`` simulated rollouts of ``scenario`` decided by ``policy`` through the
    service's decision pipeline (guardrails, shield, step-count rule), as the live service
    decides."""
    weights, patience = rollout_shape()
    config = EnvConfig(
        weights=weights, patience=patience, guardrails=GuardrailConfig(), shield=ShieldConfig()
    )
    env = CanaryRolloutEnv([scenario], config)
    records = []
    for episode in range(episodes):
        _, info = env.reset(seed=seed + episode, options={"allow_terminal": True})
        record = RunRecord(outcome="", final_weight=env.weight)
        while "outcome" not in info:
            weight = env.weight
            _, _, _, _, info = env.step_policy(policy)
            record.decisions.append((weight, info["decision"]))
        record.outcome = info["outcome"]
        record.final_weight = env.weight
        records.append(record)
    return records


def live_record(events: Iterable[Any], outcome: str, final_weight: float) -> RunRecord:
    """A live run's record from the driver's events (policy decisions only)."""
    record = RunRecord(outcome=outcome, final_weight=final_weight)
    for event in events:
        data = event.data
        if event.kind != "measurement" or data.get("decision") not in ACTION_NAMES:
            continue
        if data.get("guardrail") == "no_data":
            continue
        record.decisions.append((float(event.weight), str(data["decision"])))
    return record


def live_record_from_file(path: Path) -> RunRecord:
    """A live run's record from the ``events.jsonl`` the demo wrote."""
    events, outcome, weight = [], "", 0.0
    for line in path.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        if raw["kind"] == "verdict":
            outcome, weight = raw["outcome"], float(raw["weight"])
        data = {k: raw.get(k) for k in ("decision", "guardrail")}
        events.append(Event(raw["kind"], raw["t"], raw["step"], raw["weight"], "", data))
    return live_record(events, outcome, weight)


@dataclass
class Agreement:
    scenario: str
    simulation: str
    sim_outcomes: dict[str, float]
    live_outcomes: list[str]
    outcome_agreement: float
    decision_agreement: float | None
    sim_decision_mix: dict[str, float]
    live_decision_mix: dict[str, float]
    live_decisions: int
    sim_episodes: int


def _mix(decisions: Iterable[str]) -> dict[str, float]:
    counts = Counter(decisions)
    total = sum(counts.values())
    return {a: (counts[a] / total if total else 0.0) for a in ACTION_NAMES}


def compare(
    scenario: str, sim: Sequence[RunRecord], live: Sequence[RunRecord], simulation: str = "sim"
) -> Agreement:
    """The agreement numbers of one scenario (see the module docstring)."""
    outcomes = Counter(r.outcome for r in sim)
    sim_share = {o: outcomes[o] / len(sim) for o in OUTCOMES}
    by_weight: dict[float, Counter[str]] = defaultdict(Counter)
    for record in sim:
        for weight, decision in record.decisions:
            by_weight[weight][decision] += 1
    scores = []
    for record in live:
        for weight, decision in record.decisions:
            seen = by_weight.get(weight)
            if seen:
                scores.append(seen[decision] / sum(seen.values()))
            else:
                scores.append(0.0)  # the simulator never got to this weight
    return Agreement(
        scenario=scenario,
        simulation=simulation,
        sim_outcomes=sim_share,
        live_outcomes=[r.outcome for r in live],
        outcome_agreement=float(np.mean([sim_share.get(r.outcome, 0.0) for r in live])),
        decision_agreement=float(np.mean(scores)) if scores else None,
        sim_decision_mix=_mix(d for r in sim for _, d in r.decisions),
        live_decision_mix=_mix(d for r in live for _, d in r.decisions),
        live_decisions=len(scores),
        sim_episodes=len(sim),
    )


def format_agreement(a: Agreement) -> str:
    def mix(m: dict[str, float]) -> str:
        return "/".join(f"{100 * m[k]:.0f}" for k in ACTION_NAMES)

    sim = ", ".join(f"{o} {100 * s:.0f} %" for o, s in a.sim_outcomes.items())
    decision = "n/a" if a.decision_agreement is None else f"{100 * a.decision_agreement:.0f} %"
    return (
        f"{a.scenario:<10s} {a.simulation:<17s} ({a.sim_episodes} ep): {sim} "
        f"| live: {', '.join(a.live_outcomes)}"
        f" | outcome agreement {100 * a.outcome_agreement:.0f} %"
        f" | decision agreement {decision} over {a.live_decisions} live decisions"
        f" | mix hold/promote/abort sim {mix(a.sim_decision_mix)} live {mix(a.live_decision_mix)}"
    )


def onnx_policy(model_path: Path) -> Policy:
    """The ONNX policy; :func:`simulate` runs it through the service's decision pipeline."""
    return OnnxPolicy(model_path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo_apps.sim_to_real",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        action="extend",
        type=Path,
        help="scenario files or folders (repeatable); default the four seed scenarios",
    )
    parser.add_argument("--episodes", type=int, default=200, help="simulated episodes each")
    parser.add_argument("--live-runs", type=int, default=1, help="live runs each (seeds 1..N)")
    parser.add_argument("--interval", type=float, default=3.0, help="live analysis interval, s")
    parser.add_argument(
        "--model",
        type=Path,
        default=REPO_ROOT / "models" / "canary-dqn.onnx",
        help="ONNX policy",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=REPO_ROOT / "runs" / "sim-to-real",
        help="folder for the live runs' files",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument(
        "--reuse-live", action="store_true", help="reuse live runs already in --run-dir"
    )
    args = parser.parse_args(argv)

    policy = onnx_policy(args.model)
    max_rps = DemoOptions().max_rps
    results = []
    for file in _files(args.scenarios or SEED_SCENARIOS):
        scenario = load_scenario(file)
        live = []
        seeds = list(range(1, args.live_runs + 1))
        for seed in seeds:
            run_dir = args.run_dir / f"{scenario.name}-{seed}"
            if args.reuse_live and (run_dir / "events.jsonl").is_file():
                live.append(live_record_from_file(run_dir / "events.jsonl"))
                continue
            result = run_demo(
                DemoOptions(
                    scenario=str(file),
                    seed=seed,
                    interval_seconds=args.interval,
                    run_dir=run_dir,
                    model_path=str(args.model),
                    plot=False,
                    max_rps=max_rps,
                ),
                printer=None,
            )
            live.append(live_record(result.events, result.verdict.outcome, result.verdict.weight))
        as_trained = compare(
            scenario.name, simulate(scenario, policy, args.episodes), live, "sim as trained"
        )
        pinned = merge(
            [
                compare(
                    scenario.name,
                    simulate(
                        live_draw(scenario, seed, interval_seconds=args.interval, max_rps=max_rps),
                        policy,
                        args.episodes,
                    ),
                    [record],
                )
                for seed, record in zip(seeds, live, strict=True)
            ],
            "sim of live draws",
        )
        for agreement in (as_trained, pinned):
            results.append(agreement)
            print(format_agreement(agreement), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(a) for a in results], indent=2))
    return 0


def _files(paths: Sequence[Path]) -> list[Path]:
    return [f for p in paths for f in scenario_files(p)]


if __name__ == "__main__":
    sys.exit(main())
