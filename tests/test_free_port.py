"""`free_port` (gateway/demo/exchange.py): a port chosen before it is bound must not be one the OS may hand to an
outgoing connection meanwhile (a test against the external PostgreSQL over TCP once lost its simulator's port so)."""

from __future__ import annotations

import socket

from gateway.demo.exchange import _ephemeral_range, free_port


def test_a_free_port_lies_outside_the_range_for_outgoing_connections_and_can_be_bound():
    low, high = _ephemeral_range()
    for _ in range(20):
        port = free_port()
        assert 1024 <= port < low or high < port <= 65535
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_not_offered():
    taken = []
    try:
        for _ in range(50):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", free_port()))
            listener.listen()
            taken.append(listener)
        ports = {listener.getsockname()[1] for listener in taken}
        assert len(ports) == 50 and all(free_port() not in ports for _ in range(200))
    finally:
        for listener in taken:
            listener.close()
