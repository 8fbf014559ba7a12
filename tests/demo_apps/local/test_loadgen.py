"""The load generator and its keep-alive HTTP client, against small servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import pytest

from demo_apps.local.loadgen import ControlError, HttpError, KeepAliveClient, LoadGenerator

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _response(status: int, body: bytes, *, close: bool = False) -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n"
    if close:
        head += "connection: close\r\n"
    return head.encode() + b"\r\n" + body


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            return None
        if line == b"\r\n":
            return b"".join(lines)
        lines.append(line)


class Server:
    """An HTTP/1.1 server on a loopback port, in its own thread; counts connections and requests."""

    def __init__(self, respond: Callable[[int, bytes], bytes | None]) -> None:
        self.respond = respond  # (request number, request head) -> raw response or None: close
        self.connections = 0
        self.requests = 0
        self.paths: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while (head := await _read_request(reader)) is not None:
                self.requests += 1
                self.paths.append(head.split(b" ")[1].decode())
                raw = self.respond(self.requests, head)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
                if b"connection: close" in raw:
                    break
        except asyncio.CancelledError:
            pass  # the test is over
        finally:
            writer.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)  # handlers of connections the client kept open
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def _gets(url: str, n: int) -> list[int]:
    async def run() -> list[int]:
        client = KeepAliveClient(url)
        try:
            return [await client.get() for _ in range(n)]
        finally:
            client.close()

    return asyncio.run(run())


def test_reuses_one_connection_and_returns_each_status() -> None:
    codes = iter([200, 500, 200, 503])
    with Server(lambda i, head: _response(next(codes), b'{"ok": 1}')) as server:
        assert _gets(server.url + "/work?x=1", 4) == [200, 500, 200, 503]
    assert server.connections == 1
    assert server.paths == ["/work?x=1"] * 4


def test_reads_chunked_bodies() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\n\r\n"
    )
    with Server(lambda i, head: chunked) as server:
        assert _gets(server.url, 3) == [200, 200, 200]
    assert server.connections == 1


def test_connection_close_opens_a_new_connection() -> None:
    with Server(lambda i, head: _response(200, b"x", close=True)) as server:
        assert _gets(server.url, 3) == [200, 200, 200]
    assert server.connections == 3


def test_retries_once_when_the_server_closed_an_idle_connection() -> None:
    # The server drops every second request without answering (an idle keep-alive timeout as
    # the client sees it); the client must retry those on a fresh connection.
    with Server(lambda i, head: None if i % 2 == 0 else _response(200, b"ok")) as server:
        assert _gets(server.url, 3) == [200, 200, 200]
    assert server.requests == 5
    assert server.connections == 3


def test_garbage_and_refused_connections_raise_http_error() -> None:
    with Server(lambda i, head: b"SSH-2.0-not-http\r\n\r\n") as server, pytest.raises(HttpError):
        _gets(server.url, 1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(HttpError, match="cannot connect"):
            _gets(f"http://127.0.0.1:{port}", 1)
    with pytest.raises(ValueError, match="only http"):
        KeepAliveClient("https://example.invalid/")


@contextmanager
def _apps() -> Iterator[tuple[Server, Server]]:
    with (
        Server(lambda i, head: _response(200, b"stable")) as stable,
        Server(lambda i, head: _response(500 if i % 4 == 0 else 200, b"canary")) as canary,
    ):
        yield stable, canary


def test_load_generator_sends_its_rate_split_by_weight() -> None:
    with _apps() as (stable, canary):
        load = LoadGenerator(stable.url, canary.url, 400.0, seed=3)
        load.set_weight(25)
        with load:
            time.sleep(2.0)
        totals = load.totals()
    sent = totals["stable"].requests + totals["canary"].requests
    assert 600 <= sent <= 1000, sent  # Poisson at 400/s for 2 s
    assert load.dropped == 0
    share = totals["canary"].requests / sent
    assert 0.19 <= share <= 0.31, share
    assert totals["stable"].errors == 0
    # every fourth canary request fails with a 500
    assert abs(totals["canary"].errors - canary.requests // 4) <= 1
    assert stable.requests + canary.requests == sent


def test_unreachable_app_counts_errors_not_crashes() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with _apps() as (stable, _):
            load = LoadGenerator(stable.url, dead, 200.0, seed=4)
            load.set_weight(100)
            with load:
                time.sleep(1.0)
            totals = load.totals()
    assert totals["canary"].requests > 100
    assert totals["canary"].errors == totals["canary"].requests
    assert totals["stable"].requests == 0


def test_a_malformed_answer_on_a_reused_connection_is_retried_not_lost() -> None:
    # The second answer has a status line that does not parse as a number (a ValueError inside
    # the client): it must be handled like any other failure of a reused connection.
    def respond(i: int, head: bytes) -> bytes:
        return b"HTTP/1.1 abc X\r\ncontent-length: 0\r\n\r\n" if i == 2 else _response(200, b"ok")

    with Server(respond) as server:
        assert _gets(server.url, 2) == [200, 200]
    assert server.requests == 3
    garbled = b"HTTP/1.1 abc X\r\ncontent-length: 0\r\n\r\n"
    with Server(lambda i, head: garbled) as server, pytest.raises(HttpError):
        _gets(server.url, 1)


def test_a_weight_the_canary_app_does_not_take_stops_the_run() -> None:
    # A canary that does not know its share would serve another scenario than the one named.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/control/weight"
        load = LoadGenerator(
            "http://127.0.0.1:9", "http://127.0.0.1:9", 10.0, canary_control_url=dead
        )
        with pytest.raises(ControlError, match="weight 5 not taken"):
            load.set_weight(5)
    assert load.weight == 0  # the traffic did not shift either
