"""training.operating: the shipped chart's numbers, and the chart at a team's own traffic and
schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decision_service.policy import DEFAULT_MODEL_PATH
from training.env import DEFAULT_WEIGHTS
from training.operating import (
    RolloutError,
    Setting,
    _point,
    main,
    scenario,
    schedule_of_rollout,
    summary,
)

SHIPPED = DEFAULT_MODEL_PATH.parent / "evaluation" / "operating.json"
ROLLOUTS = Path(__file__).resolve().parents[2] / "rollouts"
pytestmark = pytest.mark.skipif(not DEFAULT_MODEL_PATH.is_file(), reason="no shipped model")


@pytest.mark.parametrize(("rps", "ratio"), [(200.0, 1.0), (200.0, 3.0)])
def test_the_defaults_reproduce_the_shipped_chart(rps: float, ratio: float) -> None:
    shipped = json.loads(SHIPPED.read_text())
    assert shipped["setting"]["weights"] == list(DEFAULT_WEIGHTS)
    (expected,) = [p for p in shipped["points"] if p["rps"] == rps and p["ratio"] == ratio]
    got = _point((str(DEFAULT_MODEL_PATH), Setting(), rps, ratio, shipped["episodes_per_point"]))
    assert got == expected


def test_a_setting_of_your_own_is_what_the_episodes_play() -> None:
    setting = Setting(
        traffic=(2000.0,),
        ratios=(1.0,),
        error_rate=0.002,
        latency_p50_ms=120.0,
        weights=(25.0, 50.0, 100.0),
        patience=30,
    )
    config = setting.env_config()
    assert config.weights == (25.0, 50.0, 100.0) and config.patience == 30
    assert config.guardrails is not None and config.shield is not None
    s = scenario(2000.0, 1.0, setting.error_rate, setting.latency_p50_ms)
    assert s.stable.error_rate == 0.002 and s.stable.latency_p50_ms == 120.0
    point = _point((str(DEFAULT_MODEL_PATH), setting, 2000.0, 1.0, 20))
    # a healthy canary at 2,000 req/s completes; three steps of at most 30 × 30 s
    assert point["promoted"] > 0.5
    assert 0 < point["median_minutes_to_promote"] <= 3 * 30 * 0.5
    line = summary([point], setting)[0]
    assert line.startswith("2,000 req/s: a canary at x1 completes")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--weights", "50,20"], "weights must increase"),
        (["--error-rate", "0"], "stable's error rate"),
        (["--rps", "20,x"], "not comma-separated numbers"),
        (["--rps", "0"], "requests/s must be positive"),
    ],
)
def test_a_bad_setting_is_refused_before_any_episode(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "oc.png"), *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "oc.json").exists()


def test_the_cli_writes_the_chart_and_its_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine" / "oc.png"
    flags = ["--rps", "2000", "--ratios", "1,3", "--episodes", "6", "--workers", "1"]
    assert main(["--out", str(out), *flags, "--weights", "25,50,100", "--patience", "20"]) == 0
    document = json.loads(out.with_suffix(".json").read_text())
    assert document["setting"]["weights"] == [25.0, 50.0, 100.0]
    assert document["setting"]["patience"] == 20
    assert document["episodes_per_point"] == 6
    assert [(p["rps"], p["ratio"]) for p in document["points"]] == [(2000.0, 1.0), (2000.0, 3.0)]
    assert out.stat().st_size > 10_000  # a PNG
    printed = capsys.readouterr().out
    assert "2,000 req/s: a canary at x1 completes" in printed
    assert "at x3 (beyond the zone's edge, x1.80)" in printed


def _quiet_rollout(count_50: str = "30", interval: str | None = None) -> str:
    interval_arg = (
        f"\n              - name: interval\n                value: {interval}" if interval else ""
    )

    def analysis(weight: int, count: str) -> str:
        return f"""
        - setWeight: {weight}
        - analysis:
            templates:
              - templateName: rl-canary-analysis
            args:
              - name: step-weight
                value: "{weight}"
              - name: count
                value: "{count}"{interval_arg}
              - name: canary-hash
                valueFrom:
                  podTemplateHashValue: Latest"""

    return f"""apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: quiet
spec:
  strategy:
    canary:
      steps:{analysis(25, "30")}
        - pause: {{duration: 1m}}{analysis(50, count_50)}{analysis(100, "30")}
"""


def test_a_rollouts_schedule_is_read_from_its_manifest() -> None:
    shipped = (ROLLOUTS / "base" / "rollout.yaml").read_text()
    assert schedule_of_rollout(shipped, "rollout.yaml") == (DEFAULT_WEIGHTS, 10, [])
    # with the template in the same file, its default count is the one
    template = (ROLLOUTS / "base" / "analysis-template.yaml").read_text()
    changed = template.replace('value: "10"', 'value: "12"')
    assert changed != template
    assert schedule_of_rollout(shipped + "\n---\n" + changed, "both")[1] == 12
    assert schedule_of_rollout(_quiet_rollout(), "quiet.yaml") == ((25.0, 50.0, 100.0), 30, [])
    _, _, notes = schedule_of_rollout(_quiet_rollout(interval="1m"), "quiet.yaml")
    assert notes == ["the Rollout measures every 1m; the simulator plays 30s windows"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_quiet_rollout(count_50="60"), "different counts (30, 60)"),
        (
            "kind: Rollout\nmetadata: {name: x}\nspec: {strategy: {canary: {steps: []}}}",
            "no canary step",
        ),
        ("kind: AnalysisTemplate\nmetadata: {name: x}", "no Rollout"),
    ],
)
def test_a_schedule_the_chart_cannot_play_is_refused(text: str, message: str) -> None:
    with pytest.raises(RolloutError, match=message.replace("(", r"\(").replace(")", r"\)")):
        schedule_of_rollout(text, "file.yaml")


def test_the_cli_plays_the_rollouts_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rollout = tmp_path / "quiet.yaml"
    rollout.write_text(_quiet_rollout())
    out = tmp_path / "oc.png"
    tiny = ["--rps", "2000", "--ratios", "1", "--episodes", "2", "--workers", "1"]
    assert main(["--out", str(out), "--rollout", str(rollout), *tiny]) == 0
    setting = json.loads(out.with_suffix(".json").read_text())["setting"]
    assert (setting["weights"], setting["patience"]) == ([25.0, 50.0, 100.0], 30)
    assert f"{rollout}: weights 25, 50, 100 %, count 30" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--rollout", str(rollout), "--patience", "5", *tiny])
    assert "drop --weights/--patience" in capsys.readouterr().err
