"""FETCH: data items, partial sections, expunged messages, BINARY of an unknown encoding."""

from __future__ import annotations

from .support import ALICE, MSG, Start, logged_in


async def test_fetch_data_items(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, MSG, when=1_767_225_600.0)
    await raw.command(b"SELECT INBOX")
    lines = await raw.command(b"FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE)")
    assert lines[0] == (
        b'* 1 FETCH (UID 1 FLAGS (\\Recent) INTERNALDATE "01-Jan-2026 00:00:00 +0000"'
        b" RFC822.SIZE %d)\r\n" % len(MSG)
    )
    lines = await raw.command(b"UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY[TEXT]<3.5>)")
    assert lines[0] == b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {18}\r\n"
    assert lines[1] == b"Subject: Hello\r\n"
    assert lines[2] == b"\r\n"
    assert lines[3] == b" BODY[TEXT]<3> {5}\r\n"
    assert lines[4] == b"Alice FLAGS (\\Recent \\Seen))\r\n"
    assert (await raw.command(b"FETCH 2 FLAGS"))[-1].startswith(b"t BAD")  # past the end
    assert (await raw.command(b"UID FETCH 7 FLAGS")) == [b"t OK FETCH completed\r\n"]


async def test_fetch_of_message_expunged_elsewhere(start: Start) -> None:
    # RFC 2180 4.1.3, RFC 5530 3: the messages that remain are answered, and OK with
    # EXPUNGEISSUED (not NO: imaptest, and clients, take a NO FETCH as failed).
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, MSG)
    env.store.deliver(ALICE, MSG)
    await raw.command(b"SELECT INBOX")
    with env.store.open(ALICE) as mailbox:
        mailbox.set_flags(1, ["\\Deleted"])
        mailbox.expunge()
    lines = await raw.command(b"FETCH 1:2 BODY.PEEK[]")
    assert lines[0].startswith(b"* 2 FETCH (BODY[] {") and lines[-1].startswith(
        b"t OK [EXPUNGEISSUED]"
    ), lines
    assert (await raw.command(b"NOOP"))[0] == b"* 1 EXPUNGE\r\n"


async def test_binary_of_an_unknown_encoding(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, b"Content-Transfer-Encoding: x-weird\r\n\r\nzzz\r\n")
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"FETCH 1 BINARY[1]"))[-1].startswith(b"t NO [UNKNOWN-CTE]")
    assert (await raw.command(b"FETCH 1 BINARY.PEEK[]"))[-1].startswith(b"t OK")


async def test_fetch_body_alone_reads_the_message(start: Start) -> None:
    # FETCH BODY (the structure without extension data) needs the message too; it was
    # computed from no bytes at all ("7BIT" 0 0): imaptest's "BODY changed".
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, MSG)
    await raw.command(b"SELECT INBOX")
    lines = await raw.command(b"FETCH 1 BODY")
    body = MSG.split(b"\r\n\r\n", 1)[1]
    assert lines[0] == (
        b'* 1 FETCH (BODY ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" %d 1))\r\n'
        % len(body)
    ), lines
