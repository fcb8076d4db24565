"""The IMAP server over real sockets: imapclient for the happy path, a raw client for the rest."""

from __future__ import annotations

import asyncio
import base64
import functools
import imaplib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from stream_servers import Env, make_certs, start_env, stream_servers

from reference.imap import ImapServer
from reference.mailbox import Quota

ALICE, PASSWORD = "alice@example.org", "correct horse"
MSG = b"From: bob@example.net\r\nSubject: Hello\r\n\r\nHi Alice.\r\n"
NO_QUOTA = Quota()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certs(tmp_path_factory.mktemp("tls"))


Start = Callable[..., Awaitable[Env]]


@pytest.fixture
async def start(tmp_path: Path, certs: tuple[Path, Path]) -> AsyncIterator[Start]:
    async with stream_servers() as serve:
        start = functools.partial(
            start_env, serve, tmp_path, certs, ImapServer, "imap.example.org", {ALICE: PASSWORD}
        )
        yield start
        for raw in Raw.opened:
            raw.writer.close()
        Raw.opened.clear()


class Raw:
    """A line-oriented test client that shows exactly what the server sends."""

    opened: ClassVar[list[Raw]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        Raw.opened.append(self)

    @classmethod
    async def connect(cls, env: Env) -> Raw:
        raw = cls(*await asyncio.open_connection("127.0.0.1", env.port))
        assert (await raw.line()).startswith(b"* OK ")
        return raw

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 5)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, text: bytes, tag: bytes = b"t") -> list[bytes]:
        """Send ``tag text``; every line up to and including the tagged reply."""
        await self.send(tag + b" " + text + b"\r\n")
        return await self.until(tag)

    async def until(self, tag: bytes) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            line = await self.line()
            assert line, f"connection closed after {lines}"
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    async def starttls(self, env: Env) -> None:
        assert (await self.command(b"STARTTLS", b"s"))[-1].startswith(b"s OK")
        await self.writer.start_tls(env.client_context(), server_hostname="localhost")

    async def login(self, env: Env) -> None:
        await self.starttls(env)
        assert (await self.command(b'LOGIN alice@example.org "correct horse"'))[-1].startswith(
            b"t OK"
        )

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""


def run(fn: Callable[[], Any]) -> Awaitable[Any]:
    return asyncio.to_thread(fn)


# -- imapclient ------------------------------------------------------------------------------


async def test_imapclient_starttls_login_select_search_fetch(start: Start) -> None:
    env = await start()
    env.store.deliver(ALICE, MSG)
    env.store.deliver(ALICE, MSG.replace(b"Hello", b"Again"), flags=["\\Flagged"])

    def session() -> None:
        client = IMAPClient("127.0.0.1", port=env.port, ssl=False, timeout=5)
        assert b"LOGINDISABLED" in client.capabilities()
        client.starttls(env.client_context())
        client.login(ALICE, PASSWORD)
        assert b"AUTH=PLAIN" not in client.capabilities()  # nothing to offer once logged in
        folders = {name: flags for flags, _, name in client.list_folders()}
        assert set(folders) == {"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"}
        assert b"\\Sent" in folders["Sent"]
        selected = client.select_folder("INBOX")
        assert selected[b"EXISTS"] == 2 and selected[b"UIDNEXT"] == 3
        assert client.search() == [1, 2]
        peeked = client.fetch([1], [b"BODY.PEEK[HEADER]", b"FLAGS", b"RFC822.SIZE"])
        assert peeked[1][b"BODY[HEADER]"] == MSG.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        assert peeked[1][b"FLAGS"] == () and peeked[1][b"RFC822.SIZE"] == len(MSG)
        fetched = client.fetch([1, 2], [b"RFC822"])
        assert fetched[1][b"RFC822"] == MSG
        assert fetched[1][b"FLAGS"] == (b"\\Seen",)  # the implicit \Seen is reported
        assert client.fetch([2], [b"BODY[]", b"FLAGS"])[2][b"FLAGS"] == (b"\\Flagged", b"\\Seen")
        assert client.search(["UNSEEN"]) == []
        client.logout()

    await run(session)
    with env.store.open(ALICE) as mailbox:
        assert all("\\Seen" in m.flags for m in mailbox.messages())


