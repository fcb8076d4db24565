"""Locust users: an inbound MTA delivering to local users through the MX, over loopback."""

from __future__ import annotations

import itertools
import smtplib
import time
import uuid
from email.message import EmailMessage
from urllib.parse import urlsplit

from locust import User, between, task

# Message-IDs of every message the MX accepted with a 250, for the zero-loss check.
ACCEPTED: list[str] = []
_seq = itertools.count()


def _loopback_only(host: str) -> tuple[str, int]:
    parts = urlsplit(host)
    if parts.hostname is None or not (
        parts.hostname.startswith("127.") or parts.hostname in ("::1", "localhost")
    ):
        raise ValueError(f"load runs send only to loopback, not to {host!r}")
    return parts.hostname, parts.port or 25


class InboundMta(User):
    """A remote MTA: one SMTP connection, reused, sending small messages to local users."""

    wait_time = between(0.0, 0.05)
    recipients: list[str] = ["user0@example.test"]

    def on_start(self) -> None:
        self.target = _loopback_only(self.host or "")
        self.smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        if self.smtp is None:
            self.smtp = smtplib.SMTP(*self.target, timeout=10)
            self.smtp.ehlo("mta.load.test")
        return self.smtp

    @task
    def send(self) -> None:
        n = next(_seq)
        rcpt = self.recipients[n % len(self.recipients)]
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "sender@remote.test", rcpt, f"load {n}"
        msg["Message-ID"] = f"<{uuid.uuid4().hex}@load.test>"
        msg.set_content("x" * 512)
        t0 = time.perf_counter()
        exc: Exception | None = None
        try:
            self._connect().send_message(msg)
            ACCEPTED.append(msg["Message-ID"])
        except (smtplib.SMTPException, OSError) as e:
            exc = e
            self._drop()
        self.environment.events.request.fire(
            request_type="SMTP",
            name="mx accept",
            response_time=(time.perf_counter() - t0) * 1000,
            response_length=len(msg.as_bytes()),
            exception=exc,
            context={},
        )

    def _drop(self) -> None:
        # Never QUIT from a kill path: close the socket only (see LIBRARIES.md on locust).
        if self.smtp is not None:
            try:
                self.smtp.close()
            finally:
                self.smtp = None

    def on_stop(self) -> None:
        self._drop()
