"""The decision: snapshot → observation → policy → guardrails → step count → the answer.

This module is the one place a decision is assembled. :func:`decide` is a pure function (no
I/O, no state): from a snapshot (or the missing metric that kept one from being built), the
measurements already taken at the step, a policy and a :class:`DecisionConfig`, it returns the
real decision with its reasons. The service's route, the gymnasium environment (training and
evaluation alike), the demo and the exporter's checks all call it, unchanged. :func:`answer`
then applies the service's dry-run mode to it.

In order:

1. **No data.** A missing metric (here or while building the features) is ``hold``
   (``no_data``); the policy does not run.
2. **Policy.** The observation (:func:`decision_service.features.build_observation`) goes to the
   policy; its greedy action is the *proposal*.
3. **Guardrails** (:func:`decision_service.guardrails.apply_guardrails`), unless the config
   has none (the classical baselines are judged without them). No guardrail answers
   ``promote``: a promote always comes from the policy.
4. **Shield** (:mod:`decision_service.shield`), when configured: a ``promote`` stands only if
   the evidence allows it (at the last step: proof that the canary is not beyond the
   indifference zone), an ``abort`` only if the evidence rejects the tolerance (a hard SLO
   breach, the user's own limit, aborts regardless); otherwise ``hold`` with guardrail
   ``shield`` and the reason, including how much more evidence a proof would need. When the
   policy's first choice is ruled out, its best *allowed* action (by its Q-values) stands if the
   guardrails let it (preemptive shielding: the policy chooses among the allowed actions; a
   ruled-out action's Q-value, learned as "this becomes a hold", never hides a promote or an
   abort the policy ranks above holding). An agent's own action (:class:`FixedAction`) has no
   second choice: ruled out, it holds. Whenever the answer is a hold by the policy or the
   shield and a promote would not be allowed, the reason also gives the shield's promote
   reason: what blocks a promote and how much more evidence, and time at the current rate, it
   needs (on a quiet service, whether the step has that long before a hold pauses it).
   Where the shield allows an abort and the decision so far is not one, the policy's ensemble
   must agree to decline it: unless more than
   :attr:`~decision_service.shield.ShieldConfig.decline_share` of its members rank the
   decision above the abort, the answer is ``abort`` (guardrail ``shield``; the guardrails
   judge that abort as they would the policy's own). Members that disagree mark a state far
   from what training showed them, where the shield's own rule (take the abort the evidence
   allows) does better; a policy without members (:class:`FixedAction`) is not asked. For a
   canary whose excess over its life after the warm-up is *estimated* beyond the tolerance
   itself, the share is :attr:`~decision_service.shield.ShieldConfig.decline_share_beyond`
   (default 1: such an allowed abort is never declined; the policy's discretion is for
   canaries estimated within what the user accepts).
   Where the shield *requires* an abort (allowed, and the canary shown beyond the tolerance
   itself after its warm-up windows: :attr:`~decision_service.shield.ShieldConfig.enforce_abort`),
   the answer is ``abort`` whatever the policy and the guardrails proposed, with guardrail
   ``shield``.
5. **Step count.** ``measurements_at_step`` comes from the caller. In the service it is this
   process's memory, which can only be short, never long (a restart, another replica, an
   eviction: see :mod:`decision_service.step_memory`). So a ``promote`` stands only if the policy
   also promotes at every *larger* count up to where the feature saturates; otherwise the answer
   is ``hold`` and names the ``step_count`` rule. With it a lost count can never produce a promote
   that the true count would not, whatever the model learned (the guardrails do not read the
   count).

A policy is anything with ``q_values(observations) -> (batch, 3)``: the ONNX policy in the
service, or :class:`FixedAction` when the action was chosen elsewhere (a learning agent, a
baseline). A fixed action is the same at every count, so the step-count rule never changes it.
A policy that also has ``ensemble_q_values(observation) -> (q, members)`` (the ONNX policy) is
an ensemble whose members are asked before an allowed abort is declined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from decision_service.actions import ABORT, ACTION_NAMES, HOLD, PROMOTE, Action
from decision_service.features import (
    FEATURE_NAMES,
    MEASUREMENTS_SCALE,
    build_observation,
    named,
)
from decision_service.guardrails import Guarded, GuardrailConfig, apply_guardrails, no_data
from decision_service.shield import ShieldConfig, ShieldVerdict, beyond_estimate_text, verdict_at
from decision_service.snapshot import MetricsSnapshot, MissingMetricError
from decision_service.tolerance import DEFAULT_TOLERANCE, Metric, Tolerance, explain, judge

COUNT_INDEX: Final = FEATURE_NAMES.index("measurements_at_step")


class Policy(Protocol):
    """What the pipeline needs of a policy: Q-values for a batch of observations."""

    def q_values(self, observations: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True, slots=True)
class FixedAction:
    """A policy that proposes one given action for every observation (Q = 1 there, else 0).

    How the environment puts an action chosen outside the pipeline (by a learning agent or a
    classical baseline) through it."""

    action: int

    def q_values(self, observations: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        rows = np.asarray(observations).reshape(-1, len(FEATURE_NAMES)).shape[0]
        q = np.zeros((rows, len(ACTION_NAMES)), dtype=np.float32)
        q[:, self.action] = 1.0
        return q


@dataclass(frozen=True, slots=True)
class DecisionConfig:
    """Everything a decision is configured by, besides the policy."""

    slo_latency_ms: float
    #: ``None``: no guardrails, the proposal stands (how the classical baselines are judged).
    guardrails: GuardrailConfig | None
    #: What "not worse than stable" means (named in every answer; the shield tests it).
    tolerance: Tolerance = DEFAULT_TOLERANCE
    #: ``None`` or disabled: no shield.
    shield: ShieldConfig | None = None
    #: Measurements per step (the AnalysisTemplate's ``count``: after that many holds the
    #: rollout pauses); ``None``: not known, so the shield's last look never happens.
    count: int | None = None
    #: How long an analysis window is, seconds: the shield's reasons say how long the evidence
    #: it lacks takes to come in (``None``: they count windows only).
    window_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The real decision, and what it was made from (``None`` where the policy did not run)."""

    guarded: Guarded
    proposed: Action | None
    q_values: dict[str, float] | None
    #: The observation the policy saw, as :func:`~decision_service.features.build_observation`
    #: built it (compared as an array would be: not at all, so not part of ``==``).
    features: npt.NDArray[np.float32] | None = field(compare=False)

    @property
    def observation(self) -> dict[str, float] | None:
        """The observation as ``{feature name: value}`` (answers and logs), named on demand:
        the simulator makes millions of decisions that nobody reads."""
        return None if self.features is None else named(self.features)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the response says: the decision Argo acts on, the guardrail, the reason."""

    decision: Action
    guardrail: str | None
    reason: str
    dry_run: bool


def decide(
    snapshot: MetricsSnapshot | MissingMetricError,
    measurements_at_step: int,
    policy: Policy,
    config: DecisionConfig,
    observed: tuple[npt.NDArray[np.float32], ShieldVerdict | None] | None = None,
) -> Evaluation:
    """The real decision for a snapshot and the measurements already taken at its step.

    ``observed``: :func:`observe`'s result for these same arguments, when the caller already
    has it (the environment built it to show the agent); it is not computed twice."""
    if isinstance(snapshot, MissingMetricError):
        return Evaluation(no_data(snapshot), None, None, None)
    try:
        observation, verdict = observed or observe(snapshot, measurements_at_step, config)
    except MissingMetricError as missing:
        return Evaluation(no_data(missing), None, None, None)
    q, members = _q_and_members(policy, observation)
    shielded = config.shield is not None and config.shield.enabled
    allowed = allowed_actions(verdict) if shielded else _ALL_ALLOWED
    proposed = ACTION_NAMES[int(np.argmax(q))]
    q_values: dict[str, float] = {name: float(v) for name, v in zip(ACTION_NAMES, q, strict=True)}
    guarded = _guarded(proposed, snapshot, config)
    if shielded:
        guarded = _shielded(guarded, verdict)
        if guarded.guardrail == "shield":
            # the shield ruled out the policy's first choice: its best allowed one, if the
            # guardrails let that stand (preemptive shielding)
            second = ACTION_NAMES[int(_masked_argmax(q, allowed))]
            if second != "hold":
                alternative = _shielded(_guarded(second, snapshot, config), verdict)
                if alternative.decision == second:
                    guarded = _second_choice(alternative, proposed, verdict)
        required = verdict is not None and verdict.abort_required
        if members is not None and allowed[ABORT] and guarded.decision != "abort" and not required:
            # (a required abort is _enforced's, with its own reason)
            guarded = _declined(guarded, members, verdict, snapshot, config)
        guarded = _enforced(guarded, verdict)
        guarded = _what_promote_lacks(guarded, proposed, verdict)
    if guarded.decision == "promote":
        doubt = first_count_without_promote(policy, observation, measurements_at_step, allowed)
        if doubt is not None:
            count, action = doubt
            guarded = Guarded(
                "hold",
                "step_count",
                f"The policy proposed promote after {measurements_at_step} measurements "
                f"at this step, but not after {count} ({action}); this process's step count can "
                "only be short, so holding.",
            )
    reason = guarded.reason + _context(snapshot, config.tolerance)
    guarded = Guarded(guarded.decision, guarded.guardrail, reason)
    return Evaluation(guarded, proposed, q_values, observation)


#: How far (percentage points) the canary's measured share of the window's requests may be from
#: the step's weight before the answer says so.
SHARE_NOTE_POINTS: Final = 5.0


def _context(snapshot: MetricsSnapshot, tolerance: Tolerance) -> str:
    """What every answer adds: the canary against the tolerance over its life, and the traffic
    share it really got when that is not the step's weight."""
    life_c, life_s = snapshot.canary_cumulative, snapshot.stable_cumulative
    canary: dict[Metric, float] = {}
    stable: dict[Metric, float] = {}
    pairs: tuple[tuple[Metric, float | None, float | None], ...] = (
        ("error_rate", life_c.error_rate, life_s.error_rate),
        ("latency_p95_ms", life_c.latency_p95_ms, life_s.latency_p95_ms),
        ("latency_p50_ms", life_c.latency_p50_ms, life_s.latency_p50_ms),
    )
    for metric, c, s in pairs:
        if c is not None and s is not None:
            canary[metric], stable[metric] = c, s
    text = ""
    if canary:
        text = f" Over its life: {explain(tolerance, judge(tolerance, canary, stable))}."
    n_c, n_s = snapshot.canary.requests, snapshot.stable.requests
    if n_c + n_s >= 100:
        share = 100.0 * n_c / (n_c + n_s)
        if abs(share - snapshot.step_weight) > SHARE_NOTE_POINTS:
            text += (
                f" The canary served {share:.0f} % of the window's requests, not the step's "
                f"{snapshot.step_weight:g} % (without traffic routing Argo splits by pod "
                "counts); the decision used the measured counts."
            )
    return text


