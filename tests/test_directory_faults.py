"""The directory on MariaDB, killed under a stream of mail: 4xx while it is down (never a
5xx), /readyz names it, and mail flows again when it is back, without a restart."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import threading
import time
from pathlib import Path

import pytest
from web_client import Web, reference, smtp_auth

from conformance.requirements import requirement
from reference.directory import Directory, DirectoryUnavailable
from reference.directory.server import MariaDBServer
from reference.testing import ReferenceServer

pytestmark = pytest.mark.mariadb

# Real time: the stream and the database's restart are real processes.
DEADLINE = 60.0


class Stream:
    """One MTA sending mail to alice back to back, on a thread; every reply kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.replies: list[tuple[str, int, bytes]] = []  # (stage, code, text)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def codes(self, since: int, stage: str = "") -> list[int]:
        """The reply codes from the ``since``-th reply on (of one stage, if given)."""
        return [c for s, c, _ in self.replies[since:] if stage in ("", s)]

    def _run(self) -> None:
        while not self._stop.is_set():
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                s.ehlo("client.remote.test")
                code, text = s.mail("someone@remote.test")
                self.replies.append(("mail", code, text))
                if code != 250:
                    continue
                code, text = s.rcpt("alice@example.test")
                self.replies.append(("rcpt", code, text))
                if code != 250:
                    continue
                code, text = s.data(b"From: someone@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n")
                self.replies.append(("data", code, text))
                self.accepted += code == 250


def imap_login(ref: ReferenceServer) -> bytes:
    """LOGIN as alice after STARTTLS: "OK", or the refusal's text."""
    with imaplib.IMAP4("127.0.0.1", ref.port("imap"), timeout=10) as imap:
        imap.starttls(ssl.create_default_context(cafile=str(ref.cafile)))
        try:
            return imap.login("alice@example.test", "pw")[0].encode()
        except imaplib.IMAP4.error as e:
            return str(e).encode()


def wait_for(what: str, done: object) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {DEADLINE:g} s: {what}"
        time.sleep(0.05)


@requirement(
    "PLATFORM",
    "directory.unavailable",
    "MUST",
    "with the directory's database down, RCPT and AUTH are answered 4xx (never 5xx) with a "
    "text that says so, /readyz names the directory, and mail flows again when the database "
    "is back, without a restart of the node",
)
async def test_mariadb_killed_under_a_stream_of_mail(tmp_path: Path) -> None:
    with (
        MariaDBServer(tmp_path / "mariadb") as db,
        reference(tmp_path, **{"directory.url": db.url, "greylist.enabled": False}) as (ref, _),
    ):
        ref.add_domain("example.test")
        ref.add_user("alice@example.test", "pw")
        async with Web(ref) as web:
            with Stream(ref.port("mx")) as stream:
                wait_for("mail accepted", lambda: stream.accepted >= 3)

                db.kill()
                before = len(stream.replies)
                wait_for("a tempfail", lambda: 451 in stream.codes(before))
                assert smtp_auth(ref, "alice@example.test", "pw") == 454
                assert b"[UNAVAILABLE]" in imap_login(ref)
                r = await web.call("GET", "/readyz")
                assert (r.status, r.body["failing"]) == (503, ["directory"])
                assert "unavailable" in r.body["checks"]["directory"]

                db.start()  # the same port and data, as a restarted server
                down = len(stream.replies)
                wait_for("mail again", lambda: 250 in stream.codes(down, "data"))
                assert smtp_auth(ref, "alice@example.test", "pw") == 235
                assert imap_login(ref) == b"OK"
                r = await web.call("GET", "/readyz")
                assert (r.status, r.body["failing"]) == (200, [])

        replies = list(stream.replies)
        assert all(code < 500 for _, code, _ in replies), replies
        refused = {text for stage, code, text in replies if code != 250}
        assert refused <= {b"4.3.0 Directory temporarily unavailable, try again later"}, refused
        # Every message that had its 250 is in the mailbox: none lost while the database was
        # down (a delivery it interrupted is tried again on the queue's schedule).
        ref.clock.advance(3600)
        wait_for(
            "every accepted message delivered",
            lambda: ref.app.store.status("alice@example.test", "INBOX").messages == stream.accepted,
        )


def test_a_restart_between_calls_goes_unnoticed(tmp_path: Path) -> None:
    """The connection a restart closed is replaced, and the read asked again on the new one;
    a write is not repeated (it may have been done), so it says "unavailable" instead."""
    with MariaDBServer(tmp_path / "mariadb") as db:
        directory = Directory(db.url)
        try:
            directory.add_domain("example.test")
            db.stop()
            db.start()
            assert directory.domains() == ["example.test"]
            db.kill()
            db.start()
            with pytest.raises(DirectoryUnavailable):
                directory.add_domain("example.org")
            directory.add_domain("example.org")  # the next call has a new connection
            assert directory.domains() == ["example.org", "example.test"]
        finally:
            directory.close()
