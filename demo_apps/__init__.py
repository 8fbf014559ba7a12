"""The live demo: scenario-driven stable/canary web apps and the local rollout stack.

* :mod:`demo_apps.behaviour` — how a version serves a request at a given moment, from a scenario
  file (the same :mod:`scenarios` model the simulator uses);
* :mod:`demo_apps.app` — the FastAPI app (``APP_TYPE=stable|canary``), its Prometheus metrics;
* :mod:`demo_apps.argo` — the Argo Rollouts semantics: manifests, args, conditions, analysis;
* :mod:`demo_apps.driver` — the local rollout driver, a small stand-in for the Argo controller;
* :mod:`demo_apps.loadgen`, :mod:`demo_apps.stack`, :mod:`demo_apps.demo` — ``make demo``.
"""
