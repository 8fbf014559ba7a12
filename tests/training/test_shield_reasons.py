"""The shield's promote reason on a quiet canary: "at this rate it pauses first" is seldom wrong.

At each of a step's ten measurements of a quiet healthy canary at 5 %, the reason (with the
template's count of 10 and the simulator's 30-s window) either says the step will pause before
the partial proof comes in, or says nothing of it. The canary is then held far longer than ten
measurements, so the test sees when the proof really came. The estimate of the missing requests
is rough (it starts from a mean measured on few requests), but a team acts on the claim: it must
rarely tell a canary that would have been proven in time that it will pause.
"""

from __future__ import annotations

from decision_service.guardrails import GuardrailConfig
from decision_service.shield import ShieldConfig, verdict_at
from scenarios import load_scenarios
from tests.conftest import SCENARIOS_DIR
from training.env import CanaryRolloutEnv, EnvConfig

COUNT = 10
HOLD = 0


def test_the_step_will_pause_first_is_seldom_said_of_a_canary_proven_in_time() -> None:
    healthy = [s for s in load_scenarios(SCENARIOS_DIR) if s.name == "healthy"]
    config = ShieldConfig()
    env = CanaryRolloutEnv(
        healthy,
        EnvConfig(guardrails=GuardrailConfig(), shield=config, patience=200, weights=(5.0, 100.0)),
    )
    said, wrong, silent, ran_out = 0, 0, 0, 0
    for seed in range(40):
        env.reset(seed=seed, options={"allow_terminal": True})
        claims: list[bool] = []
        proven_at: int | None = None
        for k in range(200):
            snapshot = env.snapshot
            assert snapshot is not None and snapshot.evidence is not None
            left = COUNT - 1 - k
            verdict = verdict_at(
                snapshot.evidence,
                config,
                snapshot.step_weight,
                window_seconds=30.0,
                measurements_left=max(left, 0),
            )
            if verdict.promote_allowed:
                proven_at = k
                break
            if k < COUNT:
                reason = verdict.promote_reason
                claims.append("pauses first" in reason or "last measurement" in reason)
            done = env.step(HOLD)[2]
            if done:
                break
        for k, claim in enumerate(claims):
            in_time = proven_at is not None and proven_at - k <= COUNT - 1 - k
            said += claim
            wrong += claim and in_time
            silent += not claim
            ran_out += (not claim) and not in_time
    assert said >= 100, (said, silent)
    # measured: said 202 times, wrong 18 (9 %); silent 154 times, and 106 of those steps ran
    # out anyway (the claim errs towards silence). Saying it at every measurement: 18 %.
    assert wrong <= 0.15 * said, (wrong, said)
