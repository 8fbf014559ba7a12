"""Argo Rollouts' manifests as the local driver reads them: objects, args, substitution, durations.

This module and its siblings implement Argo Rollouts' analysis semantics for the forms the
project's manifests use (DESIGN §3), read from the argo-rollouts controller's behaviour, so the
local driver (:mod:`demo_apps.local.driver`) can run ``rollouts/`` without a cluster:

==========================================  =================================================
:mod:`demo_apps.local.manifests` (here)     manifests, args, ``{{args.x}}``, Go durations
:mod:`demo_apps.local.conditions`           ``successCondition``/``failureCondition``,
                                            ``jsonPath``
:mod:`demo_apps.local.web`                  the ``web`` provider: a metric, one measurement
:mod:`demo_apps.local.analysis`             a metric's assessment, the next measurement's time
==========================================  =================================================

What this module covers:

* **Manifests**: every YAML document in a folder, indexed by kind and name.
* **Args**: a template's args (``value`` defaults, ``valueFrom.secretKeyRef``) merged with the
  Rollout step's args (``value``, ``valueFrom.podTemplateHashValue: Stable|Latest``,
  ``valueFrom.fieldRef`` for ``metadata.name``, ``metadata.namespace`` and
  ``status.canary.weights.canary.weight``); the step's values win, and a step arg the template
  does not declare is ignored (Argo's ``MergeArgs``). An arg left without a value is an error, as
  in Argo. The weight ``fieldRef`` resolves only with traffic routing: without it the Rollout has
  no ``status.canary.weights``, Argo cannot create the AnalysisRun ("invalid path ... in
  rollout") and the rollout stays at that step, so it is refused here. ``secretKeyRef`` args are
  resolved when the analysis starts, not before (:func:`resolve_secret_args`): a missing Secret
  or key makes that AnalysisRun an Error ("Unable to resolve metric arguments"), and the rollout
  aborts; until then they hold a placeholder, as Argo validates metrics.
* **Substitution**: ``{{args.name}}`` is replaced in every string of the metric — url, headers,
  body, conditions and also ``interval``/``count``/limits (Argo templates the whole metric as
  JSON); a placeholder naming an unknown arg is an error.
* **Durations**: Go duration strings (``30s``, ``1m30s``, ``500ms``), as Argo parses
  ``interval``, ``initialDelay`` and pause durations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]


class ManifestError(ValueError):
    """A manifest the driver cannot run: missing object, missing arg, bad field."""


# --------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class Manifests:
    """The Kubernetes objects of a manifest folder, by (kind, name)."""

    objects: Mapping[tuple[str, str], Obj]
    source: str

    @classmethod
    def load(cls, folder: str | Path, *, recursive: bool = True) -> Manifests:
        root = Path(folder)
        if not root.is_dir():
            raise ManifestError(f"{root}: not a folder of manifests")
        files = sorted(root.rglob("*.yaml") if recursive else root.glob("*.yaml"))
        objects: dict[tuple[str, str], Obj] = {}
        for file in files:
            for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
                if not isinstance(doc, dict) or "kind" not in doc or doc["kind"] == "Kustomization":
                    continue
                key = (doc["kind"], doc.get("metadata", {}).get("name", ""))
                # Variants (patches) repeat a base object; the first (sorted) file is the base.
                objects.setdefault(key, doc)
        return cls(objects, str(root))

    def get(self, kind: str, name: str) -> Obj:
        try:
            return self.objects[(kind, name)]
        except KeyError:
            raise ManifestError(f"{self.source}: no {kind} named '{name}'") from None

    def only(self, kind: str) -> Obj:
        found = [o for (k, _), o in self.objects.items() if k == kind]
        if len(found) != 1:
            raise ManifestError(f"{self.source}: expected one {kind}, found {len(found)}")
        return found[0]


# --------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a Go duration string (``30s``, ``1m30s``, ``1.5s``, ``500ms``)."""
    value = str(text).strip()
    if value == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(value) or not value:
        raise ManifestError(f"'{text}' is not a duration (Go syntax: 30s, 1m30s, 500ms)")
    return total


def format_duration(seconds: float) -> str:
    """A Go duration string for ``seconds`` (for passing scaled intervals as args)."""
    return f"{round(seconds * 1000)}ms" if seconds < 10 else f"{seconds:g}s"


# --------------------------------------------------------------------------- args


@dataclass(frozen=True)
class ArgContext:
    """What Argo knows when it creates an AnalysisRun for a Rollout step."""

    rollout_name: str
    namespace: str
    stable_hash: str
    canary_hash: str
    canary_weight: int = 0
    #: (secret name, key) -> value, in the Rollout's namespace.
    secrets: Mapping[tuple[str, str], str] = field(default_factory=dict)
    #: Whether the Rollout has ``strategy.canary.trafficRouting`` (then it has
    #: ``status.canary.weights``).
    traffic_routing: bool = False


