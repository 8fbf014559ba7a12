"""The decision pipeline, pure: missing data holds, guardrails override, dry-run answers."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from decision_service.actions import ABORT, HOLD, PROMOTE
from decision_service.features import FEATURE_NAMES
from decision_service.guardrails import Guarded, GuardrailConfig
from decision_service.pipeline import DecisionConfig, Evaluation, FixedAction, answer, decide
from decision_service.policy import OnnxPolicy
from decision_service.shield import MetricVerdict, ShieldConfig, ShieldVerdict
from decision_service.snapshot import MetricsSnapshot, MissingMetricError, VersionMetrics

HEALTHY = VersionMetrics(requests=500, errors=2, latency_p50_ms=30, latency_p95_ms=60)
BROKEN = VersionMetrics(requests=500, errors=200, latency_p50_ms=30, latency_p95_ms=60)
NO_TRAFFIC = VersionMetrics(requests=0, errors=0, latency_p50_ms=None, latency_p95_ms=None)
ABSENT = VersionMetrics(
    requests=math.nan, errors=math.nan, latency_p50_ms=None, latency_p95_ms=None
)


def snapshot(canary: VersionMetrics = HEALTHY, **overrides: VersionMetrics) -> MetricsSnapshot:
    values = {
        "canary": canary,
        "stable": HEALTHY,
        "canary_cumulative": canary,
        "stable_cumulative": HEALTHY,
    } | overrides
    return MetricsSnapshot(step_weight=20, **values)


@pytest.fixture(scope="module")
def policies(models: dict[str, Path]) -> dict[str, OnnxPolicy]:
    return {name: OnnxPolicy(path) for name, path in models.items()}


CONFIG = GuardrailConfig()


@pytest.mark.parametrize("model", ["promote", "hold", "abort"])
def test_a_healthy_snapshot_gets_the_policys_choice(
    policies: dict[str, OnnxPolicy], model: str
) -> None:
    evaluation = decide(snapshot(), 0, policies[model], DecisionConfig(200.0, CONFIG))
    assert evaluation.guarded.decision == model
    assert evaluation.guarded.guardrail is None
    assert evaluation.proposed == model
    assert evaluation.q_values is not None and set(evaluation.q_values) == {
        "hold",
        "promote",
        "abort",
    }
    assert evaluation.observation is not None and list(evaluation.observation) == list(
        FEATURE_NAMES
    )


@pytest.mark.parametrize(
    "missing",
    [
        snapshot(NO_TRAFFIC),
        snapshot(ABSENT),
        snapshot(HEALTHY, stable_cumulative=ABSENT),
        snapshot(VersionMetrics(500, 2, None, None)),
        MissingMetricError("canary_start", "no series yet"),
    ],
)
def test_missing_data_holds_even_when_the_policy_says_promote(
    policies: dict[str, OnnxPolicy], missing: MetricsSnapshot | MissingMetricError
) -> None:
    evaluation = decide(missing, 0, policies["promote"], DecisionConfig(200.0, CONFIG))
    assert evaluation.guarded.decision == "hold"
    assert evaluation.guarded.guardrail == "no_data"
    assert evaluation.q_values is None and evaluation.observation is None
    assert "Not enough data" in evaluation.guarded.reason


@pytest.mark.parametrize("weight", [5.0, 30.0, 90.0])
@pytest.mark.parametrize("stable", [NO_TRAFFIC, ABSENT], ids=["no-request", "absent"])
def test_a_vanished_stable_window_holds_below_100(
    policies: dict[str, OnnxPolicy], weight: float, stable: VersionMetrics
) -> None:
    """A promote-happy policy, stable's series gone from the window: hold, no_data, and the
    reason says stable's window is missing (stale life-long figures are not a comparison)."""
    vanished = MetricsSnapshot(
        step_weight=weight,
        canary=HEALTHY,
        stable=stable,
        canary_cumulative=HEALTHY,
        stable_cumulative=HEALTHY,
    )
    evaluation = decide(vanished, 0, policies["promote"], DecisionConfig(200.0, CONFIG))
    assert (evaluation.guarded.decision, evaluation.guarded.guardrail) == ("hold", "no_data")
    assert "stable.requests" in evaluation.guarded.reason
    assert evaluation.q_values is None


