"""The local rollout driver's state machine, against a scripted decision endpoint over HTTP.

The real manifests in rollouts/base drive every test here (with the interval scaled down by an
arg, as the demo does), so the driver is tested on what it will run.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fake_decision import FakeDecisionService, Reply, decision, serve

from demo_apps.local.commands import CommandQueue, watch_control_file
from demo_apps.local.conditions import UnsupportedExpression
from demo_apps.local.driver import Event, RolloutDriver, Verdict
from demo_apps.local.manifests import ManifestError, Manifests
from tests.conftest import REPO_ROOT
from tests.support.analysis_template import override_fields

BASE = REPO_ROOT / "rollouts" / "base"
TOKEN = "s3cret-token"
SECRET = {("k8s-rollout-agent-token", "token"): TOKEN}
TEMPLATE_HOST = "k8s-rollout-agent.rollout-agent.svc:8080"
WEIGHTS = [5, 10, 20, 40, 60, 80, 100]


class Run:
    """One driver run: its verdict, the weights it set, its events, and the fake's requests."""

    def __init__(
        self, fake: FakeDecisionService, verdict: Verdict, weights: list[int], events: list[Event]
    ):
        self.fake = fake
        self.verdict = verdict
        self.weights = weights
        self.events = events

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def drive(
    script: list[Reply] | Callable[[dict[str, Any]], Reply],
    *,
    manifests: Manifests | None = None,
    interval: str = "20ms",
    count: str = "10",
    react: Callable[[Event, CommandQueue], None] | None = None,
    commands: CommandQueue | None = None,
    pause_timeout: float | None = 5.0,
    time_scale: float = 3000.0,  # a 30 s pause step lasts 10 ms
    canary_ready: Callable[[], bool] | None = None,
) -> Run:
    fake = FakeDecisionService(script)
    weights: list[int] = []
    events: list[Event] = []
    queue = commands or CommandQueue()

    def on_event(event: Event) -> None:
        events.append(event)
        if react:
            react(event, queue)

    with serve(fake), httpx.Client() as client:
        driver = RolloutDriver(
            manifests or Manifests.load(BASE),
            client=client,
            set_weight=weights.append,
            stable_hash="stab1e",
            canary_hash="can4ry",
            secrets=SECRET,
            arg_overrides={"interval": interval, "count": count},
            host_overrides={TEMPLATE_HOST: fake.url},
            commands=queue,
            on_event=on_event,
            error_retry_seconds=0.01,
            pause_timeout_seconds=pause_timeout,
            time_scale=time_scale,
            canary_ready=canary_ready,
            ready_poll_seconds=0.01,
        )
        verdict = driver.run()
    return Run(fake, verdict, weights, events)


def test_promote_at_every_step_walks_the_manifest_weights_to_100() -> None:
    run = drive([decision("promote") for _ in WEIGHTS])
    assert run.verdict.outcome == "promoted"
    assert run.weights == [0, *WEIGHTS, 100]
    assert run.verdict.measurements == len(WEIGHTS)
    bodies = [r["body"] for r in run.fake.requests]
    assert [b["step_weight"] for b in bodies] == [str(w) for w in WEIGHTS]
    # The per-Rollout overrides the template forwards are empty: the service's own settings.
    assert bodies[0] == {
        "namespace": "rollout-demo",
        "rollout": "demo-app",
        "canary_hash": "can4ry",
        "stable_hash": "stab1e",
        "step_weight": "5",
        "count": "10",  # the template's own count: where the shield's last look is
        **dict.fromkeys(override_fields(), ""),
    }
    request = run.fake.requests[0]
    assert request["path"] == "/v1/decide"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_abort_at_the_first_analysis_sends_all_traffic_back_to_stable() -> None:
    run = drive([decision("abort", "canary error rate 20 %")])
    assert run.verdict.outcome == "aborted"
    assert run.weights == [0, 5, 0]
    assert run.verdict.step == 1  # setWeight 5, analysis
    assert "failed (1) > failureLimit (0)" in run.verdict.reason
    (measurement,) = run.of("measurement")
    assert measurement.data["decision"] == "abort"
    assert measurement.data["reason"] == "canary error rate 20 %"


