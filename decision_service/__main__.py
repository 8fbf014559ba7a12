"""``python -m decision_service --host H --port P``: serve the decision API with uvicorn.

Configuration comes from the environment (``docs/configuration.md``); the flags only choose
where to listen.

The server bounds what one client can make it hold, below the app's own limits (the token
before the body, bodies over 16 KiB refused: :mod:`decision_service.gate`):

* **the request head** (request line and headers) to :data:`MAX_REQUEST_HEAD_BYTES`, with the
  ``h11`` parser and its ``h11_max_incomplete_event_size`` (a longer head is a 400 and the
  connection is closed). uvicorn's default parser, ``httptools``, has no such bound: it took a
  50 MB header and the process grew by 95 MiB. ``h11`` is pure Python, but a decision's cost is
  its PromQL query and the policy: at concurrency 16 and 64 the two parsers measured within the
  noise of a shared machine (498 and 499 decisions/s; 540 and 498).
* **connections and requests in progress** to :data:`MAX_CONCURRENCY` (``limit_concurrency``):
  past it uvicorn answers 503 at once, which Argo counts as an Error and retries, instead of
  holding ever more connections. It is twice the concurrency the soak run holds without an
  error (``make soak``); Argo sends one request per analysis at a time.

uvicorn has no request-body limit of its own (the gate is that limit); it stops reading a
connection once 64 KiB of body wait unread, and discards the body of a request already answered.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final

import uvicorn
from pydantic import ValidationError

from decision_service.logs import configure_logging
from decision_service.queries import TemplateError
from decision_service.settings import Settings

#: Longest request line plus headers accepted, bytes (a decision request's head is < 1 KB).
MAX_REQUEST_HEAD_BYTES: Final = 16 * 1024
#: Connections (and requests in progress) served at once; past it, 503 at once.
MAX_CONCURRENCY: Final = 512


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
        http="h11",
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        limit_concurrency=MAX_CONCURRENCY,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
