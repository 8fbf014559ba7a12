"""The gate in front of the app: the bearer token and the body size, before any body is read.

FastAPI reads and parses a request's whole body before it runs the route's dependencies, so a
token check in a dependency comes too late: one unauthenticated 50 MB POST to ``/v1/decide``
took the process from 103 MiB to 256 MiB (the chart's memory limit), and four parallel 40 MB
ones to 351 MiB. This pure ASGI middleware runs before FastAPI sees the request:

1. **Token** (``/v1`` and below, when a token is configured): the ``Authorization`` header is
   compared with the token in constant time. Without the right one the answer is a 401 in the
   one error shape (:class:`~decision_service.schemas.ErrorV1`) with ``WWW-Authenticate:
   Bearer``, and not one byte of the body is read. Each refusal is counted
   (``rollout_agent_unauthorized_total``) and logged at info level, without what was
   presented.
2. **Body size** (every request): a body over :data:`MAX_BODY_BYTES` is a 413 in the same
   shape, at once when ``Content-Length`` says so, else (a chunked body) as soon as the bytes
   read pass the limit: nothing beyond the limit is ever held. A decision request is under
   1 KB; 16 KiB leaves room for any legitimate one.

The body, at most the limit, is then handed to the app as it came. What the server does with
the unread rest of a refused body is the server's business: uvicorn discards it (it stops
buffering a request's body once its response is complete), so memory stays flat.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from decision_service.metrics import ServiceMetrics
from decision_service.schemas import ErrorV1

log = logging.getLogger(__name__)

#: Largest request body accepted, in bytes (a ``/v1/decide`` body is under 1 KB).
MAX_BODY_BYTES: Final = 16 * 1024
#: Path prefix whose routes need the bearer token.
PROTECTED_PREFIX: Final = "/v1"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


class Gate:
    """ASGI middleware: 401 before the body for ``/v1``, 413 past :data:`MAX_BODY_BYTES`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        metrics: ServiceMetrics,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self._token = token.encode() if token is not None else None
        self._metrics = metrics
        self._max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._token is not None and _protected(scope["path"]):
            refusal = self._refusal(scope)
            if refusal is not None:
                self._metrics.unauthorized.inc()
                log.info("unauthorized request", extra={"fields": _request(scope, refusal)})
                await _answer(
                    send,
                    401,
                    ErrorV1(
                        error="unauthorized",
                        message="A valid bearer token is required (Authorization: Bearer <token>).",
                    ),
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        body = await self._read_body(scope, receive)
        if body is None:
            self._metrics.body_too_large.inc()
            log.info("request body too large", extra={"fields": _request(scope, "too large")})
            message = (
                f"The request body is larger than {self._max} bytes "
                "(a decision request is under 1 KB)."
            )
            await _answer(send, 413, ErrorV1(error="body_too_large", message=message))
            return
        if isinstance(body, _Disconnected):
            return  # the client left before sending its body: nobody to answer
        await self.app(scope, _replay(body, receive), send)

    def _refusal(self, scope: Scope) -> str | None:
        """Why the request's credentials are refused (None: they are the token)."""
        assert self._token is not None
        header = _header(scope, b"authorization")
        scheme, _, presented = (header or b"").partition(b" ")
        bearer = scheme.lower() == b"bearer" and bool(presented)
        # Compare even when there is nothing to compare: the time taken never tells what failed.
        matches = hmac.compare_digest(presented if bearer else b"", self._token)
        if matches and bearer:
            return None
        if header is None:
            return "no Authorization header"
        return "wrong token" if bearer else "not a bearer token"

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | _Disconnected | None:
        """The whole body, or None when it is larger than the limit (read no further)."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self._max:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _Disconnected:
    """The client disconnected while its body was being read."""


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the server's own events."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _request(scope: Scope, problem: str) -> dict[str, object]:
    client = scope.get("client")
    return {
        "event": "rejected",
        "problem": problem,
        "method": scope.get("method"),
        "path": scope.get("path"),
        "client": client[0] if client else None,
    }


async def _answer(
    send: Send, status: int, body: ErrorV1, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body.model_dump(), separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})
