"""The live demo, by job: the demo app, the local rollout, and the sim-to-real check.

* :mod:`demo_apps.app` — the scenario-driven web app (``APP_TYPE=stable|canary``): the FastAPI
  server, its Prometheus metrics and its behaviour model (the same :mod:`scenarios` model the
  simulator uses). Only this subpackage goes into the demo app's image
  (``demo_apps/Dockerfile``), so it imports nothing from the rest of ``demo_apps``.
* :mod:`demo_apps.local` — a rollout on this machine without a cluster: Argo Rollouts'
  analysis semantics and a stand-in for its controller, Prometheus, the load generator and the
  ``make demo`` command.
* :mod:`demo_apps.sim_to_real` — the same scenarios in the simulator (:mod:`training`) and
  live (:mod:`demo_apps.local`), decisions compared; the one module here that reaches into
  ``training``.
"""