@pytest.mark.parametrize("stable", [NO_TRAFFIC, ABSENT], ids=["no-request", "absent"])
def test_at_100_stable_is_judged_on_its_life_long_figures(
    policies: dict[str, OnnxPolicy], stable: VersionMetrics
) -> None:
    full = MetricsSnapshot(
        step_weight=100,
        canary=HEALTHY,
        stable=stable,
        canary_cumulative=HEALTHY,
        stable_cumulative=HEALTHY,
    )
    evaluation = decide(full, 0, policies["promote"], DecisionConfig(200.0, CONFIG))
    assert (evaluation.guarded.decision, evaluation.guarded.guardrail) == ("promote", None)


def test_a_hard_breach_aborts_whatever_the_policy_says(policies: dict[str, OnnxPolicy]) -> None:
    evaluation = decide(snapshot(BROKEN), 0, policies["promote"], DecisionConfig(200.0, CONFIG))
    assert evaluation.guarded.decision == "abort"
    assert evaluation.guarded.guardrail == "hard_slo_breach"
    assert evaluation.proposed == "promote"


def test_too_little_evidence_holds_a_promote(policies: dict[str, OnnxPolicy]) -> None:
    few = VersionMetrics(requests=5, errors=0, latency_p50_ms=30, latency_p95_ms=60)
    evaluation = decide(snapshot(few), 0, policies["promote"], DecisionConfig(200.0, CONFIG))
    assert evaluation.guarded.decision == "hold"
    assert evaluation.guarded.guardrail == "insufficient_evidence"


def test_the_slo_override_changes_the_observation_and_the_guardrail(
    policies: dict[str, OnnxPolicy],
) -> None:
    slow = VersionMetrics(requests=500, errors=2, latency_p50_ms=300, latency_p95_ms=700)
    fast_stable = snapshot(slow, stable=HEALTHY)
    assert (
        decide(fast_stable, 0, policies["promote"], DecisionConfig(1000.0, CONFIG)).guarded.decision
        == "promote"
    )
    strict = decide(fast_stable, 0, policies["promote"], DecisionConfig(200.0, CONFIG))
    assert strict.guarded.guardrail == "hard_slo_breach"  # p95 700 >= 3 x 200 and >= 2 x 60


def _evaluation(decision: str, guardrail: str | None) -> Evaluation:
    return Evaluation(Guarded(decision, guardrail, f"because {decision}"), None, None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("real", "guardrail", "configured", "shown"),
    [
        ("abort", "hard_slo_breach", "promote", "promote"),
        ("abort", None, "hold", "hold"),
        ("promote", None, "hold", "hold"),
        ("hold", "insufficient_evidence", "promote", "promote"),
        ("hold", "no_data", "promote", "hold"),  # never promote without data, even dry
    ],
)
def test_dry_run_answers_the_configured_safe_decision(
    real: str, guardrail: str | None, configured: str, shown: str
) -> None:
    result = answer(_evaluation(real, guardrail), dry_run=True, dry_run_answer=configured)  # type: ignore[arg-type]
    assert result.decision == shown
    assert result.dry_run is True
    assert result.guardrail == "dry_run"
    assert f"the real decision is {real}" in result.reason
    assert f"because {real}" in result.reason


def test_without_dry_run_the_answer_is_the_real_decision() -> None:
    result = answer(
        _evaluation("abort", "hard_slo_breach"), dry_run=False, dry_run_answer="promote"
    )
    assert (result.decision, result.guardrail, result.dry_run) == (
        "abort",
        "hard_slo_breach",
        False,
    )
    assert result.reason == "because abort"


