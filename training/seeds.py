"""Episode seeds: a pure function of (salt, scenario name, index), the same for every agent.

Salts keep sets of episodes apart: ``eval`` (the evaluation), ``validation`` (training's
periodic checks), ``tune`` (the baselines' grid search) and ``stress`` (the stress suite).
"""

from __future__ import annotations

import zlib


def episode_seed(scenario: str, index: int, salt: str = "eval") -> int:
    """The seed of episode ``index`` of ``scenario`` (stable across runs and agents)."""
    return zlib.crc32(f"{salt}:{scenario}".encode()) * 100_000 + index
