"""The local processes' ports: free when handed out, and out of the way of outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from demo_apps.local import processes
from demo_apps.local.processes import LOOPBACK, PORTS_FROM, free_port


def test_ports_come_from_below_the_ephemeral_range_and_are_not_handed_out_twice() -> None:
    """A child binds its port a second or so after it is chosen. Outgoing connections take
    their source ports from the kernel's ephemeral range, so a port chosen there can be gone
    by then (CI: a demo app's port); below it, only another listener can take it."""
    ephemeral = processes._ephemeral_start()
    if ephemeral <= PORTS_FROM:
        pytest.skip(f"the ephemeral range starts at {ephemeral}: no room below it here")
    ports = [free_port() for _ in range(200)]
    assert all(PORTS_FROM <= port < ephemeral for port in ports)
    assert len(set(ports)) == len(ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, ports[-1]))  # still free


def test_without_room_below_the_range_the_kernel_chooses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    narrow = tmp_path / "ip_local_port_range"
    narrow.write_text("1024\t65535\n")
    monkeypatch.setattr(processes, "_EPHEMERAL_RANGE", narrow)
    port = free_port()
    assert 1024 <= port <= 65535
    monkeypatch.setattr(processes, "_EPHEMERAL_RANGE", tmp_path / "absent")
    assert processes._ephemeral_start() == 0
    assert free_port() > 0
