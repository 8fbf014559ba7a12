"""The range query's plain-HTTP client (decision_service.prometheus_http), against a scripted
loopback server: each accepted connection answers each request with the next scripted bytes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from decision_service.prometheus_http import (
    MAX_HEADERS,
    ConnectionClosed,
    HttpAnswer,
    MalformedAnswer,
    PlainHttp,
)

LOOPBACK = "127.0.0.1"
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"

# What a connection does after reading a request: send bytes, then keep it open or close it.
Step = tuple[bytes, bool]


class ScriptedServer:
    """Connection ``i`` answers its requests with ``scripts[i]`` in order (after the last
    script, every connection uses the last one); requests are recorded whole."""

    def __init__(self, scripts: list[list[Step]]) -> None:
        self.scripts = scripts
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(5)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            script = self.scripts[min(self.connections, len(self.scripts) - 1)]
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn, script), daemon=True).start()

    def _answer(self, conn: socket.socket, script: list[Step]) -> None:
        conn.settimeout(5)
        with conn:
            for payload, keep_open in script:
                request = b""
                try:
                    while b"\r\n\r\n" not in request:
                        data = conn.recv(65536)
                        if not data:
                            return
                        request += data
                    head, _, body = request.partition(b"\r\n\r\n")
                    length = int(
                        next(
                            line.split(b":")[1]
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length:")
                        )
                    )
                    while len(body) < length:
                        body += conn.recv(65536)
                    self.requests.append(request)
                    conn.sendall(payload)
                except OSError:
                    return
                if not keep_open:
                    return
            # the script is over: wait for the client to go
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[list[list[Step]]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(scripts: list[list[Step]]) -> ScriptedServer:
        server = ScriptedServer(scripts)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def sized(body: bytes, head: bytes = OK_HEAD) -> bytes:
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def chunked(*chunks: bytes, head: bytes = OK_HEAD) -> bytes:
    out = head + b"Transfer-Encoding: chunked\r\n\r\n"
    for chunk in chunks:
        out += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    return out + b"0\r\n\r\n"


def post(
    client: PlainHttp, body: bytes = b"query=up", watched: list[object] | None = None
) -> HttpAnswer:
    return client.post(
        "/api/v1/query_range",
        body,
        2.0,
        (watched.append if watched is not None else lambda s: None),
    )


def test_a_sized_answer_then_a_chunked_one_on_the_same_kept_connection(
    serve: Callable[[list[list[Step]]], ScriptedServer],
) -> None:
    server = serve([[(sized(b'{"a":1}'), True), (chunked(b'{"b":', b"2}"), True)]])
    client = PlainHttp(server.url, {"User-Agent": "t", "Content-Type": "x"}, 2)
    watched: list[object] = []
    assert post(client, watched=watched) == HttpAnswer(200, b'{"a":1}')
    assert post(client, b"query=x%2By", watched) == HttpAnswer(200, b'{"b":2}')
    assert server.connections == 1  # kept alive
    assert len(watched) == 2 and all(isinstance(s, socket.socket) for s in watched)
    head, _, body = server.requests[1].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v1/query_range HTTP/1.1"
    assert f"Host: {LOOPBACK}:{server.port}".encode() in lines
    assert b"User-Agent: t" in lines and b"Content-Length: 11" in lines
    assert body == b"query=x%2By"
    client.close()


def test_a_server_that_closes_is_not_reused_and_a_status_is_passed_on(
    serve: Callable[[list[list[Step]]], ScriptedServer],
) -> None:
    closing = OK_HEAD.replace(b"200 OK", b"503 Service Unavailable") + b"Connection: close\r\n"
    server = serve([[(sized(b"busy", closing), True)], [(sized(b"{}"), True)]])
    client = PlainHttp(server.url, {}, 2)
    assert post(client) == HttpAnswer(503, b"busy")
    assert post(client) == HttpAnswer(200, b"{}")
    assert server.connections == 2


def test_an_answer_ended_by_the_connection_and_an_interim_answer(
    serve: Callable[[list[list[Step]]], ScriptedServer],
) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    server = serve([[(interim + b"HTTP/1.0 200 OK\r\n\r\nall of it", False)]])
    client = PlainHttp(server.url, {}, 2)
    assert post(client) == HttpAnswer(200, b"all of it")


def test_an_idle_connection_closed_by_the_server_is_replaced(
    serve: Callable[[list[list[Step]]], ScriptedServer],
) -> None:
    """A Prometheus restarted (or timing out idle connections) between two decisions."""
    server = serve([[(sized(b"1"), False)], [(sized(b"2"), True)]])
    client = PlainHttp(server.url, {}, 2)
    assert post(client) == HttpAnswer(200, b"1")  # kept: the server closes it afterwards
    assert post(client) == HttpAnswer(200, b"2")
    assert server.connections == 2


def test_a_kept_connection_closed_before_the_answer_is_retried_once(
    serve: Callable[[list[list[Step]]], ScriptedServer],
) -> None:
    """Closed after the request was read, before any answer: sent again on a new connection;
    a new connection that does the same is an error (no second retry)."""
    server = serve([[(sized(b"1"), True), (b"", False)], [(sized(b"2"), True)]])
    client = PlainHttp(server.url, {}, 2)
    assert post(client) == HttpAnswer(200, b"1")
    assert post(client) == HttpAnswer(200, b"2")
    assert server.connections == 2 and len(server.requests) == 3
    silent = serve([[(b"", False)]])
    with pytest.raises(ConnectionClosed):
        post(PlainHttp(silent.url, {}, 2))
    assert silent.connections == 1


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", MalformedAnswer),
        (OK_HEAD + b"Content-Length: 10\r\n\r\nshort", ConnectionClosed),
        (OK_HEAD + b"Content-Length: x\r\n\r\n", MalformedAnswer),
        (OK_HEAD + b"Transfer-Encoding: gzip\r\n\r\n", MalformedAnswer),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", MalformedAnswer),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcdef\r\n", MalformedAnswer),
        (OK_HEAD + b"no colon here\r\n\r\n", MalformedAnswer),
        (OK_HEAD + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n", MalformedAnswer),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000, MalformedAnswer),
        (OK_HEAD + b"Content-Le", ConnectionClosed),
    ],
    ids=[
        "not-http",
        "cut-body",
        "bad-length",
        "gzip",
        "bad-chunk-size",
        "long-chunk",
        "no-colon",
        "too-many-headers",
        "endless-line",
        "cut-head",
    ],
)
def test_what_is_not_an_answer_is_an_error_and_the_connection_is_dropped(
    serve: Callable[[list[list[Step]]], ScriptedServer], payload: bytes, error: type[Exception]
) -> None:
    server = serve([[(payload, False)], [(sized(b"ok"), True)]])
    client = PlainHttp(server.url, {}, 2)
    with pytest.raises(error):
        post(client)
    assert post(client) == HttpAnswer(200, b"ok")
    assert server.connections == 2


def test_a_silent_server_times_out_and_nothing_listening_is_refused() -> None:
    listener = socket.create_server((LOOPBACK, 0))  # accepts (backlog) but never answers
    port = listener.getsockname()[1]
    try:
        client = PlainHttp(f"http://{LOOPBACK}:{port}", {}, 1)
        with pytest.raises(TimeoutError):
            client.post("/", b"", 0.2, lambda s: None)
    finally:
        listener.close()
    with pytest.raises(ConnectionRefusedError):
        PlainHttp(f"http://{LOOPBACK}:{port}", {}, 1).post("/", b"", 0.5, lambda s: None)


def test_the_watch_can_refuse_before_anything_is_sent(
    serve: Callable[[list[list[Step]]], ScriptedServer],
) -> None:
    """The deadline refuses a socket once it has passed: nothing is sent."""
    server = serve([[(sized(b"1"), True)]])

    def refuse(sock: socket.socket) -> None:
        raise RuntimeError("past the deadline")

    with pytest.raises(RuntimeError, match="deadline"):
        PlainHttp(server.url, {}, 1).post("/", b"q", 1.0, refuse)
    assert server.requests == []


def test_only_plain_http_urls_and_no_user_information_in_the_host() -> None:
    with pytest.raises(ValueError, match="http://"):
        PlainHttp("https://prometheus:9090", {}, 1)
    client = PlainHttp("http://user:secret@prometheus.monitoring:9090/prom", {"Host": "x"}, 1)
    assert client._headers == b"Host: prometheus.monitoring:9090\r\n"


def test_a_204_has_no_body_and_keeps_the_connection(
    serve: Callable[[list[list[Step]]], ScriptedServer],
) -> None:
    server = serve([[(b"HTTP/1.1 204 No Content\r\n\r\n", True), (sized(b"2"), True)]])
    client = PlainHttp(server.url, {}, 1)
    assert post(client) == HttpAnswer(204, b"")
    assert post(client) == HttpAnswer(200, b"2")
    assert server.connections == 1
