"""IMAP server behaviour the wire suite cannot reach from outside: the junk hook, quotas,
IDLE fed by this process and by others, IMAP4rev2 and modified UTF-7 modes, SEARCHRES,
QRESYNC, AUTHENTICATE LOGIN, BINARY of an unknown encoding."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from test_imap_server import ALICE, MSG, Raw, Start, certs, run, start

from reference.mailbox import MailStore, Quota

__all__ = ["certs", "start"]


async def session(start: Start, **options: Any) -> tuple[Any, Raw]:
    env = await start(allow_plaintext=True, **options)
    raw = await Raw.connect(env)
    assert (await raw.command(b'LOGIN alice@example.org "correct horse"'))[-1].startswith(b"t OK")
    return env, raw


async def until_line(raw: Raw, suffix: bytes) -> list[bytes]:
    lines = []
    while not (lines and lines[-1].endswith(suffix)):
        lines.append(await raw.line())
    return lines


# -- IDLE --------------------------------------------------------------------------------------


async def test_idle_hears_deliveries_of_this_process_at_once(start: Start) -> None:
    env, raw = await session(start)
    await raw.command(b"SELECT INBOX")
    await raw.send(b"i IDLE\r\n")
    assert await raw.line() == b"+ idling\r\n"
    await run(lambda: env.store.deliver(ALICE, MSG))  # no clock advance: the hook rings
    assert await raw.line() == b"* 1 EXISTS\r\n"
    await raw.send(b"DONE\r\n")
    assert await raw.line() == b"i OK IDLE terminated\r\n"


async def test_idle_polls_for_other_processes(start: Start) -> None:
    env, raw = await session(start, idle_poll=5.0)
    await raw.command(b"SELECT INBOX")
    await raw.send(b"i IDLE\r\n")
    assert await raw.line() == b"+ idling\r\n"
    other = MailStore(env.store.root)  # another process: its hook is not ours
    await run(lambda: other.deliver(ALICE, MSG))
    line = b""
    for _ in range(100):
        env.clock.advance(5.0)
        try:
            line = await asyncio.wait_for(raw.reader.readline(), 0.05)
            break
        except TimeoutError:
            continue
    assert line == b"* 1 EXISTS\r\n"
    await raw.send(b"DONE\r\n")
    assert await raw.line() == b"i OK IDLE terminated\r\n"


async def test_idle_without_done_is_bad(start: Start) -> None:
    _, raw = await session(start)
    await raw.send(b"i IDLE\r\n")
    assert await raw.line() == b"+ idling\r\n"
    await raw.send(b"NOPE\r\n")
    assert (await raw.line()).startswith(b"i BAD")


# -- the junk hook -----------------------------------------------------------------------------


async def test_moves_to_and_from_junk_train_the_classifier(start: Start) -> None:
    trained: list[tuple[str, bytes, bool]] = []
    env, raw = await session(start, on_junk=lambda a, m, s: trained.append((a, m, s)))
    for _ in range(3):
        env.store.deliver(ALICE, MSG)
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"MOVE 1 Junk"))[-1].startswith(b"t OK")
    assert (await raw.command(b"COPY 1 Junk"))[-1].startswith(b"t OK")
    assert (await raw.command(b"MOVE 1 Archive"))[-1].startswith(b"t OK")  # not Junk: no call
    await raw.command(b"SELECT Junk")
    await raw.command(b"MOVE 1 INBOX")  # out of Junk: ham
    await raw.command(b"MOVE 1 Trash")  # out of Junk into Trash: nothing learnt
    for _ in range(50):
        if len(trained) >= 3:
            break
        await asyncio.sleep(0.02)
    assert [(a, s) for a, _, s in trained] == [(ALICE, True), (ALICE, True), (ALICE, False)]
    assert all(m == MSG for _, m, _ in trained)


async def test_a_failing_junk_hook_does_not_fail_the_move(start: Start) -> None:
    def broken(address: str, message: bytes, is_spam: bool) -> None:
        raise RuntimeError("classifier down")

    env, raw = await session(start, on_junk=broken)
    env.store.deliver(ALICE, MSG)
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"MOVE 1 Junk"))[-1] == b"t OK MOVE completed\r\n"


# -- quotas ------------------------------------------------------------------------------------


async def test_append_over_quota_and_quota_responses(start: Start) -> None:
    _, raw = await session(start, quota=Quota(bytes=4096, messages=2))
    for n in range(2):
        await raw.send(b"a%d APPEND Drafts {%d+}\r\n%s\r\n" % (n, len(MSG), MSG))
        assert (await raw.until(b"a%d" % n))[-1].startswith(b"a%d OK [APPENDUID " % n)
    await raw.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(MSG), MSG))
    assert (await raw.until(b"a"))[-1] == b"a NO [OVERQUOTA] Quota exceeded\r\n"
    lines = await raw.command(b"GETQUOTAROOT INBOX")
    assert lines[:2] == [b'* QUOTAROOT INBOX ""\r\n', b'* QUOTA "" (STORAGE 1 4 MESSAGE 2 2)\r\n']
    assert (await raw.command(b'GETQUOTA ""'))[0] == b'* QUOTA "" (STORAGE 1 4 MESSAGE 2 2)\r\n'
    assert (await raw.command(b"GETQUOTA other"))[-1].startswith(b"t NO [NONEXISTENT]")
    assert (await raw.command(b'SETQUOTA "" (STORAGE 9)'))[-1].startswith(b"t NO [NOPERM]")
    await raw.command(b"SELECT Drafts")
    assert (await raw.command(b"COPY 1 INBOX"))[-1].startswith(b"t NO [OVERQUOTA]")
    assert (await raw.command(b"MOVE 1 INBOX"))[-1].startswith(b"t OK")  # moving adds nothing


async def test_no_quota_means_no_quota_root(start: Start) -> None:
    _, raw = await session(start)
    assert await raw.command(b"GETQUOTAROOT INBOX") == [
        b"* QUOTAROOT INBOX\r\n",
        b"t OK GETQUOTAROOT completed\r\n",
    ]


# -- IMAP4rev2, UTF-8 and modified UTF-7 names -------------------------------------------------


async def test_imap4rev2_select_and_search(start: Start) -> None:
    env, raw = await session(start)
    env.store.deliver(ALICE, MSG)
    assert (await raw.command(b"ENABLE IMAP4rev2"))[0] == b"* ENABLED IMAP4rev2\r\n"
    lines = await raw.command(b"SELECT INBOX")
    assert lines[:3] == [b"* 1 EXISTS\r\n", b"* FLAGS (\\Answered \\Deleted \\Draft \\Flagged"
                         b" \\Seen)\r\n", b'* LIST () "/" INBOX\r\n']  # fmt: skip
    assert not any(b"RECENT" in line for line in lines)
    assert (await raw.command(b"SEARCH ALL"))[0] == b'* ESEARCH (TAG "t") ALL 1\r\n'
    lines = await raw.command(b"SELECT Junk")
    assert lines[0] == b"* OK [CLOSED] Previous mailbox closed\r\n"


async def test_mailbox_names_in_modified_utf7_and_utf8(start: Start) -> None:
    env, raw = await session(start)
    assert (await raw.command(b"CREATE Entw&APw-rfe"))[-1].startswith(b"t OK")
    assert "Entwürfe" in await run(lambda: env.store.folders(ALICE))
    assert b'"/" Entw&APw-rfe\r\n' in (await raw.command(b'LIST "" Entw*'))[0]
    await raw.command(b"ENABLE UTF8=ACCEPT")
    listed = (await raw.command(b'LIST "" Entw*'))[0]
    assert listed.endswith(b'"/" {9}\r\n') or "Entwürfe".encode() in listed


async def test_enable_is_only_for_the_authenticated_state(start: Start) -> None:
    _, raw = await session(start)
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"ENABLE CONDSTORE"))[-1].startswith(b"t BAD")


# -- SEARCHRES, QRESYNC, CONDSTORE -------------------------------------------------------------


async def test_search_result_saved_and_reused(start: Start) -> None:
    env, raw = await session(start)
    for flags in ([], ["\\Flagged"], ["\\Flagged"]):
        env.store.deliver(ALICE, MSG, flags=flags)
    await raw.command(b"SELECT INBOX")
    assert await raw.command(b"SEARCH RETURN (SAVE) FLAGGED") == [b"t OK SEARCH completed\r\n"]
    lines = await raw.command(b"FETCH $ (UID)")
    assert lines[:2] == [b"* 2 FETCH (UID 2)\r\n", b"* 3 FETCH (UID 3)\r\n"]
    assert (await raw.command(b"UID SEARCH $"))[0] == b"* SEARCH 2 3\r\n"
    assert (await raw.command(b"SEARCH RETURN (MIN SAVE) FLAGGED"))[0] == (
        b'* ESEARCH (TAG "t") MIN 2\r\n'
    )
    assert (await raw.command(b"UID SEARCH $"))[0] == b"* SEARCH 2\r\n"


async def test_qresync_reports_vanished_not_expunge(start: Start) -> None:
    env, raw = await session(start)
    for _ in range(3):
        env.store.deliver(ALICE, MSG, flags=["\\Deleted"])
    assert (await raw.command(b"ENABLE QRESYNC"))[0] == b"* ENABLED QRESYNC\r\n"
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"UID EXPUNGE 1:2"))[0] == b"* VANISHED 1:2\r\n"
    lines = await raw.command(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert lines[0] == b"* VANISHED (EARLIER) 1:2\r\n"
    assert lines[1].startswith(b"* 1 FETCH (UID 3 FLAGS (\\Deleted) MODSEQ (")


async def test_search_modseq_and_status_highestmodseq(start: Start) -> None:
    env, raw = await session(start)
    env.store.deliver(ALICE, MSG)
    env.store.deliver(ALICE, MSG)
    await raw.command(b"SELECT INBOX")
    await raw.command(b"STORE 2 +FLAGS.SILENT (\\Seen)")
    status = (await raw.command(b"STATUS INBOX (HIGHESTMODSEQ)"))[0]
    highest = int(status.split(b"HIGHESTMODSEQ ")[1].split(b")")[0])
    assert (await raw.command(b"SEARCH MODSEQ %d" % highest))[0] == (
        b"* SEARCH 2 (MODSEQ %d)\r\n" % highest
    )


# -- odds and ends -----------------------------------------------------------------------------


async def test_authenticate_login(start: Start) -> None:
    env = await start(allow_plaintext=True)
    raw = await Raw.connect(env)
    await raw.send(b"a AUTHENTICATE LOGIN\r\n")
    assert await raw.line() == b"+ " + base64.b64encode(b"Username:") + b"\r\n"
    await raw.send(base64.b64encode(ALICE.encode()) + b"\r\n")
    assert await raw.line() == b"+ " + base64.b64encode(b"Password:") + b"\r\n"
    await raw.send(base64.b64encode(b"correct horse") + b"\r\n")
    assert (await raw.line()).startswith(b"a OK [CAPABILITY ")


async def test_binary_of_an_unknown_encoding(start: Start) -> None:
    env, raw = await session(start)
    env.store.deliver(ALICE, b"Content-Transfer-Encoding: x-weird\r\n\r\nzzz\r\n")
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"FETCH 1 BINARY[1]"))[-1].startswith(b"t NO [UNKNOWN-CTE]")
    assert (await raw.command(b"FETCH 1 BINARY.PEEK[]"))[-1].startswith(b"t OK")


async def test_list_subscribed_marks_vanished_mailboxes(start: Start) -> None:
    env, raw = await session(start)
    await raw.command(b"CREATE Gone")
    await raw.command(b"SUBSCRIBE Gone")
    await run(lambda: env.store.delete_folder(ALICE, "Gone") or env.store.subscribe(ALICE, "Gone"))
    lines = await raw.command(b'LIST (SUBSCRIBED) "" *')
    assert b'* LIST (\\NonExistent \\Subscribed) "/" Gone\r\n' in lines
    assert b'* LIST (\\HasNoChildren \\Subscribed \\Sent) "/" Sent\r\n' in lines
    assert (await raw.command(b'LIST (RECURSIVEMATCH) "" *'))[-1].startswith(b"t BAD")


async def test_delete_the_selected_mailbox(start: Start) -> None:
    _, raw = await session(start)
    await raw.command(b"CREATE Tmp")
    await raw.command(b"SELECT Tmp")
    assert (await raw.command(b"DELETE Tmp"))[-1] == b"t OK DELETE completed\r\n"
    assert (await raw.command(b"FETCH 1 FLAGS"))[-1].startswith(b"t BAD")


async def test_store_in_read_only_mailbox_is_refused(start: Start, tmp_path: Path) -> None:
    env, raw = await session(start)
    env.store.deliver(ALICE, MSG)
    await raw.command(b"EXAMINE INBOX")
    assert (await raw.command(b"STORE 1 +FLAGS (\\Seen)"))[-1].startswith(b"t NO [READ-ONLY]")
    assert (await raw.command(b"EXPUNGE"))[-1].startswith(b"t NO [READ-ONLY]")
