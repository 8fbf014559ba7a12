"""What a replay replays: the measurement instants of one canary, from Argo or by hand.

A :class:`Plan` is the target (namespace, rollout, the two pod-template hashes) and the instants
at which Argo measured the canary, each with the step's weight and, when Argo recorded it, what
the service answered then. It comes from

* :func:`plan_from_documents`: ``kubectl get analysisrun … -o yaml`` (one run, or a ``List``),
  optionally with the ``Rollout`` in the same file (several YAML documents). An AnalysisRun
  holds the measurement times (``status.metricResults[].measurements[].startedAt``) and the
  args the Rollout passed (``spec.args``: ``step-weight``, ``canary-hash``, ``stable-hash``,
  ``namespace``, ``rollout``). What an AnalysisRun lacks is read from its labels
  (``rollouts-pod-template-hash``, ``step-index``), its owner (the Rollout's name) and the
  Rollout (the weight in force at ``step-index``; the hashes from ``status``). A Rollout alone
  does not say when Argo measured: its AnalysisRuns are needed;
* :func:`plan_from_timeline`: ``--timeline "5%@2024-05-01T10:00:30Z,10%@…*3"``.

Every problem is a :class:`PlanError` with a message for the user (the CLI exits non-zero
with it), never a traceback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Final

import yaml

from decision_service.actions import ACTION_NAMES, Action

#: Argo's measurement phases, and the decision each means under the project's template.
PHASE_DECISIONS: Final[Mapping[str, Action]] = {
    "Successful": "promote",
    "Inconclusive": "hold",
    "Failed": "abort",
}
#: The decision each answer maps to in Argo (the template's conditions).
DECISION_PHASES: Final[Mapping[str, str]] = {v: k for k, v in PHASE_DECISIONS.items()}
_ACTIONS: Final[Mapping[str, Action]] = {name: name for name in ACTION_NAMES}
_HASH: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class PlanError(ValueError):
    """The input cannot be replayed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """What Argo recorded for a measurement: its phase and, when its value holds the
    service's JSON answer, the decision (``None``: an Error, or not readable)."""

    phase: str
    decision: Action | None
    run: str


@dataclass(frozen=True, slots=True)
class Instant:
    """One measurement: when (unix seconds), at which step weight, and what Argo recorded."""

    at: float
    weight: float
    recorded: Recorded | None = None

    @property
    def answered(self) -> bool:
        """Whether the service answered it then (an Error measurement was never answered, so
        no replica's memory counts it)."""
        return self.recorded is None or self.recorded.phase != "Error"


@dataclass(frozen=True, slots=True)
class Plan:
    namespace: str
    rollout: str
    canary_hash: str
    stable_hash: str
    instants: tuple[Instant, ...]
    source: str
    #: Argo's analysis interval when the input names it (the template's ``interval`` arg).
    interval: str | None = None
    #: Measurements per step when the input names it (the template's ``count`` arg).
    count: int | None = None
    warnings: tuple[str, ...] = ()


