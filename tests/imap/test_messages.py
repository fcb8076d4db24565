"""STORE, COPY, MOVE, EXPUNGE: read-only mailboxes, QRESYNC's VANISHED, the junk hook."""

from __future__ import annotations

import asyncio

from .support import ALICE, MSG, Start, logged_in


async def test_store_in_read_only_mailbox_is_refused(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, MSG)
    await raw.command(b"EXAMINE INBOX")
    assert (await raw.command(b"STORE 1 +FLAGS (\\Seen)"))[-1].startswith(b"t NO [READ-ONLY]")
    assert (await raw.command(b"EXPUNGE"))[-1].startswith(b"t NO [READ-ONLY]")


async def test_qresync_reports_vanished_not_expunge(start: Start) -> None:
    env, raw = await logged_in(start)
    for _ in range(3):
        env.store.deliver(ALICE, MSG, flags=["\\Deleted"])
    assert (await raw.command(b"ENABLE QRESYNC"))[0] == b"* ENABLED QRESYNC\r\n"
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"UID EXPUNGE 1:2"))[0] == b"* VANISHED 1:2\r\n"
    lines = await raw.command(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert lines[0] == b"* VANISHED (EARLIER) 1:2\r\n"
    assert lines[1].startswith(b"* 1 FETCH (UID 3 FLAGS (\\Deleted \\Recent) MODSEQ (")


async def test_moves_to_and_from_junk_train_the_classifier(start: Start) -> None:
    trained: list[tuple[str, bytes, bool]] = []
    env, raw = await logged_in(start, on_junk=lambda a, m, s: trained.append((a, m, s)))
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

    env, raw = await logged_in(start, on_junk=broken)
    env.store.deliver(ALICE, MSG)
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"MOVE 1 Junk"))[-1] == b"t OK MOVE completed\r\n"
