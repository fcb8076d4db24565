"""The message store: Maildir++ layout, the UID index, flags, expunge, concurrency, safety."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.clock import ManualClock, RealClock
from reference.mailbox import (
    SPECIAL_USE,
    InvalidAddress,
    InvalidFolder,
    MailStore,
    NoSuchFolder,
    NoSuchMessage,
)
from reference.mailbox.paths import account_dir

ALICE = "alice@example.org"
MSG = b"From: bob@example.net\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return MailStore(tmp_path / "mail", clock=ManualClock())


def test_deliver_writes_maildir_and_returns_increasing_uids(store: MailStore) -> None:
    assert [store.deliver(ALICE, MSG) for _ in range(3)] == [1, 2, 3]
    inbox = store.root / "example.org" / "alice"
    assert all((inbox / sub).is_dir() for sub in ("tmp", "new", "cur"))
    assert len(list((inbox / "new").iterdir())) == 3
    assert list((inbox / "tmp").iterdir()) == []
    with store.open(ALICE) as mailbox:
        assert [m.uid for m in mailbox.messages()] == [1, 2, 3]
        assert mailbox.uidnext == 4
        assert mailbox.read(2) == MSG


def test_account_gets_special_use_folders(store: MailStore) -> None:
    assert store.folders(ALICE) == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    account = store.root / "example.org" / "alice"
    for name in SPECIAL_USE:
        assert (account / f".{name}" / "cur").is_dir()
        assert (account / f".{name}" / "maildirfolder").exists()


def test_uids_and_uidvalidity_persist_across_reopen(tmp_path: Path) -> None:
    first = MailStore(tmp_path, clock=ManualClock(start=1_800_000_000))
    uids = [first.deliver(ALICE, MSG) for _ in range(2)]
    with first.open(ALICE) as mailbox:
        validity = mailbox.uidvalidity
        mailbox.set_flags(1, ["\\Deleted"])
        assert mailbox.expunge() == [1]
    assert validity == 1_800_000_000
    again = MailStore(tmp_path)
    with again.open(ALICE) as mailbox:
        assert mailbox.uidvalidity == validity
        assert [m.uid for m in mailbox.messages()] == uids[1:]
    assert again.deliver(ALICE, MSG) == 3  # an expunged UID is never reused


def test_internaldate_comes_from_when_or_clock(tmp_path: Path) -> None:
    clock = ManualClock(start=1_767_225_600.0)
    store = MailStore(tmp_path, clock=clock)
    store.deliver(ALICE, MSG)
    store.deliver(ALICE, MSG, when=1_700_000_000.5)
    with store.open(ALICE) as mailbox:
        first, second = mailbox.messages()
    assert first.internaldate == 1_767_225_600.0
    assert second.internaldate == 1_700_000_000.5
    assert os.stat(second.path).st_mtime == pytest.approx(1_700_000_000.5)


def test_internaldate_without_clock_is_file_mtime(tmp_path: Path) -> None:
    store = MailStore(tmp_path)
    store.deliver(ALICE, MSG)
    with store.open(ALICE) as mailbox:
        (message,) = mailbox.messages()
    assert message.internaldate == os.stat(message.path).st_mtime


def test_stored_with_crlf_so_size_is_wire_size(store: MailStore) -> None:
    store.deliver(ALICE, b"Subject: x\n\nbare lf\rbare cr\r\n")
    with store.open(ALICE) as mailbox:
        (message,) = mailbox.messages()
        data = mailbox.read(message.uid)
    assert data == b"Subject: x\r\n\r\nbare lf\r\nbare cr\r\n"
    assert message.size == len(data)


def test_flags_live_in_index_and_maildir_info(store: MailStore) -> None:
    uid = store.deliver(ALICE, MSG, flags=["\\seen", "$Label1"])
    with store.open(ALICE) as mailbox:
        message = mailbox.get(uid)
        assert message.flags == {"\\Seen", "$Label1"}
        assert message.path.parent.name == "cur" and message.path.name.endswith(":2,S")
        changed = mailbox.change_flags([uid, 99], add=["\\Flagged"], remove=["\\Seen"])
        assert [m.flags for m in changed] == [{"\\Flagged", "$Label1"}]
        assert changed[0].path.name.endswith(":2,F") and changed[0].path.exists()
        assert mailbox.read(uid) == MSG
        with pytest.raises(ValueError):
            mailbox.set_flags(uid, ["\\Recent"])
        with pytest.raises(NoSuchMessage):
            mailbox.set_flags(42, ["\\Seen"])


def test_expunge_removes_only_deleted_and_only_given_uids(store: MailStore) -> None:
    for _ in range(3):
        store.deliver(ALICE, MSG)
    with store.open(ALICE) as mailbox:
        mailbox.change_flags([1, 2, 3], add=["\\Deleted"])
        assert mailbox.expunge([2]) == [2]
        mailbox.set_flags(3, [])
        assert mailbox.expunge() == [1]
        assert [m.uid for m in mailbox.messages()] == [3]
        assert len(list((mailbox.path / "new").iterdir())) == 1
        assert list((mailbox.path / "cur").iterdir()) == []
        with pytest.raises(NoSuchMessage):
            mailbox.read(1)


def test_sync_adopts_foreign_files_and_forgets_vanished_ones(store: MailStore) -> None:
    store.deliver(ALICE, MSG)
    store.deliver(ALICE, MSG)
    inbox = store.root / "example.org" / "alice"
    (inbox / "cur" / "1700000000.foreign.host:2,FS").write_bytes(b"Subject: dropped in\r\n\r\n")
    with store.open(ALICE) as mailbox:
        first = mailbox.get(1)
    first.path.unlink()
    with store.open(ALICE) as mailbox:
        messages = mailbox.messages()
    assert [m.uid for m in messages] == [2, 3]
    assert messages[1].flags == {"\\Flagged", "\\Seen"}


def test_read_follows_a_file_renamed_by_another_maildir_reader(store: MailStore) -> None:
    uid = store.deliver(ALICE, MSG)
    with store.open(ALICE) as mailbox:
        path = mailbox.get(uid).path
        path.rename(path.parent.parent / "cur" / (path.name + ":2,S"))
        assert mailbox.read(uid) == MSG


def test_folders_need_creating_except_inbox_and_special_use(store: MailStore) -> None:
    with pytest.raises(NoSuchFolder):
        store.deliver(ALICE, MSG, folder="Lists/python")
    store.create_folder(ALICE, "Lists/python")
    assert store.deliver(ALICE, MSG, folder="Lists/python") == 1
    assert store.deliver(ALICE, MSG, folder="Junk") == 1
    assert (store.root / "example.org" / "alice" / ".Lists.python" / "new").is_dir()
    assert "Lists/python" in store.folders(ALICE)
    with store.open(ALICE, "inbox") as mailbox:
        assert mailbox.name == "INBOX"


@pytest.mark.parametrize(
    "address",
    ["../x@example.org", "a/b@example.org", "alice@../etc", "alice@exa/mple.org", "alice",
     "alice@localhost", ".alice@example.org", "a..b@example.org", "al\0ce@example.org",
     "alice@-example.org", "alice@example..org", "x" * 65 + "@example.org"],
)  # fmt: skip
def test_unsafe_addresses_are_refused(store: MailStore, address: str) -> None:
    with pytest.raises(InvalidAddress):
        store.deliver(address, MSG)


@pytest.mark.parametrize("folder", ["", "a//b", "../x", "a.b", "/x", "x/", "INBOX/x", "a\nb", "*"])
def test_unsafe_folders_are_refused(store: MailStore, folder: str) -> None:
    with pytest.raises(InvalidFolder):
        store.open(ALICE, folder, create=True)


def test_address_maps_to_lowercase_domain_then_local(tmp_path: Path) -> None:
    assert account_dir(tmp_path, "Alice.Smith+tag@Example.ORG") == (
        tmp_path / "example.org" / "alice.smith+tag"
    )


@given(st.text(max_size=80))
def test_no_address_escapes_the_root(address: str) -> None:
    root = Path("/srv/mail")
    try:
        path = account_dir(root, address)
    except InvalidAddress:
        return
    assert path.parent.parent == root
    assert ".." not in path.parts and all(p and not p.startswith(".") for p in path.parts[3:])


def test_concurrent_threads_get_distinct_uids(tmp_path: Path) -> None:
    store = MailStore(tmp_path)
    uids: list[int] = []
    lock = threading.Lock()

    def deliver() -> None:
        for _ in range(10):
            uid = store.deliver(ALICE, MSG)
            with lock:
                uids.append(uid)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(uids) == list(range(1, 61))


def test_delivery_follows_a_folder_deleted_or_renamed_by_another_process(tmp_path: Path) -> None:
    # Delivery keeps mailboxes open between messages; another process (an IMAP session)
    # deleting or renaming the folder meanwhile must not send later mail to the old one.
    delivery, imap = MailStore(tmp_path), MailStore(tmp_path)
    imap.create_folder(ALICE, "Lists")
    assert delivery.deliver(ALICE, MSG, "Lists") == 1
    imap.rename_folder(ALICE, "Lists", "Old")
    with pytest.raises(NoSuchFolder):
        delivery.deliver(ALICE, MSG, "Lists")
    imap.create_folder(ALICE, "Lists")
    assert delivery.deliver(ALICE, MSG, "Lists") == 1  # the new folder's first message
    imap.delete_folder(ALICE, "Lists")
    imap.create_folder(ALICE, "Lists")
    assert delivery.deliver(ALICE, MSG, "Lists") == 1
    with imap.open(ALICE, "Old") as old, imap.open(ALICE, "Lists") as new:
        assert [m.uid for m in old.messages()] == [1]
        assert [m.uid for m in new.messages()] == [1]
    delivery.close()


_CHILD = """
import sys
from pathlib import Path
from reference.mailbox import MailStore
store = MailStore(Path(sys.argv[1]))
print(" ".join(str(store.deliver("alice@example.org", b"Subject: n\\r\\n\\r\\nx\\r\\n"))
               for _ in range(int(sys.argv[2]))))
