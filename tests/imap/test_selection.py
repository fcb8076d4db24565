"""SELECT, EXAMINE, CLOSE: the mailbox state reported, IMAP4rev1 and IMAP4rev2 forms."""

from __future__ import annotations

from .support import ALICE, MSG, Start, logged_in


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
        b"* 2 RECENT\r\n",  # RFC 3501 6.3.1: this session is the first to see them
        b"* OK [UNSEEN 2] First unseen\r\n",
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % validity,
        b"* OK [UIDNEXT 3] Predicted next UID\r\n",
        b"* OK [HIGHESTMODSEQ 3] Highest\r\n",
        b"t OK [READ-WRITE] SELECT completed\r\n",
    ]
    assert (await raw.command(b"EXAMINE Junk"))[-1] == b"t OK [READ-ONLY] EXAMINE completed\r\n"
    assert (await raw.command(b"SELECT Nope"))[-1].startswith(b"t NO [NONEXISTENT]")
    assert (await raw.command(b"FETCH 1 FLAGS"))[-1].startswith(b"t BAD")  # nothing selected


async def test_imap4rev2_select_and_search(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, MSG)
    assert (await raw.command(b"ENABLE IMAP4rev2"))[0] == b"* ENABLED IMAP4rev2\r\n"
    lines = await raw.command(b"SELECT INBOX")
    assert lines[:3] == [b"* 1 EXISTS\r\n", b"* FLAGS (\\Answered \\Deleted \\Draft \\Flagged"
                         b" \\Seen)\r\n", b'* LIST () "/" INBOX\r\n']  # fmt: skip
    assert not any(b"RECENT" in line for line in lines)
    assert (await raw.command(b"SEARCH ALL"))[0] == b'* ESEARCH (TAG "t") ALL 1\r\n'
    lines = await raw.command(b"SELECT Junk")
    assert lines[0] == b"* OK [CLOSED] Previous mailbox closed\r\n"


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
