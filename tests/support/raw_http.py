"""A raw HTTP/1.1 client for requests no polite client sends: bodies of tens of megabytes,
streamed (with ``Content-Length`` or chunked) while the answer is read, so a server that answers
before reading the body is seen doing so.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass

from tests.support.prometheus import LOOPBACK

_CHUNK = 64 * 1024


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client managed to send before the answer or a reset
    seconds: float


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def post_large(
    port: int,
    path: str,
    size: int,
    *,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
    timeout: float = 60.0,
) -> RawAnswer:
    """POST ``size`` bytes of filler to ``path``; stop sending once the answer has come."""
    started = time.monotonic()
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n{extra}\r\n"
        ).encode()
    )
    answered = threading.Event()
    sent = 0

    def send_body() -> None:
        nonlocal sent
        filler = b"[" + b"1," * (_CHUNK // 2 - 1) + b"1"  # JSON-ish, never valid as a whole
        try:
            while sent < size and not answered.is_set():
                piece = filler[: min(_CHUNK, size - sent)]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked and not answered.is_set():
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: what a limit is allowed to do

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    try:
        status, answer_headers, body = _read_answer(sock)
    finally:
        answered.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        sender.join(timeout=timeout)
    return RawAnswer(status, answer_headers, body, sent, time.monotonic() - started)
