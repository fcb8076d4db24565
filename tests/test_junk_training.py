"""Moving mail into Junk over IMAP teaches the spam classifier; moving it out unlearns."""

from __future__ import annotations

import smtplib
import ssl
import time
from pathlib import Path

from imapclient import IMAPClient

from reference.testing import ReferenceServer


def wait_for(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


def test_move_to_junk_and_back_trains_bayes(tmp_path: Path) -> None:
    with ReferenceServer(tmp_path / "var") as ref:
        ref.add_domain("example.test")
        ref.add_user("bob@example.test", "bob-pw")
        with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
            s.sendmail(
                "a@remote.test",
                ["bob@example.test"],
                b"Subject: cheap pills\r\nFrom: a@remote.test\r\n\r\nbuy now\r\n",
            )
        ref.wait_delivered()
        assert ref.app.bayes is not None
        bayes, own = ref.app.bayes.global_, ref.app.bayes.user("bob@example.test")
        assert bayes.store.totals() == own.store.totals() == (0, 0)
        ctx = ssl.create_default_context(cafile=str(ref.cafile))
        with IMAPClient("127.0.0.1", port=ref.port("imaps"), ssl=True, ssl_context=ctx) as c:
            c.login("bob@example.test", "bob-pw")
            c.select_folder("INBOX")
            c.move(c.search("ALL"), "Junk")
            wait_for(lambda: bayes.store.totals() == (1, 0))
            wait_for(lambda: own.store.totals() == (1, 0))  # bob's own classifier too
            c.select_folder("Junk")
            c.move(c.search("ALL"), "INBOX")
            wait_for(lambda: bayes.store.totals() == own.store.totals() == (0, 1))
