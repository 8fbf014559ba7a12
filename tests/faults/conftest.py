"""The fault-injection suite: the real service process (``python -m decision_service``) under
faults a user's cluster can have, each bounded in time and on 127.0.0.1 only (about 45 s in all).

=================================  =========================================================
``test_fault_large_bodies``        50 MB bodies with and without the token, 4 x 40 MB at once:
                                   401/413 and peak RSS growth (``/proc``) under 30 MiB
``test_fault_server_limits``       a 50 MB header; more connections than the server serves
``test_fault_slow_prometheus``     Prometheus answering late or one byte at a time (a loopback
                                   proxy): 503s within the deadline, recovery within one
``test_fault_real_prometheus``     a real Prometheus: stable's series vanish (hold/no_data),
                                   a counter reset (counts stay right), Prometheus killed
                                   (503, not ready, never a promote) and restarted
=================================  =========================================================

The faults that need the local rollout driver (the service killed or restarted mid-rollout)
belong with the driver's tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.onnx_models import constant_models


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ONNX models that always answer one action: promote, hold, abort."""
    return constant_models(tmp_path_factory.mktemp("models"))
