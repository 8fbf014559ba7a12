"""The three answers, in the order of the policy's outputs (the ONNX model's Q-value columns)."""

from __future__ import annotations

from typing import Final, Literal

Action = Literal["hold", "promote", "abort"]

ACTION_NAMES: Final[tuple[Action, ...]] = ("hold", "promote", "abort")
HOLD: Final = 0
PROMOTE: Final = 1
ABORT: Final = 2
