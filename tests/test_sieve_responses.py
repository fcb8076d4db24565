"""The messages Sieve sends: the vacation reply and the rejection, and when no reply goes."""

from __future__ import annotations

import email
import email.header
import email.policy

import pytest

from reference.sieve import Vacation, no_reply_reason, rejection, vacation_reply

ORIGINAL = (
    "From: Alice <alice@remote.test>\r\nTo: Bob <bob@example.test>\r\n"
    "Subject: Café\r\nMessage-ID: <m2@remote.test>\r\nReferences: <m1@remote.test>\r\n"
    "\r\nhello\r\n"
).encode()
OWN = ("bob@example.test",)


def test_reply_threads_and_marks_itself() -> None:
    data = vacation_reply(
        Vacation("Back soon."),
        ORIGINAL,
        sender="alice@remote.test",
        user="bob@example.test",
        hostname="mail.example.test",
        now=0,
    )
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Auto-Submitted"].startswith("auto-replied")
    assert msg["In-Reply-To"] == "<m2@remote.test>"
    assert msg["References"] == "<m1@remote.test> <m2@remote.test>"
    assert msg["Subject"] == "Auto: Café"  # RFC 5230 4.7, raw UTF-8 read as such
    assert (msg["From"], msg["To"]) == ("bob@example.test", "alice@remote.test")
    assert msg.get_content().strip() == "Back soon."


@pytest.mark.parametrize(
    ("extra", "sender", "why"),
    [
        ("", "", "null sender"),
        ("", "MAILER-DAEMON@remote.test", "automatic sender"),
        ("", "list-request@remote.test", "automatic sender"),
        ("", "bob@example.test", "own address"),
        ("Auto-Submitted: auto-generated\r\n", "alice@remote.test", "auto-submitted"),
        ("List-Unsubscribe: <mailto:u@remote.test>\r\n", "alice@remote.test", "list mail"),
        ("Precedence: junk\r\n", "alice@remote.test", "bulk precedence"),
    ],
)
def test_no_reply_to_automatic_or_list_mail(extra: str, sender: str, why: str) -> None:
    assert no_reply_reason(extra.encode() + ORIGINAL, sender, OWN) == why


def test_reply_only_when_addressed_to_the_user() -> None:
    assert no_reply_reason(ORIGINAL, "alice@remote.test", OWN) is None
    assert no_reply_reason(ORIGINAL, "alice@remote.test", ("other@example.test",)) == (
        "not addressed to the user"
    )
    no = b"Auto-Submitted: no\r\n" + ORIGINAL  # RFC 3834 5: "no" is a person's mail
    assert no_reply_reason(no, "alice@remote.test", OWN) is None


def test_rejection_is_an_mdn_with_the_reason_and_the_headers() -> None:
    data = rejection(
        "Go away.",
        ORIGINAL,
        sender="alice@remote.test",
        recipient="bob@example.test",
        hostname="mail.example.test",
        now=0,
    )
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "disposition-notification"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "message/disposition-notification", "text/rfc822-headers"]
    assert b"Go away." in data and b"Message-ID: <m2@remote.test>" in data
