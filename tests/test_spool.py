"""The spool: durable enqueue, recovery of interrupted writes, per-recipient state."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reference.clock import ManualClock
from reference.spool import DELIVERED, Spool, SpoolError


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