def observe(
    snapshot: MetricsSnapshot, measurements_at_step: int, config: DecisionConfig
) -> tuple[npt.NDArray[np.float32], ShieldVerdict | None]:
    """The observation the policy sees, and the shield's verdict it includes (None without
    evidence). The verdict is computed even when the shield does not gate the decision: the
    policy always sees how close each action is to being allowed.

    Raises :class:`~decision_service.snapshot.MissingMetricError`."""
    verdict = None
    if snapshot.evidence is not None:
        verdict = verdict_at(
            snapshot.evidence,
            config.shield or ShieldConfig(),
            snapshot.step_weight,
            last_look=is_last_look(measurements_at_step, config.count),
            window_seconds=config.window_seconds,
            measurements_left=(
                None if config.count is None else max(config.count - measurements_at_step - 1, 0)
            ),
        )
    return (
        build_observation(snapshot, measurements_at_step, config.slo_latency_ms, verdict),
        verdict,
    )


def is_last_look(measurements_at_step: int, count: int | None) -> bool:
    """Whether this measurement is the step's last: a hold now pauses the rollout. The count
    taken can only be short (see above), so a last look is at worst missed, never early."""
    return count is not None and measurements_at_step + 1 >= count


def _shielded(guarded: Guarded, verdict: ShieldVerdict | None) -> Guarded:
    """The decision the shield lets stand (see the module docstring)."""
    if guarded.decision == "hold" or guarded.guardrail == "hard_slo_breach":
        return guarded
    if verdict is None:
        return Guarded(
            "hold",
            "shield",
            f"The decision was {guarded.decision}, but the shield has no evidence to judge it "
            "by (the canary's windows could not be measured); holding.",
        )
    if guarded.decision == "promote":
        if verdict.promote_allowed:
            return Guarded(
                guarded.decision,
                guarded.guardrail,
                f"{guarded.reason} Shield: {verdict.promote_reason}.",
            )
        return Guarded(
            "hold",
            "shield",
            f"The decision was promote, but the shield holds: {verdict.promote_reason}.",
        )
    if verdict.abort_allowed:
        return Guarded(
            guarded.decision, guarded.guardrail, f"{guarded.reason} Shield: {verdict.abort_reason}."
        )
    return Guarded(
        "hold", "shield", f"The decision was abort, but the shield holds: {verdict.abort_reason}."
    )


