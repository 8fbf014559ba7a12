"""The real-Prometheus helpers the tests use, from where they live (re-exported here).

The launcher is :mod:`demo_apps.local.prometheus` (also the demo stack's and the benchmarks'),
the fake exporter :mod:`demo_apps.local.synthetic`; tests import them from here or from there.
"""

from __future__ import annotations

from demo_apps.local.processes import LOOPBACK, free_port
from demo_apps.local.prometheus import PrometheusError, PrometheusServer
from demo_apps.local.synthetic import SyntheticApp, SyntheticPod, synthetic_prometheus

__all__ = [
    "LOOPBACK",
    "PrometheusError",
    "PrometheusServer",
    "SyntheticApp",
    "SyntheticPod",
    "free_port",
    "synthetic_prometheus",
]