def test_each_weight_gets_one_interval_of_traffic_before_its_first_measurement() -> None:
    # The template's initialDelay is `{{args.interval}}`: 100 ms here, as the interval.
    run = drive([decision("promote") for _ in WEIGHTS], interval="100ms")
    assert run.verdict.outcome == "promoted"
    set_at = [e.time for e in run.events if e.kind == "weight"][1 : 1 + len(WEIGHTS)]
    for weight_time, asked_at in zip(set_at, run.fake.times, strict=True):
        assert asked_at - weight_time >= 0.095
    delays = [e for e in run.events if e.kind == "initial_delay"]
    assert [d.data["seconds"] for d in delays] == [pytest.approx(0.1)] * len(WEIGHTS)
    assert not [e for e in run.events if e.kind == "pause"]  # no pause steps any more


def test_without_initial_delay_the_first_measurement_is_at_once(tmp_path: Path) -> None:
    """Argo's generateMetricTasks: no initialDelay, the first measurement right away."""

    def no_delay(doc: dict[str, Any]) -> None:
        del doc["spec"]["metrics"][0]["initialDelay"]

    run = drive(
        [decision("promote") for _ in WEIGHTS],
        manifests=_manifests_with(tmp_path, no_delay),
        interval="1s",
    )
    assert run.verdict.outcome == "promoted"
    set_at = [e.time for e in run.events if e.kind == "weight"][1 : 1 + len(WEIGHTS)]
    assert all(b - a < 0.5 for a, b in zip(set_at, run.fake.times, strict=True))


def test_an_abort_during_the_initial_delay_rolls_back_without_measuring() -> None:
    def human(event: Event, queue: CommandQueue) -> None:
        if event.kind == "initial_delay":
            queue.put("abort")

    run = drive([], react=human, interval="30s")
    assert run.verdict.outcome == "aborted"
    assert run.fake.requests == []
    assert run.weights == [0, 5, 0]


def test_a_pause_step_with_a_duration_is_compressed_by_the_time_scale(tmp_path: Path) -> None:
    rollout = yaml.safe_load((BASE / "rollout.yaml").read_text())
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    rollout["spec"]["strategy"]["canary"]["steps"] = [steps[0], {"pause": {"duration": "30s"}}]
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump(rollout))
    (tmp_path / "analysis-template.yaml").write_text((BASE / "analysis-template.yaml").read_text())
    run = drive([], manifests=Manifests.load(tmp_path), time_scale=300.0)
    assert run.verdict.outcome == "promoted"
    (pause,) = run.of("pause")
    assert pause.data["seconds"] == pytest.approx(0.1)

    def human(event: Event, queue: CommandQueue) -> None:
        if event.kind == "pause":
            queue.put("abort")

    aborted = drive([], manifests=Manifests.load(tmp_path), react=human, time_scale=1.0)
    assert aborted.verdict.outcome == "aborted"
    assert aborted.weights == [0, 5, 0]


def test_a_pause_without_duration_waits_for_promote(tmp_path: Path) -> None:
    rollout = yaml.safe_load((BASE / "rollout.yaml").read_text())
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    rollout["spec"]["strategy"]["canary"]["steps"] = [steps[0], {"pause": {}}]
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump(rollout))
    (tmp_path / "analysis-template.yaml").write_text((BASE / "analysis-template.yaml").read_text())

    def human(event: Event, queue: CommandQueue) -> None:
        if event.kind == "paused":
            queue.put("promote")

    run = drive([], manifests=Manifests.load(tmp_path), react=human)
    assert run.verdict.outcome == "promoted"
    assert run.weights == [0, 5, 100]
    stuck = drive([], manifests=Manifests.load(tmp_path), pause_timeout=0.05)
    assert stuck.verdict.outcome == "paused"


def test_holds_are_measured_again_every_interval_until_a_promote() -> None:
    script = [decision("hold"), decision("hold"), decision("promote")] * len(WEIGHTS)
    run = drive(script, interval="50ms")
    assert run.verdict.outcome == "promoted"
    assert run.verdict.measurements == 3 * len(WEIGHTS)
    gaps = [b - a for a, b in zip(run.fake.times, run.fake.times[1:], strict=False)]
    within_step = [g for i, g in enumerate(gaps) if i % 3 != 2]
    assert min(within_step) >= 0.045  # the scaled interval is honoured between measurements


def test_abort_after_some_good_steps_stops_at_that_step() -> None:
    script = [decision("promote")] * 3 + [decision("hold"), decision("abort")]
    run = drive(script)
    assert run.verdict.outcome == "aborted"
    assert run.weights == [0, 5, 10, 20, 40, 0]


