"""``python -m decision_service.replay``: the service's decisions on Prometheus history.

Before turning the service on, replay your last rollouts: at every moment Argo measured the
canary, what would the service have answered? Each measurement instant is evaluated as the
route evaluates a request at that moment (:func:`decision_service.api.measure` with ``at=``):
the window query as a range query ending at the instant (the snapshot and the shield's windows
alike), the same templates (``QUERY_PRESET`` / ``QUERY_TEMPLATES_FILE``), the same
settings (``SLO_LATENCY``, ``GUARDRAIL_*``, ``TOLERANCE_*``, ``SHIELD_*``, ``ANALYSIS_WINDOW``,
``MODEL_PATH``: read from the environment as the service reads them), the same pipeline. The
step count is what one replica's memory would hold (the answered measurements before it at the
same weight, :class:`~decision_service.step_memory.StepMemory`), capped like the service's by
the windows the canary spent at its current traffic share (:func:`api.step_count`).

The timeline comes from Argo (``--analysisrun FILE``: ``kubectl get analysisrun … -o yaml``,
optionally with the Rollout in the same file; :mod:`decision_service.replay_input`) or by hand
(``--timeline "5%@2024-05-01T10:00:30Z,10%@…*3"``). One line per decision, as the demo prints
them; ``--json`` writes every instant's observation, Q-values and reason; ``--plot`` the
demo's timeline picture (matplotlib needed). Bad input is a message and exit status 2,
Prometheus failing one and status 3; never a traceback. The guide is ``docs/replay.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import httpx
from pydantic import ValidationError

from decision_service import pipeline
from decision_service.api import Measurement, measure, step_count
from decision_service.pipeline import DecisionConfig, Evaluation, Policy
from decision_service.policy import OnnxPolicy, PolicyLoadError
from decision_service.prometheus_answers import PrometheusUnavailable
from decision_service.prometheus_source import (
    BASELINE_WINDOWS,
    PrometheusSource,
    prometheus_client,
)
from decision_service.queries import Target, TemplateError, load_templates, render
from decision_service.replay_input import (
    DECISION_PHASES,
    Instant,
    Plan,
    PlanError,
    format_time,
    load_documents,
    plan_from_documents,
    plan_from_timeline,
)
from decision_service.settings import Settings, prometheus_duration_seconds
from decision_service.shield import ShieldConfig
from decision_service.snapshot import MetricsSnapshot, MissingMetricError
from decision_service.step_memory import StepMemory

#: Exit statuses: bad input (arguments, files, a target Prometheus has no series for, times
#: outside its retention), and Prometheus failing (unreachable, erroring, too slow).
EXIT_BAD_INPUT: Final = 2
EXIT_PROMETHEUS: Final = 3
#: A replay is not answering Argo: it may wait longer for Prometheus than the service does.
DEFAULT_TIMEOUT_SECONDS: Final = 30.0


class ReplayError(RuntimeError):
    """The replay cannot go on; the message says why (the CLI's exit status 2)."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """One instant replayed: what the service would have measured and answered."""

    instant: Instant
    step: int  # 0-based: the instant's place among the timeline's weights, in order
    number: int  # 1-based: the instant's measurement number within its step
    remembered: int  # answered measurements before it at the same weight (one replica's memory)
    count: int  # the step count the decision used (the memory capped like the service's)
    measurement: Measurement
    evaluation: Evaluation


def replay(
    source: PrometheusSource,
    target: Target,
    instants: Sequence[Instant],
    policy: Policy,
    config: DecisionConfig,
    shield: ShieldConfig,
) -> Iterator[Replayed]:
    """Each instant, in order, decided as the service would have decided it then.

    Raises :class:`~decision_service.prometheus_answers.PrometheusUnavailable`."""
    memory = StepMemory()
    step, number, previous = -1, 0, None
    for instant in instants:
        if instant.weight != previous:
            step, number, previous = step + 1, 0, instant.weight
        number += 1
        key = StepMemory.key(target.namespace, target.rollout, target.canary_hash, instant.weight)
        remembered = memory.taken(key)
        measurement = measure(
            source, target, instant.weight, config.tolerance, shield, at=instant.at
        )
        count = step_count(remembered, measurement)
        evaluation = pipeline.decide(measurement.snapshot, count, policy, config)
        if instant.answered:
            memory.record(key)
        yield Replayed(instant, step, number, remembered, count, measurement, evaluation)


# --------------------------------------------------------------------------- checks


def oldest_sample(url: str, timeout: float) -> tuple[float | None, str | None]:
    """The oldest sample time Prometheus holds and its retention, when it says (its own
    ``/metrics`` and ``/api/v1/status/runtimeinfo``; ``None`` behind a proxy that hides them)."""
    lowest: float | None = None
    retention: str | None = None
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            metrics = client.get(f"{url}/metrics")
            if metrics.status_code == 200:
                for line in metrics.text.splitlines():
                    if line.startswith("prometheus_tsdb_lowest_timestamp_seconds "):
                        lowest = float(line.split()[1])
            info = client.get(f"{url}/api/v1/status/runtimeinfo")
            if info.status_code == 200:
                retention = str(info.json()["data"].get("storageRetention") or "") or None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return lowest, retention
    return lowest, retention


def check_plan(
    source: PrometheusSource,
    url: str,
    plan: Plan,
    window_seconds: float,
    timeout: float,
    now: float,
) -> list[str]:
    """Refuse what cannot be replayed (raises :class:`ReplayError`); returns warnings.

    A timeline in the future, one older than the oldest sample Prometheus holds, a canary hash
    without series up to the last instant, a stable hash without series over the canary's life.
    """
    first, last = plan.instants[0].at, plan.instants[-1].at
    if last > now + 60:
        raise ReplayError(
            f"the timeline ends at {format_time(last)}, in the future (now {format_time(now)})"
        )
    warnings: list[str] = []
    lowest, retention = oldest_sample(url, timeout)
    kept = f" (retention {retention})" if retention else ""
    if lowest is not None and math.isfinite(lowest) and first < lowest:
        raise ReplayError(
            f"the timeline starts at {format_time(first)}, before the oldest sample Prometheus "
            f"holds, {format_time(lowest)}{kept}: that history is gone, replay a more recent "
            "rollout or one Prometheus kept longer"
        )
    needed = first - (BASELINE_WINDOWS + 1) * window_seconds
    if lowest is not None and math.isfinite(lowest) and needed < lowest:
        warnings.append(
            f"Prometheus holds samples from {format_time(lowest)} on{kept}: stable's windows "
            "before the first measurement (the shield's baseline) are partly gone"
        )
    target = _target(plan)
    queries = render(source.templates, target)
    try:
        start = source.canary_start_blocking(target, queries, last)
    except MissingMetricError:
        raise ReplayError(
            f"Prometheus has no series of the canary {plan.canary_hash} (namespace "
            f"{plan.namespace}, rollout {plan.rollout}) up to {format_time(last)}: check the "
            "hashes, the rollout and the query preset (QUERY_PRESET / QUERY_TEMPLATES_FILE); "
            f"the canary_start query was: {queries.canary_start}"
        ) from None
    if start > first + window_seconds:
        warnings.append(
            f"the canary's first series is from {format_time(start)}, after the first "
            f"measurement at {format_time(first)}: those measurements see no canary data"
        )
    snapshot = source.snapshot_blocking(target, plan.instants[-1].weight, last)
    if math.isnan(snapshot.stable_cumulative.requests):
        raise ReplayError(
            f"Prometheus has no series of the stable version {plan.stable_hash} between the "
            f"canary's start ({format_time(start)}) and {format_time(last)}: check "
            "--stable-hash (the AnalysisRun's stable-hash arg)"
        )
    return warnings


def _target(plan: Plan) -> Target:
    return Target(plan.namespace, plan.rollout, plan.canary_hash, plan.stable_hash)


# --------------------------------------------------------------------------- output


def format_line(replayed: Replayed, origin: float, steps: int) -> str:
    """One decision, as the demo prints a measurement (``demo_apps.local.demo``)."""
    guarded = replayed.evaluation.guarded
    at = f"[{replayed.instant.at - origin:7.1f}s]"
    step = f"step {replayed.step + 1:2d}/{steps} {replayed.instant.weight:>5g} %"
    phase = DECISION_PHASES[guarded.decision]
    recorded = replayed.instant.recorded
    if recorded is not None:
        if recorded.decision == guarded.decision:
            phase += ", as Argo recorded"
        else:
            said = f"{recorded.phase}: {recorded.decision}" if recorded.decision else recorded.phase
            phase += f"; Argo recorded {said}"
    guardrail = f" [guardrail {guarded.guardrail}]" if guarded.guardrail else ""
    return (
        f"{at} {step}  #{replayed.number:<2d} {guarded.decision:<7s} ({phase}){guardrail} "
        f"{guarded.reason}"
    )


def _rate(requests: float, errors: float) -> float | None:
    return errors / requests if requests > 0 and math.isfinite(requests) else None


def _window_figures(snapshot: MetricsSnapshot | MissingMetricError) -> dict[str, Any] | None:
    if isinstance(snapshot, MissingMetricError):
        return None
    return {
        track: {
            "requests": _finite(metrics.requests),
            "errors": _finite(metrics.errors),
            "error_rate": _rate(metrics.requests, metrics.errors),
            "latency_p50_ms": metrics.latency_p50_ms,
            "latency_p95_ms": metrics.latency_p95_ms,
        }
        for track, metrics in (("canary", snapshot.canary), ("stable", snapshot.stable))
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def record(replayed: Replayed, origin: float) -> dict[str, Any]:
    """One instant for ``--json``."""
    evaluation = replayed.evaluation
    recorded = replayed.instant.recorded
    return {
        "time": format_time(replayed.instant.at),
        "t": round(replayed.instant.at - origin, 3),
        "step": replayed.step + 1,
        "weight": replayed.instant.weight,
        "number": replayed.number,
        "remembered": replayed.remembered,
        "measurements_at_step": replayed.count,
        "decision": evaluation.guarded.decision,
        "guardrail": evaluation.guarded.guardrail,
        "reason": evaluation.guarded.reason,
        "proposed": evaluation.proposed,
        "q_values": evaluation.q_values,
        "observation": evaluation.observation,
        "window": _window_figures(replayed.measurement.snapshot),
        "argo": (
            {"phase": recorded.phase, "decision": recorded.decision, "analysis_run": recorded.run}
            if recorded is not None
            else None
        ),
    }


def summary(results: Sequence[Replayed]) -> dict[str, Any]:
    """Counts, the first abort and the first promote at the last weight, and the agreement
    with what Argo recorded."""
    decisions = Counter(r.evaluation.guarded.decision for r in results)
    first_abort = next((r for r in results if r.evaluation.guarded.decision == "abort"), None)
    compared = [
        r for r in results if r.instant.recorded is not None and r.instant.recorded.decision
    ]
    same = sum(
        1
        for r in compared
        if r.instant.recorded is not None
        and r.instant.recorded.decision == r.evaluation.guarded.decision
    )
    return {
        "measurements": len(results),
        "decisions": dict(decisions),
        "first_abort": (
            {
                "time": format_time(first_abort.instant.at),
                "weight": first_abort.instant.weight,
                "number": first_abort.number,
            }
            if first_abort is not None
            else None
        ),
        "compared_with_argo": len(compared),
        "same_as_argo": same,
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    decisions = result["decisions"]
    lines = [
        f"replayed {result['measurements']} measurements: "
        + ", ".join(f"{decisions.get(d, 0)} {d}" for d in ("promote", "hold", "abort"))
    ]
    abort = result["first_abort"]
    if abort:
        lines.append(
            f"the service would have aborted the rollout at {abort['time']} "
            f"(weight {abort['weight']:g} %, measurement #{abort['number']} of its step); "
            "Argo rolls back at the first abort, so later lines show what it would have said "
            "had the rollout gone on"
        )
    if result["compared_with_argo"]:
        lines.append(
            f"same decision as Argo recorded: {result['same_as_argo']} of "
            f"{result['compared_with_argo']} measurements"
        )
    return lines


def plot(path: Path, plan: Plan, results: Sequence[Replayed], origin: float, window: str) -> Path:
    """The demo's timeline picture for the replayed decisions (matplotlib needed)."""
    from decision_service.timeline_plot import Mark, Timeline, TrackSeries, plot_timeline

    weights: list[tuple[float, float]] = []
    for r in results:
        if not weights or weights[-1][1] != r.instant.weight:
            opened = r.instant.at - origin - prometheus_duration_seconds(window)
            weights.append((opened, r.instant.weight))
    tracks: dict[str, TrackSeries] = {}
    for track in ("stable", "canary"):
        times, rates, latencies = [], [], []
        for r in results:
            figures = _window_figures(r.measurement.snapshot)
            if figures is None:
                continue
            figure = figures[track]
            if figure["error_rate"] is None or figure["latency_p95_ms"] is None:
                continue
            times.append(r.instant.at - origin)
            rates.append(figure["error_rate"])
            latencies.append(figure["latency_p95_ms"])
        tracks[track] = TrackSeries(times, rates, latencies)
    verdict = summary(results)["first_abort"]
    recorded = [
        Mark(r.instant.at - origin, r.instant.weight, r.instant.recorded.decision)
        for r in results
        if r.instant.recorded is not None
    ]
    decisions = Counter(r.evaluation.guarded.decision for r in results)
    title = f"replay of {plan.namespace}/{plan.rollout} (canary {plan.canary_hash}): " + ", ".join(
        f"{decisions.get(d, 0)} {d}" for d in ("promote", "hold", "abort")
    )
    timeline = Timeline(
        title=title,
        weights=weights,
        marks=[
            Mark(r.instant.at - origin, r.instant.weight, r.evaluation.guarded.decision)
            for r in results
        ],
        tracks=tracks,
        end=results[-1].instant.at - origin if results else 0.0,
        error_label=f"error rate (%), {window} window",
        latency_label=f"p95 latency (ms), {window} window",
        x_label="seconds since the first measured window opened",
        verdict_time=(
            next(r.instant.at - origin for r in results if r.evaluation.guarded.decision == "abort")
            if verdict
            else None
        ),
        recorded=recorded,
        recorded_label="Argo recorded",
    )
    return plot_timeline(path, timeline)


# --------------------------------------------------------------------------- the command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m decision_service.replay",
        description="The decision service's answers at every measurement of a past canary, "
        "from Prometheus history (docs/replay.md). Settings (QUERY_PRESET, SLO_LATENCY, "
        "GUARDRAIL_*, TOLERANCE_*, SHIELD_*, ANALYSIS_WINDOW, MODEL_PATH) come from the "
        "environment, as the service reads them.",
    )
    parser.add_argument("--prometheus", required=True, help="Prometheus URL (http://host:9090)")
    parser.add_argument("--namespace", help="the Rollout's namespace (default: the file's)")
    parser.add_argument("--rollout", help="the Rollout's name (default: the file's)")
    parser.add_argument("--canary-hash", help="the canary's pod-template hash (default: file's)")
    parser.add_argument("--stable-hash", help="stable's pod-template hash (default: the file's)")
    timeline = parser.add_mutually_exclusive_group(required=True)
    timeline.add_argument(
        "--analysisrun",
        type=Path,
        metavar="FILE",
        help="kubectl get analysisrun … -o yaml (one run or a List; the Rollout may be added)",
    )
    timeline.add_argument(
        "--timeline",
        metavar="W%@TIME,…",
        help='measurements by hand: "5%%@2024-05-01T10:00:30Z,10%%@2024-05-01T10:01:30Z*3" '
        "(*N: N measurements --interval apart)",
    )
    parser.add_argument(
        "--interval",
        default=None,
        help="the analysis window (ANALYSIS_WINDOW, default 30s; Argo's interval)",
    )
    parser.add_argument(
        "--count",
        type=_positive_count,
        default=None,
        help="measurements per step, the template's count (default: the AnalysisRuns' count "
        "arg; without either the shield's last look at a step's last measurement never happens)",
    )
    parser.add_argument("--weight-arg", default="step-weight", help="the arg with the weight")
    parser.add_argument("--preset", default=None, help="QUERY_PRESET (demo, ingress-nginx, istio)")
    parser.add_argument("--templates", type=Path, default=None, help="QUERY_TEMPLATES_FILE")
    parser.add_argument("--model", type=Path, default=None, help="MODEL_PATH (the ONNX policy)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds to wait for each Prometheus query (default 30)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write JSON here")
    parser.add_argument("--plot", type=Path, default=None, metavar="OUT.png", help="draw here")
    parser.add_argument("--quiet", action="store_true", help="no line per decision")
    return parser


def _positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{value} is not within 1-10000")
    return value


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {"prometheus_url": args.prometheus}
    if args.interval:
        overrides["analysis_window"] = args.interval
    if args.preset:
        overrides["query_preset"] = args.preset
    if args.templates:
        overrides["query_templates_file"] = args.templates
    if args.model:
        overrides["model_path"] = args.model
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ReplayError(f"invalid settings: {problems}") from None


def _plan(args: argparse.Namespace, window_seconds: float) -> Plan:
    if args.timeline is not None:
        return plan_from_timeline(
            args.timeline,
            window_seconds,
            namespace=args.namespace,
            rollout=args.rollout,
            canary_hash=args.canary_hash,
            stable_hash=args.stable_hash,
        )
    path: Path = args.analysisrun
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PlanError(f"{path}: not a text file") from None
    return plan_from_documents(
        load_documents(text, str(path)),
        str(path),
        namespace=args.namespace,
        rollout=args.rollout,
        canary_hash=args.canary_hash,
        stable_hash=args.stable_hash,
        weight_arg=args.weight_arg,
    )


def run(argv: Sequence[str] | None = None, say: Callable[[str], None] = print) -> int:
    """The command; returns the exit status (0, or 2 / 3 with a message on stderr)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args, say)
    except (ReplayError, PlanError, TemplateError, PolicyLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PrometheusUnavailable as exc:
        print(f"error: {exc} ({args.prometheus})", file=sys.stderr)
        return EXIT_PROMETHEUS
    except OSError as exc:  # writing --json or --plot
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def _run(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    settings = _settings(args)
    window_seconds = settings.analysis_window_seconds
    plan = _plan(args, window_seconds)
    for text in plan.warnings:
        warn(text)
    if plan.interval and plan.interval != settings.analysis_window:
        warn(
            f"Argo measured every {plan.interval}, the window is {settings.analysis_window} "
            "(ANALYSIS_WINDOW / --interval): the service should use Argo's interval"
        )
    templates = load_templates(settings.query_preset, settings.query_templates_file)
    policy = OnnxPolicy(settings.model_path)
    shield = settings.shield()
    config = DecisionConfig(
        slo_latency_ms=settings.slo_latency,
        guardrails=settings.guardrails(),
        tolerance=settings.tolerance(),
        shield=shield if shield.enabled else None,
        count=args.count or plan.count,
        window_seconds=window_seconds,
    )
    source = PrometheusSource(
        prometheus_client(settings.prometheus_url, args.timeout, 1),
        templates,
        window=settings.analysis_window,
        window_seconds=window_seconds,
        timeout_seconds=args.timeout,
        threads=1,
    )
    try:
        source.query_blocking("vector(1)")
        for text in check_plan(
            source, settings.prometheus_url, plan, window_seconds, args.timeout, time.time()
        ):
            warn(text)
        origin = plan.instants[0].at - window_seconds
        weights = [i.weight for i in plan.instants]
        steps = 1 + sum(1 for a, b in pairwise(weights) if a != b)
        say(
            f"replaying {len(plan.instants)} measurements of {plan.namespace}/{plan.rollout} "
            f"(canary {plan.canary_hash}, stable {plan.stable_hash}) from {plan.source}, "
            f"{format_time(plan.instants[0].at)} to {format_time(plan.instants[-1].at)}; "
            f"model {policy.info.label}, preset "
            f"{settings.query_templates_file or settings.query_preset}, window "
            f"{settings.analysis_window}"
        )
        results: list[Replayed] = []
        for replayed in replay(source, _target(plan), plan.instants, policy, config, shield):
            results.append(replayed)
            if not args.quiet:
                say(format_line(replayed, origin, steps))
    finally:
        source.close()
    result = summary(results)
    for line in summary_lines(result):
        say(line)
    if args.json is not None:
        document = {
            "target": {
                "namespace": plan.namespace,
                "rollout": plan.rollout,
                "canary_hash": plan.canary_hash,
                "stable_hash": plan.stable_hash,
            },
            "source": plan.source,
            "prometheus": settings.prometheus_url,
            "model": policy.info.label,
            "window": settings.analysis_window,
            "slo_latency_ms": settings.slo_latency,
            "guardrails": config.guardrails.model_dump() if config.guardrails else None,
            "tolerance": config.tolerance.model_dump(),
            "shield": shield.model_dump(),
            "summary": result,
            "decisions": [record(r, origin) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        say(f"wrote {args.json}")
    if args.plot is not None:
        from decision_service.timeline_plot import PlotUnavailable

        try:
            say(f"wrote {plot(args.plot, plan, results, origin, settings.analysis_window)}")
        except PlotUnavailable as exc:
            raise ReplayError(str(exc)) from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rollout-agent replay`` and ``python -m decision_service.replay``."""
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
