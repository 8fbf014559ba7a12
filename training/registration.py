"""The environment as gymnasium's registry builds it: ``gym.make("CanaryRollout-v0")``.

Scenarios as the shipped training config draws them (``training/configs/dqn.yaml``): the
library with probability ``library_fraction``, else a randomised scenario
(:mod:`training.generator`) that is good with probability ``good_fraction``; the decision
pipeline with the service's guardrails and shield.
"""

from __future__ import annotations

from typing import Any

from decision_service.guardrails import GuardrailConfig
from decision_service.shield import ShieldConfig
from scenarios import LIBRARY_DIR, load_scenarios
from training.env import CanaryRolloutEnv, EnvConfig
from training.generator import mixed_source


def make_env(
    library_fraction: float = 0.3, good_fraction: float = 0.85, **config: Any
) -> CanaryRolloutEnv:
    """A training environment; ``config`` overrides :class:`~training.env.EnvConfig` fields."""
    settings: dict[str, Any] = {"guardrails": GuardrailConfig(), "shield": ShieldConfig()}
    settings.update(config)
    source = mixed_source(load_scenarios(LIBRARY_DIR), library_fraction, good_fraction)
    return CanaryRolloutEnv(source, EnvConfig(**settings))