def parse_time(text: str) -> float:
    """RFC 3339 (``2024-05-01T10:00:30Z``, with or without fractions or an offset) or unix
    seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PlanError(
            f"{text!r} is not a time: use RFC 3339 (2024-05-01T10:00:30Z) or unix seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_time(at: float) -> str:
    """RFC 3339 in UTC, to the second (milliseconds when there are any)."""
    moment = datetime.fromtimestamp(at, UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _weight(text: object, where: str) -> float:
    try:
        weight = float(str(text).strip().rstrip("%"))
    except ValueError:
        raise PlanError(f"{where}: the step weight {text!r} is not a number") from None
    if not (math.isfinite(weight) and 0 <= weight <= 100):
        raise PlanError(f"{where}: the step weight {text!r} is not within 0-100")
    return weight


def _check_hash(value: str, what: str) -> str:
    if not _HASH.match(value) or len(value) > 63:
        raise PlanError(f"{what} {value!r} is not a pod-template hash (a Kubernetes label value)")
    return value


def plan_from_timeline(
    text: str,
    interval_seconds: float,
    *,
    namespace: str | None,
    rollout: str | None,
    canary_hash: str | None,
    stable_hash: str | None,
) -> Plan:
    """``"5%@T1,10%@T2*3,…"``: a measurement at weight 5 at T1, three at weight 10 from T2 on,
    ``interval_seconds`` apart. The target comes from the command line, all four values."""
    missing = [
        flag
        for flag, value in (
            ("--namespace", namespace),
            ("--rollout", rollout),
            ("--canary-hash", canary_hash),
            ("--stable-hash", stable_hash),
        )
        if not value
    ]
    if missing:
        raise PlanError(f"--timeline needs {', '.join(missing)} (the target of the replay)")
    assert namespace and rollout and canary_hash and stable_hash
    instants: list[Instant] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"([^@]+)@([^*]+)(?:\*(\d+))?", part)
        if match is None:
            raise PlanError(
                f"--timeline: {part!r} is not WEIGHT%@TIME or WEIGHT%@TIME*COUNT "
                "(e.g. 5%@2024-05-01T10:00:30Z,10%@2024-05-01T10:01:30Z*3)"
            )
        weight = _weight(match[1], f"--timeline {part!r}")
        at = parse_time(match[2])
        repeat = int(match[3] or 1)
        if not 1 <= repeat <= 1000:
            raise PlanError(f"--timeline {part!r}: the count must be within 1-1000")
        instants.extend(Instant(at + i * interval_seconds, weight) for i in range(repeat))
    if not instants:
        raise PlanError("--timeline holds no measurement")
    return _finish(
        Plan(
            namespace,
            rollout,
            _check_hash(canary_hash, "--canary-hash"),
            _check_hash(stable_hash, "--stable-hash"),
            tuple(instants),
            "--timeline",
        )
    )


def _finish(plan: Plan) -> Plan:
    if plan.canary_hash == plan.stable_hash:
        raise PlanError(
            f"the canary and the stable hash are both {plan.canary_hash!r}: after a completed "
            "rollout the Rollout's status names the new version as stable; pass the previous "
            "stable hash with --stable-hash"
        )
    ordered = tuple(sorted(plan.instants, key=lambda i: i.at))
    weights = [i.weight for i in ordered]
    warnings = list(plan.warnings)
    if any(b < a for a, b in pairwise(weights)):
        warnings.append(
            "the step weight goes down between measurements (a retried or aborted rollout?); "
            "each measurement is replayed as it came"
        )
    return replace(plan, instants=ordered, warnings=tuple(warnings))


# --------------------------------------------------------------------------- Argo's objects


def load_documents(text: str, where: str) -> list[dict[str, Any]]:
    """The Kubernetes objects in a ``kubectl get … -o yaml`` file (``List`` items flattened)."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise PlanError(f"{where}: not valid YAML: {exc}") from None
    objects: list[dict[str, Any]] = []
    for document in documents:
        if not isinstance(document, dict):
            raise PlanError(
                f"{where}: expected Kubernetes objects, found {type(document).__name__}"
            )
        if document.get("kind") == "List" or (
            "items" in document and isinstance(document.get("items"), list)
        ):
            items = document.get("items") or []
            for item in items:
                if not isinstance(item, dict):
                    raise PlanError(f"{where}: a List item is not an object")
                objects.append(item)
        else:
            objects.append(document)
    return objects


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PlanError(f"{where} is not a mapping")
    return value


