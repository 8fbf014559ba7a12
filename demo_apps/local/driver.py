"""The local rollout driver: runs a Rollout from ``rollouts/`` the way the Argo controller would.

It reads the Rollout's canary steps and the AnalysisTemplate each analysis step names, resolves
and substitutes the args (:mod:`demo_apps.local.manifests`), measures and assesses each metric
(:mod:`demo_apps.local.web`, :mod:`demo_apps.local.analysis`), and drives the local stack:

=====================  ======================================================================
step                   what the driver does
=====================  ======================================================================
``setWeight: w``       tells the traffic router (the demo's load generator) to send w % to
                       the canary, then waits until the canary is ready (``canary_ready``,
                       the demo polls the canary app's health endpoint): Argo completes the
                       step only when the canary pods are available and the weight verified
                       (``completedCurrentCanaryStep``). Past ``progressDeadlineSeconds``
                       (600) it aborts if ``progressDeadlineAbort``, else stays there
``analysis``           runs the AnalysisRun: the first measurement after the metric's
                       ``initialDelay`` (Argo measures at once without one), then every
                       ``interval`` until the metric is assessed. **Successful** → next
                       step; **Failed** or **Error** → abort (weight 0: all traffic to
                       stable); **Inconclusive** → paused until a human sends ``promote``
                       (skip this step) or ``abort``. A missing Secret for a template arg
                       is an Error AnalysisRun ("Unable to resolve metric arguments"): abort.
                       A **dry-run** metric (``dryRun`` rules of the step or the template)
                       runs until it is assessed and never fails the run: the step succeeds
                       (``assessRunStatus``). ``measurementRetention`` sets how many
                       measurements are kept (default 10)
``pause``              waits ``duration`` (or, without one, for ``promote``); a demo that
                       compresses time passes ``time_scale`` and the wait is divided by it
                       (the analysis interval is compressed through the template's args)
=====================  ======================================================================

After the last step the canary is promoted (weight 100). A ``promote`` or ``abort`` command
sent while an analysis runs acts at once, as ``kubectl argo rollouts promote|abort`` would.
Commands arrive on a :class:`~demo_apps.local.commands.CommandQueue` fed by stdin and/or a
control file (:mod:`demo_apps.local.commands`), or directly by tests.

Everything the manifests ask for is checked before the first step runs, so an unsupported
condition, a metric Argo would reject or a missing arg fails fast with a message naming it.
Refused as not implemented: a background analysis (``strategy.canary.analysis``), steps other
than these three, an analysis step with more than one template or metric.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from demo_apps.local.analysis import (
    DEFAULT_ERROR_RETRY_SECONDS,
    DEFAULT_MEASUREMENT_HISTORY_LIMIT,
    MetricResult,
    assess,
    next_measurement_delay,
)
from demo_apps.local.commands import Command, CommandQueue
from demo_apps.local.conditions import Phase
from demo_apps.local.manifests import (
    ArgContext,
    ArgResolutionError,
    ManifestError,
    Manifests,
    Obj,
    parse_duration,
    resolve_args,
    resolve_secret_args,
    secret_args,
    substitute,
)
from demo_apps.local.web import WebMetric, measure

Outcome = Literal["promoted", "aborted", "paused"]


@dataclass(frozen=True)
class Event:
    """Something the driver did or saw, for live progress and the timeline."""

    kind: str  # start, weight, analysis, measurement, analysis_done, paused, command, verdict
    time: float
    step: int | None
    weight: int
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """How the rollout ended."""

    outcome: Outcome
    reason: str
    weight: int
    step: int | None
    measurements: int


#: Argo's default ``progressDeadlineSeconds``.
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600.0


@dataclass(frozen=True)
class _Analysis:
    """An analysis step, resolved but for its Secrets (read when it runs, as Argo does)."""

    raw_metric: Obj
    args: Mapping[str, str]
    secret_refs: Mapping[str, tuple[str, str]]
    dry_run: bool
    history_limit: int
    ignored_args: tuple[str, ...]

    def metric(self, secrets: Mapping[str, str]) -> WebMetric:
        return WebMetric.parse(substitute(self.raw_metric, {**self.args, **secrets}))


@dataclass(frozen=True)
class _Step:
    index: int
    kind: Literal["setWeight", "analysis", "pause"]
    weight: int
    pause_seconds: float | None = None
    #: The metric as validated before the rollout (Secrets hold a placeholder).
    metric: WebMetric | None = None
    template: str = ""
    analysis: _Analysis | None = None


class RolloutDriver:
    """Drives one canary rollout of a Rollout manifest (see the module docstring)."""

    def __init__(
        self,
        manifests: Manifests,
        *,
        client: httpx.Client,
        set_weight: Callable[[int], None],
        stable_hash: str,
        canary_hash: str,
        rollout_name: str | None = None,
        secrets: Mapping[tuple[str, str], str] | None = None,
        arg_overrides: Mapping[str, str] | None = None,
        host_overrides: Mapping[str, str] | None = None,
        commands: CommandQueue | None = None,
        on_event: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        error_retry_seconds: float = DEFAULT_ERROR_RETRY_SECONDS,
        pause_timeout_seconds: float | None = None,
        time_scale: float = 1.0,
        canary_ready: Callable[[], bool] | None = None,
        ready_poll_seconds: float = 0.1,
    ) -> None:
        rollout = (
            manifests.get("Rollout", rollout_name) if rollout_name else manifests.only("Rollout")
        )
        self.name = rollout["metadata"]["name"]
        self.namespace = rollout["metadata"].get("namespace", "default")
        self._client = client
        self._set_weight = set_weight
        self._secrets = dict(secrets or {})
        self._host_overrides = dict(host_overrides or {})
        self._commands = commands or CommandQueue()
        self._on_event = on_event or (lambda event: None)
        self._clock = clock
        self._error_retry = error_retry_seconds
        self._pause_timeout = pause_timeout_seconds
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self._time_scale = time_scale
        self._canary_ready = canary_ready
        self._ready_poll = ready_poll_seconds
        spec = rollout.get("spec", {})
        canary = spec.get("strategy", {}).get("canary") or {}
        self._progress_deadline = float(
            spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_SECONDS)
        )
        self._progress_deadline_abort = bool(spec.get("progressDeadlineAbort", False))
        self._context = ArgContext(
            rollout_name=self.name,
            namespace=self.namespace,
            stable_hash=stable_hash,
            canary_hash=canary_hash,
            secrets=self._secrets,
            traffic_routing=bool(canary.get("trafficRouting")),
        )
        self.steps = self._plan(manifests, rollout, dict(arg_overrides or {}))
        self.weight = 0
        self._measurements = 0

    # -- planning: everything is resolved before the first step --------------------------

    def _plan(self, manifests: Manifests, rollout: Obj, overrides: dict[str, str]) -> list[_Step]:
        canary = rollout.get("spec", {}).get("strategy", {}).get("canary")
        if not canary or not canary.get("steps"):
            raise ManifestError(f"Rollout {self.name}: no canary steps")
        if canary.get("analysis"):
            raise ManifestError(
                f"Rollout {self.name}: strategy.canary.analysis (a background analysis, which "
                "Argo runs beside the steps for the whole rollout) is not run by the local driver"
            )
        steps: list[_Step] = []
        weight = 0
        for index, raw in enumerate(canary["steps"]):
            (kind,) = raw.keys() if len(raw) == 1 else (None,)
            if kind == "setWeight":
                weight = int(raw["setWeight"])
                steps.append(_Step(index, "setWeight", weight))
            elif kind == "pause":
                duration = (raw["pause"] or {}).get("duration")
                seconds = None if duration is None else _pause_seconds(duration)
                steps.append(_Step(index, "pause", weight, pause_seconds=seconds))
            elif kind == "analysis":
                template, metric, analysis = self._analysis(
                    manifests, raw["analysis"], weight, overrides
                )
                steps.append(
                    _Step(
                        index,
                        "analysis",
                        weight,
                        metric=metric,
                        template=template,
                        analysis=analysis,
                    )
                )
            else:
                raise ManifestError(
                    f"Rollout {self.name} step {index}: {sorted(raw)} is not supported "
                    "(setWeight, pause and analysis are)"
                )
        return steps

    def _analysis(
        self, manifests: Manifests, analysis: Obj, weight: int, overrides: dict[str, str]
    ) -> tuple[str, WebMetric, _Analysis]:
        unknown = set(analysis) - {
            "templates",
            "args",
            "dryRun",
            "measurementRetention",
            "analysisRunMetadata",
        }
        if unknown:
            raise ManifestError(f"analysis step fields {sorted(unknown)} are not supported")
        refs = analysis.get("templates", [])
        if len(refs) != 1:
            raise ManifestError("an analysis step must name exactly one template here")
        ref = refs[0]
        kind = "ClusterAnalysisTemplate" if ref.get("clusterScope") else "AnalysisTemplate"
        template = manifests.get(kind, ref["templateName"])
        spec = template["spec"]
        unknown = set(spec) - {"args", "metrics", "dryRun", "measurementRetention"}
        if unknown:
            raise ManifestError(
                f"{kind} {ref['templateName']}: fields {sorted(unknown)} unsupported"
            )
        metrics = spec.get("metrics", [])
        if len(metrics) != 1:
            raise ManifestError(f"{kind} {ref['templateName']}: the driver runs one metric")
        context = dataclasses.replace(self._context, canary_weight=weight)
        template_args = spec.get("args", [])
        args = resolve_args(template_args, analysis.get("args", []), context, overrides)
        declared = {arg["name"] for arg in template_args}
        name = metrics[0].get("name", "")
        # Step rules first, then the template's (Argo's mergeDryRunMetrics).
        dry_run_rules = [*analysis.get("dryRun", []), *spec.get("dryRun", [])]
        retention_rules = [
            *analysis.get("measurementRetention", []),
            *spec.get("measurementRetention", []),
        ]
        dry_run = bool(_matching("dryRun", dry_run_rules, name))
        retention = _matching("measurementRetention", retention_rules, name)
        limit = next(
            (int(rule["limit"]) for rule in retention if int(rule.get("limit", 0)) > 0),
            DEFAULT_MEASUREMENT_HISTORY_LIMIT,
        )
        resolved = _Analysis(
            raw_metric=metrics[0],
            args=args,
            secret_refs=secret_args(template_args),
            dry_run=dry_run,
            history_limit=limit,
            ignored_args=tuple(
                a["name"] for a in analysis.get("args", []) if a["name"] not in declared
            ),
        )
        # Validated now with the Secrets' placeholder, as Argo validates the resolved metrics.
        return ref["templateName"], resolved.metric({}), resolved

    # -- running -------------------------------------------------------------------------

    def _emit(self, kind: str, step: int | None, message: str, **data: Any) -> None:
        self._on_event(Event(kind, self._clock(), step, self.weight, message, data))

    def _route(self, weight: int, step: int | None) -> None:
        self.weight = weight
        self._set_weight(weight)
        self._emit("weight", step, f"canary weight {weight} %")

    def _end(self, outcome: Outcome, reason: str, step: int | None) -> Verdict:
        if outcome == "aborted":
            self._route(0, step)
        elif outcome == "promoted":
            self._route(100, step)
        verdict = Verdict(outcome, reason, self.weight, step, self._measurements)
        self._emit("verdict", step, f"{outcome}: {reason}", outcome=outcome, reason=reason)
        return verdict

    def _command(self, command: Command, step: int) -> None:
        self._emit("command", step, f"user command: {command}", command=command)

    def run(self) -> Verdict:
        """Run every step; returns the verdict (promoted, aborted or paused)."""
        self._emit("start", None, f"rollout {self.namespace}/{self.name}: {len(self.steps)} steps")
        self._route(0, None)
        for step in self.steps:
            if step.kind == "setWeight":
                self._route(step.weight, step.index)
                verdict = self._wait_canary_available(step)
                if verdict is not None:
                    return verdict
            elif step.kind == "pause":
                verdict = self._pause_step(step)
                if verdict is not None:
                    return verdict
            else:
                assert step.analysis is not None
                try:
                    secrets = resolve_secret_args(step.analysis.secret_refs, self._context)
                except ArgResolutionError as exc:
                    # Argo: the AnalysisRun is an Error at once, and the rollout aborts.
                    message = f"Unable to resolve metric arguments: {exc}"
                    self._emit("analysis", step.index, f"analysis {step.template}: {message}")
                    self._emit("analysis_done", step.index, f"analysis Error: {message}")
                    return self._end("aborted", f"analysis Error: {message}", step.index)
                metric = step.analysis.metric(secrets)
                phase, message, command = self._run_analysis(step, metric)
                if command is None and step.analysis.dry_run and phase != "Successful":
                    # assessRunStatus: a dry-run metric's phase never fails the run.
                    self._emit(
                        "dry_run",
                        step.index,
                        f"dry-run metric assessed {phase} ({message}): ignored, step Successful",
                        phase=phase,
                    )
                    phase, message = "Successful", f"dry-run metric assessed {phase}: {message}"
                if command == "abort":
                    return self._end("aborted", "aborted by the user", step.index)
                if command == "promote":
                    continue
                if phase in ("Failed", "Error"):
                    return self._end("aborted", f"analysis {phase}: {message}", step.index)
                if phase == "Inconclusive":
                    verdict = self._pause(step, message)
                    if verdict is not None:
                        return verdict
        return self._end("promoted", "all steps completed", len(self.steps) - 1)

    def _wait_canary_available(self, step: _Step) -> Verdict | None:
        """Argo's ``completedCurrentCanaryStep`` for setWeight: the canary must be available.

        Past ``progressDeadlineSeconds`` (divided by ``time_scale``, like every wait) Argo marks
        the rollout Degraded (``ProgressDeadlineExceeded``); it aborts only with
        ``progressDeadlineAbort``, else the rollout stays at this step (ended here as paused).
        """
        if self._canary_ready is None or step.weight == 0:
            return None
        started = self._clock()
        deadline = started + self._progress_deadline / self._time_scale
        while not self._ready():
            if self._clock() >= deadline:
                reason = (
                    f"ProgressDeadlineExceeded: the canary was not available within "
                    f"{self._progress_deadline:g} s (scaled: {deadline - started:g} s)"
                )
                if self._progress_deadline_abort:
                    return self._end("aborted", reason, step.index)
                return self._end("paused", f"{reason}; Degraded, the rollout stays", step.index)
            command = self._commands.wait(self._ready_poll)
            if command == "abort":
                self._command(command, step.index)
                return self._end("aborted", "aborted by the user", step.index)
        waited = self._clock() - started
        self._emit("canary_ready", step.index, f"canary available after {waited:.2f} s")
        return None

    def _ready(self) -> bool:
        assert self._canary_ready is not None
        try:
            return bool(self._canary_ready())
        except Exception:  # a canary that cannot be asked is not ready
            return False

    def _pause_step(self, step: _Step) -> Verdict | None:
        if step.pause_seconds is None:
            self._emit("paused", step.index, "paused: send `promote` to resume or `abort`")
            command = self._commands.wait(self._pause_timeout)
            if command is None:
                return self._end("paused", "paused by a pause step; no human answered", step.index)
        else:
            seconds = step.pause_seconds / self._time_scale
            self._emit("pause", step.index, f"pause {seconds:g} s", seconds=seconds)
            command = self._commands.wait(seconds)
            if command is None:
                return None
        self._command(command, step.index)
        if command == "abort":
            return self._end("aborted", "aborted by the user during a pause", step.index)
        return None

    def _pause(self, step: _Step, message: str) -> Verdict | None:
        self._emit(
            "paused",
            step.index,
            "paused (InconclusiveAnalysisRun): send `promote` to skip this step or `abort`",
            reason=message,
        )
        command = self._commands.wait(self._pause_timeout)
        if command is None:
            return self._end(
                "paused", f"analysis Inconclusive ({message}); no human answered", step.index
            )
        self._command(command, step.index)
        if command == "abort":
            return self._end("aborted", "aborted by the user after a pause", step.index)
        return None

    def _run_analysis(
        self, step: _Step, metric: WebMetric
    ) -> tuple[Phase | None, str, Command | None]:
        assert step.analysis is not None
        ignored = step.analysis.ignored_args
        self._emit(
            "analysis",
            step.index,
            f"analysis {step.template} at {step.weight} %"
            + (" (dry-run)" if step.analysis.dry_run else "")
            + (f"; step args the template lacks, ignored: {', '.join(ignored)}" if ignored else ""),
        )
        result = MetricResult(history_limit=step.analysis.history_limit)
        if metric.initial_delay_seconds > 0:
            # Argo waits initialDelay from the AnalysisRun's start before the first measurement
            # (generateMetricTasks). It is not divided by time_scale: the template derives it
            # from the `interval` arg, which a demo compresses.
            self._emit(
                "initial_delay",
                step.index,
                f"initialDelay {metric.initial_delay_seconds:g} s before the first measurement",
                seconds=metric.initial_delay_seconds,
            )
            command = self._commands.wait(metric.initial_delay_seconds)
            if command is not None:
                self._command(command, step.index)
                return None, "", command
        while True:
            measurement = measure(
                metric,
                self._client,
                clock=self._clock,
                secrets=[*self._secrets.values()],
                host_overrides=self._host_overrides,
            )
            result.record(measurement)
            self._measurements += 1
            value = measurement.value if isinstance(measurement.value, dict) else {}
            self._emit(
                "measurement",
                step.index,
                f"{measurement.phase}: "
                + (str(value.get("reason", "")) or measurement.message or str(measurement.value)),
                phase=measurement.phase,
                decision=value.get("decision"),
                reason=value.get("reason"),
                guardrail=value.get("guardrail"),
                observation=value.get("observation"),
                policy=value.get("policy"),
                error=measurement.message or None,
                number=result.count + result.error,
            )
            phase, message = assess(metric, result)
            if phase is not None:
                self._emit("analysis_done", step.index, f"analysis {phase}: {message}", phase=phase)
                return phase, message, None
            delay = next_measurement_delay(metric, measurement, self._error_retry)
            command = self._commands.wait(max(0.0, measurement.finished_at + delay - self._clock()))
            if command is not None:
                self._command(command, step.index)
                return None, "", command


def _matching(field_name: str, rules: list[Obj], metric: str) -> list[Obj]:
    """The ``dryRun``/``measurementRetention`` rules whose ``metricName`` regex matches.

    Argo (GetDryRunMetrics, GetMeasurementRetentionMetrics) matches with Go's unanchored
    ``regexp.MatchString``; a rule that matches no metric makes the AnalysisRun an Error, and
    two rules with the same name are refused when the run is created.
    """
    names = [rule.get("metricName", "") for rule in rules]
    if len(set(names)) != len(names):
        raise ManifestError(f"{field_name}: two rules have the same metricName")
    matched = []
    for index, rule in enumerate(rules):
        if not re.search(rule.get("metricName", ""), metric):
            raise ManifestError(
                f"Analysis spec invalid: {field_name}[{index}]: Rule didn't match any metric "
                f"name(s) (Argo Rollouts: the AnalysisRun is an Error and the rollout aborts)"
            )
        matched.append(rule)
    return matched


def _pause_seconds(duration: Any) -> float:
    """A pause ``duration``: an integer (seconds) or a duration string."""
    text = str(duration)
    return float(text) if text.isdigit() else parse_duration(text)
