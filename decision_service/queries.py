"""Where the PromQL is: the templates (presets or a user's file) and their rendering.

A decision needs, for the canary and the stable version, requests, errors and the p50/p95
latency over two spans: the last analysis window, and the canary's life (since its first series
appeared; stable over that same span). The templates (a preset from ``presets/`` or a user's
YAML file, see ``docs/queries.md``) describe two PromQL expressions per span, each answering for
*both* versions at once, grouped by ``version_label``:

* ``requests``: request counts by version and status code (``status_label``); errors are the
  codes matching ``error_status``, so a version that served requests but no error has zero
  errors, measured, not assumed;
* ``latency_buckets``: the latency histogram's bucket increases by version and ``le``; the
  quantiles are computed from them (:mod:`decision_service.prometheus_answers`).

All four expressions (2 spans × 2 templates) travel in **one** query, each tagged with
``label_replace`` and joined with ``or`` (:meth:`RenderedQueries.spans`). The ``canary_start``
template answers when the canary's life began.

Label values substituted into the templates were validated by the request schema (Kubernetes
name/label-value syntax: no quote, no backslash), so they cannot escape a PromQL string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PRESETS_DIR: Final = Path(__file__).resolve().parent / "presets"
PRESET_NAMES: Final = ("demo", "ingress-nginx", "istio")

#: The label that tags each sub-expression's series in the combined query.
QUERY_TAG_LABEL: Final = "decision_query"
#: Placeholders a template may use (``${name}``).
PLACEHOLDERS: Final = frozenset(
    {
        "namespace",
        "rollout",
        "service",
        "canary_hash",
        "stable_hash",
        "canary",
        "stable",
        "versions",
        "range",
    }
)
_LABEL_NAME: Final = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class TemplateError(ValueError):
    """A templates file (or preset) that cannot be used; the message says why."""


def _placeholders(template: str) -> set[str]:
    return set(Template(template).get_identifiers())


class QueryTemplates(BaseModel):
    """The PromQL templates (a preset or a user's file); see ``docs/queries.md``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    version_label: str = Field(pattern=_LABEL_NAME, description="Label telling versions apart.")
    canary: str = Field(min_length=1, description="The canary's value of version_label.")
    stable: str = Field(min_length=1, description="The stable version's value.")
    status_label: str = Field(pattern=_LABEL_NAME, description="Label holding the status code.")
    error_status: str = Field("5..", min_length=1, description="Regex of error status codes.")
    latency_unit: Literal["seconds", "milliseconds"] = "seconds"
    requests: str = Field(description="Request counts by version_label and status_label.")
    latency_buckets: str = Field(description="Latency bucket counts by version_label and le.")
    canary_start: str = Field(description="Unix time (s) at which the canary's life starts.")

    @field_validator("error_status")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"error_status is not a regular expression: {exc}") from exc
        return value

    @field_validator("canary", "stable", "requests", "latency_buckets", "canary_start")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        if not Template(value).is_valid():
            raise ValueError("malformed ${...} placeholder (write $$ for a literal $)")
        unknown = _placeholders(value) - PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; known: {sorted(PLACEHOLDERS)}"
            )
        return value

    def model_post_init(self, __context: Any) -> None:
        for name in ("requests", "latency_buckets"):
            if "range" not in _placeholders(getattr(self, name)):
                raise ValueError(f"{name}: must use ${{range}} (the span being measured)")
        for name in ("canary", "stable", "canary_start"):
            used = _placeholders(getattr(self, name)) & {"range", "versions", "canary", "stable"}
            if name != "canary_start" and used:
                raise ValueError(f"{name}: may only use the request's values, not {sorted(used)}")
            if name == "canary_start" and used & {"range", "versions"}:
                raise ValueError("canary_start: cannot use ${range} or ${versions}")


def load_templates(preset: str, templates_file: Path | None = None) -> QueryTemplates:
    """The user's templates file if given, else the named preset."""
    path = templates_file if templates_file is not None else PRESETS_DIR / f"{preset}.yaml"
    if templates_file is None and preset not in PRESET_NAMES:
        raise TemplateError(f"unknown query preset {preset!r}; presets: {', '.join(PRESET_NAMES)}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TemplateError(f"{path}: a templates file must be a YAML mapping")
    try:
        return QueryTemplates.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise TemplateError(f"{path}: {problems}") from None


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True, slots=True)
class Target:
    """Which canary is measured (request values, already validated)."""

    namespace: str
    rollout: str
    canary_hash: str
    stable_hash: str
    service: str | None = None

    def values(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "rollout": self.rollout,
            "service": self.service or self.rollout,
            "canary_hash": self.canary_hash,
            "stable_hash": self.stable_hash,
        }


def _regex_literal(value: str) -> str:
    """``value`` as an RE2 literal inside a double-quoted PromQL string.

    Validated label values hold only letters, digits, ``-``, ``_`` and ``.``; of those only
    ``.`` means something in a regex. Its escape is doubled for the PromQL string literal.
    """
    return value.replace(".", "\\\\.")


@dataclass(frozen=True, slots=True)
class RenderedQueries:
    """The PromQL for one target: version values, the start query, the span query."""

    canary: str
    stable: str
    canary_start: str
    _values: Mapping[str, str]
    _templates: QueryTemplates

    def spans(self, ranges: Mapping[str, str]) -> str:
        """One query for every span in ``ranges`` (span name → PromQL range such as ``30s``)."""
        parts = []
        for span, promql_range in ranges.items():
            values = {**self._values, "range": promql_range}
            for name in ("requests", "latency_buckets"):
                expr = Template(getattr(self._templates, name)).substitute(values)
                parts.append(f'label_replace({expr}, "{QUERY_TAG_LABEL}", "{span}:{name}", "", "")')
        return " or ".join(parts)


def render(templates: QueryTemplates, target: Target) -> RenderedQueries:
    """Substitute the target's values into the templates (raises TemplateError)."""
    values = target.values()
    canary = Template(templates.canary).substitute(values)
    stable = Template(templates.stable).substitute(values)
    if canary == stable:
        raise TemplateError(
            f"the canary and the stable version both select {templates.version_label}={canary!r}"
        )
    values |= {
        "canary": canary,
        "stable": stable,
        "versions": f"{_regex_literal(canary)}|{_regex_literal(stable)}",
    }
    start = Template(templates.canary_start).substitute(values)
    return RenderedQueries(canary, stable, start, values, templates)
