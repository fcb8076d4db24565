"""A full mailbox defers delivery (4.2.2) and keeps the message queued: nothing is lost."""

from __future__ import annotations

import smtplib
from pathlib import Path

from reference.testing import ReferenceServer


def test_over_quota_is_deferred_not_lost(tmp_path: Path) -> None:
    with ReferenceServer(tmp_path / "var", overrides={"mailbox.quota_messages": 1}) as ref:
        ref.add_domain("example.test")
        ref.add_user("bob@example.test", "pw")
        for n in range(2):
            with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
                s.sendmail(
                    "a@remote.test",
                    ["bob@example.test"],
                    f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(),
                )
            ref.wait_delivered()
        assert len(ref.mailbox_messages("bob@example.test")) == 1
        (entry,) = ref.app.spool.entries()
        assert entry.recipients[0].reply.startswith("4.2.2")
        assert entry.next_attempt > ref.clock.now()