async def test_imaplib_starttls(start: Start) -> None:
    env = await start()
    env.store.deliver(ALICE, MSG)

    def session() -> None:
        client = imaplib.IMAP4("127.0.0.1", env.port, timeout=5)
        assert "LOGINDISABLED" in client.capabilities
        client.starttls(env.client_context())
        assert "AUTH=PLAIN" in client.capabilities
        assert client.login(ALICE, PASSWORD)[0] == "OK"
        assert client.select("INBOX") == ("OK", [b"1"])
        typ, data = client.fetch("1", "(BODY[])")
        assert typ == "OK" and data[0] == (b"1 (BODY[] {%d}" % len(MSG), MSG)
        client.logout()

    await run(session)


async def test_imapclient_over_implicit_tls(start: Start) -> None:
    env = await start(implicit_tls=True)
    env.store.deliver(ALICE, MSG)

    def session() -> None:
        client = IMAPClient("127.0.0.1", port=env.port, ssl_context=env.client_context())
        assert b"AUTH=PLAIN" in client.capabilities()
        assert b"STARTTLS" not in client.capabilities()
        client.login(ALICE, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        assert client.fetch([1], [b"BODY[]"])[1][b"BODY[]"] == MSG
        client.logout()

    await run(session)
    with env.store.open(ALICE) as mailbox:
        assert mailbox.messages()[0].flags == frozenset()  # EXAMINE never sets \Seen


async def test_imapclient_login_before_starttls_is_refused(start: Start) -> None:
    env = await start()

    def session() -> str:
        client = IMAPClient("127.0.0.1", port=env.port, ssl=False, timeout=5)
        with pytest.raises(IMAPClientError) as refused:
            client.login(ALICE, PASSWORD)
        client.logout()
        return str(refused.value)

    assert "PRIVACYREQUIRED" in await run(session)


# -- TLS and authentication ------------------------------------------------------------------


async def test_greeting_advertises_starttls_and_logindisabled(start: Start) -> None:
    env = await start()
    raw = Raw(*await asyncio.open_connection("127.0.0.1", env.port))
    assert await raw.line() == (
        b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS"
        b" LOGINDISABLED] imap.example.org IMAP4rev2 ready\r\n"
    )


async def test_plaintext_login_and_authenticate_refused_before_tls(start: Start) -> None:
    raw = await Raw.connect(await start())
    assert (await raw.command(b"LOGIN alice@example.org x"))[-1].startswith(
        b"t NO [PRIVACYREQUIRED]"
    )
    plain = base64.b64encode(b"\0alice@example.org\0correct horse")
    assert (await raw.command(b"AUTHENTICATE PLAIN " + plain))[-1].startswith(
        b"t NO [PRIVACYREQUIRED]"
    )
    assert (await raw.command(b"SELECT INBOX"))[-1].startswith(b"t BAD")


async def test_starttls_discards_pipelined_commands(start: Start) -> None:
    """RFC 3501 6.2.1: commands injected behind STARTTLS must not run after the handshake."""
    env = await start()
    raw = await Raw.connect(env)
    await raw.send(b's STARTTLS\r\ni1 LOGIN alice@example.org "correct horse"\r\ni2 CAPABILITY\r\n')
    assert (await raw.line()).startswith(b"s OK")
    await raw.writer.start_tls(env.client_context(), server_hostname="localhost")
    lines = await raw.command(b"NOOP", b"n")
    assert lines == [b"n OK NOOP completed\r\n"]  # nothing for i1 or i2
    assert (await raw.command(b"SELECT INBOX"))[-1].startswith(b"t BAD")  # not logged in


async def test_starttls_twice_is_refused(start: Start) -> None:
    env = await start()
    raw = await Raw.connect(env)
    await raw.starttls(env)
    caps = await raw.command(b"CAPABILITY")
    assert caps[0] == (
        b"* CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE AUTH=PLAIN"
        b" AUTH=LOGIN\r\n"
    )
    assert (await raw.command(b"STARTTLS"))[-1].startswith(b"t BAD")


async def test_authenticate_plain_initial_response_and_continuation(start: Start) -> None:
    env = await start()
    raw = await Raw.connect(env)
    await raw.starttls(env)
    wrong = base64.b64encode(b"\0alice@example.org\0nope")
    assert (await raw.command(b"AUTHENTICATE PLAIN " + wrong))[-1].startswith(
        b"t NO [AUTHENTICATIONFAILED]"
    )
    await raw.send(b"c AUTHENTICATE PLAIN\r\n")
    assert await raw.line() == b"+ \r\n"
    await raw.send(b"*\r\n")
    assert (await raw.line()).startswith(b"c BAD")
    await raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert await raw.line() == b"+ \r\n"
    await raw.send(base64.b64encode(b"alice@example.org\0Alice@Example.org\0correct horse"))
    await raw.send(b"\r\n")
    assert (await raw.line()).startswith(b"a OK [CAPABILITY IMAP4rev1")


async def test_authenticate_refuses_another_authorization_identity(start: Start) -> None:
    env = await start()
    raw = await Raw.connect(env)
    await raw.starttls(env)
    other = base64.b64encode(b"bob@example.org\0alice@example.org\0correct horse")
    assert (await raw.command(b"AUTHENTICATE PLAIN " + other))[-1].startswith(
        b"t NO [AUTHORIZATIONFAILED]"
    )


async def test_three_failed_logins_end_the_session(start: Start) -> None:
    raw = await Raw.connect(await start(allow_plaintext=True))
    for _ in range(2):
        assert (await raw.command(b"LOGIN alice@example.org x"))[-1].startswith(b"t NO")
    lines = [(await raw.command(b"LOGIN alice@example.org x"))[-1], await raw.line()]
    assert lines[0].startswith(b"t NO [AUTHENTICATIONFAILED]") and lines[1].startswith(b"* BYE")
    assert await raw.closed()


# -- framing and bounds ----------------------------------------------------------------------


async def test_synchronizing_and_non_synchronizing_literals(start: Start) -> None:
    raw = await Raw.connect(await start(allow_plaintext=True))
    await raw.send(b"a LOGIN {17}\r\n")
    assert await raw.line() == b"+ Ready for literal data\r\n"
    await raw.send(b"alice@example.org {13+}\r\ncorrect horse\r\n")
    assert (await raw.line()).startswith(b"a OK")


async def test_oversized_literal_before_login_is_refused(start: Start) -> None:
    raw = await Raw.connect(await start(allow_plaintext=True))
    await raw.send(b"a LOGIN {100000}\r\n")
    assert (await raw.line()).startswith(b"a BAD [TOOBIG]")
    assert (await raw.command(b"NOOP"))[-1] == b"t OK NOOP completed\r\n"  # still in step
    await raw.send(b"b LOGIN {100000+}\r\n")
    assert (await raw.line()).startswith(b"b BAD [TOOBIG]")
    assert (await raw.line()).startswith(b"* BYE")
    assert await raw.closed()


async def test_line_too_long_ends_the_session(start: Start) -> None:
    raw = await Raw.connect(await start(max_line=100))
    await raw.send(b"a NOOP " + b"x" * 200 + b"\r\n")
    assert (await raw.line()).startswith(b"* BAD [TOOBIG]")
    assert (await raw.line()).startswith(b"* BYE")


async def test_bad_commands(start: Start) -> None:
    raw = await Raw.connect(await start())
    assert (await raw.command(b"FROBNICATE"))[-1] == b"t BAD Unknown command\r\n"
    await raw.send(b"\r\n")
    assert (await raw.line()).startswith(b"* BAD")
    assert (await raw.command(b"FETCH 1 FLAGS"))[-1].startswith(b"t BAD")


async def test_too_many_bad_commands_end_the_session(start: Start) -> None:
    raw = await Raw.connect(await start())
    await raw.send(b"x\r\n" * 10)
    lines = [await raw.line() for _ in range(11)]
    assert all(line.startswith(b"* BAD") for line in lines[:10]) and lines[10].startswith(b"* BYE")


async def test_idle_timeout_is_measured_on_the_clock(start: Start) -> None:
    env = await start(allow_plaintext=True)
    raw = await Raw.connect(env)
    await raw.command(b'LOGIN alice@example.org "correct horse"')
    env.clock.advance(29 * 60)  # RFC 3501 5.4: at least 30 minutes once logged in
    assert (await raw.command(b"NOOP"))[-1].startswith(b"t OK")
    for _ in range(100):
        env.clock.advance(31 * 60)
        try:
            line = await asyncio.wait_for(raw.reader.readline(), 0.05)
            break
        except TimeoutError:
            continue
    assert line.startswith(b"* BYE Autologout")
    assert await raw.closed()


# -- mailbox commands ------------------------------------------------------------------------


async def logged_in(start: Start, **options: Any) -> tuple[Env, Raw]:
    env = await start(allow_plaintext=True, **options)
    raw = await Raw.connect(env)
    assert (await raw.command(b'LOGIN alice@example.org "correct horse"'))[-1].startswith(b"t OK")
    return env, raw


async def test_select_reports_mailbox_state(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, MSG, flags=["\\Seen"])
    env.store.deliver(ALICE, MSG)
    with env.store.open(ALICE) as mailbox:
        validity = mailbox.uidvalidity
    lines = await raw.command(b"SELECT inbox")
    assert lines == [
        b"* FLAGS (\\Answered \\Deleted \\Draft \\Flagged \\Seen)\r\n",
        b"* OK [PERMANENTFLAGS (\\* \\Answered \\Deleted \\Draft \\Flagged \\Seen)] Flags"
        b" permitted\r\n",
        b"* 2 EXISTS\r\n",
        b"* 0 RECENT\r\n",
        b"* OK [UNSEEN 2] First unseen\r\n",
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % validity,
        b"* OK [UIDNEXT 3] Predicted next UID\r\n",
        b"* OK [HIGHESTMODSEQ 3] Highest\r\n",
        b"t OK [READ-WRITE] SELECT completed\r\n",
    ]
    assert (await raw.command(b"EXAMINE Junk"))[-1] == b"t OK [READ-ONLY] EXAMINE completed\r\n"
    assert (await raw.command(b"SELECT Nope"))[-1].startswith(b"t NO [NONEXISTENT]")
    assert (await raw.command(b"FETCH 1 FLAGS"))[-1].startswith(b"t BAD")  # nothing selected


async def test_fetch_data_items(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, MSG, when=1_767_225_600.0)
    await raw.command(b"SELECT INBOX")
    lines = await raw.command(b"FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE)")
    assert lines[0] == (
        b'* 1 FETCH (UID 1 FLAGS () INTERNALDATE "01-Jan-2026 00:00:00 +0000" RFC822.SIZE %d)\r\n'
        % len(MSG)
    )
    lines = await raw.command(b"UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY[TEXT]<3.5>)")
    assert lines[0] == b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {18}\r\n"
    assert lines[1] == b"Subject: Hello\r\n"
    assert lines[2] == b"\r\n"
    assert lines[3] == b" BODY[TEXT]<3> {5}\r\n"
    assert lines[4] == b"Alice FLAGS (\\Seen))\r\n"
    assert (await raw.command(b"FETCH 2 FLAGS"))[-1].startswith(b"t BAD")  # past the end
    assert (await raw.command(b"UID FETCH 7 FLAGS")) == [b"t OK FETCH completed\r\n"]


async def test_search(start: Start) -> None:
    env, raw = await logged_in(start)
    for flags in ([], ["\\Seen"], ["\\Seen", "\\Flagged"]):
        env.store.deliver(ALICE, MSG, flags=flags)
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"SEARCH ALL"))[0] == b"* SEARCH 1 2 3\r\n"
    assert (await raw.command(b"SEARCH SEEN NOT FLAGGED"))[0] == b"* SEARCH 2\r\n"
    assert (await raw.command(b"UID SEARCH OR 1 3"))[0] == b"* SEARCH 1 3\r\n"
    assert (await raw.command(b"SEARCH CHARSET KOI8-R ALL"))[-1].startswith(b"t NO [BADCHARSET")
    assert (await raw.command(b"SEARCH DELETED"))[0] == b"* SEARCH\r\n"