def _list(value: Any, where: str) -> Sequence[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PlanError(f"{where} is not a list")
    return value


def _name(obj: Mapping[str, Any]) -> str:
    metadata = _mapping(obj.get("metadata"), "metadata")
    return str(metadata.get("name") or "(unnamed)")


@dataclass(frozen=True, slots=True)
class _Run:
    name: str
    args: Mapping[str, str]
    labels: Mapping[str, str]
    namespace: str | None
    owner: str | None
    instants: tuple[tuple[float, Recorded], ...]
    interval: str | None
    count: str | None
    warnings: tuple[str, ...]


def recorded_decision(value: Any) -> Action | None:
    """The service's decision from a measurement's value (the answer's JSON, as Argo prints
    it: JSON, or Go's map syntax ``map[decision:hold …]``). In dry-run mode the answer's
    ``decision`` is the safe one and its reason names the real decision: that one."""
    if not isinstance(value, str):
        return None
    real = re.search(r"the real decision is (promote|hold|abort)\b", value)
    if real:
        return _ACTIONS.get(real[1])
    match = re.search(r'"?decision"?\s*[:=]\s*"?(promote|hold|abort)\b', value)
    return _ACTIONS.get(match[1]) if match else None


def _service_metrics(spec: Mapping[str, Any], where: str) -> set[str] | None:
    """Names of the metrics that ask the decision service (a ``web`` provider posting to
    ``/v1/decide``); ``None`` when the run's spec does not say (then every metric counts)."""
    metrics = _list(spec.get("metrics"), f"{where}: spec.metrics")
    if not metrics:
        return None
    names = set()
    for metric in metrics:
        metric = _mapping(metric, f"{where}: a metric")
        web = _mapping(_mapping(metric.get("provider"), "provider").get("web"), "provider.web")
        if str(web.get("url", "")).rstrip("/").endswith("/v1/decide"):
            names.add(str(metric.get("name")))
    return names or None


def _run(obj: Mapping[str, Any], where: str) -> _Run:
    name = _name(obj)
    where = f"{where}: AnalysisRun {name}"
    metadata = _mapping(obj.get("metadata"), f"{where}: metadata")
    spec = _mapping(obj.get("spec"), f"{where}: spec")
    status = _mapping(obj.get("status"), f"{where}: status")
    args = literal_args(spec.get("args"), f"{where}: spec.args")
    owner = None
    for reference in _list(metadata.get("ownerReferences"), f"{where}: ownerReferences"):
        reference = _mapping(reference, f"{where}: an ownerReference")
        if reference.get("kind") == "Rollout":
            owner = str(reference.get("name"))
    wanted = _service_metrics(spec, where)
    instants: list[tuple[float, Recorded]] = []
    warnings: list[str] = []
    results = _list(status.get("metricResults"), f"{where}: status.metricResults")
    for result in results:
        result = _mapping(result, f"{where}: a metricResult")
        if wanted is not None and str(result.get("name")) not in wanted:
            continue
        measurements = _list(result.get("measurements"), f"{where}: measurements")
        taken = result.get("count")
        if isinstance(taken, int) and taken > len(measurements):
            warnings.append(
                f"{name}: Argo kept {len(measurements)} of its {taken} measurements (it keeps "
                "the last 10 by default); the earlier ones are not replayed"
            )
        for measurement in measurements:
            measurement = _mapping(measurement, f"{where}: a measurement")
            when = measurement.get("startedAt") or measurement.get("finishedAt")
            if not when:
                raise PlanError(f"{where}: a measurement has neither startedAt nor finishedAt")
            phase = str(measurement.get("phase", ""))
            decision = recorded_decision(measurement.get("value"))
            if decision is None and phase != "Error":
                decision = PHASE_DECISIONS.get(phase)
            instants.append((parse_time(str(when)), Recorded(phase, decision, name)))
    labels = {str(k): str(v) for k, v in _mapping(metadata.get("labels"), "labels").items()}
    return _Run(
        name=name,
        args=args,
        labels=labels,
        namespace=str(metadata["namespace"]) if metadata.get("namespace") else None,
        owner=owner,
        instants=tuple(instants),
        interval=args.get("interval"),
        count=args.get("count"),
        warnings=tuple(warnings),
    )


def literal_args(entries: Any, where: str) -> dict[str, str]:
    """An Argo args list's literal values by name; args without a value (``valueFrom``:
    ``secretKeyRef``, ``podTemplateHashValue``, ``fieldRef``) are left out."""
    args: dict[str, str] = {}
    for arg in _list(entries, where):
        arg = _mapping(arg, f"{where}: an arg")
        if "name" in arg and arg.get("value") is not None:
            args[str(arg["name"])] = str(arg["value"])
    return args


def step_weights(rollout: Mapping[str, Any], where: str) -> list[float | None]:
    """The weight in force at each step index of a Rollout's canary steps."""
    spec = _mapping(rollout.get("spec"), f"{where}: spec")
    strategy = _mapping(spec.get("strategy"), f"{where}: spec.strategy")
    canary = _mapping(strategy.get("canary"), f"{where}: spec.strategy.canary")
    weights: list[float | None] = []
    current: float | None = None
    for step in _list(canary.get("steps"), f"{where}: spec.strategy.canary.steps"):
        step = _mapping(step, f"{where}: a step")
        if "setWeight" in step:
            current = _weight(step["setWeight"], f"{where}: setWeight")
        weights.append(current)
    return weights


def _canary_of(run: _Run) -> str | None:
    return run.args.get("canary-hash") or run.labels.get(_HASH_LABEL)


def _pick(
    what: str, flag: str, given: str | None, found: Iterable[tuple[str, str | None]]
) -> str | None:
    """The value of ``what``: the command line's, checked against the file's, or the file's."""
    values = {value: source for source, value in found if value}
    if given:
        for value, source in values.items():
            if value != given:
                raise PlanError(f"{flag} {given} does not match the {what} {value!r} in {source}")
        return given
    if len(values) > 1:
        raise PlanError(
            f"the file names more than one {what} ({', '.join(sorted(values))}): pick one "
            f"with {flag}"
        )
    return next(iter(values), None)


def plan_from_documents(
    objects: Sequence[Mapping[str, Any]],
    where: str,
    *,
    namespace: str | None = None,
    rollout: str | None = None,
    canary_hash: str | None = None,
    stable_hash: str | None = None,
    weight_arg: str = "step-weight",
) -> Plan:
    """The plan from AnalysisRuns (and optionally their Rollout); see the module docstring."""
    kinds = [str(o.get("kind")) for o in objects]
    rollouts = [o for o in objects if o.get("kind") == "Rollout"]
    all_runs = [_run(o, where) for o in objects if o.get("kind") == "AnalysisRun"]
    if not all_runs:
        found = ", ".join(sorted(set(kinds))) or "nothing"
        hint = (
            " A Rollout does not record when Argo measured: export its AnalysisRuns too, e.g. "
            "kubectl get analysisrun -n <namespace> -l rollouts-pod-template-hash=<canary hash> "
            "-o yaml"
            if rollouts
            else ""
        )
        raise PlanError(f"{where}: no AnalysisRun found (found {found}).{hint}")
    if len(rollouts) > 1:
        names = ", ".join(sorted(_name(r) for r in rollouts))
        if rollout is None:
            raise PlanError(f"{where}: several Rollouts ({names}): pick one with --rollout")
        rollouts = [r for r in rollouts if _name(r) == rollout]
    the_rollout = rollouts[0] if rollouts else None
    rollout_status = _mapping(the_rollout.get("status"), "status") if the_rollout else {}
    # Step runs only (background runs have no step weight), of the chosen canary.
    runs = [r for r in all_runs if r.labels.get("rollout-type", "Step") == "Step"]
    if not runs:
        raise PlanError(f"{where}: no step AnalysisRun (only background or other runs)")
    canaries = {c for c in map(_canary_of, runs) if c}
    canary = canary_hash
    if canary is not None and canaries and canary not in canaries:
        raise PlanError(
            f"{where}: no AnalysisRun of the canary {canary} (the file has "
            f"{', '.join(sorted(canaries))})"
        )
    if canary is None and len(canaries) > 1:
        raise PlanError(
            f"{where}: AnalysisRuns of several canaries ({', '.join(sorted(canaries))}): "
            "pick one with --canary-hash"
        )
    if canary is None:
        canary = next(iter(canaries), None) or str(rollout_status.get("currentPodHash") or "")
    if not canary:
        raise PlanError(f"{where}: the canary hash is unknown: pass --canary-hash")
    runs = [r for r in runs if _canary_of(r) in (canary, None)]
    rollout_name = _pick(
        "rollout",
        "--rollout",
        rollout,
        [(f"AnalysisRun {r.name}", r.args.get("rollout") or r.owner) for r in runs]
        + ([("the Rollout", _name(the_rollout))] if the_rollout is not None else []),
    )
    if rollout_name is None:
        raise PlanError(f"{where}: the AnalysisRuns name no rollout: pass --rollout")
    the_namespace = _pick(
        "namespace",
        "--namespace",
        namespace,
        [(f"AnalysisRun {r.name}", r.args.get("namespace") or r.namespace) for r in runs],
    )
    if the_namespace is None:
        raise PlanError(f"{where}: the AnalysisRuns name no namespace: pass --namespace")
    stable = _pick(
        "stable hash",
        "--stable-hash",
        stable_hash,
        [(f"AnalysisRun {r.name}", r.args.get("stable-hash")) for r in runs],
    )
    warnings: list[str] = [w for r in runs for w in r.warnings]
    if stable is None and rollout_status.get("stableRS"):
        stable = str(rollout_status["stableRS"])
        warnings.append(
            f"the stable hash {stable} comes from the Rollout's current status (the AnalysisRuns "
            "do not pass stable-hash): right only while that rollout has not completed"
        )
    if stable is None:
        raise PlanError(f"{where}: the stable hash is unknown: pass --stable-hash")
    in_force = step_weights(the_rollout, where) if the_rollout is not None else []
    instants: list[Instant] = []
    intervals = set()
    counts = set()
    for run in runs:
        weight: float | None = None
        if weight_arg in run.args:
            weight = _weight(run.args[weight_arg], f"AnalysisRun {run.name}: {weight_arg}")
        elif "step-index" in run.labels and in_force:
            index = int(run.labels["step-index"])
            if 0 <= index < len(in_force):
                weight = in_force[index]
        if weight is None:
            raise PlanError(
                f"AnalysisRun {run.name}: its step weight is unknown: it has no {weight_arg!r} "
                "arg (set --weight-arg to the arg holding it), and no Rollout in the file gives "
                "the weight at its step-index"
            )
        if not run.instants:
            warnings.append(f"AnalysisRun {run.name} has no measurement")
        if run.interval:
            intervals.add(run.interval)
        if run.count and run.count.strip().isdigit() and int(run.count) > 0:
            counts.add(int(run.count))
        instants.extend(Instant(at, weight, recorded) for at, recorded in run.instants)
    if not instants:
        raise PlanError(f"{where}: the AnalysisRuns hold no measurement")
    return _finish(
        Plan(
            namespace=the_namespace,
            rollout=rollout_name,
            canary_hash=_check_hash(canary, "the canary hash"),
            stable_hash=_check_hash(stable, "the stable hash"),
            instants=tuple(instants),
            source=f"{where} ({len(runs)} AnalysisRun{'s' if len(runs) != 1 else ''})",
            interval=next(iter(intervals)) if len(intervals) == 1 else None,
            count=next(iter(counts)) if len(counts) == 1 else None,
            warnings=tuple(warnings),
        )
    )


_HASH_LABEL: Final = "rollouts-pod-template-hash"
