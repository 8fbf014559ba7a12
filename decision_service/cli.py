"""``rollout-agent``: one command for everything, each subcommand the module's own CLI.

    rollout-agent serve          # the decision service        (python -m decision_service)
    rollout-agent check-queries  # the PromQL for a rollout, run against Prometheus
    rollout-agent replay         # the service's decisions on Prometheus history
    rollout-agent demo           # a live canary on this machine (the demo extra)
    rollout-agent train | tune | evaluate | operating | export   # the train extra

``python -m <module>`` keeps working; ``rollout-agent <subcommand> --help`` documents every
flag with its default. A subcommand whose extra is not installed says which one to install
instead of failing on an import. Serving never imports the training stack: the subcommands are
imported only when called.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Final

#: subcommand → (module with ``main(argv)``, the extra it needs, one line of help)
SUBCOMMANDS: Final[dict[str, tuple[str, str | None, str]]] = {
    "serve": ("decision_service.__main__", None, "run the decision service"),
    "check-queries": (
        "decision_service.check_queries",
        None,
        "render a rollout's PromQL and run it: which series are missing",
    ),
    "replay": ("decision_service.replay", None, "the service's decisions on Prometheus history"),
    "demo": ("demo_apps.local.demo", "demo", "a live canary rollout on this machine"),
    "train": ("training.train", "train", "train the DQN policy in the simulator"),
    "tune": ("training.tune", "train", "grid-search the classical baselines"),
    "evaluate": ("training.evaluate", "train", "every analyser on the same seeded episodes"),
    "operating": ("training.operating", "train", "the operating characteristic chart"),
    "export": ("export.__main__", "train", "SB3 checkpoints to the ONNX policy"),
}


def _version() -> str:
    try:
        return metadata.version("k8s-rollout-agent")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [
        "usage: rollout-agent [--version] <subcommand> [options]",
        "",
        "RL canary analysis for Argo Rollouts. Subcommands (each has --help):",
    ]
    lines += [f"  {name:<{width}}  {text}" for name, (_, _, text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    if args[0] == "--version":
        print(f"rollout-agent {_version()}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"rollout-agent: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, extra, _ = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is None or (exc.name or "").split(".")[0] in {module_name.split(".")[0]}:
            raise
        print(
            f"rollout-agent {name} needs the {extra!r} extra ({exc.name} is missing): "
            f"pip install 'k8s-rollout-agent[{extra}]' (or make install)",
            file=sys.stderr,
        )
        return 2
    sys.argv = [f"rollout-agent {name}", *rest]
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