def test_the_answer_says_when_the_measured_share_is_not_the_steps_weight(
    policies: dict[str, OnnxPolicy],
) -> None:
    """Without traffic routing Argo's 5 % is one pod of six: the canary serves ~17 %."""
    canary = VersionMetrics(requests=170, errors=1, latency_p50_ms=30, latency_p95_ms=60)
    stable = VersionMetrics(requests=830, errors=4, latency_p50_ms=30, latency_p95_ms=60)
    share = MetricsSnapshot(
        step_weight=5,
        canary=canary,
        stable=stable,
        canary_cumulative=canary,
        stable_cumulative=stable,
    )
    reason = decide(share, 0, policies["hold"], DecisionConfig(200.0, CONFIG)).guarded.reason
    assert "served 17 % of the window's requests, not the step's 5 %" in reason
    even = MetricsSnapshot(
        step_weight=17,
        canary=canary,
        stable=stable,
        canary_cumulative=canary,
        stable_cumulative=stable,
    )
    assert (
        "not the step's"
        not in decide(even, 0, policies["hold"], DecisionConfig(200.0, CONFIG)).guarded.reason
    )


def test_every_answer_names_the_tolerance(policies: dict[str, OnnxPolicy]) -> None:
    reason = decide(snapshot(), 0, policies["hold"], DecisionConfig(200.0, CONFIG)).guarded.reason
    assert "Over its life: errors 1x stable's (tolerance 1.2x + 0.1 pp)" in reason
    assert "p95 1x stable's (tolerance 1.2x + 5 ms)" in reason


