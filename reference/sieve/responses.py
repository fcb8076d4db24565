"""Messages a Sieve run sends: the vacation reply (RFC 5230, RFC 3834) and the rejection
message of reject (RFC 5429 2.1, an MDN)."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
import secrets
from collections.abc import Iterable
from email.header import Header
from email.message import Message

from reference.sieve.interpreter import Vacation, header_text, parse_header

__all__ = ["error_notice", "no_reply_reason", "rejection", "vacation_reply"]

# RFC 5230 4.6 / RFC 3834 2: senders that are programs, never people.
_ROBOT_LOCALS = re.compile(r"^(mailer-daemon|postmaster|listserv|majordomo|owner-.*|.*-request)$")
_LIST_FIELDS = ("list-id", "list-help", "list-unsubscribe", "list-subscribe", "list-post")


def _parse(message: bytes) -> Message:
    return parse_header(message)


def no_reply_reason(message: bytes, sender: str, own: Iterable[str]) -> str | None:
    """Why no automatic reply may go to ``sender`` (None: it may), per RFC 3834 and
    RFC 5230 4.5/4.6. ``own``: the user's addresses (account, aliases, ``:addresses``)."""
    if not sender:
        return "null sender"  # RFC 3834 2: replies go to the envelope sender only
    mine = {a.lower() for a in own}
    if sender.lower() in mine:
        return "own address"
    local = sender.rpartition("@")[0].lower()
    if _ROBOT_LOCALS.match(local):
        return "automatic sender"
    msg = _parse(message)
    auto = str(msg.get("Auto-Submitted", "no")).split(";")[0].strip().lower()
    if auto != "no":
        return "auto-submitted"  # RFC 3834 2
    if any(msg.get(f) is not None for f in _LIST_FIELDS):
        return "list mail"  # RFC 2369 / RFC 2919 fields
    if str(msg.get("Precedence", "")).strip().lower() in ("bulk", "list", "junk"):
        return "bulk precedence"
    # RFC 5230 4.5: only when one of the user's addresses is a visible recipient.
    fields = [
        str(v)
        for h in ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
        for v in msg.get_all(h, [])
    ]
    visible = {a.lower() for _, a in email.utils.getaddresses(fields)}
    if not visible & mine:
        return "not addressed to the user"
    return None


def _subject(vac: Vacation, original: Message) -> str:
    if vac.subject:
        return vac.subject
    # RFC 5230 4.7: "Auto:" and the original subject.
    return f"Auto: {header_text(str(original.get('Subject', '')))}".strip()


def vacation_reply(
    vac: Vacation, message: bytes, *, sender: str, user: str, hostname: str, now: float
) -> bytes:
    """The reply to ``sender`` (sent with a null envelope sender, RFC 3834 3.3)."""
    original = _parse(message)
    reply = Message()
    reply["From"] = vac.from_ or user
    reply["To"] = sender
    subject = _subject(vac, original)
    reply["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    reply["Date"] = email.utils.formatdate(now)
    reply["Message-ID"] = f"<{secrets.token_hex(12)}.vacation@{hostname}>"
    reply["Auto-Submitted"] = "auto-replied (vacation)"  # RFC 3834 5, RFC 5230 5.6
    msgid = header_text(str(original.get("Message-ID", ""))).strip()
    if msgid:
        # RFC 3834 3.1.5/3.1.6: threaded under the message it answers.
        reply["In-Reply-To"] = msgid
        refs = " ".join(header_text(str(original.get("References", ""))).split())
        reply["References"] = f"{refs} {msgid}".strip()
    reply["MIME-Version"] = "1.0"
    if vac.mime:
        # RFC 5230 4.8: the reason is a MIME entity of its own.
        entity = email.message_from_string(vac.reason.replace("\r\n", "\n"))
        for name, value in entity.items():
            reply[name] = value
        reply.set_payload(entity.get_payload())
    else:
        reply["Content-Type"] = 'text/plain; charset="utf-8"'
        reply["Content-Transfer-Encoding"] = "7bit" if vac.reason.isascii() else "8bit"
        reply.set_payload(vac.reason.replace("\r\n", "\n"))
    return _bytes(reply)


def rejection(
    reason: str, message: bytes, *, sender: str, recipient: str, hostname: str, now: float
) -> bytes:
    """RFC 5429 2.1.1 / RFC 3798: the MDN saying the message was refused, with its headers."""
    original = _parse(message)
    boundary = f"=_reject_{secrets.token_hex(12)}"
    head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    msgid = header_text(str(original.get("Message-ID", ""))).strip()
    subject = header_text(str(original.get("Subject", ""))).strip()
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{sender}>",
        f"Subject: Rejected: {subject}".rstrip(),
        f"Date: {email.utils.formatdate(now)}",
        f"Message-ID: <{secrets.token_hex(12)}.reject@{hostname}>",
        *([f"In-Reply-To: {msgid}"] if msgid else []),
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=disposition-notification;",
        f' boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        f"Your message to <{recipient}> was refused by the recipient's own filter:",
        "",
        *reason.replace("\r\n", "\n").split("\n"),
        "",
        f"--{boundary}",
        "Content-Type: message/disposition-notification",
        "",
        f"Reporting-UA: {hostname}; mailspec Sieve",
        f"Final-Recipient: rfc822; {recipient}",
        *([f"Original-Message-ID: {msgid}"] if msgid else []),
        "Disposition: automatic-action/MDN-sent-automatically; deleted",
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
        *head.split("\r\n"),
        "",
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def _bytes(msg: Message) -> bytes:
    text = msg.as_string(policy=email.policy.compat32.clone(linesep="\r\n"))
    return text.encode("utf-8")


def error_notice(user: str, error: str, *, hostname: str, now: float) -> bytes:
    """The note left in the user's INBOX when their script fails (once per script version)."""
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{user}>",
        "Subject: Your mail filter (Sieve script) failed",
        f"Date: {email.utils.formatdate(now)}",
        f"Message-ID: <{secrets.token_hex(12)}.sieve-error@{hostname}>",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "Your active Sieve script failed while it filtered a message:",
        "",
        f"    {error}",
        "",
        "Nothing was lost: the message was kept in your INBOX, as it will be each time the",
        "script fails. You hear of this once until you store or activate a script again.",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")