def _q_and_members(
    policy: Policy, observation: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
    """The policy's Q-values for one observation, and its members' (``(members, 3)``) when it
    has them (:meth:`~decision_service.policy.OnnxPolicy.ensemble_q_values`); a policy
    without (a :class:`FixedAction`) has no say over an allowed abort beyond its proposal."""
    ensemble = getattr(policy, "ensemble_q_values", None)
    if ensemble is None:
        return policy.q_values(observation)[0], None
    q_and_members: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] = ensemble(observation)
    return q_and_members


def _declined(
    guarded: Guarded,
    members: npt.NDArray[np.float32],
    verdict: ShieldVerdict | None,
    snapshot: MetricsSnapshot,
    config: DecisionConfig,
) -> Guarded:
    """Where the shield allows an abort and the decision so far is not one: the decline stands
    only if more than :attr:`~decision_service.shield.ShieldConfig.decline_share` of the
    policy's members rank the decision above the abort (``decline_share_beyond`` when the
    canary's life excess is estimated beyond the tolerance itself); otherwise the abort, if
    the guardrails let it stand (as if the policy had proposed it)."""
    assert verdict is not None and config.shield is not None
    beyond = next((v for v in verdict.metrics if v.beyond_estimate > 0), None)
    share = config.shield.decline_share if beyond is None else config.shield.decline_share_beyond
    kept = ACTION_NAMES.index(guarded.decision)
    declining = int(np.count_nonzero(members[:, kept] > members[:, ABORT]))
    if declining > share * len(members) or _guarded("abort", snapshot, config).decision != "abort":
        return guarded
    if beyond is None:
        why = (
            f"{declining} of the policy's {len(members)} members rank {guarded.decision} above "
            f"the abort the shield allows, and declining it needs more than {100 * share:g} % "
            "of them"
        )
    elif share >= 1.0:
        why = (
            f"the canary's {beyond_estimate_text(beyond)}, and an abort the shield allows is "
            "not declined for such a canary"
        )
    else:
        why = (
            f"the canary's {beyond_estimate_text(beyond)}, where declining the abort the shield "
            f"allows needs more than {100 * share:g} % of the policy's members, and "
            f"{declining} of {len(members)} rank {guarded.decision} above it"
        )
    return Guarded(
        "abort",
        "shield",
        f"The decision was {guarded.decision}, but {why}: aborting. Shield: "
        f"{verdict.abort_reason}.",
    )


