"""The POP3 server over real sockets: poplib for the happy path, a raw client for the rest."""

from __future__ import annotations

import asyncio
import base64
import poplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stream_servers import Env, LineClient, Start, line_servers

from reference.pop3 import Pop3Server

ALICE, PASSWORD = "alice@example.org", "correct horse"
MSG = b"From: bob@example.net\r\nSubject: Dots\r\n\r\n.leading dot\r\n..two\r\nend\r\n"


@pytest.fixture
async def start(tmp_path: Path, certs: tuple[Path, Path]) -> AsyncIterator[Start]:
    users = {ALICE: PASSWORD}
    async with line_servers(tmp_path, certs, Pop3Server, "pop.example.org", users) as start:
        yield start


class Raw(LineClient):
    @classmethod
    async def connect(cls, env: Env) -> Raw:
        raw = cls(*await asyncio.open_connection("127.0.0.1", env.port))
        assert await raw.line() == b"+OK pop.example.org POP3 ready\r\n"
        return raw

    async def command(self, text: bytes) -> bytes:
        await self.send(text + b"\r\n")
        return await self.line()

    async def multiline(self, text: bytes) -> list[bytes]:
        first = await self.command(text)
        assert first.startswith(b"+OK"), first
        lines = []
        while (line := await self.line()) != b".\r\n":
            lines.append(line)
        return lines

    async def stls(self, env: Env) -> None:
        assert (await self.command(b"STLS")).startswith(b"+OK")
        await self.writer.start_tls(env.client_context(), server_hostname="localhost")


async def test_poplib_stls_login_stat_list_retr_dele_quit(start: Start) -> None:
    env = await start()
    env.store.deliver(ALICE, MSG)
    env.store.deliver(ALICE, b"Subject: second\r\n\r\nbody\r\n")

    def session() -> None:
        pop = poplib.POP3("127.0.0.1", env.port, timeout=5)
        assert pop.getwelcome() == b"+OK pop.example.org POP3 ready"
        assert "USER" not in pop.capa() and "STLS" in pop.capa()
        pop.stls(env.client_context())
        assert "USER" in pop.capa() and "STLS" not in pop.capa()
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        assert pop.stat() == (2, len(MSG) + 25)
        assert pop.list()[1] == [b"1 %d" % len(MSG), b"2 25"]
        with env.store.open(ALICE) as mailbox:
            validity = mailbox.uidvalidity
        assert pop.uidl()[1] == [b"1 %d.1" % validity, b"2 %d.2" % validity]
        lines = pop.retr(1)[1]
        assert lines == MSG.rstrip(b"\r\n").split(b"\r\n")  # poplib removes the stuffing
        assert pop.top(2, 0)[1] == [b"Subject: second", b""]
        pop.dele(2)
        with pytest.raises(poplib.error_proto):
            pop.retr(2)
        assert pop.stat() == (1, len(MSG))
        pop.quit()

    await asyncio.to_thread(session)
    with env.store.open(ALICE) as mailbox:
        (left,) = mailbox.messages()
    assert left.uid == 1 and left.flags == {"\\Seen"}


async def test_poplib_over_implicit_tls(start: Start) -> None:
    env = await start(implicit_tls=True)

    def session() -> None:
        pop = poplib.POP3_SSL("127.0.0.1", env.port, context=env.client_context(), timeout=5)
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        assert pop.stat() == (0, 0)
        pop.quit()

    await asyncio.to_thread(session)


async def test_user_and_pass_refused_before_tls(start: Start) -> None:
    raw = await Raw.connect(await start())
    assert (await raw.command(b"USER alice@example.org")).startswith(b"-ERR [AUTH] ")
    assert (await raw.command(b"PASS x")).startswith(b"-ERR [AUTH] ")
    assert (await raw.command(b"STAT")).startswith(b"-ERR")


async def test_stls_discards_pipelined_commands(start: Start) -> None:
    """RFC 2595 4: commands injected behind STLS must not run after the handshake."""
    env = await start()
    raw = await Raw.connect(env)
    await raw.send(b"STLS\r\nUSER alice@example.org\r\nPASS correct horse\r\n")
    assert (await raw.line()).startswith(b"+OK")
    await raw.writer.start_tls(env.client_context(), server_hostname="localhost")
    assert await raw.command(b"NOOP") == b"+OK\r\n"  # no reply was queued for USER or PASS
    assert (await raw.command(b"STAT")).startswith(b"-ERR")  # not logged in


async def test_stls_forgets_user_and_is_refused_twice(start: Start) -> None:
    env = await start(allow_plaintext=True)
    raw = await Raw.connect(env)
    assert (await raw.command(b"USER alice@example.org")).startswith(b"+OK")
    await raw.stls(env)
    assert (await raw.command(b"PASS correct horse")) == b"-ERR USER first\r\n"
    assert (await raw.command(b"STLS")).startswith(b"-ERR")


async def test_wrong_password_and_too_many_failures(start: Start) -> None:
    env = await start()
    raw = await Raw.connect(env)
    await raw.stls(env)
    for _ in range(3):
        assert (await raw.command(b"USER alice@example.org")).startswith(b"+OK")
        assert await raw.command(b"PASS nope") == b"-ERR [AUTH] Authentication failed\r\n"
    assert await raw.closed()


