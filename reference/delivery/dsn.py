"""Delivery status notifications (RFC 3464): the bounce and the delay warning."""

from __future__ import annotations

import email.utils
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from reference.spool import QueueEntry

__all__ = ["Failure", "build_dsn", "should_notify"]

_HEADER_LIMIT = 64 * 1024  # original headers quoted in the DSN, at most


@dataclass(frozen=True)
class Failure:
    """One recipient in a DSN: its address, RFC 3463 status, and the remote's reply."""

    recipient: str
    status: str  # "5.1.1"
    diagnostic: str  # "550 5.1.1 no such user" as the remote said it, or our own reason
    remote_mta: str = ""  # the host that answered, if one did


def should_notify(entry: QueueEntry) -> bool:
    """No DSN for a null sender (RFC 3464 and RFC 5321 6.1: no bounce loops)."""
    return entry.sender != "" and entry.kind != "dsn"


def _headers_of(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    return head[:_HEADER_LIMIT]


def build_dsn(
    *,
    reporting_mta: str,
    entry: QueueEntry,
    failures: Sequence[Failure],
    original: bytes,
    now: float,
    delayed: bool = False,
) -> bytes:
    """A multipart/report DSN to ``entry.sender`` about ``failures``."""
    boundary = f"=_dsn_{secrets.token_hex(12)}"
    date = email.utils.formatdate(now)
    arrival = email.utils.formatdate(entry.created)
    action = "delayed" if delayed else "failed"
    subject = "Delivery delayed: still trying" if delayed else "Undelivered Mail Returned to Sender"
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{entry.sender}>",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <{entry.qid}.{secrets.token_hex(4)}.dsn@{reporting_mta}>",
        "Auto-Submitted: auto-replied",  # RFC 3834: never answered by autoresponders
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "",
    ]
    if delayed:
        lines.append("Your message has not been delivered yet; the system keeps trying.")
    else:
        lines.append("Your message could not be delivered to one or more recipients.")
    lines.append(f"It was received on {arrival} with queue id {entry.qid}.")
    lines.append("")
    for f in failures:
        lines.append(f"<{f.recipient}>: {f.diagnostic}")
    envid = entry.dsn.envid
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        # RFC 3464 2.2: per-message fields.
        f"Reporting-MTA: dns; {reporting_mta}",
        *([f"Original-Envelope-Id: {envid}"] if envid else []),
        f"X-Mailspec-Queue-ID: {entry.qid}",
        f"Arrival-Date: {arrival}",
    ]
    for f in failures:
        # RFC 3464 2.3: per-recipient fields, one block each, separated by a blank line.
        lines.append("")
        orcpt = entry.dsn.for_recipient(f.recipient).orcpt
        if orcpt:
            # RFC 3464 2.3.1: "addr-type; address", the address decoded from its xtext.
            lines.append(f"Original-Recipient: {orcpt[0]}; {orcpt[1]}")
        lines += [
            f"Final-Recipient: rfc822; {f.recipient}",
            f"Action: {action}",
            f"Status: {f.status}",
        ]
        if f.remote_mta:
            lines.append(f"Remote-MTA: dns; {f.remote_mta}")
        lines.append(f"Diagnostic-Code: smtp; {f.diagnostic}")
        lines.append(f"Last-Attempt-Date: {date}")
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    body = "\r\n".join(lines).encode("utf-8") + b"\r\n"
    # RET=FULL could return the whole message; headers are enough and never re-spread spam.
    body += _headers_of(original).rstrip(b"\r\n") + b"\r\n"
    body += f"\r\n--{boundary}--\r\n".encode()
    return body
