"""The shared fixtures work: a real pty pair carries bytes, a real broker accepts connections."""

import os
import socket

from tests.conftest import Broker, PtyPair


def test_pty_pair_carries_bytes(pty_pair: PtyPair) -> None:
    fa = os.open(pty_pair.a, os.O_RDWR | os.O_NOCTTY)
    fb = os.open(pty_pair.b, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fa, b"\x01\x03\x00\x00")
        got = b""
        while len(got) < 4:
            got += os.read(fb, 16)
        assert got == b"\x01\x03\x00\x00"
    finally:
        os.close(fa)
        os.close(fb)


def test_broker_listens(broker: Broker) -> None:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=2) as s:
        assert s.getpeername()[1] == broker.port