#: What a ``secretKeyRef`` arg holds until the analysis starts (Argo's own placeholder in
#: ``getResolvedMetricsWithoutSecrets``).
SECRET_PLACEHOLDER = "temp-for-secret"
WEIGHT_FIELD = "status.canary.weights.canary.weight"


class ArgResolutionError(ManifestError):
    """An arg Argo could not resolve when the AnalysisRun ran (a missing Secret or key)."""


def _field_ref(path: str, context: ArgContext) -> str:
    if path == WEIGHT_FIELD and not context.traffic_routing:
        raise ManifestError(
            f"fieldRef '{path}': the Rollout has no trafficRouting, so it has no "
            "status.canary.weights; Argo cannot create the AnalysisRun (invalid path in rollout) "
            "and the rollout stays at this step. Pass the step's weight as a value instead"
        )
    values = {
        "metadata.name": context.rollout_name,
        "metadata.namespace": context.namespace,
        WEIGHT_FIELD: str(context.canary_weight),
    }
    if path not in values:
        raise ManifestError(f"fieldRef '{path}' is not supported by the local driver")
    return values[path]


def _arg_value(arg: Obj, context: ArgContext, where: str) -> str | None:
    name = arg.get("name")
    if "value" in arg and "valueFrom" in arg:
        raise ManifestError(f"{where}: arg '{name}' has both value and valueFrom")
    if "value" in arg:
        return str(arg["value"])
    source = arg.get("valueFrom")
    if source is None:
        return None
    if "podTemplateHashValue" in source:
        which = source["podTemplateHashValue"]
        if which not in ("Stable", "Latest"):
            raise ManifestError(f"{where}: podTemplateHashValue must be Stable or Latest")
        return context.stable_hash if which == "Stable" else context.canary_hash
    if "fieldRef" in source:
        return _field_ref(source["fieldRef"]["fieldPath"], context)
    if "secretKeyRef" in source and where == "template":
        return SECRET_PLACEHOLDER
    if "secretKeyRef" in source:
        raise ManifestError(
            f"{where}: arg '{name}': valueFrom.secretKeyRef exists only on a template's args; "
            "a Rollout step's args take value, podTemplateHashValue or fieldRef (kubectl apply "
            "rejects this Rollout)"
        )
    raise ManifestError(f"{where}: arg '{name}': unsupported valueFrom {sorted(source)}")


def resolve_args(
    template_args: Iterable[Obj],
    step_args: Iterable[Obj],
    context: ArgContext,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Argo's merge: the template's args, each replaced by a step arg of the same name.

    ``overrides`` are extra step args (as if the Rollout passed them), e.g. a demo's shortened
    ``interval``; unlike step args, they may only name args the template declares (a typo in the
    driver's own options is an error, not ignored). ``secretKeyRef`` args hold
    :data:`SECRET_PLACEHOLDER`: :func:`resolve_secret_args` resolves them when the analysis runs.
    """
    declared: dict[str, str | None] = {}
    for arg in template_args:
        declared[arg["name"]] = _arg_value(arg, context, "template")
    for arg in step_args:
        if arg["name"] in declared:  # Argo's MergeArgs ignores the others
            declared[arg["name"]] = _arg_value(arg, context, "rollout step")
    for name, value in (overrides or {}).items():
        if name not in declared:
            raise ManifestError(f"override names arg '{name}' the template does not declare")
        declared[name] = value
    missing = sorted(name for name, value in declared.items() if value is None)
    if missing:
        raise ManifestError(f"args without a value: {', '.join(missing)}")
    return {name: value for name, value in declared.items() if value is not None}


def secret_args(template_args: Iterable[Obj]) -> dict[str, tuple[str, str]]:
    """The template's ``secretKeyRef`` args: name -> (Secret name, key)."""
    refs = {}
    for arg in template_args:
        ref = (arg.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            refs[arg["name"]] = (ref["name"], ref["key"])
    return refs


def resolve_secret_args(refs: Mapping[str, tuple[str, str]], context: ArgContext) -> dict[str, str]:
    """The Secrets' values, read when the AnalysisRun runs (Argo's ``resolveArgs``)."""
    values = {}
    for name, (secret, key) in refs.items():
        if not any(s == secret for s, _ in context.secrets):
            raise ArgResolutionError(f'secrets "{secret}" not found')
        if (secret, key) not in context.secrets:
            raise ArgResolutionError(f"key '{key}' does not exist in secret '{secret}'")
        values[name] = context.secrets[(secret, key)]
    return values


_PLACEHOLDER = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")


def substitute(obj: Any, args: Mapping[str, str]) -> Any:
    """``{{args.x}}`` replaced in every string of ``obj`` (a copy)."""
    if isinstance(obj, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in args:
                raise ManifestError(f"'{match.group(0)}' names an arg that does not exist")
            return args[name]

        return _PLACEHOLDER.sub(replace, obj)
    if isinstance(obj, dict):
        return {key: substitute(value, args) for key, value in obj.items()}
    if isinstance(obj, list):
        return [substitute(value, args) for value in obj]
    return obj
