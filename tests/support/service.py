"""Settings for the decision service's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from decision_service.settings import Settings


def settings_for(model: Path, prometheus_url: str, **overrides: Any) -> Settings:
    """Settings for a test: nothing from the environment unless a test sets it."""
    values: dict[str, Any] = {
        "model_path": model,
        "prometheus_url": prometheus_url,
        "prometheus_timeout_seconds": 5.0,
        "analysis_window": "3s",
    }
    values.update(overrides)
    return Settings(**values)


#: A valid POST /v1/decide body, as Argo's jsonBody sends it (numbers as strings).
BODY: dict[str, str] = {
    "namespace": "shop",
    "rollout": "checkout",
    "canary_hash": "6d4f8c9b7",
    "stable_hash": "5c8b7d6f4",
    "step_weight": "20",
}
