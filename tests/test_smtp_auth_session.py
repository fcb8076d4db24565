"""SMTP AUTH against the real listener: the session keeps ``authenticated`` and ``auth_data``,
and nothing deprecated is touched (no warning logged or raised on any AUTH)."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reference import tls
from reference.clock import ManualClock
from reference.credentials import StaticAuthenticator
from reference.policy import Policy
from reference.smtp.server import Listener
from reference.spool import Spool

ALICE, PW = "alice@example.test", "pw"


class Env:
    def __init__(self, listener: Listener, port: int, ctx: ssl.SSLContext) -> None:
        self.listener, self.port, self.ctx = listener, port, ctx


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = ManualClock()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.self_signed("mx.example.test", cert, key)
    listener = Listener(
        "submission",
        hostname="mx.example.test",
        policy=Policy([]),
        spool=Spool(tmp_path / "spool", clock),
        clock=clock,
        auth=StaticAuthenticator({ALICE: PW}),
        tls_context=tls.server_context(cert, key),
        implicit_tls=True,
        max_message_size=10_000,
        max_recipients=100,
        timeout=300,
    )
    server = await listener.start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield Env(listener, port, ssl.create_default_context(cafile=cert))
    for session in list(listener.sessions):
        session.close()
    server.close()
    await server.wait_closed()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def dialogue(env: Env, lines: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", env.port, ssl=env.ctx, server_hostname="mx.example.test"
    )
    replies = [await asyncio.wait_for(reader.readline(), 5)]
    for line in lines:
        writer.write(line + b"\r\n")
        await writer.drain()
        while (reply := await asyncio.wait_for(reader.readline(), 5))[3:4] == b"-":
            pass
        replies.append(reply)
    writer.close()
    return replies


async def test_auth_sets_the_session_and_warns_of_nothing(env: Env) -> None:
    # aiosmtpd's own smtp_AUTH sets Session.login_data, whose setter logs "Session.login_data
    # is deprecated" at WARNING on every successful AUTH (a log record, not a Python warning:
    # pyproject's filterwarnings could not hide it, nor show it). Both kinds are watched.
    aiosmtpd_log = logging.getLogger("mail.log")
    seen = Records()
    aiosmtpd_log.addHandler(seen)
    level = aiosmtpd_log.level
    aiosmtpd_log.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as raised:
            warnings.simplefilter("always")
            plain = base64.b64encode(f"\0{ALICE}\0{PW}".encode())
            login = [base64.b64encode(ALICE.encode()), base64.b64encode(PW.encode())]
            first = await dialogue(env, [b"EHLO c.test", b"AUTH PLAIN " + plain, b"NOOP"])
            second = await dialogue(env, [b"EHLO c.test", b"AUTH LOGIN", *login, b"MAIL FROM:<>"])
    finally:
        aiosmtpd_log.removeHandler(seen)
        aiosmtpd_log.setLevel(level)
    assert first[2].startswith(b"235 2.7.0 ") and second[4].startswith(b"235 2.7.0 ")
    assert second[5].startswith(b"250 ")  # MAIL is allowed: the session is authenticated
    deprecated = [r.getMessage() for r in seen.records if "deprecat" in r.getMessage().lower()]
    assert deprecated == []
    assert [str(w.message) for w in raised] == []


async def test_the_session_holds_the_account(env: Env) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", env.port, ssl=env.ctx, server_hostname="mx.example.test"
    )
    await reader.readline()
    plain = base64.b64encode(f"\0ALICE@example.test\0{PW}".encode())
    writer.write(b"EHLO c.test\r\nAUTH PLAIN " + plain + b"\r\n")
    await writer.drain()
    while not (await asyncio.wait_for(reader.readline(), 5)).startswith(b"235 "):
        pass
    (server,) = env.listener.sessions
    assert server.user == ALICE  # the account's address, as the directory says
    writer.write(b"AUTH PLAIN " + plain + b"\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"503 ")
    writer.close()
