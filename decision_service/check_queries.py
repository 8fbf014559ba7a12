"""``rollout-agent check-queries``: the PromQL the service would send for a rollout, run now.

    rollout-agent check-queries --namespace shop --rollout checkout \\
        --canary-hash 6d4f8c9b7 --stable-hash 5c8b7d6f4 [--service checkout] [--prometheus-url URL]

The templates, preset, window and Prometheus URL come from the same settings as the service
(``QUERY_PRESET``, ``QUERY_TEMPLATES_FILE``, ``ANALYSIS_WINDOW``, ``PROMETHEUS_URL``; flags
override the URL). It prints each rendered query, then what Prometheus returned for each of the
series a decision needs — the canary's start, and for the last window, the canary's life and
every window since it started: requests, errors and latency buckets of canary and stable —
and which are missing, with what that does to a decision (a hold, ``no_data``). Exit status 0
when everything a decision needs is there, 1 when something is missing, 2 when Prometheus or
the templates cannot be used. It replaces "render the templates by hand and curl Prometheus".
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

from pydantic import ValidationError

from decision_service.app import QUERY_THREADS
from decision_service.prometheus_answers import PrometheusUnavailable
from decision_service.prometheus_source import PrometheusSource, prometheus_client
from decision_service.queries import Target, TemplateError, load_templates, render
from decision_service.schemas import DecideRequestV1
from decision_service.settings import Settings
from decision_service.snapshot import MissingMetricError, VersionMetrics


def _describe(name: str, version: VersionMetrics) -> tuple[str, list[str]]:
    missing = []
    if not math.isfinite(version.requests):
        missing.append(f"{name}: no request series")
    elif version.requests <= 0:
        missing.append(f"{name}: no requests in the span")
    if version.latency_p95_ms is None:
        missing.append(f"{name}: no latency buckets")
    text = (
        f"{name:18s} requests {version.requests:10.1f}  errors {version.errors:8.1f}  "
        f"p50 {version.latency_p50_ms or float('nan'):8.1f} ms  "
        f"p95 {version.latency_p95_ms or float('nan'):8.1f} ms"
    )
    return text, missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rollout-agent check-queries",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--namespace", required=True, help="the Rollout's namespace")
    parser.add_argument("--rollout", required=True, help="the Rollout's name")
    parser.add_argument("--canary-hash", required=True, help="the canary's pod-template hash")
    parser.add_argument("--stable-hash", required=True, help="stable's pod-template hash")
    parser.add_argument("--service", default=None, help="Service name, for presets using it")
    parser.add_argument(
        "--prometheus-url", default=None, help="Prometheus base URL (default: PROMETHEUS_URL)"
    )
    args = parser.parse_args(argv)
    try:
        overrides = {"prometheus_url": args.prometheus_url} if args.prometheus_url else {}
        settings = Settings(**overrides)
        request = DecideRequestV1(
            namespace=args.namespace,
            rollout=args.rollout,
            canary_hash=args.canary_hash,
            stable_hash=args.stable_hash,
            step_weight=0,
            service=args.service,
        )
        templates = load_templates(settings.query_preset, settings.query_templates_file)
        target = Target(
            request.namespace,
            request.rollout,
            request.canary_hash,
            request.stable_hash,
            request.service,
        )
        rendered = render(templates, target)
    except (ValidationError, TemplateError) as exc:
        print(f"check-queries: {exc}", file=sys.stderr)
        return 2
    ranges = {"window": settings.analysis_window}
    print(f"Prometheus: {settings.prometheus_url}  (preset {settings.query_preset!r})")
    print(f"canary start query:\n  {rendered.canary_start}")
    print(
        f"window query (a range query stepped by {settings.analysis_window}):\n"
        f"  {rendered.spans(ranges)}\n"
    )
    client = prometheus_client(
        settings.prometheus_url, settings.prometheus_timeout_seconds, QUERY_THREADS
    )
    source = PrometheusSource(
        client,
        templates,
        window=settings.analysis_window,
        window_seconds=settings.analysis_window_seconds,
        timeout_seconds=max(settings.prometheus_timeout_seconds, 10.0),
        threads=1,
    )
    missing: list[str] = []
    try:
        try:
            snapshot, windows = source.readings_blocking(target, 0.0)
        except MissingMetricError as exc:
            print(f"MISSING  {exc}: the canary has no series; every decision holds (no_data)")
            return 1
        start = source.canary_start_blocking(target, rendered, time.time())
        print(f"canary started {time.time() - start:.0f} s ago")
        for name, version in (
            ("canary window", snapshot.canary),
            ("stable window", snapshot.stable),
            ("canary life", snapshot.canary_cumulative),
            ("stable life", snapshot.stable_cumulative),
        ):
            text, gaps = _describe(name, version)
            print(f"  {text}")
            missing += gaps
        with_latency = sum(1 for c, _ in windows.life if c.has_latency)
        print(
            f"  shield windows: {len(windows.baseline)} of stable before the canary, "
            f"{len(windows.life)} of the canary's life ({with_latency} with latency buckets)"
        )
        if not windows.life:
            missing.append("windows: the range query returned no window of the canary's life")
    except PrometheusUnavailable as exc:
        print(f"check-queries: {exc}", file=sys.stderr)
        return 2
    finally:
        source.close()
    if missing:
        print("\nMISSING (a decision needing them holds with guardrail no_data):")
        for item in missing:
            print(f"  - {item}")
        return 1
    print("\nOK: every series a decision needs is there.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
