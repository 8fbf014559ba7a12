"""A scripted stand-in for the decision service: real HTTP on 127.0.0.1, canned answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    delay: float = 0.0
    #: Seconds between the body's bytes (a slowly trickling answer); 0: all at once.
    trickle: float = 0.0


def decision(name: str, reason: str = "") -> Reply:
    return Reply(200, {"decision": name, "reason": reason or f"scripted {name}"})


@dataclass
class FakeDecisionService:
    """Answers POST /v1/decide from ``script`` (a list, or a function of the request body)."""

    script: list[Reply] | Callable[[dict[str, Any]], Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    url: str = ""

    def next_reply(self, body: dict[str, Any]) -> Reply:
        if callable(self.script):
            return self.script(body)
        if not self.script:
            raise AssertionError("the fake decision service ran out of scripted replies")
        return self.script.pop(0)


@contextmanager
def serve(service: FakeDecisionService) -> Iterator[FakeDecisionService]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            service.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": body}
            )
            service.times.append(time.monotonic())
            reply = service.next_reply(body)
            time.sleep(reply.delay)
            payload = (
                reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            )
            try:
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if reply.trickle:
                    for index in range(len(payload)):
                        self.wfile.write(payload[index : index + 1])
                        self.wfile.flush()
                        time.sleep(reply.trickle)
                else:
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out first

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    service.url = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
