"""PromQL templates, presets, rendering, answer parsing and the deadline (no network but a fake
Prometheus, and a loopback proxy that slows it)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import shutil
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from string import Template
from typing import Any

import pytest

from decision_service.histogram import LATENCY_BUCKETS_SECONDS, histogram_quantile
from decision_service.prometheus_answers import PrometheusUnavailable, parse_matrix, parse_start
from decision_service.prometheus_source import (
    BASELINE_WINDOWS,
    PrometheusSource,
    prometheus_client,
)
from decision_service.queries import (
    PRESET_NAMES,
    QUERY_TAG_LABEL,
    QueryTemplates,
    Target,
    TemplateError,
    load_templates,
    render,
)
from decision_service.snapshot import MissingMetricError, VersionMetrics
from tests.support.fake_prometheus import FakePrometheus, Reply, vector
from tests.support.tcp_proxy import FaultProxy, Mode

TARGET = Target("shop", "checkout", "abc123", "def456", service="checkout-web")


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_loads_and_renders_without_leftover_placeholders(preset: str) -> None:
    templates = load_templates(preset)
    queries = render(templates, TARGET)
    spans = queries.spans({"window": "30s", "life": "600s"})
    for text in (spans, queries.canary_start):
        assert "${" not in text and "$" not in text
    assert spans.count("label_replace(") == 4
    for tag in (
        "window:requests",
        "window:latency_buckets",
        "life:requests",
        "life:latency_buckets",
    ):
        assert f'"{QUERY_TAG_LABEL}", "{tag}"' in spans
    assert "[30s]" in spans and "[600s]" in spans


def test_demo_preset_selects_versions_by_pod_template_hash() -> None:
    queries = render(load_templates("demo"), TARGET)
    assert (queries.canary, queries.stable) == ("abc123", "def456")
    assert 'rollouts_pod_template_hash=~"abc123|def456"' in queries.spans({"window": "30s"})
    assert 'rollouts_pod_template_hash="abc123"' in queries.canary_start


def test_ingress_preset_selects_by_service_and_dates_the_canary_by_its_replicaset() -> None:
    queries = render(load_templates("ingress-nginx"), TARGET)
    assert (queries.canary, queries.stable) == ("checkout-web-canary", "checkout-web-stable")
    assert 'replicaset="checkout-abc123"' in queries.canary_start
    without_service = render(load_templates("ingress-nginx"), Target("shop", "checkout", "a", "b"))
    assert without_service.canary == "checkout-canary"  # service defaults to the rollout


def test_dots_in_values_are_literal_in_the_version_regex() -> None:
    queries = render(load_templates("demo"), Target("shop", "web", "v1.2", "v1.1"))
    assert 'rollouts_pod_template_hash=~"v1\\\\.2|v1\\\\.1"' in queries.spans({"window": "30s"})


def test_equal_versions_are_refused() -> None:
    with pytest.raises(TemplateError, match="both select"):
        render(load_templates("demo"), Target("shop", "web", "same", "same"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "templates.yaml"
    path.write_text(text)
    return path


VALID = Path(__file__).resolve().parents[2] / "decision_service" / "presets" / "demo.yaml"


def test_a_user_file_replaces_the_preset(tmp_path: Path) -> None:
    text = VALID.read_text().replace("status_label: code", "status_label: status_code")
    templates = load_templates("istio", _write(tmp_path, text))
    assert templates.status_label == "status_code"
    assert templates.version_label == "rollouts_pod_template_hash"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("${range}", "5m"), "must use \\$\\{range\\}"),
        (("${versions}", "${version}"), "unknown placeholder"),
        (('error_status: "5.."', 'error_status: "5(("'), "not a regular expression"),
        (("latency_unit: seconds", "latency_unit: minutes"), "latency_unit"),
        (("description:", "surprise: 1\ndescription:"), "surprise"),
        (("version_label: rollouts_pod_template_hash", "version_label: 'a-b'"), "version_label"),
        (('canary: "${canary_hash}"', 'canary: "${range}"'), "only use the request's values"),
        (("${canary}", "${"), "placeholder"),
    ],
)
def test_bad_templates_are_refused_with_a_reason(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = VALID.read_text().replace(*change)
    with pytest.raises(TemplateError, match=message):
        load_templates("demo", _write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [", "not valid YAML"),
        ("- a\n- b\n", "YAML mapping"),
        ("{}", "field required|Field required"),
    ],
)
def test_unusable_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        load_templates("demo", _write(tmp_path, text))


def test_unknown_preset_and_missing_file() -> None:
    with pytest.raises(TemplateError, match="unknown query preset"):
        load_templates("linkerd")
    with pytest.raises(TemplateError, match="cannot read"):
        load_templates("demo", Path("/nonexistent/templates.yaml"))


# --------------------------------------------------------------------------- parsing


def _requests(span: str, version: str, code: str, value: float) -> tuple[dict[str, str], float]:
    labels = {QUERY_TAG_LABEL: f"{span}:requests", "rollouts_pod_template_hash": version}
    return labels | {"code": code}, value


def _buckets(
    span: str, version: str, counts: dict[float, float]
) -> list[tuple[dict[str, str], float]]:
    out = []
    for le, value in counts.items():
        labels = {
            QUERY_TAG_LABEL: f"{span}:latency_buckets",
            "rollouts_pod_template_hash": version,
            "le": "+Inf" if math.isinf(le) else repr(le),
        }
        out.append((labels, value))
    return out


def _cumulative(latency: float, n: float) -> dict[float, float]:
    counts = {b: (n if latency <= b else 0.0) for b in LATENCY_BUCKETS_SECONDS}
    return counts | {math.inf: n}


DEMO = load_templates("demo")


def _parse_window(
    result: list[dict[str, Any]], templates: QueryTemplates = DEMO
) -> dict[str, VersionMetrics]:
    """An instant vector's series as a one-window matrix (ending at t = 1), parsed as the
    range answer is: ``{"canary": ..., "stable": ...}`` for canary abc and stable def."""
    points = [{"metric": s["metric"], "values": [[1.0, s["value"][1]]]} for s in result]
    matrix = parse_matrix(points, templates, "abc", "def")
    return {track: matrix.metrics((1.0,), track) for track in ("canary", "stable")}


def test_parse_counts_errors_by_status_and_computes_quantiles_like_prometheus() -> None:
    canary = _cumulative(0.035, 100)
    series = [
        _requests("window", "abc", "200", 90.0),
        _requests("window", "abc", "500", 10.0),
        _requests("window", "abc", "404", 5.0),  # not an error: error_status is 5..
        _requests("window", "def", "200", 400.0),
        *_buckets("window", "abc", canary),
        *_buckets("window", "def", _cumulative(0.02, 400)),
    ]
    body = vector(*series)["data"]["result"]
    parsed = _parse_window(body)
    assert parsed["canary"].requests == 105.0
    assert parsed["canary"].errors == 10.0
    assert parsed["stable"].errors == 0.0  # requests served, no error code: zero, measured
    bounds = list(LATENCY_BUCKETS_SECONDS)
    counts = [canary[b] for b in bounds] + [canary[math.inf]]
    expected = histogram_quantile(0.95, bounds, counts)
    assert expected is not None
    assert parsed["canary"].latency_p95_ms == pytest.approx(expected * 1000)
    assert 30 < (parsed["canary"].latency_p50_ms or 0) <= 40


def test_missing_series_stay_missing_never_filled_in() -> None:
    body = vector(_requests("window", "def", "200", 400.0))["data"]["result"]
    parsed = _parse_window(body)
    canary = parsed["canary"]
    assert math.isnan(canary.requests) and math.isnan(canary.errors)
    assert canary.latency_p50_ms is None and canary.latency_p95_ms is None
    assert parsed["stable"].requests == 400.0
    assert parsed["stable"].latency_p95_ms is None  # no histogram series


def test_nan_values_are_missing() -> None:
    series = [
        _requests("window", "abc", "200", math.nan),
        *_buckets("window", "abc", {0.1: math.nan, math.inf: math.nan}),
    ]
    body = vector(*series)["data"]["result"]
    canary = _parse_window(body)["canary"]
    assert math.isnan(canary.requests)
    assert canary.latency_p50_ms is None


def test_non_monotonic_buckets_are_made_monotonic_as_prometheus_does() -> None:
    counts = {0.01: 10.0, 0.02: 9.5, 0.05: 20.0, math.inf: 20.0}  # increase() extrapolation dip
    body = vector(*_buckets("window", "abc", counts))["data"]["result"]
    canary = _parse_window(body)["canary"]
    assert canary.latency_p50_ms == pytest.approx(10.0)


def test_milliseconds_histograms_are_not_rescaled() -> None:
    istio = load_templates("istio")
    series = [
        (
            {
                QUERY_TAG_LABEL: "window:latency_buckets",
                "rollouts_pod_template_hash": "abc",
                "le": "50",
            },
            10.0,
        ),
        (
            {
                QUERY_TAG_LABEL: "window:latency_buckets",
                "rollouts_pod_template_hash": "abc",
                "le": "+Inf",
            },
            10.0,
        ),
    ]
    canary = _parse_window(vector(*series)["data"]["result"], istio)["canary"]
    assert canary.latency_p50_ms == pytest.approx(25.0)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            {QUERY_TAG_LABEL: "window:requests", "code": "200"},
            "without the 'rollouts_pod_template_hash'",
        ),
        ({QUERY_TAG_LABEL: "window:requests", "rollouts_pod_template_hash": "abc"}, "'code'"),
        ({QUERY_TAG_LABEL: "window:latency_buckets", "rollouts_pod_template_hash": "abc"}, "'le'"),
    ],
)
def test_series_that_break_the_template_contract_are_errors(
    labels: dict[str, str], message: str
) -> None:
    with pytest.raises(PrometheusUnavailable, match=message) as caught:
        _parse_window(vector((labels, 1.0))["data"]["result"])
    assert caught.value.kind == "bad_template"


@pytest.mark.parametrize(
    "result",
    [
        {"not": "a list"},
        [{"metric": {}, "values": [[1, "1"]]}],
        [{"metric": "labels", "values": [[1, "1"]]}],
        [{"values": [[1, "1"]]}],
        [{"metric": {"decision_query": "window:requests"}, "values": "1"}],
        [{"metric": dict(_requests("window", "abc", "200", 0)[0]), "values": [[1]]}],
        [{"metric": dict(_requests("window", "abc", "200", 0)[0]), "values": [[1, "x"]]}],
    ],
)
def test_malformed_answers_are_errors(result: object) -> None:
    with pytest.raises(PrometheusUnavailable) as caught:
        parse_matrix(result, DEMO, "abc", "def")
    assert caught.value.kind == "malformed"


def test_parse_start_takes_the_earliest_finite_value() -> None:
    body = vector(({}, 1_700_000_100.0), ({"x": "1"}, 1_700_000_000.0), ({"x": "2"}, math.nan))
    assert parse_start(body["data"]["result"]) == 1_700_000_000.0
    assert parse_start([]) is None


def test_templates_model_is_strict() -> None:
    with pytest.raises(ValueError):
        QueryTemplates.model_validate({"version_label": "x"})
    assert set(Template(DEMO.requests).get_identifiers()) <= {"versions", "range"}


# --------------------------------------------------------------------------- querying


def _source(fake: FakePrometheus, timeout: float = 1.0) -> PrometheusSource:
    client = prometheus_client(fake.url, timeout, 4)
    return PrometheusSource(client, DEMO, window="30s", window_seconds=30, timeout_seconds=timeout)


def test_queries_travel_as_a_form_body_uncompressed(fake_prometheus: FakePrometheus) -> None:
    source = _source(fake_prometheus)
    try:
        source.query_blocking('sum(up{job="x"})', at=1_700_000_000.0)
    finally:
        source.close()
    method, path, body = fake_prometheus.requests[0]
    assert method == "POST" and path == "/api/v1/query"
    form = urllib.parse.parse_qs(body.decode())
    assert form["query"] == ['sum(up{job="x"})']
    assert form["time"] == ["1700000000.000"]
    assert form["timeout"] == ["1s"]


def test_one_query_per_decision_once_the_canary_start_is_known(
    fake_prometheus: FakePrometheus,
) -> None:
    def handler(query: str) -> Reply:
        if QUERY_TAG_LABEL not in query:  # the canary_start query
            return Reply(body=vector(({}, 1_700_000_000.0)))
        return Reply(body=vector(_requests("window", "abc", "200", 1.0)))

    fake_prometheus.handler = handler
    source = _source(fake_prometheus)
    target = Target("shop", "web", "abc", "def")
    try:
        source.readings_blocking(target, 10)
        assert len(fake_prometheus.queries) == 2
        snapshot, windows = source.readings_blocking(target, 10)
        assert len(fake_prometheus.queries) == 3
    finally:
        source.close()
    assert snapshot.canary.requests == 1.0 and windows.life
    assert "[30s]" in fake_prometheus.queries[-1]
    assert fake_prometheus.requests[-1][1] == "/api/v1/query_range"


def test_a_canary_without_series_is_missing_data_and_not_cached(
    fake_prometheus: FakePrometheus,
) -> None:
    source = _source(fake_prometheus)
    try:
        for _ in range(2):
            with pytest.raises(MissingMetricError, match="canary_start"):
                source.snapshot_blocking(Target("shop", "web", "abc", "def"), 10)
    finally:
        source.close()
    assert len(fake_prometheus.queries) == 2  # asked again: no start was cached


# --------------------------------------------------------------------------- the deadline


def test_a_past_moment_is_queried_at_that_time(fake_prometheus: FakePrometheus) -> None:
    """``at``: the canary's start is asked at that time and the range ends then, its windows
    counted from the start to ``at`` (what a replay needs)."""
    at = 1_700_000_000.0
    form: list[dict[str, list[str]]] = []

    def handler(query: str) -> Reply:
        if QUERY_TAG_LABEL not in query:  # the canary_start query: 95 s before `at`
            return Reply(body=vector(({}, at - 95.0)))
        return Reply(body=vector(_requests("window", "abc", "200", 1.0)))

    fake_prometheus.handler = handler
    source = _source(fake_prometheus)
    target = Target("shop", "web", "abc", "def")
    try:
        snapshot, windows = source.readings_blocking(target, 10, at=at)
    finally:
        source.close()
    for _, _, body in fake_prometheus.requests:
        form.append(urllib.parse.parse_qs(body.decode()))
    assert len(form) == 2  # the start, then one range query for everything
    assert form[0]["time"] == ["1700000000.000"]
    assert form[1]["end"] == ["1700000000.000"]
    # 95 s of life: 3 windows (ending 60, 30 and 0 s before `at`), each with 1 request
    assert len(windows.life) == 3
    assert snapshot.canary.requests == 1.0
    assert snapshot.canary_cumulative.requests == 3.0


def test_the_snapshot_is_the_last_window_and_the_sum_of_the_life(
    fake_prometheus: FakePrometheus,
) -> None:
    """The snapshot comes from the same range answer as the shield's windows: its window is
    the point at ``at``, its life the sum of the canary's windows for both versions (stable's
    windows before the canary are not in it), latencies from the summed buckets; the life of a
    canary younger than half a window is its last window."""
    at = 1_700_000_000.0
    canary_requests = ["4", "6", "10"]  # its three windows, oldest first
    stable_requests = ["100"] * 10 + ["90", "80", "70"]

    def handler(query: str) -> Reply:
        if QUERY_TAG_LABEL not in query:
            return Reply(body=vector(({}, at - 95.0)))
        series = []
        for version, values in (("abc", canary_requests), ("def", stable_requests)):
            for labels, _ in (
                _requests("window", version, "200", 0.0),
                *_buckets("window", version, {0.05: 1.0, math.inf: 1.0}),
            ):
                series.append({"metric": labels, "value": [at, values[-1]], "_history": values})
        return Reply(body={"status": "success", "data": {"resultType": "vector", "result": series}})

    fake_prometheus.handler = handler
    source = _source(fake_prometheus)
    target = Target("shop", "web", "abc", "def")
    try:
        snapshot, windows = source.readings_blocking(target, 10, at=at)
        young = source.snapshot_blocking(Target("shop", "web", "abc", "def"), 10, at=at - 90.0)
    finally:
        source.close()
    assert (snapshot.canary.requests, snapshot.stable.requests) == (10.0, 70.0)
    assert snapshot.canary_cumulative.requests == 20.0
    assert snapshot.stable_cumulative.requests == 240.0
    assert snapshot.canary_cumulative.errors == 0.0
    assert snapshot.canary_cumulative.latency_p95_ms is not None
    assert len(windows.life) == 3 and len(windows.baseline) == BASELINE_WINDOWS
    # 5 s old at `at - 90`: no window of its own yet, so its life is its last window
    assert young.canary_cumulative.requests == young.canary.requests == 10.0


def test_a_version_without_series_in_its_life_is_missing_not_zero(
    fake_prometheus: FakePrometheus,
) -> None:
    def handler(query: str) -> Reply:
        if QUERY_TAG_LABEL not in query:
            return Reply(body=vector(({}, 1_700_000_000.0 - 95.0)))
        return Reply(body=vector(_requests("window", "abc", "200", 5.0)))

    fake_prometheus.handler = handler
    source = _source(fake_prometheus)
    try:
        snapshot = source.snapshot_blocking(Target("shop", "web", "abc", "def"), 10, at=1.7e9)
    finally:
        source.close()
    assert snapshot.canary_cumulative.requests == 15.0
    assert math.isnan(snapshot.stable.requests) and math.isnan(snapshot.stable_cumulative.requests)
    assert snapshot.stable_cumulative.latency_p95_ms is None


def test_stable_gets_exactly_its_baseline_windows_before_the_canary(
    fake_prometheus: FakePrometheus,
) -> None:
    """A canary 3 windows and 5 s old (its start dated 5 s early, as the demo preset does):
    3 windows are its own and the range reaches back exactly BASELINE_WINDOWS more, not one
    window further (the window it started in used to be counted as its own, then classified
    as stable's: 11 of stable's windows)."""
    at = 1_700_000_000.0

    def handler(query: str) -> Reply:
        if QUERY_TAG_LABEL not in query:
            return Reply(body=vector(({}, at - 95.0)))
        return Reply(
            body=vector(
                _requests("window", "abc", "200", 10.0), _requests("window", "def", "200", 90.0)
            )
        )

    fake_prometheus.handler = handler
    source = _source(fake_prometheus)
    try:
        _, windows = source.readings_blocking(Target("shop", "web", "abc", "def"), 10, at=at)
    finally:
        source.close()
    assert len(windows.life) == 3
    assert len(windows.baseline) == BASELINE_WINDOWS
    form = urllib.parse.parse_qs(fake_prometheus.requests[-1][2].decode())
    assert float(form["start"][0]) == at - (3 + BASELINE_WINDOWS - 1) * 30


def _one_worker_source(url: str, timeout: float) -> PrometheusSource:
    client = prometheus_client(url, timeout, 1)
    return PrometheusSource(
        client, DEMO, window="30s", window_seconds=30, timeout_seconds=timeout, threads=1
    )


@pytest.mark.parametrize(("mode", "delay"), [("drip", 0.05), ("late", 3.0)])
def test_the_deadline_ends_the_answer_and_frees_the_worker(
    fake_prometheus: FakePrometheus, mode: Mode, delay: float
) -> None:
    """A Prometheus answering one byte every 50 ms (a per-read timeout never fires) or 3 s
    late: the call fails within its deadline, and the one worker is free again at once."""
    fake_prometheus.handler = lambda query: Reply(body=vector(({"x": "y" * 200}, 1.0)))
    port = int(fake_prometheus.url.rsplit(":", 1)[1])
    timeout = 0.5

    async def scenario(source: PrometheusSource) -> tuple[float, float, int]:
        started = time.monotonic()
        with pytest.raises(PrometheusUnavailable) as failure:
            await source.query("vector(1)")
        failed_after = time.monotonic() - started
        assert failure.value.kind == "timeout"
        started = time.monotonic()
        value = await source.run(lambda: 42)  # needs the one worker
        return failed_after, time.monotonic() - started, value

    with FaultProxy(port, mode, delay) as proxy:
        source = _one_worker_source(proxy.url, timeout)
        try:
            failed_after, free_after, value = asyncio.run(scenario(source))
        finally:
            source.close()
    assert failed_after < timeout + 0.2
    assert value == 42 and free_after < 0.2


def test_a_job_that_cannot_start_before_its_deadline_never_runs(
    fake_prometheus: FakePrometheus,
) -> None:
    """One worker busy past the deadline of a second call: the second call fails at its own
    deadline, and its job is never run afterwards."""
    ran: list[str] = []
    source = _one_worker_source(fake_prometheus.url, 0.3)

    def busy() -> None:
        time.sleep(0.6)  # not a Prometheus read: nothing cuts it

    async def scenario() -> None:
        first = asyncio.ensure_future(source.run(busy))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(PrometheusUnavailable):
            await source.run(lambda: ran.append("second"))
        assert time.monotonic() - started < 0.3 + 0.2
        with contextlib.suppress(PrometheusUnavailable):
            await first
        await asyncio.sleep(0.5)  # the worker is free again: a queued job would run now

    try:
        asyncio.run(scenario())
    finally:
        source.close()
    assert ran == []


@pytest.fixture
def tls_prometheus(
    fake_prometheus: FakePrometheus, tmp_path: Path
) -> Iterator[tuple[FakePrometheus, Path]]:
    """The fake Prometheus speaking HTTPS with a fresh self-signed certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = fake_prometheus._server
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield fake_prometheus, cert


