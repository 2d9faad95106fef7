"""The ports a suite hands its servers: never the same twice, and (where the kernel leaves room)
outside the range it draws outgoing connections' local ports from, so nothing else takes one
between the draw and the server's bind."""

from __future__ import annotations

from pathlib import Path

from dripiq_devtools.servers import free_port


def test_a_process_never_hands_out_a_port_twice():
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)


def test_ports_are_drawn_below_the_kernels_ephemeral_range():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    if low > 21000:
        assert all(port < low for port in ports)
    assert all(0 < port < 65536 for port in ports)
