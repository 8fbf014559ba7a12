"""The local stack with a real Prometheus: labels, traffic split, clean shutdown (also Ctrl-C).

The decision endpoint here is scripted (tests/demo_apps/local/fake_decision.py), so these tests
exercise the apps, Prometheus, the load generator, the driver and the process handling; the
acceptance tests (test_demo_e2e.py) run the real decision service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fake_decision import FakeDecisionService, Reply, decision, serve

from demo_apps.local.demo import DemoOptions, load_warning, run_demo
from demo_apps.local.stack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT, prometheus_binary

pytestmark = pytest.mark.prometheus


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is gone for our purpose once reaped by its parent.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" in status.read_text()


def _sigint_as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _query(url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    return response.json()["data"]["result"]


def test_prometheus_sees_both_versions_by_pod_template_hash(tmp_path: Path) -> None:
    config = StackConfig(
        scenario="healthy",
        run_dir=tmp_path,
        prometheus_bin=prometheus_binary(),
        start_decision_service=False,
        decision_url="http://127.0.0.1:9",
    )
    with LocalStack(config) as stack:
        pids = json.loads((tmp_path / "pids.json").read_text())
        assert set(pids) == {"app-stable", "app-canary", "prometheus"}
        for track in ("stable", "canary"):
            for _ in range(5):
                httpx.get(stack.apps[track].url + "/", timeout=5)
        deadline = time.monotonic() + 20
        result: list[dict] = []
        while time.monotonic() < deadline:
            result = _query(
                stack.prometheus_url,
                "sum by (rollouts_pod_template_hash, track, namespace) (http_requests_total)",
            )
            if len(result) == 2 and all(float(r["value"][1]) >= 5 for r in result):
                break
            time.sleep(0.3)
        labels = {r["metric"]["track"]: r["metric"] for r in result}
        for track in ("stable", "canary"):
            assert (
                labels[track]["rollouts_pod_template_hash"] == stack.apps[track].pod_template_hash
            )
            assert labels[track]["namespace"] == "rollout-demo"
        buckets = _query(stack.prometheus_url, "count(http_request_duration_seconds_bucket)")
        assert float(buckets[0]["value"][1]) == 2 * 26  # 25 bounds + Inf, per version
    assert all(_gone(pid) for pid in pids.values())


def test_a_scripted_rollout_splits_traffic_by_weight_and_cleans_up(tmp_path: Path) -> None:
    prometheus_binary()
    seen: dict[str, int] = {}

    def script(body: dict) -> Reply:
        weight = body["step_weight"]
        seen[weight] = seen.get(weight, 0) + 1
        if seen[weight] == 1:
            return decision("hold")  # one interval of traffic at every weight
        return decision("abort") if weight == "60" else decision("promote")

    fake = FakeDecisionService(script)
    with serve(fake):
        result = run_demo(
            DemoOptions(
                scenario="healthy",
                decision_url=f"http://{fake.url}",
                interval_seconds=0.5,
                run_dir=tmp_path,
                warmup_intervals=2,
                max_rps=200.0,  # the driver's semantics, not evidence: no need for full load
            ),
            printer=None,
        )
    assert result.verdict.outcome == "aborted"
    weights = [e.weight for e in result.events if e.kind == "weight"]
    assert weights == [0, 5, 10, 20, 40, 60, 0]
    assert result.requests["stable"]["requests"] > result.requests["canary"]["requests"] > 0
    assert result.requests["dropped"]["requests"] == 0
    assert fake.requests[0]["body"]["canary_hash"] == result.hashes["canary"]
    assert fake.requests[0]["body"]["stable_hash"] == result.hashes["stable"]
    assert result.timeline is not None and result.timeline.stat().st_size > 10_000
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["kind"] == "verdict"
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert all(_gone(pid) for pid in pids.values())


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    prometheus_binary()
    fake = FakeDecisionService(lambda body: decision("hold"))
    with serve(fake):
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "demo_apps.local.demo",
                "--scenario",
                "healthy",
                "--decision-url",
                f"http://{fake.url}",
                "--interval",
                "0.5",
                "--max-rps",
                "200",
                "--run-dir",
                str(tmp_path),
                "--no-plot",
                # A human may answer the pause for a minute: a stalled CI machine that sends the
                # Ctrl-C only after the ten holds still finds the demo running (at the pause).
                "--pause-timeout",
                "60",
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            # Ctrl-C as at a terminal: a runner that started the tests in the background (a
            # non-interactive shell's `&`) hands its children SIGINT ignored, and Python then
            # installs no KeyboardInterrupt handler.
            preexec_fn=_sigint_as_at_a_terminal,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(fake.requests) < 2:
                assert demo.poll() is None, demo.stdout.read() if demo.stdout else ""
                time.sleep(0.1)
            assert len(fake.requests) >= 2, "the demo never reached its analysis"
            pids = json.loads((tmp_path / "pids.json").read_text())
            demo.send_signal(signal.SIGINT)
            output, _ = demo.communicate(timeout=60)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait(timeout=10)
    assert demo.returncode == 130, output
    assert "every process the demo started has been stopped" in output
    assert all(_gone(pid) for pid in pids.values()), pids


def test_the_demo_warns_when_the_load_generator_dropped_arrivals() -> None:
    """Up to 2 % dropped is quiet (the e2e tests' bound); above it the demo says that the
    canary saw less evidence than asked, and which --max-rps this machine would serve."""
    assert load_warning(served=98_000, dropped=2_000, rps=1500, served_rps=1470) is None
    assert load_warning(served=97_990, dropped=2_010, rps=1500, served_rps=1470) is not None
    assert load_warning(served=0, dropped=0, rps=1500, served_rps=0) is None
    warning = load_warning(served=153_745, dropped=11_838, rps=1500, served_rps=1398)
    assert warning is not None
    assert "dropped 7.1% of its arrivals (11838 of 165583)" in warning
    assert "did not serve 1500 req/s" in warning
    assert warning.endswith("run again with --max-rps 1100 to compare live with simulated")
    # Never below 100 req/s, however little was served.
    starved = load_warning(served=500, dropped=9_500, rps=1500, served_rps=50)
    assert starved is not None and "--max-rps 100 " in starved
