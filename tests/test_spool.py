"""The spool: durable enqueue, recovery of interrupted writes, per-recipient state."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reference.clock import ManualClock, RealClock
from reference.spool import DELIVERED, Board, Spool, SpoolError, SpoolLease


async def test_enqueue_writes_message_and_envelope(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path / "spool", clock)
    entry = await spool.enqueue(
        "a@x.test", ["b@y.test", "c@y.test"], b"Subject: hi\r\n\r\nbody\r\n"
    )
    assert (tmp_path / "spool" / f"{entry.qid}.eml").read_bytes().startswith(b"Subject: hi")
    again = spool.load(entry.qid)
    assert again == entry
    assert [r.address for r in again.pending] == ["b@y.test", "c@y.test"]
    assert spool.due(clock.now()) == [entry]


async def test_recipient_state_survives_reload(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path, clock)
    entry = await spool.enqueue("", ["b@y.test", "c@y.test"], b"x")
    entry.recipients[0].status = DELIVERED
    entry.next_attempt = clock.now() + 60
    spool.save(entry)
    reopened = Spool(tmp_path, clock)
    loaded = reopened.load(entry.qid)
    assert loaded is not None
    assert [r.address for r in loaded.pending] == ["c@y.test"]
    assert reopened.due(clock.now()) == []
    clock.advance(60)
    assert [e.qid for e in reopened.due(clock.now())] == [entry.qid]


async def test_interrupted_enqueue_is_cleaned_at_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path, ManualClock())
    (tmp_path / "0000ORPHAN.eml").write_bytes(b"half")
    (tmp_path / "0000ORPHAN.json.tmp").write_bytes(b"{")
    Spool(tmp_path, ManualClock())
    assert list(tmp_path.iterdir()) == []
    assert spool.entries() == []


async def test_write_failure_is_a_spool_error_and_leaves_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", ManualClock())
    shutil.rmtree(tmp_path / "spool")
    with pytest.raises(SpoolError):
        await spool.enqueue("a@x.test", ["b@y.test"], b"x")


async def test_queue_ids_are_unique_and_ordered(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path, clock)
    ids = []
    for _ in range(50):
        ids.append(spool.new_qid())
        clock.advance(0.002)
    assert len(set(ids)) == 50
    assert ids == sorted(ids)


async def test_take_over_moves_committed_messages_with_their_markers(tmp_path: Path) -> None:
    clock = ManualClock()
    dead = Spool(tmp_path / "node1", clock)
    mine = Spool(tmp_path / "node2", clock)
    held = await dead.enqueue("a@x.test", ["b@y.test"], b"held")
    other = await dead.enqueue("a@x.test", ["c@y.test"], b"other")
    dead.hold(held.qid)
    (dead.root / "0000INTERRUPTED.eml").write_bytes(b"no envelope: not committed")
    assert sorted(mine.take_over(dead.root)) == sorted([held.qid, other.qid])
    assert sorted(p.name for p in dead.root.iterdir()) == ["0000INTERRUPTED.eml"]
    assert mine.backlog == 2 and mine.read_message(other.qid) == b"other"
    moved = mine.load(held.qid)
    assert moved is not None and moved.held
    assert mine.take_over(dead.root) == []  # a second look finds nothing


async def test_take_over_interrupted_after_the_link_leaves_the_message_where_it_was(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    dead = Spool(tmp_path / "node1", clock)
    entry = await dead.enqueue("a@x.test", ["b@y.test"], b"body")
    (tmp_path / "node2").mkdir()
    # The taker died after linking the message file, before moving the envelope.
    (tmp_path / "node2" / f"{entry.qid}.eml").hardlink_to(dead.root / f"{entry.qid}.eml")
    mine = Spool(tmp_path / "node2", clock)  # its start removes the orphan link
    assert list(mine.root.iterdir()) == []
    assert dead.load(entry.qid) is not None and dead.read_message(entry.qid) == b"body"


async def test_a_worker_holds_the_lease_the_primary_posts_on_the_board(tmp_path: Path) -> None:
    """The node's other workers deliver while the primary holds the spool's lease: they read
    until when on the board (no Redis call), and stop as soon as that has passed."""
    board = tmp_path / "run" / "lease"
    spool = Spool(tmp_path / "spool", ManualClock())
    # Never connects: a worker other than the primary does not keep the lease itself.
    worker = SpoolLease("redis://127.0.0.1:1", spool, board=board)
    try:
        assert not worker.held
        now = RealClock().monotonic()
        Board(board).post(now + 60)  # what the primary's renewal posts
        assert worker.held
        Board(board).post(now - 0.001)  # not renewed in time (or lost, or the primary died)
        assert not worker.held
    finally:
        await worker.close()
