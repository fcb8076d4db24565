"""The store beyond the basics: cheap opens, mod-sequences, quotas, copy and move, folder
operations, subscriptions, change notification, the POP3 lock, index migration."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from reference.clock import ManualClock
from reference.mailbox import (
    FolderExists,
    InvalidFolder,
    MailStore,
    NoSuchFolder,
    Quota,
    QuotaExceeded,
)
from reference.mailbox.index import INDEX_FILE

ALICE = "alice@example.org"
MSG = b"From: bob@example.net\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return MailStore(tmp_path / "mail", clock=ManualClock())


# -- opening without scanning ------------------------------------------------------------------


def test_open_reads_the_directory_only_when_it_changed(store: MailStore) -> None:
    for _ in range(3):
        store.deliver(ALICE, MSG)
    with store.open(ALICE) as mailbox:
        assert mailbox.sync() is False  # our own deliveries kept the stamp current
        (mailbox.path / "new" / "1700000000.foreign.host").write_bytes(MSG)
        assert mailbox.sync() is True  # another MDA dropped a file: read the directory
        assert mailbox.sync() is False
        assert [m.uid for m in mailbox.messages()] == [1, 2, 3, 4]
        mailbox.change_flags([1], add=["\\Seen"])  # a rename new/ -> cur/, by us
        assert mailbox.sync() is False


def test_sync_can_be_forced(store: MailStore) -> None:
    store.deliver(ALICE, MSG)
    with store.open(ALICE) as mailbox:
        assert mailbox.sync(force=True) is True


# -- mod-sequences (RFC 7162) ------------------------------------------------------------------


def test_every_change_gets_a_higher_modseq(store: MailStore) -> None:
    with store.open(ALICE) as mailbox:
        start = mailbox.highestmodseq
        uid = mailbox.append(MSG)
        first = mailbox.get(uid).modseq
        assert first == mailbox.highestmodseq > start
        mailbox.change_flags([uid], add=["\\Seen"])
        assert mailbox.get(uid).modseq == mailbox.highestmodseq > first
        before = mailbox.highestmodseq
        mailbox.change_flags([uid], add=["\\Seen"])  # no change, no new mod-sequence
        assert mailbox.highestmodseq == before
        changes = mailbox.changes(first)
        assert [m.uid for m in changes.changed] == [uid] and changes.expunged == []
        mailbox.change_flags([uid], add=["\\Deleted"])
        mailbox.expunge()
        changes = mailbox.changes(before)
        assert changes.changed == [] and changes.expunged == [uid]
        assert changes.highestmodseq == mailbox.highestmodseq


def test_unchanged_since_leaves_newer_messages_alone(store: MailStore) -> None:
    with store.open(ALICE) as mailbox:
        a, b = mailbox.append(MSG), mailbox.append(MSG)
        since = mailbox.get(a).modseq
        mailbox.change_flags([b], add=["\\Seen"])
        update = mailbox.update_flags([a, b], add=["\\Flagged"], unchanged_since=since)
        assert update.modified == [b]
        assert [m.uid for m in update.messages] == [a]
        assert "\\Flagged" not in mailbox.get(b).flags


def test_status_and_first_unseen(store: MailStore) -> None:
    store.deliver(ALICE, MSG, flags=["\\Seen"])
    store.deliver(ALICE, MSG)
    store.deliver(ALICE, MSG, flags=["\\Deleted"])
    status = store.status(ALICE, "INBOX")
    assert (status.messages, status.unseen, status.deleted) == (3, 2, 1)
    assert status.size == 3 * len(MSG) and status.uidnext == 4
    with store.open(ALICE) as mailbox:
        assert mailbox.first_unseen() == 2
        assert sorted(mailbox.get_many([3, 1, 99])) == [1, 3]


# -- quotas ------------------------------------------------------------------------------------


def test_message_quota_counts_every_folder(tmp_path: Path) -> None:
    store = MailStore(tmp_path, quota=Quota(messages=3))
    store.deliver(ALICE, MSG)
    store.deliver(ALICE, MSG, folder="Junk")
    store.append(ALICE, "Sent", MSG)
    with pytest.raises(QuotaExceeded) as full:
        store.deliver(ALICE, MSG)
    assert full.value.resource == "MESSAGE" and full.value.limit == 3
    assert store.usage(ALICE).messages == 3
    with pytest.raises(QuotaExceeded):
        store.append(ALICE, "INBOX", MSG)


def test_storage_quota_and_per_account_limits(tmp_path: Path) -> None:
    limits = {ALICE: Quota(bytes=2 * len(MSG))}
    store = MailStore(tmp_path, quota=lambda a: limits.get(a, Quota()))
    store.deliver(ALICE, MSG)
    store.deliver(ALICE, MSG)
    with pytest.raises(QuotaExceeded) as full:
        store.deliver(ALICE, b"x")
    assert full.value.resource == "STORAGE"
    for _ in range(5):  # another account has no limit
        store.deliver("bob@example.org", MSG)


def test_quota_exceeded_is_not_an_oserror() -> None:
    # Delivery maps OSError to 4.3.0; a full mailbox must be told apart (4.2.2).
    assert not issubclass(QuotaExceeded, OSError)


# -- copy and move -----------------------------------------------------------------------------


def test_copy_keeps_flags_and_dates_and_the_source(store: MailStore) -> None:
    store.deliver(ALICE, MSG, flags=["\\Flagged", "$Work"], when=1_700_000_000.0)
    store.deliver(ALICE, MSG)
    with store.open(ALICE) as inbox, store.open(ALICE, "Archive") as archive:
        pairs = inbox.copy_to(archive, [1, 2, 99])
        assert pairs == [(1, 1), (2, 2)]
        copied = archive.get(1)
        assert copied.flags == {"\\Flagged", "$Work"} and copied.internaldate == 1_700_000_000.0
        assert archive.read(1) == MSG
        assert inbox.uids() == [1, 2]
        assert os.stat(copied.path).st_nlink == 2  # a hard link, not a second copy


def test_move_renames_and_records_the_expunge(store: MailStore) -> None:
    for _ in range(3):
        store.deliver(ALICE, MSG)
    with store.open(ALICE) as inbox, store.open(ALICE, "Trash") as trash:
        before = inbox.highestmodseq
        assert inbox.move_to(trash, [1, 3]) == [(1, 1), (3, 2)]
        assert inbox.uids() == [2] and trash.uids() == [1, 2]
        assert inbox.changes(before).expunged == [1, 3]
        assert inbox.sync() is False and trash.sync() is False


def test_move_within_one_mailbox_gives_new_uids(store: MailStore) -> None:
    store.deliver(ALICE, MSG)
    with store.open(ALICE) as inbox:
        assert inbox.move_to(inbox, [1]) == [(1, 2)]
        assert inbox.uids() == [2]


def test_opposite_moves_at_once_do_not_deadlock(tmp_path: Path) -> None:
    store = MailStore(tmp_path)
    for _ in range(20):
        store.deliver(ALICE, MSG)
        store.deliver(ALICE, MSG, folder="Archive")
    errors: list[BaseException] = []

    def mover(source: str, dest: str) -> None:
        try:
            with store.open(ALICE, source) as a, store.open(ALICE, dest) as b:
                for uid in a.uids()[:10]:
                    a.move_to(b, [uid])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [
        threading.Thread(target=mover, args=("INBOX", "Archive")),
        threading.Thread(target=mover, args=("Archive", "INBOX")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads) and not errors
    assert store.usage(ALICE).messages == 40


# -- folders and subscriptions -----------------------------------------------------------------


def test_create_exclusive_delete_and_rename(store: MailStore) -> None:
    store.create_folder(ALICE, "Projects", exclusive=True)
    with pytest.raises(FolderExists):
        store.create_folder(ALICE, "Projects", exclusive=True)
    store.create_folder(ALICE, "Projects/2026")
    store.deliver(ALICE, MSG, folder="Projects/2026")
    store.subscribe(ALICE, "Projects/2026")
    store.rename_folder(ALICE, "Projects", "Work")
    assert "Work/2026" in store.folders(ALICE) and "Projects" not in store.folders(ALICE)
    assert "Work/2026" in store.subscriptions(ALICE)
    with store.open(ALICE, "Work/2026") as box:
        assert box.read(1) == MSG  # UIDs survive a rename
    with pytest.raises(FolderExists):
        store.rename_folder(ALICE, "Work", "Trash")
    store.delete_folder(ALICE, "Work")
    assert "Work" not in store.folders(ALICE) and "Work/2026" in store.folders(ALICE)
    with pytest.raises(NoSuchFolder):
        store.delete_folder(ALICE, "Work")
    with pytest.raises(InvalidFolder):
        store.delete_folder(ALICE, "inbox")


def test_a_name_used_again_gets_a_new_uidvalidity(store: MailStore) -> None:
    # RFC 3501 2.3.1.1: the clock stands still, yet DELETE + CREATE must change UIDVALIDITY.
    store.create_folder(ALICE, "Reused")
    with store.open(ALICE, "Reused") as box:
        before = box.uidvalidity
    store.delete_folder(ALICE, "Reused")
    store.create_folder(ALICE, "Reused")
    with store.open(ALICE, "Reused") as box:
        assert box.uidvalidity > before


def test_delete_keeps_the_subscription(store: MailStore) -> None:
    store.create_folder(ALICE, "Gone")
    store.subscribe(ALICE, "Gone")
    store.delete_folder(ALICE, "Gone")
    assert "Gone" in store.subscriptions(ALICE)  # RFC 3501 6.3.6


def test_rename_inbox_moves_its_messages(store: MailStore) -> None:
    store.deliver(ALICE, MSG)
    store.rename_folder(ALICE, "INBOX", "Old")
    with store.open(ALICE) as inbox, store.open(ALICE, "Old") as old:
        assert inbox.uids() == [] and old.uids() == [1]


def test_new_accounts_subscribe_inbox_and_special_use(store: MailStore) -> None:
    assert store.subscriptions(ALICE) == ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
    store.unsubscribe(ALICE, "Junk")
    store.subscribe(ALICE, "Not/There")  # RFC 9051 6.3.7: a name need not exist
    assert "Junk" not in store.subscriptions(ALICE)
    assert "Not/There" in store.subscriptions(ALICE)


# -- notification and locks --------------------------------------------------------------------


def test_watchers_hear_of_changes_in_this_process(store: MailStore) -> None:
    with store.open(ALICE) as inbox:
        path = inbox.path
    heard: list[Path] = []
    unwatch = store.watch(path, heard.append)
    store.deliver(ALICE, MSG)
    store.deliver(ALICE, MSG, folder="Junk")  # another mailbox: not this watcher's business
    with store.open(ALICE) as inbox:
        inbox.change_flags([1], add=["\\Seen"])
        inbox.change_flags([1], add=["\\Seen"])  # nothing changed: no news
    assert heard == [path, path]
    unwatch()
    store.deliver(ALICE, MSG)
    assert len(heard) == 2


def test_a_failing_watcher_does_not_fail_delivery(store: MailStore) -> None:
    with store.open(ALICE) as inbox:
        path = inbox.path

    def broken(_: Path) -> None:
        raise RuntimeError("listener bug")

    store.watch(path, broken)
    assert store.deliver(ALICE, MSG) == 1


def test_session_lock_is_exclusive_until_released(store: MailStore) -> None:
    release = store.try_lock(ALICE)
    assert release is not None
    assert store.try_lock(ALICE) is None
    assert MailStore(store.root).try_lock(ALICE) is None  # another store, same files
    release()
    release()  # idempotent
    again = store.try_lock(ALICE)
    assert again is not None
    again()


# -- an index from before mod-sequences --------------------------------------------------------


def test_an_old_index_is_migrated(tmp_path: Path) -> None:
    store = MailStore(tmp_path)
    store.deliver(ALICE, MSG)
    with store.open(ALICE) as inbox:
        index = inbox.path / INDEX_FILE
    db = sqlite3.connect(index)
    db.executescript(
        "CREATE TABLE m2 AS SELECT uid, base, sub, file, flags, size, internaldate FROM messages;"
        "DROP TABLE messages; ALTER TABLE m2 RENAME TO messages;"
        "DROP TABLE expunged; DELETE FROM meta WHERE key IN"
        " ('schema', 'highestmodseq', 'stamp_new', 'stamp_cur');"
    )
    db.close()
    with MailStore(tmp_path).open(ALICE) as inbox:
        (message,) = inbox.messages()
        assert message.uid == 1 and message.modseq == 1 and inbox.highestmodseq >= 1
        inbox.change_flags([1], add=["\\Seen"])
        assert inbox.get(1).modseq > 1


# -- configuration ---------------------------------------------------------------------------


def test_quota_keys_in_the_config() -> None:
    from reference import config

    cfg = config.load(None, overrides={"mailbox.quota_bytes": 10_000, "mailbox.quota_messages": 5})
    assert (cfg.mailbox.quota_bytes, cfg.mailbox.quota_messages) == (10_000, 5)
    assert config.load(None).mailbox.quota_bytes == 0  # unlimited unless configured
    with pytest.raises(config.ConfigError) as bad:
        config.load(None, overrides={"mailbox.quota_messages": -1})
    assert bad.value.key == "mailbox.quota_messages"