"""


def test_concurrent_processes_get_distinct_uids(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path), "25"], stdout=subprocess.PIPE, env=env
        )
        for _ in range(4)
    ]
    uids = [int(u) for child in children for u in child.communicate(timeout=60)[0].split()]
    assert all(child.returncode == 0 for child in children)
    assert sorted(uids) == list(range(1, 101))
    with MailStore(tmp_path).open(ALICE) as mailbox:
        assert [m.uid for m in mailbox.messages()] == list(range(1, 101))
        assert mailbox.uidnext == 101
        assert len(list((mailbox.path / "new").iterdir())) == 100


# -- races between sessions sharing one mailbox (found by imaptest's stress mode) -----------


def test_tmp_cleanup_spares_a_file_in_flight_with_an_old_internal_date(tmp_path: Path) -> None:
    # APPEND stamps the tmp/ file with the message's date before moving it into place; a
    # clean-up by mtime alone deleted it in flight (FileNotFoundError, NO [SERVERBUG]).
    store = MailStore(tmp_path, clock=RealClock())
    with store.open(ALICE) as mailbox:
        in_flight = mailbox.path / "tmp" / "in-flight.tmp"
        in_flight.write_bytes(MSG)
        old = time.time() - 40 * 86400
        os.utime(in_flight, (old, old))
        mailbox.sync(force=True)
        assert in_flight.exists()


def test_append_with_an_old_date_survives_concurrent_cleanups(tmp_path: Path) -> None:
    store = MailStore(tmp_path, clock=RealClock())
    old = time.time() - 40 * 86400
    errors: list[BaseException] = []
    done = threading.Event()

    def append() -> None:
        try:
            for _ in range(40):
                store.append(ALICE, "INBOX", MSG, when=old)
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def clean() -> None:
        with store.open(ALICE) as mailbox:
            while not done.is_set():
                mailbox.sync(force=True)

    threads = [threading.Thread(target=append), threading.Thread(target=clean)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with store.open(ALICE) as mailbox:
        assert len(mailbox.uids()) == 40


def test_read_while_another_session_renames_and_expunges(tmp_path: Path) -> None:
    # Flag changes rename the file (new/ <-> cur/, info letters) and EXPUNGE unlinks it: a
    # reader sees the message's bytes or NoSuchMessage, never FileNotFoundError.
    store = MailStore(tmp_path)
    uids = [store.deliver(ALICE, MSG) for _ in range(30)]
    errors: list[BaseException] = []
    done = threading.Event()

    def churn() -> None:
        with store.open(ALICE) as mailbox:
            for uid in uids:
                for _ in range(10):
                    mailbox.change_flags([uid], add=["\\Seen"])
                    mailbox.change_flags([uid], remove=["\\Seen"])
                mailbox.change_flags([uid], add=["\\Deleted"])
                mailbox.expunge([uid])
        done.set()

    def read() -> None:
        with store.open(ALICE, sync=False) as mailbox:
            while not done.is_set():
                for uid in uids:
                    try:
                        assert mailbox.read(uid) == MSG
                    except NoSuchMessage:
                        pass
                    except BaseException as e:
                        errors.append(e)
                        return

    threads = [threading.Thread(target=churn), *(threading.Thread(target=read) for _ in range(2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