class _Ranked:
    """A policy with the same Q-values for every observation."""

    def __init__(self, hold: float, promote: float, abort: float) -> None:
        self.q = np.array([[hold, promote, abort]], dtype=np.float32)

    def q_values(self, observations: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        rows = np.asarray(observations).reshape(-1, len(FEATURE_NAMES)).shape[0]
        return np.repeat(self.q, rows, axis=0)


def _verdict(promote: bool, abort: bool, required: bool = False) -> ShieldVerdict:
    return ShieldVerdict(
        promote_allowed=promote,
        abort_allowed=abort,
        full_proof=promote,
        metrics=(),
        why=(
            "proven" if promote else "not yet proven",
            "required" if required else "rejected" if abort else "no rejection yet",
        ),
        abort_required=required,
    )


def _shielded_decision(policy: _Ranked, verdict: ShieldVerdict) -> Evaluation:
    config = DecisionConfig(200.0, CONFIG, shield=ShieldConfig())
    observation = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    return decide(snapshot(), 0, policy, config, observed=(observation, verdict))


def test_a_required_abort_stands_whatever_the_policy_proposes() -> None:
    """Where the shield requires an abort (the canary shown beyond the tolerance itself), a
    hold or even an allowed promote becomes an abort, with guardrail ``shield`` and the
    shield's reason; an abort that is only allowed is the policy's to take."""
    for ranked in (_Ranked(1.0, 0.5, 0.0), _Ranked(0.0, 1.0, 0.5)):
        evaluation = _shielded_decision(ranked, _verdict(True, True, required=True))
        assert evaluation.proposed != "abort"
        assert (evaluation.guarded.decision, evaluation.guarded.guardrail) == ("abort", "shield")
        assert (
            f"The decision was {evaluation.proposed}, but the shield requires an abort: required."
            in evaluation.guarded.reason
        )
    allowed = _shielded_decision(_Ranked(1.0, 0.5, 0.0), _verdict(True, True))
    assert allowed.guarded.decision == "hold"


def test_the_shield_takes_the_policys_best_allowed_action() -> None:
    """Preemptive shielding: with its first choice ruled out, the policy's next allowed one
    stands (not a hold by default), and the answer says what was preferred and why not."""
    evaluation = _shielded_decision(_Ranked(0.0, 0.5, 1.0), _verdict(True, False))
    assert evaluation.proposed == "abort"
    assert (evaluation.guarded.decision, evaluation.guarded.guardrail) == ("promote", None)
    assert "preferred abort" in evaluation.guarded.reason
    assert "no rejection yet" in evaluation.guarded.reason
    # hold ranked above the allowed alternative: the shield holds, as before
    held = _shielded_decision(_Ranked(0.7, 0.5, 1.0), _verdict(True, False))
    assert (held.guarded.decision, held.guarded.guardrail) == ("hold", "shield")
    assert "The decision was abort, but the shield holds: no rejection yet" in held.guarded.reason
    # nothing allowed besides hold
    blocked = _shielded_decision(_Ranked(0.0, 0.5, 1.0), _verdict(False, False))
    assert (blocked.guarded.decision, blocked.guarded.guardrail) == ("hold", "shield")


def test_a_fixed_action_the_shield_rules_out_is_a_hold() -> None:
    """An agent's own action (a baseline, a learner) has no second choice: ruled out, it holds."""
    for action, verdict in ((PROMOTE, _verdict(False, True)), (ABORT, _verdict(True, False))):
        config = DecisionConfig(200.0, CONFIG, shield=ShieldConfig())
        observation = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
        evaluation = decide(snapshot(), 0, FixedAction(action), config, (observation, verdict))
        assert (evaluation.guarded.decision, evaluation.guarded.guardrail) == ("hold", "shield")


def test_the_step_count_rule_judges_the_same_allowed_actions() -> None:
    """At every larger count the same masked choice is made, so a promote the shield let the
    policy choose over a ruled-out abort is not held by the step-count rule."""
    evaluation = _shielded_decision(_Ranked(0.0, 0.5, 1.0), _verdict(True, False))
    assert evaluation.guarded.guardrail != "step_count"


def test_the_step_count_tells_the_shield_its_last_look(policies: dict[str, OnnxPolicy]) -> None:
    """With the template's ``count``, the measurement before the last hold is the shield's last
    look: an abort the anytime bounds do not allow yet stands there, and only there; without a
    count (an older template) the look never happens."""

    from decision_service.pipeline import is_last_look, observe
    from tests.decision_service.test_shield import _one_step

    assert [is_last_look(m, 10) for m in (0, 8, 9, 12)] == [False, False, True, True]
    assert not is_last_look(9, None)
    shielded = DecisionConfig(200.0, CONFIG, shield=ShieldConfig(), count=10)
    for seed in range(100):
        evidence = _one_step(np.random.default_rng(seed), ratio=2.0).summary()
        state = replace(snapshot(), step_weight=5, evidence=evidence)
        _, early = observe(state, 8, shielded)
        _, last = observe(state, 9, shielded)
        assert early is not None and last is not None
        if not early.abort_allowed and last.abort_allowed:
            break
    else:
        pytest.fail("no seed where only the last look allows the abort")
    assert "last measurement" in last.abort_reason
    _, unknown = observe(state, 9, replace(shielded, count=None))
    assert unknown is not None and not unknown.abort_allowed
    evaluation = decide(state, 9, policies["abort"], shielded)
    assert evaluation.guarded.decision == "abort", evaluation.guarded.reason
    held = decide(state, 8, policies["abort"], shielded)
    assert held.guarded.decision == "hold" and held.guarded.guardrail == "shield"


def test_a_hold_says_what_a_promote_still_lacks() -> None:
    """A hold by the policy, or by the shield of an abort, where a promote would not be allowed
    either: the reason adds the shield's promote reason. Not where a promote would be allowed,
    and not twice where the shield held a promote (that reason is already the promote's)."""
    own = _shielded_decision(_Ranked(1.0, 0.5, 0.0), _verdict(False, False))
    assert (own.guarded.decision, own.guarded.guardrail) == ("hold", None)
    assert "For a promote: not yet proven." in own.guarded.reason
    allowed = _shielded_decision(_Ranked(1.0, 0.5, 0.0), _verdict(True, False))
    assert "For a promote" not in allowed.guarded.reason
    abort = _shielded_decision(_Ranked(0.7, 0.5, 1.0), _verdict(False, False))
    assert (abort.guarded.decision, abort.guarded.guardrail) == ("hold", "shield")
    assert "no rejection yet" in abort.guarded.reason
    assert "For a promote: not yet proven." in abort.guarded.reason
    promote = _shielded_decision(_Ranked(0.0, 1.0, 0.5), _verdict(False, False))
    assert (promote.guarded.decision, promote.guarded.guardrail) == ("hold", "shield")
    assert promote.guarded.reason.count("not yet proven") == 1
    assert "For a promote" not in promote.guarded.reason


def test_a_quiet_canarys_hold_says_its_step_will_pause_before_the_evidence_is_in() -> None:
    """The service's path: the template's count and the window's length reach the shield's
    reason, so a quiet canary at 5 % is told how long the evidence takes and that this step has
    no time for it (at its last measurement, that a hold now pauses the rollout)."""

    from tests.decision_service.test_shield import _evidence

    summary = _evidence(
        np.random.default_rng(4), windows=3, canary_rate=0.004, rps=20, weight=0.05
    ).summary()
    state = replace(snapshot(), step_weight=5, evidence=summary)
    config = DecisionConfig(200.0, CONFIG, shield=ShieldConfig(), count=10, window_seconds=30.0)
    hold = _Ranked(1.0, 0.0, 0.0)
    first = decide(state, 0, hold, config).guarded
    assert first.decision == "hold" and " min, at the current rate)" in first.reason
    assert "this step has 9 more measurements before a hold pauses it" in first.reason
    last = decide(state, 9, hold, config).guarded
    assert "this is the step's last measurement: a hold now pauses the rollout" in last.reason
    unknown = decide(state, 9, hold, replace(config, count=None, window_seconds=None)).guarded
    assert " min," not in unknown.reason and "pauses" not in unknown.reason


class _Members(_Ranked):
    """An ensemble: its members' Q-values (rows), their mean as the policy's."""

    def __init__(self, *members: tuple[float, float, float]) -> None:
        self.members = np.array(members, dtype=np.float32)
        super().__init__(*(float(v) for v in self.members.mean(axis=0)))

    def ensemble_q_values(
        self, observation: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        return self.q[0].copy(), self.members.copy()


def _with_share(policy: _Ranked, verdict: ShieldVerdict, share: float, **kw: object) -> Guarded:
    config = DecisionConfig(200.0, CONFIG, shield=ShieldConfig(decline_share=share))
    observation = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    found = snapshot(**kw)  # type: ignore[arg-type]
    return decide(found, 0, policy, config, observed=(observation, verdict)).guarded


# the mean ranks hold first (hold, promote, abort); members that rank abort above hold
_SURE = (1.0, 0.0, 0.0)
_DOUBT = (0.0, 0.0, 0.2)


def test_an_allowed_abort_is_declined_only_when_most_members_agree() -> None:
    """The mean of four members prefers hold. With the abort allowed, the hold stands only if
    more than ``decline_share`` of the members rank hold above the abort; otherwise the answer
    is abort, with guardrail ``shield`` and a reason that counts the members."""
    three = _Members(_SURE, _SURE, _SURE, _DOUBT)
    two = _Members(_SURE, _SURE, _DOUBT, _DOUBT)
    assert three.q[0].argmax() == two.q[0].argmax() == 0  # both means propose hold
    assert _with_share(three, _verdict(False, True), 0.5).decision == "hold"
    aborted = _with_share(two, _verdict(False, True), 0.5)
    assert (aborted.decision, aborted.guardrail) == ("abort", "shield")
    assert "but 2 of the policy's 4 members rank hold above the abort" in aborted.reason
    assert "more than 50 % of them" in aborted.reason
    assert "Shield: rejected." in aborted.reason
    # the share is the setting's: 0 lets the mean decide, 1 takes every allowed abort
    assert _with_share(two, _verdict(False, True), 0.0).decision == "hold"
    unanimous = _Members(_SURE, _SURE, _SURE, _SURE)
    assert _with_share(unanimous, _verdict(False, True), 0.75).decision == "hold"
    assert _with_share(unanimous, _verdict(False, True), 1.0).decision == "abort"
    # an abort the shield does not allow is never taken this way
    assert _with_share(two, _verdict(False, False), 0.5).decision == "hold"


def test_the_members_judge_the_decision_the_abort_would_replace() -> None:
    """An allowed promote the mean prefers is weighed against the abort, not a hold: members
    that rank promote above abort keep it (even if they rank hold above both)."""
    promote_first = (0.0, 1.0, 0.5)
    hold_first = (1.0, 0.6, 0.5)
    policy = _Members(promote_first, promote_first, hold_first, hold_first)
    assert policy.q[0].argmax() == PROMOTE
    assert _with_share(policy, _verdict(True, True), 0.5).decision == "promote"
    leaning = _Members(promote_first, promote_first, (0.0, 0.4, 0.5), (0.0, 0.4, 0.5))
    assert leaning.q[0].argmax() == PROMOTE
    aborted = _with_share(leaning, _verdict(True, True), 0.5)
    assert aborted.decision == "abort"
    assert "2 of the policy's 4 members rank promote above the abort" in aborted.reason


def test_the_guardrails_still_judge_the_members_abort() -> None:
    """Too few canary requests to act on: the hold stands, as it would for the policy's own
    abort."""
    few = VersionMetrics(requests=5, errors=0, latency_p50_ms=30, latency_p95_ms=60)
    two = _Members(_SURE, _SURE, _DOUBT, _DOUBT)
    held = _with_share(two, _verdict(False, True), 0.5, canary=few, canary_cumulative=few)
    assert held.decision == "hold"
    assert "abort" not in held.reason.split(".")[0]


def _estimated(beyond: float) -> ShieldVerdict:
    """An allowed abort whose error-rate life estimate is ``beyond`` the tolerance itself."""
    metric = MetricVerdict("error_rate", 1.0, 0.001, -1.0, 1e4, beyond_estimate=beyond)
    return replace(_verdict(False, True), metrics=(metric,))


def test_an_allowed_abort_of_a_canary_estimated_beyond_the_tolerance_is_not_declined() -> None:
    """Estimated beyond the tolerance itself (not yet shown there): with the default
    ``decline_share_beyond`` of 1 even four members of four ranking hold first do not decline
    the allowed abort, and the reason says how far the estimate is. Estimated within it, the
    members' majority decides as before; the share for such canaries is a setting of its own."""
    unanimous = _Members(_SURE, _SURE, _SURE, _SURE)
    config = DecisionConfig(200.0, CONFIG, shield=ShieldConfig())
    observation = np.zeros(len(FEATURE_NAMES), dtype=np.float32)

    def decided(verdict: ShieldVerdict, shield: ShieldConfig | None = None) -> Guarded:
        chosen = replace(config, shield=shield or ShieldConfig())
        return decide(snapshot(), 0, unanimous, chosen, observed=(observation, verdict)).guarded

    aborted = decided(_estimated(0.0031))
    assert (aborted.decision, aborted.guardrail) == ("abort", "shield")
    assert aborted.reason.startswith(
        "The decision was hold, but the canary's error rate over its life after its warm-up "
        "is estimated +0.31 pp beyond the tolerance itself, and an abort the shield allows is "
        "not declined for such a canary: aborting. Shield: rejected."
    ), aborted.reason
    assert decided(_estimated(-0.0005)).decision == "hold"
    lenient = ShieldConfig(decline_share_beyond=0.75)
    assert decided(_estimated(0.0031), lenient).decision == "hold"
    three = _Members(_SURE, _SURE, _SURE, _DOUBT)
    chosen = replace(config, shield=lenient)
    split = decide(snapshot(), 0, three, chosen, observed=(observation, _estimated(0.0031)))
    assert split.guarded.decision == "abort"
    assert "needs more than 75 % of the policy's members, and 3 of 4 rank hold above it" in (
        split.guarded.reason
    )
    # a policy without members (an agent's own action) is not asked, as before
    assert decided(_estimated(0.0031)).decision == "abort"
    fixed = decide(
        snapshot(), 0, FixedAction(HOLD), config, observed=(observation, _estimated(0.0031))
    )
    assert fixed.guarded.decision == "hold"


def test_a_required_abort_keeps_its_own_reason_whatever_the_members_say() -> None:
    """Where the shield requires the abort, the answer says so, not how many members would
    have declined it (the abort stands either way)."""
    two = _Members(_SURE, _SURE, _DOUBT, _DOUBT)
    required = replace(_estimated(0.0031), abort_required=True, why=("rejected", "required"))
    answer = _with_share(two, required, 0.5)
    assert (answer.decision, answer.guardrail) == ("abort", "shield")
    assert answer.reason.startswith("The decision was hold, but the shield requires an abort")
