"""A disabled account gets no mail: refused at RCPT for its own address (550 5.2.1), skipped
in a group alias, and bounced if it was disabled between RCPT and delivery."""

from __future__ import annotations

import smtplib
from pathlib import Path

from reference.testing import ReferenceServer


def test_disabled_accounts_get_no_copy(tmp_path: Path) -> None:
    with ReferenceServer(tmp_path / "var") as ref:
        ref.add_domain("example.test")
        for user in ("bob", "carol", "dave"):
            ref.add_user(f"{user}@example.test", "pw")
        ref.add_alias("team@example.test", "bob@example.test", "carol@example.test")
        ref.disable_user("bob@example.test")
        with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
            s.sendmail("a@remote.test", ["team@example.test"], b"Subject: t\r\n\r\nx\r\n")
            s.ehlo("mta.remote.test")
            s.mail("a@remote.test")
            code, text = s.rcpt("bob@example.test")
            assert (code, text[:5]) == (550, b"5.2.1")
            s.rset()
            # Carol is disabled after her RCPT was accepted: a bounce, not a silent copy.
            s.mail("dave@example.test")  # a sender here: the bounce is seen in his INBOX
            assert s.rcpt("carol@example.test")[0] == 250
            ref.disable_user("carol@example.test")
            assert s.data(b"Subject: late\r\n\r\nx\r\n")[0] == 250
        ref.wait_delivered()
        assert ref.mailbox_messages("bob@example.test") == []
        assert len(ref.mailbox_messages("carol@example.test")) == 1
        (bounce,) = ref.mailbox_messages("dave@example.test")
        assert b"5.2.1" in bounce