async def test_list_patterns(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.create_folder(ALICE, "Lists/python")
    assert (await raw.command(b'LIST "" ""'))[0] == b'* LIST (\\Noselect) "/" ""\r\n'
    top = await raw.command(b'LIST "" %')
    assert b'* LIST (\\Noselect \\HasChildren) "/" Lists\r\n' in top  # only a parent level
    assert b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\n' in top
    assert all(b"python" not in line for line in top)
    assert (await raw.command(b'LIST "" inbox'))[0] == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    nested = await raw.command(b'LIST Lists "/*"')
    assert nested[0] == b'* LIST (\\HasNoChildren) "/" Lists/python\r\n'


async def test_noop_reports_expunges_flag_changes_and_arrivals(start: Start) -> None:
    env, raw = await logged_in(start)
    for _ in range(3):
        env.store.deliver(ALICE, MSG)
    await raw.command(b"SELECT INBOX")
    with env.store.open(ALICE) as mailbox:
        mailbox.change_flags([1, 3], add=["\\Deleted"])
        mailbox.expunge([1])
    env.store.deliver(ALICE, MSG)
    assert await raw.command(b"NOOP") == [
        b"* 1 EXPUNGE\r\n",
        b"* 2 FETCH (UID 3 FLAGS (\\Deleted))\r\n",
        b"* 3 EXISTS\r\n",
        b"t OK NOOP completed\r\n",
    ]
    assert (await raw.command(b"UID SEARCH ALL"))[0] == b"* SEARCH 2 3 4\r\n"


async def test_close_expunges_deleted_and_unselects(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, MSG, flags=["\\Deleted"])
    env.store.deliver(ALICE, MSG)
    await raw.command(b"EXAMINE INBOX")
    assert (await raw.command(b"CLOSE"))[-1] == b"t OK CLOSE completed\r\n"
    with env.store.open(ALICE) as mailbox:
        assert len(mailbox.messages()) == 2  # read-only CLOSE expunges nothing
    await raw.command(b"SELECT INBOX")
    assert await raw.command(b"CLOSE") == [b"t OK CLOSE completed\r\n"]  # RFC 3501: silently
    with env.store.open(ALICE) as mailbox:
        assert [m.uid for m in mailbox.messages()] == [2]
    assert (await raw.command(b"FETCH 1 FLAGS"))[-1].startswith(b"t BAD")


async def test_fetch_of_message_expunged_elsewhere(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, MSG)
    await raw.command(b"SELECT INBOX")
    with env.store.open(ALICE) as mailbox:
        mailbox.set_flags(1, ["\\Deleted"])
        mailbox.expunge()
    assert (await raw.command(b"FETCH 1 BODY[]"))[-1].startswith(b"t NO [EXPUNGEISSUED]")


async def test_logout(start: Start) -> None:
    raw = await Raw.connect(await start())
    assert await raw.command(b"LOGOUT") == [b"* BYE Logging out\r\n", b"t OK LOGOUT completed\r\n"]
    assert await raw.closed()
