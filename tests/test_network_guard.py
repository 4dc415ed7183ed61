"""The test suite's network guard: outside connections are blocked and reported."""

import socket

import pytest
import pytest_socket


def test_outside_connect_blocked_and_recorded(network_attempts):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # pytest-socket raises before any packet leaves, so this address is never contacted.
        with pytest.raises(pytest_socket.SocketConnectBlockedError):
            sock.connect(("198.51.100.7", 9))
    finally:
        sock.close()
    assert network_attempts == ["connect ('198.51.100.7', 9)"]
    network_attempts.clear()


def test_loopback_connect_allowed(network_attempts):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.connect(server.getsockname())
    finally:
        client.close()
        server.close()
    assert network_attempts == []
