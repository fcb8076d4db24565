"""The SMTP listener over a real socket, with a real spool and no delivery: what it keeps.

The conformance suite checks the wire; these check what only the reference can show: the
spool entry (DSN parameters for the DSN generator, the null sender), the idle timer on the
injected clock, the error limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pytest

from reference.clock import ManualClock
from reference.credentials import StaticAuthenticator
from reference.mail.envelope import DsnRequest, RecipientDsn
from reference.policy import CONTINUE, Check, CheckResult, Policy, Transaction
from reference.smtp.server import Listener
from reference.spool import Spool

if TYPE_CHECKING:
    from conftest import SmtpEnv, StartSmtp


@pytest.fixture
async def env(smtp_listener: StartSmtp) -> SmtpEnv:
    return await smtp_listener("mx")


async def test_dsn_parameters_are_kept_for_the_dsn(env: SmtpEnv) -> None:
    c = await env.connect()
    assert (await c.cmd("MAIL FROM:<s@client.test> RET=HDRS ENVID=QQ+2B1")).startswith("250")
    line = "RCPT TO:<a@example.test> NOTIFY=success,failure ORCPT=rfc822;a+2Bx@example.test"
    assert (await c.cmd(line)).startswith("250")
    assert (await c.cmd("RCPT TO:<b@example.test>")).startswith("250")
    assert (await c.cmd("DATA")).startswith("354")
    assert (await c.cmd("Subject: dsn\r\n\r\nbody\r\n.")).startswith("250 2.0.0 Ok: queued")
    (entry,) = env.spool.entries()
    assert entry.dsn.ret == "HDRS"
    assert entry.dsn.envid == "QQ+2B1"  # as sent: xtext, as Original-Envelope-Id carries it
    # ORCPT decoded once, at RCPT: the DSN writes the address, not its xtext.
    assert entry.dsn.recipients == {
        "a@example.test": RecipientDsn("SUCCESS,FAILURE", ("rfc822", "a+x@example.test"))
    }
    assert entry.body == "7BIT"


async def test_null_sender_is_spooled_empty(env: SmtpEnv) -> None:
    c = await env.connect()
    await c.cmd("MAIL FROM:<>")
    await c.cmd("RCPT TO:<a@example.test>")
    await c.cmd("DATA")
    await c.cmd("Subject: bounce\r\n\r\nx\r\n.")
    (entry,) = env.spool.entries()
    assert entry.sender == ""
    assert entry.dsn == DsnRequest()


async def test_bdat_message_is_spooled_verbatim(env: SmtpEnv) -> None:
    c = await env.connect()
    await c.cmd("MAIL FROM:<s@client.test>")
    await c.cmd("RCPT TO:<a@example.test>")
    msg = b"Subject: chunks\r\n\r\n..two dots\r\n.\r\nend\r\n"
    await c.send(b"BDAT 10\r\n" + msg[:10])
    assert (await c.reply()).startswith("250 2.0.0 10 octets received")
    await c.send(f"BDAT {len(msg) - 10} LAST\r\n".encode() + msg[10:])
    assert (await c.reply()).startswith("250 2.0.0 Ok: queued")
    (entry,) = env.spool.entries()
    assert env.spool.read_message(entry.qid).endswith(msg)
    assert (await c.cmd("DATA")).startswith("503")  # the transaction is over


async def test_bare_newline_is_refused_and_nothing_spooled(env: SmtpEnv) -> None:
    c = await env.connect()
    await c.cmd("MAIL FROM:<s@client.test>")
    await c.cmd("RCPT TO:<a@example.test>")
    await c.cmd("DATA")
    reply = await c.cmd("Subject: x\r\n\r\nsmuggle\n.\nMAIL FROM:<x@y>\r\n.")
    assert reply.startswith("550 5.5.2 ") and "bare" in reply
    assert (await c.cmd("NOOP")).startswith("250")
    assert env.spool.entries() == []
    assert (await c.cmd("NOOP\n")).startswith("500 5.5.2 Error: bare LF")


async def test_a_bare_newline_is_the_refusal_whatever_follows_it(env: SmtpEnv) -> None:
    """A bare LF early, then a line over 1000 octets: the reply names the bare LF (the
    smuggling attempt), as it does when the long line comes first."""
    c = await env.connect()
    for head, tail in (("a\nb\r\n", "x" * 1200 + "\r\n"), ("x" * 1200 + "\r\n", "a\nb\r\n")):
        await c.cmd("MAIL FROM:<s@client.test>")
        await c.cmd("RCPT TO:<a@example.test>")
        await c.cmd("DATA")
        reply = await c.cmd("Subject: x\r\n\r\n" + head + tail + ".")
        assert reply.startswith("550 5.5.2 ") and "bare" in reply
    assert (await c.cmd("NOOP")).startswith("250")
    assert env.spool.entries() == []


async def test_oversized_data_and_chunk(env: SmtpEnv) -> None:
    c = await env.connect()
    await c.cmd("MAIL FROM:<s@client.test>")
    await c.cmd("RCPT TO:<a@example.test>")
    await c.cmd("DATA")
    assert (await c.cmd("x" * 900 + "\r\n" + ("y" * 900 + "\r\n") * 12 + ".")).startswith("552")
    await c.cmd("MAIL FROM:<s@client.test>")
    await c.cmd("RCPT TO:<a@example.test>")
    await c.send(b"BDAT 10001 LAST\r\n" + b"z" * 10001)
    assert (await c.reply()).startswith("552 5.3.4")
    assert (await c.cmd("BDAT 1 LAST\r\nq")).startswith("503")
    assert env.spool.entries() == []


async def test_idle_timeout_runs_on_the_clock(env: SmtpEnv) -> None:
    c = await env.connect()
    env.clock.advance(299)
    assert (await c.cmd("NOOP")).startswith("250")
    env.clock.advance(299)  # 299 s since the NOOP: still in time
    await asyncio.sleep(0.05)
    assert (await c.cmd("NOOP")).startswith("250")
    env.clock.advance(301)
    assert (await c.reply()).startswith("421 4.4.2 mx.example.test Error: timeout exceeded")
    assert await c.closed()


async def test_too_many_errors_close_the_session(env: SmtpEnv) -> None:
    c = await env.connect()
    for _ in range(19):
        assert (await c.cmd("QZVT")).startswith("500 5.5.2")
    assert (await c.cmd("QZVT")).startswith("500 5.5.2")
    assert (await c.reply()).startswith("421 4.7.0")
    assert await c.closed()


async def test_postmaster_without_domain_is_canonical(tmp_path: Path) -> None:
    from reference.directory import Directory
    from reference.policy import LocalRecipients

    d = Directory(tmp_path / "dir.sqlite3")
    try:
        d.add_domain("other.test")
        d.add_domain("example.test")
        policy = Policy([LocalRecipients(d, hostname="mx.example.test")])
        assert policy.canonical_recipient("Postmaster") == "postmaster@example.test"
        assert policy.canonical_recipient("someone") == "someone"
        assert Policy([LocalRecipients(d)]).canonical_recipient("POSTMASTER") == (
            "postmaster@example.test"
        )
    finally:
        d.close()


class _SeePeer(Check):
    def __init__(self) -> None:
        self.peers: list[str] = []

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        self.peers.append(tx.peer)
        return CONTINUE


async def test_proxy_line_names_the_client(smtp_listener: StartSmtp) -> None:
    # listen.mx_proxy_from: a trusted network may open with a PROXY v1 line (a load
    # balancer, or the conformance suite speaking for a client address).
    seen = _SeePeer()
    for networks, expected, reply in (
        (["127.0.0.0/8"], "192.0.2.7", None),
        (["192.0.2.0/24"], "127.0.0.1", "500"),  # not trusted: an unknown command
    ):
        env = await smtp_listener("mx", policy=Policy([seen]), proxy_from=networks)
        c = await env.open()
        await c.send(f"PROXY TCP4 192.0.2.7 127.0.0.1 40000 {env.port}\r\n".encode())
        assert (await c.reply()).startswith("220 ")
        if reply:
            assert (await c.reply()).startswith(reply)
        await c.cmd("EHLO client.example.test")
        await c.cmd("MAIL FROM:<>")
        assert (await c.cmd("RCPT TO:<a@example.test>")).startswith("250")
        assert seen.peers[-1] == expected
        c.writer.close()


class _LosesCancellation(Check):
    """A RCPT check that swallows its session's cancellation and carries on, as a library
    does on Python 3.11 when a cancel lands as its ``asyncio.wait_for`` completes (CPython
    gh-86296; redis-py writes every command that way, dnspython reads every answer so)."""

    def __init__(self) -> None:
        self.waiting = threading.Event()

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        self.waiting.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return CONTINUE


def _reply(f: BinaryIO) -> bytes:
    while (line := f.readline())[3:4] == b"-":
        pass
    return line


def test_a_client_that_hangs_up_ends_its_session_even_if_the_cancel_is_lost(
    tmp_path: Path,
) -> None:
    # aiosmtpd ends a session whose client hung up by cancelling it. When that cancel was
    # lost, the session read the end of the stream again and again without ever yielding:
    # the node's event loop froze (no other client served, SIGTERM never handled). The
    # listener runs in a thread of its own, so that a frozen loop fails this test.
    check = _LosesCancellation()
    loop = asyncio.new_event_loop()
    listener = Listener(
        "mx",
        hostname="mx.example.test",
        policy=Policy([check]),
        spool=Spool(tmp_path / "spool", ManualClock()),
        clock=ManualClock(),
        auth=StaticAuthenticator({}),
        tls_context=None,
        max_message_size=10_000,
        max_recipients=100,
        timeout=300,
    )
    server = loop.run_until_complete(listener.start("127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            f = s.makefile("rb")
            assert _reply(f).startswith(b"220 ")
            for line in (b"EHLO client.example.test", b"MAIL FROM:<s@client.test>"):
                s.sendall(line + b"\r\n")
                assert _reply(f).startswith(b"250")
            s.sendall(b"RCPT TO:<a@example.test>\r\n")
            assert check.waiting.wait(5)
            f.close()
        # Hung up (every reply read, so a FIN, not a reset) while the check waits.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert s.makefile("rb").readline().startswith(b"220 ")  # the loop still serves
        deadline = time.monotonic() + 5
        while listener.sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not listener.sessions
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    if not thread.is_alive():
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
