"""Local delivery is exactly once: a delivery repeated after a crash (the spool not yet
updated) finds the message its key names and stores nothing again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from reference.clock import ManualClock
from reference.delivery.local import LocalDelivery, delivery_key
from reference.directory import Directory
from reference.mailbox import MailStore, Quota
from reference.mailbox.index import INDEX_FILE
from reference.spool import QueueEntry, Recipient

ALICE = "alice@example.org"
MSG = b"From: bob@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
KEY = delivery_key("0190000000ABCDEF", ALICE, ALICE)


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return MailStore(tmp_path / "mail", clock=ManualClock())


def count(store: MailStore, address: str = ALICE, folder: str = "INBOX") -> int:
    with store.open(address, folder) as mailbox:
        return len(mailbox.messages())


def test_a_delivery_repeated_with_its_key_stores_nothing(store: MailStore) -> None:
    uid = store.deliver(ALICE, MSG, key=KEY)
    assert store.deliver(ALICE, MSG, key=KEY) == uid
    assert store.deliver(ALICE, MSG, key=delivery_key("other", ALICE, ALICE)) == uid + 1
    assert count(store) == 2


def test_the_key_outlives_an_expunge(store: MailStore) -> None:
    # The user deleted it before the retry: it was delivered, it stays gone.
    uid = store.deliver(ALICE, MSG, key=KEY)
    with store.open(ALICE) as mailbox:
        mailbox.set_flags(uid, {"\\Deleted"})
        mailbox.expunge()
    assert store.deliver(ALICE, MSG, key=KEY) == uid
    assert count(store) == 0


def test_a_repeat_into_a_full_mailbox_is_not_refused(tmp_path: Path) -> None:
    store = MailStore(tmp_path / "mail", clock=ManualClock(), quota=Quota(messages=1))
    uid = store.deliver(ALICE, MSG, key=KEY)
    assert store.deliver(ALICE, MSG, key=KEY) == uid  # no QuotaExceeded: it is there


def test_a_bad_key_is_refused(store: MailStore) -> None:
    with pytest.raises(ValueError):
        store.deliver(ALICE, MSG, key="../../etc")


def test_the_file_and_its_name_are_durable_before_the_index_records_the_delivery(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A power cut after the index's commit must find the file: a retry finds the key and
    # stores nothing. So the file is synced, then new/ (its name), then the index commits
    # (WAL at synchronous=FULL: a commit is durable when it returns).
    assert count(store) == 0
    inbox = store.root / "example.org" / "alice"
    index = sqlite3.connect(inbox / INDEX_FILE, isolation_level=None)
    assert index.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    synced: list[tuple[str, int]] = []
    fsync = os.fsync

    def watched(fd: int) -> None:
        fsync(fd)
        (recorded,) = index.execute("SELECT COUNT(*) FROM deliveries").fetchone()
        synced.append((Path(os.readlink(f"/proc/self/fd/{fd}")).parent.name, recorded))

    monkeypatch.setattr(os, "fsync", watched)
    store.deliver(ALICE, MSG, key=KEY)
    index.close()
    # The file in tmp/, then the directory new/ (its parent is the mailbox), each before
    # the delivery's key is in the index.
    assert synced == [("tmp", 0), ("alice", 0)]


# A child that delivers with KEY and dies (SIGKILL, by its own hand) the moment its file is
# renamed into new/: after the rename, before the index's COMMIT. (A reader holding a lock
# cannot hold that COMMIT back since the index is in WAL mode: readers never block it.)
CHILD = """
import os, signal, sys
from pathlib import Path
from reference.mailbox import MailStore
rename = os.rename
def rename_and_die(src, dst):
    rename(src, dst)
    if os.path.basename(os.path.dirname(dst)) == "new":
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename_and_die
MailStore(Path(sys.argv[1])).deliver(sys.argv[2], sys.argv[3].encode(), key=sys.argv[4])
"""


def test_a_delivery_killed_between_its_rename_and_its_commit_is_found(store: MailStore) -> None:
    assert count(store) == 0  # the mailbox and its index exist
    inbox = store.root / "example.org" / "alice"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(store.root), ALICE, MSG.decode(), KEY],
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL
    assert len(list((inbox / "new").iterdir())) == 1
    with store.open(ALICE, sync=False) as mailbox:
        assert mailbox.messages() == []  # the index never heard of it
    # The retry: the file is adopted with its key, and that is the delivery.
    store.deliver(ALICE, MSG, key=KEY)
    assert count(store) == 1


def entry(qid: str, rcpt: str) -> QueueEntry:
    return QueueEntry(qid, "bob@example.net", [Recipient(rcpt)], created=0.0, next_attempt=0.0)


async def test_local_delivery_repeated_after_a_crash_files_once(tmp_path: Path) -> None:
    directory = Directory(tmp_path / "directory.sqlite3")
    directory.add_domain("example.org")
    directory.add_user(ALICE, "pw")
    directory.add_user("carol@example.org", "pw")
    directory.add_alias("team@example.org", ALICE, "carol@example.org")
    store = MailStore(tmp_path / "mail", clock=ManualClock())
    local = LocalDelivery(directory, store, ManualClock())
    queued = entry("0190000000ABCDEF", "team@example.org")
    for _ in range(3):  # the first attempt, then two repeats after "crashes"
        outcome = await local.deliver(queued, "team@example.org", MSG)
        assert outcome.status == "delivered"
    assert count(store) == 1
    assert count(store, "carol@example.org") == 1
    # The same message to the account under another recipient address is another delivery.
    await local.deliver(queued, ALICE, MSG)
    assert count(store) == 2
    directory.close()


async def test_a_repeated_delivery_counts_and_archives_once(tmp_path: Path) -> None:
    # The usage report and the archive account see the message once, however often a
    # crash made the queue runner deliver it again.
    from reference.usage import UsageStore

    clock = ManualClock()
    directory = Directory(tmp_path / "directory.sqlite3")
    directory.add_domain("example.org")
    directory.add_user(ALICE, "pw")
    directory.add_user("keeper@example.org", "pw")
    directory.set_archive(ALICE, "keeper@example.org")
    store = MailStore(tmp_path / "mail", clock=clock)
    usage = UsageStore(tmp_path / "usage.sqlite3", clock)
    local = LocalDelivery(directory, store, clock, usage=usage)
    for _ in range(3):  # the first attempt, then two repeats after "crashes"
        # As read back from the spool after a crash: nothing recorded as filed yet.
        outcome = await local.deliver(entry("0190000000ABCDEF", ALICE), ALICE, MSG)
        assert outcome.status == "delivered"
    assert count(store) == 1
    archived = "Archive/alice@example_org/INBOX"
    assert count(store, "keeper@example.org", archived) == 1
    (row,) = [r for r in usage.rows(account=ALICE) if r.account == ALICE]
    assert row.messages_in == 1 and row.bytes_in == len(MSG)
    usage.close()
    directory.close()