def _what_promote_lacks(
    guarded: Guarded, proposed: Action, verdict: ShieldVerdict | None
) -> Guarded:
    """A hold of the policy's own (or the shield's, of an abort) where a promote would not be
    allowed either: the reason adds the shield's promote reason, what a promote still lacks and
    how long the evidence takes at the current rate (a shield hold of a promote says it
    already)."""
    if (
        guarded.decision != "hold"
        or guarded.guardrail not in (None, "shield")
        or verdict is None
        or verdict.promote_allowed
        or (guarded.guardrail == "shield" and proposed == "promote")
    ):
        return guarded
    return Guarded(
        "hold", guarded.guardrail, f"{guarded.reason} For a promote: {verdict.promote_reason}."
    )


_ALL_ALLOWED: Final = np.ones(len(ACTION_NAMES), dtype=bool)


def _enforced(guarded: Guarded, verdict: ShieldVerdict | None) -> Guarded:
    """An abort where the shield requires one (:attr:`ShieldVerdict.abort_required`: allowed,
    and the canary shown beyond the tolerance itself), whatever was decided before."""
    if verdict is None or not verdict.abort_required or guarded.decision == "abort":
        return guarded
    return Guarded(
        "abort",
        "shield",
        f"The decision was {guarded.decision}, but the shield requires an abort: "
        f"{verdict.abort_reason}.",
    )