def test_the_deadline_also_ends_a_dripping_https_answer(
    tls_prometheus: tuple[FakePrometheus, Path],
) -> None:
    """HTTPS goes through the deadline's connection class too: a healthy answer arrives, and a
    dripping one ends within the deadline with the worker free. (CPython bounds one TLS read
    call as a whole, so a drip slower than a record per timeout was already cut there.)"""
    fake, cert = tls_prometheus
    fake.handler = lambda query: Reply(body=vector(({"x": "y" * 2000}, 1.0)))
    port = int(fake.url.rsplit(":", 1)[1])

    async def scenario(source: PrometheusSource) -> tuple[object, float, float]:
        answer = await source.query("vector(1)")  # through the proxy, healthy: TLS works
        # the range query (on the HTTP pool itself) verifies with the session's CA too
        matrix = await source.run(lambda: source.query_range_blocking("vector(1)", 0.0, 30.0, 30))
        assert [len(series["values"]) for series in matrix] == [2]
        proxy.set("drip", 0.05)
        started = time.monotonic()
        with pytest.raises(PrometheusUnavailable, match="timeout"):
            await source.query("vector(1)")
        failed_after = time.monotonic() - started
        started = time.monotonic()
        await source.run(lambda: None)  # needs the one worker
        return answer, failed_after, time.monotonic() - started

    with FaultProxy(port) as proxy:
        source = _one_worker_source(f"https://127.0.0.1:{proxy.port}", 0.5)
        source._client._session.verify = str(cert)
        try:
            answer, failed_after, free_after = asyncio.run(scenario(source))
        finally:
            source.close()
    assert answer == [{"metric": {"x": "y" * 2000}, "value": answer[0]["value"]}]  # type: ignore[index]
    assert failed_after < 0.5 + 0.2 and free_after < 0.2


def test_credentials_in_the_url_go_with_every_query(fake_prometheus: FakePrometheus) -> None:
    """``http://user:password@host``: requests sends them on the instant queries, and the
    range query of every decision sends the same (percent-escapes decoded)."""
    fake_prometheus.handler = lambda query: Reply(body=vector(({"x": "y"}, 1.0)))
    url = fake_prometheus.url.replace("http://", "http://ops:p%40ss@")
    source = _one_worker_source(url, 2.0)
    try:
        source.query_blocking("vector(1)")
        source.query_range_blocking("vector(1)", 0.0, 30.0, 30)
    finally:
        source.close()
    expected = "Basic " + base64.b64encode(b"ops:p@ss").decode()
    assert fake_prometheus.authorizations == [expected, expected]
    assert [method for method, _, _ in fake_prometheus.requests] == ["POST", "POST"]