def test_patience_exhausted_pauses_and_waits_for_a_human_promote() -> None:
    count = 4
    script = [decision("hold")] * count + [decision("promote")] * (len(WEIGHTS) - 1)

    def human(event: Event, queue: CommandQueue) -> None:
        if event.kind == "paused":
            queue.put("promote")

    run = drive(script, count=str(count), react=human)
    assert run.verdict.outcome == "promoted"
    (paused,) = run.of("paused")
    assert paused.weight == 5
    assert "count (4) reached" in paused.data["reason"]
    assert [e.data["command"] for e in run.of("command")] == ["promote"]
    # promote skips the inconclusive step: the next request is already at the next weight
    assert [r["body"]["step_weight"] for r in run.fake.requests][count] == "10"


def test_a_human_abort_after_the_pause_rolls_back() -> None:
    def human(event: Event, queue: CommandQueue) -> None:
        if event.kind == "paused":
            queue.put("abort")

    run = drive([decision("hold")] * 3, count="3", react=human)
    assert run.verdict.outcome == "aborted"
    assert run.weights == [0, 5, 0]


def test_without_an_answer_the_rollout_stays_paused() -> None:
    run = drive([decision("hold")] * 3, count="3", pause_timeout=0.05)
    assert run.verdict.outcome == "paused"
    assert run.weights == [0, 5]  # Argo leaves the weight where it was while paused
    assert "Inconclusive" in run.verdict.reason


def test_consecutive_errors_beyond_the_limit_abort() -> None:
    run = drive([Reply(503, {"error": "prometheus unreachable"})] * 5)
    assert run.verdict.outcome == "aborted"
    assert "consecutiveErrors (5) > consecutiveErrorLimit (4)" in run.verdict.reason
    assert len(run.fake.requests) == 5
    assert all(e.data["phase"] == "Error" for e in run.of("measurement"))
    assert "503" in run.of("measurement")[0].data["error"]


def test_errors_within_the_limit_are_retried_and_a_promote_still_counts() -> None:
    script = [Reply(503, {"error": "x"})] * 4 + [decision("promote")] * len(WEIGHTS)
    run = drive(script)
    assert run.verdict.outcome == "promoted"


def test_a_body_without_the_decision_is_inconclusive_and_bad_json_is_successful() -> None:
    """Argo v1.9.1's parseResponse: a 2xx body that is not JSON is the value, Successful, and
    the conditions are not evaluated, so the step passes (with consecutiveSuccessLimit 1)."""
    script = [Reply(200, {"unexpected": 1}), Reply(200, b"not json"), decision("abort")]
    run = drive(script)
    measurements = run.of("measurement")
    assert [e.data["phase"] for e in measurements] == ["Inconclusive", "Successful", "Failed"]
    assert "not JSON" in measurements[1].data["error"]
    assert run.weights == [0, 5, 10, 0]


@pytest.mark.parametrize("body", [None, "promote", ["promote"]])
def test_a_decision_field_of_null_a_string_or_a_list_is_an_error(body: Any) -> None:
    """expr panics on `result.decision` there: Error measurements, then the abort (5th)."""
    run = drive([Reply(200, body)] * 5)
    assert [e.data["phase"] for e in run.of("measurement")] == ["Error"] * 5
    assert "cannot fetch decision" in run.of("measurement")[0].data["error"]
    assert run.verdict.outcome == "aborted"


def test_a_command_during_an_analysis_acts_at_once() -> None:
    def human(event: Event, queue: CommandQueue) -> None:
        if event.kind == "measurement" and event.data["number"] == 2:
            queue.put("abort")

    run = drive(lambda body: decision("hold"), react=human, interval="30ms")
    assert run.verdict.outcome == "aborted"
    assert len(run.fake.requests) == 2


def test_the_token_never_appears_in_events() -> None:
    run = drive([Reply(401, {"detail": f"bad token {TOKEN}"})] * 5)
    assert run.verdict.outcome == "aborted"
    text = " ".join(e.message + str(dict(e.data)) for e in run.events)
    assert TOKEN not in text
    assert "*****" in text