def allowed_actions(verdict: ShieldVerdict | None) -> npt.NDArray[np.bool_]:
    """Which actions the shield allows (in :data:`ACTION_NAMES` order): hold always, promote
    and abort when the evidence allows them (neither without evidence)."""
    mask = np.zeros(len(ACTION_NAMES), dtype=bool)
    mask[HOLD] = True
    if verdict is not None:
        mask[PROMOTE] = verdict.promote_allowed
        mask[ABORT] = verdict.abort_allowed
    return mask


def _masked_argmax(
    q: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_]
) -> npt.NDArray[np.intp]:
    """The best allowed action of each row of Q-values (or of one row); ties go to the first
    (hold)."""
    best: npt.NDArray[np.intp] = np.argmax(np.where(allowed, q, -np.inf), axis=-1)
    return best


def _guarded(proposed: Action, snapshot: MetricsSnapshot, config: DecisionConfig) -> Guarded:
    if config.guardrails is None:
        return Guarded(proposed, None, f"The agent chose {proposed}.")
    return apply_guardrails(proposed, snapshot, config.slo_latency_ms, config.guardrails)


def _second_choice(guarded: Guarded, preferred: Action, verdict: ShieldVerdict | None) -> Guarded:
    """The answer when the shield ruled out the policy's first choice and its best allowed one
    stands: it says what the policy preferred and why that was not allowed."""
    why = "it has no evidence to judge by"
    if verdict is not None:
        why = verdict.promote_reason if preferred == "promote" else verdict.abort_reason
    return Guarded(
        guarded.decision,
        guarded.guardrail,
        f"The policy preferred {preferred}, which the shield does not allow ({why}); of the "
        f"allowed actions it chose {guarded.decision}. {guarded.reason}",
    )


def first_count_without_promote(
    policy: Policy,
    observation: npt.NDArray[np.float32],
    taken: int,
    allowed: npt.NDArray[np.bool_] = _ALL_ALLOWED,
) -> tuple[int, Action] | None:
    """The smallest count above ``taken`` at which the policy would not promote (choosing among
    the ``allowed`` actions, which do not depend on the count), if any."""
    counts = list(range(max(taken, 0) + 1, MEASUREMENTS_SCALE + 1))
    if not counts:
        return None
    batch = np.repeat(observation[np.newaxis, :], len(counts), axis=0)
    batch[:, COUNT_INDEX] = np.asarray(counts, dtype=np.float32) / MEASUREMENTS_SCALE
    actions = _masked_argmax(policy.q_values(batch), allowed)
    for count, action in zip(counts, actions, strict=True):
        if int(action) != PROMOTE:
            return count, ACTION_NAMES[int(action)]
    return None


def answer(evaluation: Evaluation, dry_run: bool, dry_run_answer: Action) -> Answer:
    """The answer Argo sees; in dry-run mode the configured safe one (the real one in reason).

    Even in dry-run mode a decision made without data is answered ``hold``: the service never
    says ``promote`` for a canary it could not measure.
    """
    real = evaluation.guarded
    if not dry_run:
        return Answer(real.decision, real.guardrail, real.reason, False)
    shown: Action = "hold" if real.guardrail == "no_data" else dry_run_answer
    real_label = f"{real.decision} ({real.guardrail})" if real.guardrail else real.decision
    return Answer(
        shown,
        "dry_run",
        f"Dry run: answering {shown}; the real decision is {real_label}: {real.reason}",
        True,
    )
