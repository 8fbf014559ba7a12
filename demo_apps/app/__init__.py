"""The demo app, run as ``stable`` (v1.0) or ``canary`` (v2.0): all its container image holds.

* :mod:`demo_apps.app.behaviour` — how a version serves a request at a given moment, from a
  scenario file (the same :mod:`scenarios` model the simulator uses);
* :mod:`demo_apps.app.server` — the FastAPI app (``APP_TYPE=stable|canary``) and its
  Prometheus metrics;
* ``python -m demo_apps.app --host H --port P`` serves it (:mod:`demo_apps.app.__main__`).

It needs :mod:`decision_service.histogram` (the latency buckets) and :mod:`scenarios`, and
nothing else of the project: the image installs just those packages.
"""
