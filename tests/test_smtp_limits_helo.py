"""Connection limits (per client, in total, after PROXY) and HELO sanity at the MX."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.policy import Action, Session, transaction
from reference.policy.helo import HeloCheck
from reference.smtp.proxy import V2_SIGNATURE, ProxyError, parse_v2, render_v2
from reference.testing import ReferenceServer


@pytest.fixture
def ref(tmp_path: Path) -> Iterator[ReferenceServer]:
    overrides = {
        "smtp.max_connections_per_client": 3,
        "smtp.max_connections": 5,
        "listen.mx_proxy_from": ["127.0.0.2/32"],
        "greylist.enabled": False,
    }
    with ReferenceServer(tmp_path / "var", overrides=overrides) as server:
        yield server


def connect(port: int, source: str = "127.0.0.1", preamble: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    if preamble:
        s.sendall(preamble)
    return s


def greeting(s: socket.socket) -> bytes:
    return s.recv(512)


def test_per_client_and_total_limits(ref: ReferenceServer) -> None:
    port = ref.port("mx")
    held = [connect(port) for _ in range(3)]
    assert all(greeting(s).startswith(b"220 ") for s in held)
    refused = connect(port)
    assert greeting(refused).startswith(b"421 4.7.0 ")
    refused.close()
    # Another client address still gets in, up to the total.
    other = [connect(port, "127.0.0.3"), connect(port, "127.0.0.4")]
    assert all(greeting(s).startswith(b"220 ") for s in other)
    full = connect(port, "127.0.0.5")
    assert b"Too many connections" in greeting(full)
    for s in [*held, *other, full]:
        s.close()
    # Slots come back when connections close.
    again = connect(port)
    assert greeting(again).startswith(b"220 ")
    again.close()


def test_limit_applies_to_the_client_a_proxy_names(ref: ReferenceServer) -> None:
    port = ref.port("mx")
    line = b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n"
    conns = [connect(port, "127.0.0.2", line) for _ in range(4)]
    replies = [greeting(s) for s in conns]
    assert all(r.startswith(b"220 ") for r in replies[:3])
    fourth = replies[3] + conns[3].recv(512)  # its 421 follows the greeting
    assert b"421 4.7.0" in fourth and b"from your address" in fourth
    for s in conns:
        s.close()


@pytest.mark.parametrize(
    ("helo", "code"),
    [
        ("mta.remote.test", None),
        ("desktop-1", None),
        ("[203.0.113.5]", None),
        ("mail.example.test", 550),
        ("MAIL.EXAMPLE.TEST.", 550),
        ("bad name!", 501),
        ("[999.1.1.1]", 501),
        ("a..b", 501),
    ],
)
async def test_helo_sanity(helo: str, code: int | None) -> None:
    check = HeloCheck("mail.example.test")
    r = await check.mail(transaction(Session(role="mx", peer="203.0.113.5", helo=helo), "a@b.test"))
    if code is None:
        assert r.action is Action.CONTINUE
    else:
        assert r.reply is not None and r.reply.code == code
    sub = Session(role="submission", peer="127.0.0.1", helo=helo, user="a@example.test")
    assert (await check.mail(transaction(sub, "a@example.test"))).action is Action.CONTINUE


def test_proxy_v2_names_the_client(ref: ReferenceServer) -> None:
    ref.add_domain("example.test")
    ref.add_user("bob@example.test", "pw")
    s = connect(ref.port("mx"), "127.0.0.2", render_v2("203.0.113.9", 40000, "127.0.0.1", 25))
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    for cmd, code in (
        (b"EHLO mta.remote.test", b"250 "),
        (b"MAIL FROM:<a@remote.test>", b"250 "),
        (b"RCPT TO:<bob@example.test>", b"250 "),
        (b"DATA", b"354 "),
        (b"Subject: v2\r\n\r\nhello\r\n.", b"250 "),
    ):
        s.sendall(cmd + b"\r\n")
        line = f.readline()
        while line[3:4] == b"-":
            line = f.readline()
        assert line.startswith(code), (cmd, line)
    s.close()
    ref.wait_delivered()
    (msg,) = ref.mailbox_messages("bob@example.test")
    assert b"([203.0.113.9])" in msg


def test_proxy_v2_from_an_untrusted_peer_is_not_taken(ref: ReferenceServer) -> None:
    s = connect(ref.port("mx"), "127.0.0.1", render_v2("203.0.113.9", 1, "127.0.0.1", 25))
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    assert f.readline().startswith(b"500 ")  # an empty line is not a command
    s.close()


def test_proxy_v2_parser() -> None:
    header = render_v2("2001:db8::7", 4321, "::1", 25)
    assert header.startswith(V2_SIGNATURE)
    assert parse_v2(header[12:16], header[16:]) == ("2001:db8::7", 4321)
    local = bytes([0x20, 0x00, 0, 0])
    assert parse_v2(local, b"") is None
    with pytest.raises(ProxyError):
        parse_v2(bytes([0x11, 0x11, 0, 12]), b"\0" * 12)  # version 1
    with pytest.raises(ProxyError):
        parse_v2(bytes([0x21, 0x11, 0, 12]), b"\0" * 4)  # payload too short
