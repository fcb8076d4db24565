"""The SMTP fence never pipelines behind a command that must end a group (RFC 2920 3.1).

``fenced`` sends a line and a fence (RSET, then a RCPT that gets 503) to count the line's
replies. A server that enforces RFC 2920, as Postfix does, hangs up on commands pipelined
behind NOOP ("554 5.5.0 Error: SMTP protocol synchronization"); the fence used to go out in
the same write, so such a server failed tests that had nothing to do with pipelining.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from conformance.smtp_client import SMTPClient
from conformance.target import Target
from conformance.tests.support import fenced


def _strict(conn: socket.socket) -> None:
    # One reply per line; anything that arrived together with a NOOP is a sync error.
    with conn:
        conn.sendall(b"220 strict.example.test ESMTP\r\n")
        buffer = b""
        while chunk := conn.recv(65536):
            buffer += chunk
            while b"\r\n" in buffer:
                line, _, buffer = buffer.partition(b"\r\n")
                verb = line.split(b" ", 1)[0].upper()
                if verb == b"NOOP" and buffer:
                    conn.sendall(b"554 5.5.0 Error: SMTP protocol synchronization\r\n")
                    return
                reply = {b"NOOP": b"250 2.0.0 Ok", b"RSET": b"250 2.0.0 Ok"}.get(verb)
                conn.sendall((reply or b"503 5.5.1 Error: need MAIL command") + b"\r\n")


@pytest.fixture
def strict_server() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            _strict(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    thread.join(5)


def test_the_fence_waits_for_the_reply_to_noop(strict_server: int) -> None:
    target = Target(name="strict", kind="external", domain="example.test", endpoints={})
    client = SMTPClient.connect("127.0.0.1", strict_server, timeout=5, name="smtp")
    try:
        replies = fenced(client, target, b"NOOP\r\n")
    finally:
        client.close()
    # Before: [554 5.5.0 Error: SMTP protocol synchronization], the fence sent with NOOP.
    assert [r.code for r in replies] == [250]
