"""What the SMTP requirement tests share: addresses, messages, extensions, delivered mail."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from conformance.observe import find_delivered
from conformance.plugin import SMTPConnector
from conformance.requirements import not_applicable
from conformance.smtp_client import CLIENT_NAME, Reply, SMTPClient, SMTPProtocolError, SMTPTimeout
from conformance.target import Target

# A domain no target serves (RFC 2606 .test): mail for it is relaying.
FOREIGN = "relay-probe.mailspec.test"

# How long a server must stay silent for the suite to conclude no further reply comes
# (after a line that must get exactly one). Replies on loopback take milliseconds.
QUIET = 0.25


def postmaster(target: Target) -> str:
    # Every domain must accept mail for postmaster (RFC 5321 4.5.1), so a RCPT to it is a
    # valid recipient on any target without knowing its accounts.
    return f"postmaster@{target.domain}"


def marker() -> str:
    """A token to find one test's message among everything delivered."""
    return f"mailspec-{secrets.token_hex(6)}"


def message(
    token: str,
    *,
    sender: str = f"conformance@{CLIENT_NAME}",
    to: str = "postmaster",
    body: Iterable[bytes] = (b"A conformance test message.",),
    subject: str = "conformance",
    headers: Iterable[bytes] = (),
) -> bytes:
    """An RFC 5322 message with CRLF line ends, its Message-ID carrying ``token``."""
    head = [
        f"From: <{sender}>".encode(),
        f"To: <{to}>".encode(),
        f"Subject: {subject} {token}".encode(),
        b"Date: Thu, 01 Jan 2026 00:00:00 +0000",
        f"Message-ID: <{token}@{CLIENT_NAME}>".encode(),
        *headers,
    ]
    return b"\r\n".join([*head, b"", *body]) + b"\r\n"


def fenced(client: SMTPClient, target: Target, data: bytes) -> list[Reply]:
    """Send ``data`` and return the replies it got, however many, without waiting.

    Once ``data``'s first reply is in, a fence follows: RSET (250) and a RCPT with no
    transaction, which RFC 5321 3.3 answers 503. Everything before that pair answered
    ``data``: a line that must get one reply, a smuggled second transaction that would get
    five. The fence waits for that first reply because ``data`` may end in a command that
    RFC 2920 3.1 allows only last in a pipelined group (NOOP, the end of DATA): a server
    may rightly hang up on anything pipelined behind it. A server that hangs up ends the
    list early. A server that does not answer the fence's RCPT with 503 (a bug of its own,
    which RFC 5321 4.1.4's test reports) is read until it falls quiet instead, so that its
    bug does not land on the requirement that called the fence.
    """
    client.send(data)
    replies: list[Reply] = []
    fence_sent = False
    while len(replies) < 50:
        if client.closed:
            return replies
        try:
            # Past the fence, replies come in milliseconds: a pause means they are all in.
            replies.append(client.read_reply(timeout=4 * QUIET if fence_sent else None))
        except SMTPTimeout:
            if fence_sent and len(replies) >= 3:
                return replies[:-2]
            raise
        except SMTPProtocolError:
            if client.closed:
                return replies
            raise
        if not fence_sent:
            fence_sent = True
            try:
                client.send(f"RSET\r\nRCPT TO:<{postmaster(target)}>\r\n".encode())
            except OSError:
                return replies  # it hung up after its reply
        if len(replies) >= 2 and replies[-1].code == 503 and replies[-2].code == 250:
            return replies[:-2]
    raise AssertionError(f"no end to the replies: {[str(r) for r in replies[:10]]} ...")


def no_transaction(client: SMTPClient, doing: str) -> None:
    """No mail transaction is open: a new MAIL FROM is taken (a nested one gets 503).

    Not "RCPT gets 503": a server that takes RCPT without MAIL (RFC 5321 4.1.4, which has
    its own test) would then fail every requirement that asks whether a transaction ended.
    """
    client.mail("").expect(250, doing=f"MAIL FROM:<> {doing} (503: a transaction was still open)")


def require_extension(client: SMTPClient, keyword: str) -> tuple[str, ...]:
    """The parameters of an EHLO keyword; the test is not applicable without it."""
    ext = client.extensions
    if keyword not in ext:
        not_applicable(f"the server does not offer {keyword} (RFC extension not advertised)")
    return ext[keyword]


def transaction(client: SMTPClient, target: Target, sender: str = "") -> None:
    """MAIL FROM and RCPT TO postmaster, both 250."""
    client.mail(sender).expect(250, doing=f"MAIL FROM:<{sender}>")
    client.rcpt(postmaster(target)).expect(250, doing=f"RCPT TO:<{postmaster(target)}>")


def login(smtp: SMTPConnector, target: Target, role: str = "submission") -> SMTPClient:
    """A submission session past STARTTLS (unless implicit TLS) and AUTH PLAIN."""
    account = target.account
    client = smtp.session(role, tls=True)
    require_extension(client, "AUTH")
    client.auth_plain(account.address, account.password).expect(235, doing="AUTH PLAIN")
    return client


def delivered(target: Target, address: str, token: str, timeout: float = 10.0) -> bytes:
    """The message carrying ``token`` once it is in ``address``'s mailbox.

    Read over the target's own IMAP or POP3 with the test account
    (:mod:`conformance.observe`); not applicable where the target offers no such access.
    """
    account = target.account
    assert address == account.address, f"the suite can only read {account.address}'s mailbox"
    return find_delivered(target, token, timeout)


def body_of(msg: bytes) -> bytes:
    """What follows the header (the first empty line)."""
    _, sep, body = msg.partition(b"\r\n\r\n")
    assert sep, f"delivered message has no header/body separator: {msg[:200]!r}"
    return body
