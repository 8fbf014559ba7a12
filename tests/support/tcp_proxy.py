"""A loopback TCP proxy that makes an upstream slow on demand (for fault tests), or spreads
connections over several upstreams (a Kubernetes Service in front of replicas).

``FaultProxy(upstream_port)`` forwards every connection to ``127.0.0.1:upstream_port``;
``FaultProxy([port_a, port_b], balance=...)`` picks one upstream per connection:
``"client_ip"`` always the same one for a client address (a Service with
``sessionAffinity: ClientIP``), the next live one when it stops accepting (kube-proxy dropping an
endpoint); ``"round_robin"`` the next one each time (a Service without affinity). What it does
with the upstream's answers is its ``mode``, switchable at any time:

* ``"pass"``: forwarded as they come;
* ``"late"``: each piece of an answer is held ``delay`` seconds, then forwarded whole;
* ``"drip"``: forwarded one byte every ``delay`` seconds (a server that never stops
  answering, just never finishes: a per-read timeout never fires on it).

An answer keeps the mode and delay in force when its request went through: an answer that
started dripping goes on dripping after the mode is switched back to ``"pass"`` (the answers
of a Prometheus that was overloaded when the queries came in), and only requests sent after
the switch are answered promptly. Threads are daemons, every socket is closed on ``close()``,
and the proxy listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zlib
from collections.abc import Sequence
from types import TracebackType
from typing import Literal

from tests.support.prometheus import LOOPBACK

Mode = Literal["pass", "late", "drip"]
Balance = Literal["client_ip", "round_robin"]


class FaultProxy:
    """``127.0.0.1:<port>`` → ``127.0.0.1:<upstream_port>``, slowed as ``mode`` says."""

    def __init__(
        self,
        upstream_port: int | Sequence[int],
        mode: Mode = "pass",
        delay: float = 0.25,
        *,
        balance: Balance = "client_ip",
    ) -> None:
        ports = [upstream_port] if isinstance(upstream_port, int) else list(upstream_port)
        if not ports:
            raise ValueError("no upstream port")
        self.upstream_ports = ports
        self.balance: Balance = balance
        self.connections = [0] * len(ports)  # connections made to each upstream
        self._turn = 0
        self.mode: Mode = mode
        self.delay = delay
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def set(self, mode: Mode, delay: float | None = None) -> None:
        if delay is not None:
            self.delay = delay
        self.mode = mode

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, (host, _) = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = self._connect(host)
            if upstream is None:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                self._track(sock)
            answer: list[tuple[Mode, float]] = [(self.mode, self.delay)]
            threading.Thread(
                target=self._requests, args=(client, upstream, answer), daemon=True
            ).start()
            threading.Thread(
                target=self._answers, args=(upstream, client, answer), daemon=True
            ).start()

    def _connect(self, host: str) -> socket.socket | None:
        """A connection to the upstream ``balance`` picks for ``host``; the next ones in turn
        while it refuses. None when none accepts."""
        count = len(self.upstream_ports)
        if self.balance == "client_ip":
            first = zlib.crc32(host.encode()) % count
        else:
            first, self._turn = self._turn, (self._turn + 1) % count
        for index in [(first + i) % count for i in range(count)]:
            try:
                upstream = socket.create_connection((LOOPBACK, self.upstream_ports[index]), 5)
            except OSError:
                continue
            self.connections[index] += 1
            return upstream
        return None

    def _requests(
        self, source: socket.socket, target: socket.socket, answer: list[tuple[Mode, float]]
    ) -> None:
        """Client to upstream: each request sets how its answer will travel."""
        try:
            while not self._closed.is_set():
                data = source.recv(65536)
                if not data:
                    break
                answer[0] = (self.mode, self.delay)
                target.sendall(data)
        except OSError:
            pass
        finally:
            _shut(source, target)

    def _answers(
        self, source: socket.socket, target: socket.socket, answer: list[tuple[Mode, float]]
    ) -> None:
        """Upstream to client, late or dripping as the request's mode says."""
        try:
            while not self._closed.is_set():
                data = source.recv(65536)
                if not data:
                    break
                mode, delay = answer[0]
                if mode == "late":
                    time.sleep(delay)
                if mode != "drip":
                    target.sendall(data)
                    continue
                for i in range(len(data)):
                    if self._closed.is_set():
                        return
                    target.sendall(data[i : i + 1])
                    time.sleep(delay)
        except OSError:
            pass
        finally:
            _shut(source, target)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _shut(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
