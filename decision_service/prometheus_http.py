"""The range query's HTTP to a plain-``http://`` Prometheus: keep-alive HTTP/1.1 POSTs on sockets.

Every decision sends Prometheus one range query. Through urllib3 (its pool, and http.client's
response and header parsing) that request cost the service about 190 µs of CPU, against about
20 µs written and read here (``benchmarks/bench_prometheus_http.py`` measures both in one
process): at the service's 1.5–2 ms of CPU per decision, a tenth of its throughput. This is
all the range query needs of HTTP/1.1: a form POST with a ``Content-Length``, an answer with a
``Content-Length``, chunked or closed by the server, and keep-alive. An ``https://``
Prometheus keeps urllib3, with the session's verification and client certificate as requests
applies them (:mod:`decision_service.prometheus_source`).

**The deadline and its errors stay the same.** The caller registers each connection's socket
with the job's deadline before anything is sent (shutting it down ends a blocked read at once),
the socket's timeout is the time the job has left, and what goes wrong is an ``OSError`` (the
socket's, or :class:`ConnectionClosed`) or a :class:`MalformedAnswer`, which the caller maps to
``PrometheusUnavailable`` as it does urllib3's. A connection that fails in any way is closed,
never reused.

**A stale keep-alive connection is not an outage.** A pooled connection the server closed while
it was idle (a restarted Prometheus, an idle timeout) reads as end-of-file before it is reused
and is dropped; on one the server closes before the first byte of its answer, or resets, the
request is sent once more on a new connection (a new connection is never retried). The query
only reads, so sending it twice is harmless.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping
from io import BufferedIOBase, BufferedReader
from typing import Final, NamedTuple
from urllib.parse import urlsplit

#: Longest status or header line read, and most header lines (Prometheus sends a handful).
MAX_LINE_BYTES: Final = 64 * 1024
MAX_HEADERS: Final = 100


class ConnectionClosed(ConnectionError):
    """The server closed the connection before its answer was complete."""


class ClosedBeforeAnswer(ConnectionClosed):
    """The server closed the connection before the first byte of its answer."""


class MalformedAnswer(ValueError):
    """The server's bytes are not an HTTP/1.x answer this client reads."""


class HttpAnswer(NamedTuple):
    status: int
    body: bytes


