"""A spool written by the previous version (string-keyed "meta") is read and delivered by
this one: the folder, the lane, the DSN parameters and the kind of message all survive."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from reference.clock import ManualClock
from reference.directory import Directory
from reference.mail.envelope import DsnRequest, RecipientDsn
from reference.spool import Spool
from reference.testing import ReferenceServer

OLD = Path(__file__).parent / "data" / "spool-v1"  # written by the code of commit 40a0d73


def test_old_entries_read_as_typed_values(tmp_path: Path) -> None:
    shutil.copytree(OLD, tmp_path / "spool")
    spool = Spool(tmp_path / "spool", ManualClock())
    junk, bulk, dsn = sorted(spool.entries(), key=lambda e: e.qid)
    assert (junk.folder, junk.lane, junk.body, junk.role) == ("Junk", "regular", "8BITMIME", "mx")
    assert (bulk.lane, bulk.user, bulk.kind) == ("bulk", "alice@example.test", "mail")
    assert bulk.dsn == DsnRequest(
        "HDRS",
        "QQ+2B1",
        {"bob@remote.test": RecipientDsn("FAILURE", ("rfc822", "b+ob@remote.test"))},
    )
    assert (dsn.kind, dsn.about, dsn.sender) == ("dsn", "0000000000AAA000", "")
    # Saved again, it is written in the typed form and reads back the same.
    spool.save(bulk)
    assert b'"meta"' not in (tmp_path / "spool" / f"{bulk.qid}.json").read_bytes()
    assert spool.load(bulk.qid) == bulk


def test_old_entries_are_delivered(tmp_path: Path) -> None:
    data = tmp_path / "var"
    shutil.copytree(OLD, data / "spool")
    d = Directory(data / "directory.sqlite3")
    d.add_domain("example.test")
    d.add_user("alice@example.test", "pw")
    d.close()
    with ReferenceServer(data) as ref:
        deadline = time.monotonic() + 30
        while ref.app.spool.entries() and time.monotonic() < deadline:
            ref.wait_delivered(timeout=1.0)
        assert ref.app.spool.entries() == []
        # Filed where the old version's checks decided (a DMARC quarantine: Junk).
        (junk,) = ref.mailbox_messages("alice@example.test", "Junk")
        assert b"written by the previous version" in junk
        # remote.test does not exist (the test's DNS is empty): alice hears of it, with the
        # DSN parameters her client gave, ORCPT decoded and ENVID as sent.
        (bounce,) = ref.mailbox_messages("alice@example.test", "INBOX")
        assert b"Original-Recipient: rfc822; b+ob@remote.test" in bounce
        assert b"Original-Envelope-Id: QQ+2B1" in bounce
        # The old DSN bounced too, and nothing answered it: no bounce about a bounce.
        assert len(ref.mailbox_messages("alice@example.test", "INBOX")) == 1
