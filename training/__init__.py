"""Offline learning: the canary simulator, classical baselines, DQN training and evaluation.

Imports point one way: ``training`` uses ``decision_service`` (features, scenarios, guardrails),
never the reverse. Importing this package registers the environment with gymnasium when the
train extra is installed (``CanaryRollout-v0``); it never imports torch (``training.train``
and ``export`` do).
"""

import contextlib


def _register() -> None:
    """``gym.make("CanaryRollout-v0")`` (and rl-zoo's ``--gym-packages training``): the library
    mixed with randomised scenarios, as the shipped config trains (``training.registration``)."""
    import gymnasium

    if "CanaryRollout-v0" not in gymnasium.registry:
        gymnasium.register(id="CanaryRollout-v0", entry_point="training.registration:make_env")


with contextlib.suppress(ModuleNotFoundError):  # no gymnasium (train extra): nothing to do
    _register()