def test_control_file_commands(tmp_path: Path) -> None:
    queue, stop = CommandQueue(), threading.Event()
    errors: list[str] = []
    control = tmp_path / "control"
    thread = threading.Thread(
        target=watch_control_file, args=(control, queue, stop, errors.append, 0.01), daemon=True
    )
    thread.start()
    try:
        control.write_text("promote\n")
        assert queue.wait(2.0) == "promote"
        control.write_text("rollback")
        assert queue.wait(0.3) is None
    finally:
        stop.set()
        thread.join(timeout=2)
    assert errors == ["unknown command 'rollback': use promote or abort"]
    assert not control.exists()


# -- refusing what it does not implement, before anything runs --------------------------


def _manifests_with(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Manifests:
    for name in ("rollout.yaml", "analysis-template.yaml"):
        doc = yaml.safe_load((BASE / name).read_text())
        if doc["kind"] == "AnalysisTemplate":
            edit(doc)
        (tmp_path / name).write_text(yaml.safe_dump(doc))
    return Manifests.load(tmp_path)


def _set_condition(expression: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["spec"]["metrics"][0]["successCondition"] = expression

    return edit


@pytest.mark.parametrize(
    "expression",
    ['result.decision matches "^p"', "result.decision == other", "result?.decision", "x ?? 1"],
)
def test_an_unsupported_condition_is_refused_before_any_weight_is_set(
    tmp_path: Path, expression: str
) -> None:
    manifests = _manifests_with(tmp_path, _set_condition(expression))
    weights: list[int] = []
    with pytest.raises(UnsupportedExpression, match="condition"), httpx.Client() as client:
        RolloutDriver(
            manifests,
            client=client,
            set_weight=weights.append,
            stable_hash="a",
            canary_hash="b",
            secrets=SECRET,
        )
    assert weights == []


def test_a_missing_secret_is_an_error_analysis_run_and_the_rollout_aborts() -> None:
    """Argo resolves secretKeyRef args when the AnalysisRun runs: 'Unable to resolve metric
    arguments', the run is an Error, the rollout aborts (not refused before the rollout)."""
    fake = FakeDecisionService([])
    weights: list[int] = []
    with serve(fake), httpx.Client() as client:
        verdict = RolloutDriver(
            Manifests.load(BASE),
            client=client,
            set_weight=weights.append,
            stable_hash="a",
            canary_hash="b",
            host_overrides={TEMPLATE_HOST: fake.url},
        ).run()
    assert verdict.outcome == "aborted"
    assert 'Unable to resolve metric arguments: secrets "k8s-rollout-agent-token" not found' in (
        verdict.reason
    )
    assert weights == [0, 5, 0]
    assert fake.requests == []
    with httpx.Client() as client:
        verdict = RolloutDriver(
            Manifests.load(BASE),
            client=client,
            set_weight=lambda weight: None,
            stable_hash="a",
            canary_hash="b",
            secrets={("k8s-rollout-agent-token", "other"): "x"},
        ).run()
    assert "key 'token' does not exist in secret 'k8s-rollout-agent-token'" in verdict.reason


def test_an_unsupported_provider_is_refused(tmp_path: Path) -> None:
    def prometheus(doc: dict[str, Any]) -> None:
        doc["spec"]["metrics"][0]["provider"] = {"prometheus": {"query": "up"}}

    manifests = _manifests_with(tmp_path, prometheus)
    with pytest.raises(ManifestError, match="web provider only"), httpx.Client() as c:
        RolloutDriver(
            manifests, client=c, set_weight=print, stable_hash="a", canary_hash="b", secrets=SECRET
        )


def test_an_override_must_name_a_declared_arg() -> None:
    with pytest.raises(ManifestError, match="'intervall'"), httpx.Client() as c:
        RolloutDriver(
            Manifests.load(BASE),
            client=c,
            set_weight=print,
            stable_hash="a",
            canary_hash="b",
            secrets=SECRET,
            arg_overrides={"intervall": "1s"},
        )


def test_a_compressed_interval_compresses_the_initial_delay_too() -> None:
    """The demo and its e2e tests shorten the template's interval by an arg; initialDelay
    (`{{args.interval}}`) must shrink with it, or each step would wait the real 30 s."""
    with httpx.Client() as client:
        driver = RolloutDriver(
            Manifests.load(BASE),
            client=client,
            set_weight=print,
            stable_hash="a",
            canary_hash="b",
            secrets=SECRET,
            arg_overrides={"interval": "3s"},
        )
    metrics = [s.metric for s in driver.steps if s.metric is not None]
    assert len(metrics) == len(WEIGHTS)
    assert all(m.initial_delay_seconds == m.interval_seconds == 3.0 for m in metrics)


# -- where the driver follows Argo rather than its own shortcuts --------------------------


def _edit_both(tmp_path: Path, edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> Manifests:
    rollout = yaml.safe_load((BASE / "rollout.yaml").read_text())
    template = yaml.safe_load((BASE / "analysis-template.yaml").read_text())
    edit(rollout, template)
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump(rollout))
    (tmp_path / "analysis-template.yaml").write_text(yaml.safe_dump(template))
    return Manifests.load(tmp_path)


def test_set_weight_completes_only_once_the_canary_is_available() -> None:
    """completedCurrentCanaryStep: a setWeight waits for the canary pods (here: its health)."""
    answers = iter([False, False, False] + [True] * 100)
    asked: list[float] = []

    def canary_ready() -> bool:
        asked.append(time.monotonic())
        return next(answers)

    run = drive([decision("promote") for _ in WEIGHTS], canary_ready=canary_ready)
    assert run.verdict.outcome == "promoted"
    ready = run.of("canary_ready")
    assert len(ready) == len(WEIGHTS)
    # The first analysis asked only after the canary became available.
    assert run.fake.times[0] >= asked[3]
    assert ready[0].time >= asked[3]


def test_a_canary_never_available_hits_the_progress_deadline(tmp_path: Path) -> None:
    def deadline(rollout: dict[str, Any], template: dict[str, Any]) -> None:
        rollout["spec"]["progressDeadlineSeconds"] = 60  # 20 ms at time_scale 3000

    stuck = drive([], manifests=_edit_both(tmp_path, deadline), canary_ready=lambda: False)
    assert stuck.verdict.outcome == "paused"
    assert "ProgressDeadlineExceeded" in stuck.verdict.reason
    assert stuck.weights == [0, 5]

    def deadline_abort(rollout: dict[str, Any], template: dict[str, Any]) -> None:
        deadline(rollout, template)
        rollout["spec"]["progressDeadlineAbort"] = True

    aborted = drive([], manifests=_edit_both(tmp_path, deadline_abort), canary_ready=lambda: False)
    assert aborted.verdict.outcome == "aborted"
    assert aborted.weights == [0, 5, 0]


def test_a_step_arg_the_template_lacks_is_ignored(tmp_path: Path) -> None:
    def extra(rollout: dict[str, Any], template: dict[str, Any]) -> None:
        for step in rollout["spec"]["strategy"]["canary"]["steps"]:
            if "analysis" in step:
                step["analysis"]["args"].append({"name": "owner", "value": "team-a"})

    run = drive([decision("promote") for _ in WEIGHTS], manifests=_edit_both(tmp_path, extra))
    assert run.verdict.outcome == "promoted"
    assert "ignored: owner" in run.of("analysis")[0].message


@pytest.mark.parametrize("where", ["step", "template"])
def test_a_dry_run_metric_never_fails_the_run(tmp_path: Path, where: str) -> None:
    """assessRunStatus: a dry-run metric runs until assessed; its phase does not count."""

    def dry(rollout: dict[str, Any], template: dict[str, Any]) -> None:
        rule = [{"metricName": "rl-.*"}]
        if where == "template":
            template["spec"]["dryRun"] = rule
        else:
            for step in rollout["spec"]["strategy"]["canary"]["steps"]:
                if "analysis" in step:
                    step["analysis"]["dryRun"] = rule

    run = drive(
        [decision("abort")] + [decision("hold")] * 3 + [decision("promote")] * 5,
        manifests=_edit_both(tmp_path, dry),
        count="3",
    )
    assert run.verdict.outcome == "promoted"  # an abort and an Inconclusive step, ignored
    assert [e.data["phase"] for e in run.of("dry_run")] == ["Failed", "Inconclusive"]
    assert run.weights == [0, *WEIGHTS, 100]
    assert "(dry-run)" in run.of("analysis")[0].message


def test_a_dry_run_rule_matching_no_metric_is_refused(tmp_path: Path) -> None:
    def dry(rollout: dict[str, Any], template: dict[str, Any]) -> None:
        template["spec"]["dryRun"] = [{"metricName": "latency"}]

    with pytest.raises(ManifestError, match=r"dryRun\[0\]: Rule didn't match"):
        drive([], manifests=_edit_both(tmp_path, dry))


def test_measurement_retention_sets_how_many_measurements_are_kept(tmp_path: Path) -> None:
    kept: list[int] = []

    def retention(rollout: dict[str, Any], template: dict[str, Any]) -> None:
        template["spec"]["measurementRetention"] = [{"metricName": "rl-decision", "limit": 2}]

    manifests = _edit_both(tmp_path, retention)
    with httpx.Client() as client:
        driver = RolloutDriver(
            manifests, client=client, set_weight=kept.append, stable_hash="a", canary_hash="b"
        )
    assert {s.analysis.history_limit for s in driver.steps if s.analysis} == {2}
    with httpx.Client() as client:
        default = RolloutDriver(
            Manifests.load(BASE),
            client=client,
            set_weight=kept.append,
            stable_hash="a",
            canary_hash="b",
        )
    assert {s.analysis.history_limit for s in default.steps if s.analysis} == {10}


def test_a_background_analysis_is_refused(tmp_path: Path) -> None:
    def background(rollout: dict[str, Any], template: dict[str, Any]) -> None:
        rollout["spec"]["strategy"]["canary"]["analysis"] = {
            "templates": [{"templateName": "rl-canary-analysis"}]
        }

    with pytest.raises(ManifestError, match="background analysis"):
        drive([], manifests=_edit_both(tmp_path, background))


def test_the_weight_field_ref_needs_traffic_routing(tmp_path: Path) -> None:
    weight_ref = {"fieldRef": {"fieldPath": "status.canary.weights.canary.weight"}}

    def by_field(rollout: dict[str, Any], template: dict[str, Any]) -> None:
        for step in rollout["spec"]["strategy"]["canary"]["steps"]:
            for arg in step.get("analysis", {}).get("args", []):
                if arg["name"] == "step-weight":
                    arg.pop("value")
                    arg["valueFrom"] = weight_ref

    with pytest.raises(ManifestError, match="no trafficRouting"):
        drive([], manifests=_edit_both(tmp_path, by_field))

    def routed(rollout: dict[str, Any], template: dict[str, Any]) -> None:
        by_field(rollout, template)
        rollout["spec"]["strategy"]["canary"]["trafficRouting"] = {
            "nginx": {"stableIngress": "demo-app"}
        }

    run = drive([decision("promote") for _ in WEIGHTS], manifests=_edit_both(tmp_path, routed))
    assert [r["body"]["step_weight"] for r in run.fake.requests] == [str(w) for w in WEIGHTS]


def test_a_template_argo_rejects_is_refused(tmp_path: Path) -> None:
    def too_few(rollout: dict[str, Any], template: dict[str, Any]) -> None:
        template["spec"]["metrics"][0]["consecutiveSuccessLimit"] = 3

    with pytest.raises(ManifestError, match=r"count \(1\) must be >= failureLimit"):
        drive([], manifests=_edit_both(tmp_path, too_few), count="1")


@pytest.mark.parametrize("doc", ["README.md", "docs/install.md"])
def test_the_docs_examples_run_as_the_driver_runs_them(tmp_path: Path, doc: str) -> None:
    """The docs' Rollout examples with the ClusterAnalysisTemplate the chart ships: each
    analysis straight after its setWeight, its first measurement one interval later."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO_ROOT / doc).read_text(), flags=re.DOTALL)
    (example,) = [yaml.safe_load(b) for b in blocks if "setWeight" in b]
    strategy = example["spec"]["strategy"] if "spec" in example else example["strategy"]
    rollout = yaml.safe_load((BASE / "rollout.yaml").read_text())
    rollout["spec"]["strategy"] = strategy
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump(rollout))
    cluster = REPO_ROOT / "rollouts" / "cluster-analysis-template.yaml"
    (tmp_path / "cluster-analysis-template.yaml").write_text(cluster.read_text())
    steps = strategy["canary"]["steps"]
    weights = [s["setWeight"] for s in steps if "setWeight" in s]
    analyses = sum(1 for s in steps if "analysis" in s)
    run = drive(
        [decision("promote")] * analyses, manifests=Manifests.load(tmp_path), interval="100ms"
    )
    assert run.verdict.outcome == "promoted"
    assert run.weights == [0, *weights, 100]
    set_at = [e.time for e in run.events if e.kind == "weight"][1 : 1 + analyses]
    for weight_time, asked_at in zip(set_at, run.fake.times, strict=True):
        assert asked_at - weight_time >= 0.095
