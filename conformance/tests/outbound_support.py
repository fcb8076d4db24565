"""What the outbound requirement tests share: fresh users, submission, DSNs read over IMAP.

Every test makes its own account (capability ``admin``), so rate limits, lockouts and
mailboxes of one test never touch another's, and it reads what reached that account over
IMAP, as the user would. The fake MXs are steered only for the test's own recipients and
restored afterwards: the default target is shared by the whole run.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import imaplib
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from conformance.requirements import not_applicable
from conformance.smtp_client import Reply, SMTPClient
from conformance.target import Account, Target

__all__ = [
    "DsnReport",
    "admin_op",
    "dsn_reports",
    "fresh_user",
    "inbox",
    "message",
    "steer",
    "submission",
    "submit",
    "token",
    "wait_until",
]


def token() -> str:
    return secrets.token_hex(5)


def admin_op(target: Target, name: str) -> Any:
    """An operation of the target's admin beyond adding domains and accounts; the test is not
    applicable on a target whose admin has none."""
    op = getattr(target.admin, name, None)
    if op is None:
        not_applicable(f"the target's admin cannot {name.replace('_', ' ')}")
    return op


def proxied_mail(
    smtp: Any, client: str, sender: str, helo: str | None = None
) -> tuple[SMTPClient, Reply]:
    """A session whose PROXY header claims ``client``, past EHLO; MAIL FROM's reply."""
    c = smtp.proxied(client)
    assert c.greeting is not None
    c.greeting.expect(220, doing="greeting")
    c.ehlo(helo).expect(250, doing="EHLO")
    return c, c.mail(sender)


def fresh_user(target: Target, prefix: str = "out") -> Account:
    """A new account in the target's domain (the admin capability is required)."""
    target.require("admin")
    assert target.admin is not None
    account = Account(f"{prefix}-{token()}@{target.domain}", secrets.token_urlsafe(15))
    target.admin.add_user(account.address, account.password)
    return account


def submission(target: Target, account: Account | None = None) -> SMTPClient:
    """A submission session past STARTTLS (or implicit TLS) and, with ``account``, AUTH."""
    role = "submission" if "submission" in target.endpoints else "submissions"
    ep = target.endpoint(role)
    client = SMTPClient.connect(
        ep.host,
        ep.port,
        timeout=target.timeout,
        tls=target.ssl_context() if ep.implicit_tls else None,
        server_hostname=target.server_name(ep),
        name=role,
    )
    client.ehlo().expect(250, doing="EHLO")
    if not client.tls_active:
        client.starttls(target.ssl_context(), target.server_name(ep)).expect(220, doing="STARTTLS")
        client.ehlo().expect(250, doing="EHLO after STARTTLS")
    if account is not None:
        client.auth_plain(account.address, account.password).expect(235, doing="AUTH PLAIN")
    return client


def message(
    sender: str, to: Sequence[str], subject: str, *, headers: Sequence[str] = (), body: str = ""
) -> bytes:
    lines = [
        f"From: <{sender}>",
        f"To: {', '.join(f'<{r}>' for r in to)}",
        f"Subject: {subject}",
        "Date: Thu, 01 Jan 2026 00:00:00 +0000",
        f"Message-ID: <{token()}@conformance.test>",
        *headers,
        "",
        body or "A message from the conformance suite.",
        "",
    ]
    return "\r\n".join(lines).encode()


def submit(
    client: SMTPClient,
    sender: str,
    rcpts: Sequence[str],
    subject: str,
    *,
    headers: Sequence[str] = (),
) -> None:
    """One transaction, every step expected to succeed."""
    client.mail(sender).expect(250, doing=f"MAIL FROM:<{sender}>")
    for r in rcpts:
        client.rcpt(r).expect(250, doing=f"RCPT TO:<{r}>")
    client.data(message(sender, rcpts, subject, headers=headers)).expect(250, doing="DATA")


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` (real time) until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)


@contextlib.contextmanager
def steer(mx: Any, *rules: Any) -> Iterator[None]:
    """Put ``rules`` in front of a fake MX's policy for the test, and restore it after."""
    from fakes.mx import Policy

    old = mx.policy
    mx.policy = Policy(
        [*rules, *old.rules],
        old.default,
        default_stage=old.default_stage,
        auth=old.auth,
        auth_require_tls=old.auth_require_tls,
    )
    try:
        yield
    finally:
        mx.policy = old


class _IMAP(imaplib.IMAP4_SSL):
    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, server_name: str) -> None:
        self._server_name = server_name
        super().__init__(host, port, ssl_context=ctx, timeout=10)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self._server_name)


def inbox(target: Target, account: Account, folder: str = "INBOX") -> list[bytes]:
    """Every message in one of the account's folders (INBOX by default), read over IMAP."""
    if "imaps" in target.endpoints:
        ep = target.endpoint("imaps")
        conn: imaplib.IMAP4 = _IMAP(ep.host, ep.port, target.ssl_context(), target.server_name(ep))
    else:
        ep = target.endpoint("imap")
        conn = imaplib.IMAP4(ep.host, ep.port, timeout=10)
        conn.starttls(target.ssl_context())
    try:
        conn.login(account.address, account.password)
        typ, _ = conn.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            return []
        _, data = conn.search(None, "ALL")
        out = []
        for num in data[0].split():
            _, fetched = conn.fetch(num, "(BODY.PEEK[])")
            for part in fetched:
                if isinstance(part, tuple):
                    out.append(bytes(part[1]))
        return out
    finally:
        with contextlib.suppress(Exception):
            conn.logout()


class DsnReport:
    """A delivery status notification (RFC 3464) as a test reads it."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.message = email.message_from_bytes(raw, policy=email.policy.compat32)
        self.per_message: dict[str, str] = {}
        self.recipients: list[dict[str, str]] = []
        status = next(
            (p for p in self.message.walk() if p.get_content_type() == "message/delivery-status"),
            None,
        )
        if status is None:
            return
        # compat32 parses message/delivery-status into header blocks: the first is the
        # per-message part, each further one a recipient (RFC 3464 2.1).
        blocks = status.get_payload()
        assert isinstance(blocks, list)
        for i, block in enumerate(blocks):
            fields = {k.lower(): " ".join(str(v).split()) for k, v in block.items()}
            if i == 0:
                self.per_message = fields
            else:
                self.recipients.append(fields)

    @property
    def actions(self) -> list[str]:
        return [r.get("action", "").lower() for r in self.recipients]

    def about(self, rcpt: str) -> dict[str, str] | None:
        for r in self.recipients:
            final = r.get("final-recipient", "")
            if final.partition(";")[2].strip().lower() == rcpt.lower():
                return r
        return None


def dsn_reports(messages: Sequence[bytes], rcpt: str) -> list[DsnReport]:
    """The DSNs among ``messages`` that speak of ``rcpt``."""
    out = []
    for raw in messages:
        report = DsnReport(raw)
        if report.message.get_content_type() == "multipart/report" and report.about(rcpt):
            out.append(report)
    return out
