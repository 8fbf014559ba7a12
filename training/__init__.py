"""Offline learning: the canary simulator, classical baselines, DQN training and evaluation.

Imports point one way: ``training`` uses ``decision_service`` (features, scenarios, guardrails),
never the reverse. Importing this package does not import gymnasium or torch; the submodules
that need them (``training.env``, ``training.train``) do.
"""
