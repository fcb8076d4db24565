"""A full mailbox defers delivery (4.2.2) and keeps the message queued: nothing is lost."""

from __future__ import annotations

import smtplib
from pathlib import Path

from reference.testing import ReferenceServer


def test_over_quota_at_delivery_is_deferred_not_lost(tmp_path: Path) -> None:
    with ReferenceServer(tmp_path / "var", overrides={"mailbox.quota_messages": 1}) as ref:
        ref.add_domain("example.test")
        ref.add_user("bob@example.test", "pw")
        with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
            s.ehlo("mta.remote.test")
            s.mail("a@remote.test")
            assert s.rcpt("bob@example.test")[0] == 250
            # The box fills up between RCPT and delivery (another message got there first).
            ref.store.deliver("bob@example.test", b"Subject: first\r\n\r\nx\r\n")
            assert s.data(b"Subject: second\r\n\r\nbody\r\n")[0] == 250
        ref.wait_delivered()
        assert len(ref.mailbox_messages("bob@example.test")) == 1
        (entry,) = ref.app.spool.entries()
        assert entry.recipients[0].reply.startswith("4.2.2")
        assert entry.next_attempt > ref.clock.now()


def test_full_mailbox_is_refused_at_rcpt(tmp_path: Path) -> None:
    with ReferenceServer(tmp_path / "var", overrides={"mailbox.quota_messages": 1}) as ref:
        ref.add_domain("example.test")
        ref.add_user("bob@example.test", "pw")
        ref.add_user("carol@example.test", "pw")
        with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
            s.sendmail("a@remote.test", ["bob@example.test"], b"Subject: 1\r\n\r\nx\r\n")
        ref.wait_delivered()
        with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
            s.ehlo("mta.remote.test")
            s.mail("a@remote.test")
            code, text = s.rcpt("bob@example.test")
            assert (code, text[:5]) == (452, b"4.2.2")
            assert s.rcpt("carol@example.test")[0] == 250  # others still get their mail


def test_alias_retry_files_each_target_once(tmp_path: Path) -> None:
    """An alias with two accounts, one of them full: the retry files only the one that
    has no copy yet (local delivery is idempotent per target within one queue entry)."""
    with ReferenceServer(tmp_path / "var") as ref:
        ref.add_domain("example.test")
        ref.add_user("bob@example.test", "pw")
        ref.add_user("carol@example.test", "pw")
        ref.add_alias("team@example.test", "bob@example.test", "carol@example.test")
        with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
            s.ehlo("mta.remote.test")
            s.mail("a@remote.test")
            assert s.rcpt("team@example.test")[0] == 250
            # Carol's box fills up between RCPT and delivery.
            ref.set_quota("carol@example.test", messages=1)
            ref.store.deliver("carol@example.test", b"Subject: first\r\n\r\nx\r\n")
            assert s.data(b"Subject: team\r\n\r\nbody\r\n")[0] == 250
        ref.wait_delivered()
        (entry,) = ref.app.spool.entries()
        assert entry.recipients[0].reply.startswith("4.2.2")
        assert entry.recipients[0].filed == ["bob@example.test"]
        ref.set_quota("carol@example.test", messages=0)  # she made room
        ref.clock.advance(entry.next_attempt - ref.clock.now())
        ref.app.runner.notify(entry.qid)
        ref.wait_delivered()
        assert not ref.app.spool.entries()
        assert len(ref.mailbox_messages("bob@example.test")) == 1
        assert len(ref.mailbox_messages("carol@example.test")) == 2
