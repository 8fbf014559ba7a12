"""A canary rollout on this machine: Argo's semantics, Prometheus, load, and ``make demo``.

=========================================  ==================================================
:mod:`~demo_apps.local.manifests`          manifests, args, ``{{args.x}}``, Go durations
:mod:`~demo_apps.local.conditions`         success/failure conditions, ``jsonPath``
:mod:`~demo_apps.local.web`                the ``web`` provider: a metric, one measurement
:mod:`~demo_apps.local.analysis`           a metric's assessment, the next measurement's time
:mod:`~demo_apps.local.commands`           the user's ``promote``/``abort``
:mod:`~demo_apps.local.driver`             the rollout driver, a stand-in for the controller
:mod:`~demo_apps.local.processes`          child processes in their own groups, free ports
:mod:`~demo_apps.local.prometheus`         the one Prometheus launcher (stack, tests, benches)
:mod:`~demo_apps.local.synthetic`          a fake exporter of the demo apps' series
:mod:`~demo_apps.local.stack`              Prometheus, both apps and the decision service
:mod:`~demo_apps.local.loadgen`            the traffic router and load generator
:mod:`~demo_apps.local.timeline`           the demo's timeline picture
:mod:`~demo_apps.local.demo`               ``make demo``: ``python -m demo_apps.local.demo``
=========================================  ==================================================
"""