class _Connection:
    __slots__ = ("reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = BufferedReader(socket.SocketIO(sock, "rb"), 64 * 1024)

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()

    def idle_and_open(self) -> bool:
        """Whether the server has neither closed this idle connection nor sent anything on it
        (anything it sent unasked would be read as the next answer)."""
        try:
            self.sock.settimeout(0.0)  # a socket with a timeout would wait for something to read
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True  # nothing to read: open and idle
        except OSError:
            return False
        return False  # end-of-file, or bytes nobody asked for


class PlainHttp:
    """Keep-alive HTTP/1.1 connections to one ``http://`` origin, at most ``size`` kept idle;
    thread-safe (each request has a connection to itself)."""

    def __init__(self, url: str, headers: Mapping[str, str], size: int) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "http" or parts.hostname is None:
            raise ValueError(f"{url!r}: not an http:// URL with a host")
        self._address = (parts.hostname, parts.port or 80)
        netloc = parts.netloc.rpartition("@")[2]  # no user information in the Host header
        lines = [f"Host: {netloc}"]
        lines += [
            f"{name}: {value}"
            for name, value in headers.items()
            if name.lower() not in ("host", "content-length", "transfer-encoding")
        ]
        self._headers = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._size = size

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def post(
        self,
        path: str,
        body: bytes,
        timeout: float,
        watch: Callable[[socket.socket], None],
    ) -> HttpAnswer:
        """POST ``body`` (form-encoded) to ``path``: the answer's status and body. ``watch``
        is called with each connection's socket before the request is sent on it; ``timeout``
        bounds the connect and every read. Raises ``OSError`` or :class:`MalformedAnswer`."""
        request = b"".join(
            (
                f"POST {path} HTTP/1.1\r\n".encode("latin-1"),
                self._headers,
                f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1"),
                body,
            )
        )
        connection = self._idle_connection()
        if connection is not None:
            try:
                return self._exchange(connection, request, timeout, watch)
            except (ClosedBeforeAnswer, BrokenPipeError, ConnectionResetError):
                pass  # closed by the server while idle: once more, on a new connection
        sock = socket.create_connection(self._address, timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return self._exchange(_Connection(sock), request, timeout, watch)

    def _idle_connection(self) -> _Connection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if connection.idle_and_open():
                return connection
            connection.close()

    def _exchange(
        self,
        connection: _Connection,
        request: bytes,
        timeout: float,
        watch: Callable[[socket.socket], None],
    ) -> HttpAnswer:
        try:
            watch(connection.sock)
            connection.sock.settimeout(timeout)
            connection.sock.sendall(request)
            status, body, keep_alive = _read_answer(connection.reader)
        except BaseException:
            connection.close()
            raise
        if keep_alive:
            with self._lock:
                if len(self._idle) < self._size:
                    self._idle.append(connection)
                    return HttpAnswer(status, body)
        connection.close()
        return HttpAnswer(status, body)


def _line(reader: BufferedIOBase) -> bytes:
    line = reader.readline(MAX_LINE_BYTES + 1)
    if not line.endswith(b"\n"):
        if len(line) > MAX_LINE_BYTES:
            raise MalformedAnswer(f"a line longer than {MAX_LINE_BYTES} bytes")
        raise ConnectionClosed("in the answer's head" if line else "in the answer")
    return line


def _read_answer(reader: BufferedIOBase) -> tuple[int, bytes, bool]:
    """One answer: its status, its body and whether the connection can be used again."""
    while True:
        first = reader.readline(MAX_LINE_BYTES + 1)
        if not first:
            raise ClosedBeforeAnswer("before the answer")
        if not first.endswith(b"\n"):
            raise MalformedAnswer("the status line is cut or too long")
        version, _, rest = first.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            raise MalformedAnswer(f"not an HTTP/1.x status line: {first[:80]!r}")
        status = int(code)
        length: int | None = None
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        for _ in range(MAX_HEADERS + 1):
            line = _line(reader)
            if line in (b"\r\n", b"\n"):
                break
            name, colon, value = line.partition(b":")
            if not colon:
                raise MalformedAnswer(f"not a header line: {line[:80]!r}")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise MalformedAnswer(f"a bad Content-Length: {value[:40]!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.endswith(b"chunked")
                if not chunked:
                    raise MalformedAnswer(f"an unsupported Transfer-Encoding: {value[:40]!r}")
            elif name == b"connection":
                tokens = {token.strip() for token in value.split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        else:
            raise MalformedAnswer(f"more than {MAX_HEADERS} header lines")
        if 100 <= status < 200:
            continue  # an interim answer: the real one follows
        if status in (204, 304):
            return status, b"", keep_alive  # never a body
        if chunked:
            return status, _chunked(reader), keep_alive
        if length is not None:
            body = reader.read(length)
            if len(body) != length:
                raise ConnectionClosed("in the answer's body")
            return status, body, keep_alive
        return status, reader.read(), False  # the body ends where the connection does


def _chunked(reader: BufferedIOBase) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = _line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise MalformedAnswer(f"a bad chunk size: {size_line[:40]!r}") from None
        if size < 0:
            raise MalformedAnswer(f"a bad chunk size: {size_line[:40]!r}")
        if size == 0:
            while _line(reader) not in (b"\r\n", b"\n"):  # trailers
                pass
            return b"".join(parts)
        chunk = reader.read(size)
        if len(chunk) != size:
            raise ConnectionClosed("in a chunk")
        parts.append(chunk)
        if _line(reader) not in (b"\r\n", b"\n"):
            raise MalformedAnswer("a chunk longer than its size")
