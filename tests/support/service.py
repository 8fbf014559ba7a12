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
        "prometheus_timeout_seconds": 1.0,
        "analysis_window": "3s",
    }
    values.update(overrides)
    return Settings(**values)
