"""The command loop: greeting, capabilities, framing and bounds, bad commands, timeouts,
NOOP's change reports, ENABLE, COMPRESS, LOGOUT."""

from __future__ import annotations

import asyncio
import re
import zlib

from .support import ALICE, MSG, Raw, Start, logged_in


async def test_greeting_advertises_starttls_and_logindisabled(start: Start) -> None:
    env = await start()
    raw = Raw(*await asyncio.open_connection("127.0.0.1", env.port))
    assert await raw.line() == (
        b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS"
        b" LOGINDISABLED] imap.example.org IMAP4rev2 ready\r\n"
    )


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
        b"* 2 FETCH (UID 3 FLAGS (\\Deleted \\Recent))\r\n",
        b"* 3 EXISTS\r\n",
        b"* 3 RECENT\r\n",
        b"t OK NOOP completed\r\n",
    ]
    assert (await raw.command(b"UID SEARCH ALL"))[0] == b"* SEARCH 2 3 4\r\n"


async def test_enable_is_only_for_the_authenticated_state(start: Start) -> None:
    _, raw = await logged_in(start)
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"ENABLE CONDSTORE"))[-1].startswith(b"t BAD")


async def test_logout(start: Start) -> None:
    raw = await Raw.connect(await start())
    assert await raw.command(b"LOGOUT") == [b"* BYE Logging out\r\n", b"t OK LOGOUT completed\r\n"]
    assert await raw.closed()


async def test_compress_deflate(start: Start) -> None:
    """RFC 4978: after the plain OK both directions are raw deflate; literals cross too, and
    a second COMPRESS is NO [COMPRESSIONACTIVE]."""
    env, raw = await logged_in(start)
    assert await raw.command(b"COMPRESS DEFLATE") == [b"t OK DEFLATE active\r\n"]
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    inflate = zlib.decompressobj(-zlib.MAX_WBITS)

    async def command(text: bytes) -> bytes:
        await raw.send(deflate.compress(b"t " + text + b"\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
        got = b""
        while not re.search(rb"(^|\n)t (OK|NO|BAD)[^\n]*\n", got):
            got += inflate.decompress(await asyncio.wait_for(raw.reader.read(4096), 5))
        return got

    assert b"t OK" in await command(b"APPEND INBOX {15+}\r\nSubject: hi\r\n\r\n")
    got = await command(b"SELECT INBOX")
    assert b"* 1 EXISTS" in got
    assert b"t NO [COMPRESSIONACTIVE]" in await command(b"COMPRESS DEFLATE")
    assert env.store.open(ALICE, "INBOX").read(1) == b"Subject: hi\r\n\r\n"
