"""``python -m decision_service --host H --port P``: serve the decision API with uvicorn.

Configuration comes from the environment (``docs/configuration.md``); the flags only choose
where to listen.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn
from pydantic import ValidationError

from decision_service.logs import configure_logging
from decision_service.queries import TemplateError
from decision_service.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m decision_service",
        description="Serve the RL canary decision API (settings: environment variables).",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (8080)")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)

    from decision_service.app import create_app

    try:
        app = create_app(settings)
    except TemplateError as exc:
        print(f"invalid query templates: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