async def logged_in(start: Start, messages: int) -> tuple[Env, Raw]:
    env = await start(allow_plaintext=True)
    for n in range(messages):
        env.store.deliver(ALICE, b"Subject: %d\r\n\r\nbody\r\n" % n)
    raw = await Raw.connect(env)
    await raw.command(b"USER alice@example.org")
    assert (await raw.command(b"PASS correct horse")).startswith(b"+OK Logged in")
    return env, raw


async def test_dele_rset_and_message_numbers(start: Start) -> None:
    _, raw = await logged_in(start, 3)
    assert await raw.command(b"DELE 2") == b"+OK Message 2 deleted\r\n"
    assert await raw.command(b"DELE 2") == b"-ERR No such message\r\n"
    assert await raw.command(b"LIST 2") == b"-ERR No such message\r\n"
    assert await raw.command(b"RETR 4") == b"-ERR No such message\r\n"
    assert await raw.multiline(b"LIST") == [b"1 20\r\n", b"3 20\r\n"]
    assert (await raw.command(b"RSET")).startswith(b"+OK")
    assert await raw.command(b"STAT") == b"+OK 3 60\r\n"
    assert await raw.command(b"USER x") == b"-ERR Command not valid in this state\r\n"


async def test_quit_updates_but_a_dropped_session_does_not(start: Start) -> None:
    """RFC 1939 6: only QUIT enters UPDATE; a broken or timed-out session deletes nothing."""
    env, raw = await logged_in(start, 2)
    await raw.command(b"DELE 1")
    raw.writer.close()
    await asyncio.sleep(0.05)
    with env.store.open(ALICE) as mailbox:
        assert len(mailbox.messages()) == 2
    raw = await Raw.connect(env)
    await raw.command(b"USER alice@example.org")
    await raw.command(b"PASS correct horse")
    await raw.command(b"DELE 1")
    assert await raw.command(b"QUIT") == b"+OK pop.example.org POP3 bye (1 messages deleted)\r\n"
    assert await raw.closed()
    with env.store.open(ALICE) as mailbox:
        assert [m.uid for m in mailbox.messages()] == [2]


async def test_idle_timeout_is_measured_on_the_clock(start: Start) -> None:
    env, raw = await logged_in(start, 1)
    await raw.command(b"DELE 1")
    env.clock.advance(9 * 60)  # RFC 1939 3: at least 10 minutes
    assert await raw.command(b"NOOP") == b"+OK\r\n"
    line = b""
    for _ in range(100):
        env.clock.advance(11 * 60)
        try:
            line = await asyncio.wait_for(raw.reader.readline(), 0.05)
            break
        except TimeoutError:
            continue
    assert line.startswith(b"-ERR Autologout")
    assert await raw.closed()
    with env.store.open(ALICE) as mailbox:
        assert len(mailbox.messages()) == 1


async def test_errors_and_long_lines(start: Start) -> None:
    raw = await Raw.connect(await start())
    assert await raw.command(b"XYZZY") == b"-ERR Unknown command\r\n"
    assert await raw.command(b"NOOP " + b"x" * 300) == b"-ERR Line too long\r\n"
    await raw.send(b"A" * 5000 + b"\r\n")
    assert (await raw.line()).startswith(b"-ERR Line too long")
    assert await raw.closed()


async def test_quit_before_login(start: Start) -> None:
    raw = await Raw.connect(await start())
    assert await raw.command(b"QUIT") == b"+OK pop.example.org POP3 bye\r\n"
    assert await raw.closed()


async def test_auth_plain_after_tls_only(start: Start) -> None:
    env = await start()
    raw = await Raw.connect(env)
    plain = base64.b64encode(b"\0alice@example.org\0correct horse")
    assert (await raw.command(b"AUTH PLAIN " + plain)).startswith(b"-ERR [AUTH] ")
    await raw.stls(env)
    assert b"SASL PLAIN\r\n" in await raw.multiline(b"CAPA")
    assert await raw.multiline(b"AUTH") == [b"PLAIN\r\n"]
    assert (await raw.command(b"AUTH CRAM-MD5")).startswith(b"-ERR")
    assert await raw.command(b"AUTH PLAIN") == b"+ \r\n"
    assert (await raw.command(b"*")).startswith(b"-ERR Authentication cancelled")
    wrong = base64.b64encode(b"bob\0alice@example.org\0correct horse")
    assert (await raw.command(b"AUTH PLAIN " + wrong)).startswith(b"-ERR [AUTH]")
    assert await raw.command(b"AUTH PLAIN") == b"+ \r\n"
    assert (await raw.command(plain)).startswith(b"+OK Logged in")


async def test_second_session_gets_in_use_until_the_first_quits(start: Start) -> None:
    env, first = await logged_in(start, 1)
    second = await Raw.connect(env)
    await second.command(b"USER alice@example.org")
    assert (await second.command(b"PASS correct horse")).startswith(b"-ERR [IN-USE]")
    assert (await second.command(b"STAT")).startswith(b"-ERR")  # still AUTHORIZATION
    assert (await first.command(b"QUIT")).startswith(b"+OK")
    await second.command(b"USER alice@example.org")
    assert (await second.command(b"PASS correct horse")).startswith(b"+OK Logged in")
