"""PLATFORM inbound.spam.settings: thresholds per domain and per user, allowed and blocked senders.

These need the ``admin`` capability and an admin that manages spam settings: the
reference's admin offers ``set_spam_thresholds(scope, reject=, junk=)``,
``clear_spam_thresholds(scope)``, ``allow_sender(address, pattern)``,
``block_sender(address, pattern)`` and ``unlist_sender(address, pattern)`` (patterns: a full
address or ``@domain``); a target whose admin lacks them is reported not applicable.

Scores differ between filters, so the threshold tests first measure: a mildly spammy
probe is sent to a user without settings, its score read from the delivered message
(SpamAssassin's ``X-Spam-Status: … score=``, ``X-Spam-Score``, Rspamd's ``X-Spamd-Result
[S / T]``), and the thresholds under test are set around that score. Each test makes its
own accounts (and domain), so no setting leaks into another test.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.requirements import not_applicable
from conformance.smtp_client import Reply
from conformance.target import Account, Admin, Target
from conformance.tests.test_auth_inbound import find_message, header_section
from conformance.tests.test_inbound_spam import GTUBE_ADD_HEADER, marked_as_spam
from conformance.tests.test_inbound_virus import infected

# Phrases every content filter scores a little, not enough for Junk at usual thresholds.
PROBE_BODY = (
    "Act now and verify your account details today, click here to keep your access. "
    "This is a limited time offer."
)
SPAM_ADMIN = (
    "set_spam_thresholds",
    "clear_spam_thresholds",
    "allow_sender",
    "block_sender",
    "unlist_sender",
)


def token() -> str:
    return secrets.token_hex(5)


def spam_admin(admin: Admin) -> Any:
    """The admin, if it manages spam settings; else the test is not applicable."""
    missing = [m for m in SPAM_ADMIN if not callable(getattr(admin, m, None))]
    if missing:
        not_applicable(f"the target's admin cannot manage spam settings ({', '.join(missing)})")
    return admin


def fresh(admin: Admin, domain: str, tag: str = "spam") -> Account:
    acc = Account(f"{tag}-{token()}@{domain}", secrets.token_urlsafe(14))
    admin.add_user(acc.address, acc.password)
    return acc


def mail(sender: str, to: str, subject: str, body: str) -> bytes:
    domain = sender.rpartition("@")[2]
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{token()}@{domain}>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def send(smtp: SMTPConnector, sender: str, rcpt: str, message: bytes) -> Reply:
    client = smtp("smtp")
    client.ehlo().expect(250, doing="EHLO")
    client.mail(sender).expect(250, doing=f"MAIL FROM:<{sender}>")
    client.rcpt(rcpt).expect(250, doing=f"RCPT TO:<{rcpt}>")
    return client.data(message)


def delivered_to(
    smtp: SMTPConnector, target: Target, acc: Account, body: str, sender: str
) -> tuple[str, bytes]:
    """Send ``body`` to ``acc``; (folder, message) once it is there."""
    subject = f"probe {token()}"
    send(smtp, sender, acc.address, mail(sender, acc.address, subject, body)).expect(
        250, doing="DATA"
    )
    return find_message(target, acc, subject)


_SCORES = (
    re.compile(r"(?im)^x-spam-score:\s*(-?\d+(?:\.\d+)?)"),
    re.compile(r"(?im)^x-spam-status:.*?\bscore=(-?\d+(?:\.\d+)?)"),
    re.compile(r"(?im)^x-spamd-result:.*?\[\s*(-?\d+(?:\.\d+)?)\s*/"),
)


def spam_score(raw: bytes) -> float:
    head = header_section(raw)
    for rx in _SCORES:
        m = rx.search(head)
        if m:
            return float(m.group(1))
    not_applicable("the target states no spam score in delivered mail (X-Spam-Status, …)")


def probe_score(smtp: SMTPConnector, target: Target, admin: Admin) -> float:
    """The probe's score for a user with no settings, where it must land in the inbox."""
    plain = fresh(admin, target.domain, "probe")
    folder, raw = delivered_to(smtp, target, plain, PROBE_BODY, f"offers@{token()}.example")
    score = spam_score(raw)
    if folder != "INBOX" or score <= 0:
        not_applicable(f"the probe scored {score} into {folder}: no room to set thresholds")
    return score


@requirement(
    "PLATFORM",
    "inbound.spam.settings",
    "MUST",
    "a user's own junk threshold files into their Junk folder a message that the platform's "
    "threshold leaves in the inbox",
    needs=("admin",),
)
def test_user_junk_threshold(smtp: SMTPConnector, target: Target, admin: Admin) -> None:
    sa = spam_admin(admin)
    score = probe_score(smtp, target, admin)
    strict = fresh(admin, target.domain)
    sa.set_spam_thresholds(strict.address, junk=score / 2)
    folder, raw = delivered_to(smtp, target, strict, PROBE_BODY, f"offers@{token()}.example")
    assert folder == "Junk", f"delivered into {folder} (score {spam_score(raw)}, junk {score / 2})"
    assert marked_as_spam(raw), f"no spam mark in:\n{header_section(raw)}"


@requirement(
    "PLATFORM",
    "inbound.spam.settings",
    "MUST",
    "a user's own reject threshold refuses at DATA, with 550 5.7.1 stating the score, a "
    "message that other users receive",
    needs=("admin",),
)
def test_user_reject_threshold(smtp: SMTPConnector, target: Target, admin: Admin) -> None:
    sa = spam_admin(admin)
    score = probe_score(smtp, target, admin)
    strict = fresh(admin, target.domain)
    sa.set_spam_thresholds(strict.address, reject=score / 2, junk=score / 4)
    sender = f"offers@{token()}.example"
    reply = send(smtp, sender, strict.address, mail(sender, strict.address, "offer", PROBE_BODY))
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)
    assert "spam" in reply.text.lower(), f"the reply does not say why: {reply}"
    assert re.search(r"score\s+-?\d+(?:\.\d+)?", reply.text), f"no score in {reply}"


@requirement(
    "PLATFORM",
    "inbound.spam.settings",
    "MUST",
    "a domain's thresholds apply to its users, and a user's own thresholds take precedence",
    needs=("admin",),
)
def test_domain_thresholds_and_user_precedence(
    smtp: SMTPConnector, target: Target, admin: Admin
) -> None:
    sa = spam_admin(admin)
    score = probe_score(smtp, target, admin)
    domain = f"strict-{token()}.{target.domain}"
    admin.add_domain(domain)
    sa.set_spam_thresholds(domain, junk=score / 2)
    member, lenient = fresh(admin, domain), fresh(admin, domain)
    sa.set_spam_thresholds(lenient.address, reject=score * 20 + 20, junk=score * 10 + 10)
    sender = f"offers@{token()}.example"
    folder, _ = delivered_to(smtp, target, member, PROBE_BODY, sender)
    assert folder == "Junk", f"the domain's junk threshold was not applied: {folder}"
    folder, _ = delivered_to(smtp, target, lenient, PROBE_BODY, sender)
    assert folder == "INBOX", f"the user's own threshold did not take precedence: {folder}"


@requirement(
    "PLATFORM",
    "inbound.spam.settings",
    "MUST",
    "a sender on a user's block list (@domain) is refused at RCPT with 550 5.7.1, for that "
    "user only",
    needs=("admin",),
)
def test_blocked_domain_is_refused_at_rcpt(
    smtp: SMTPConnector, target: Target, admin: Admin
) -> None:
    sa = spam_admin(admin)
    blocker, other = fresh(admin, target.domain), fresh(admin, target.domain)
    bad = f"{token()}.example"
    sa.block_sender(blocker.address, f"@{bad}")
    client = smtp("smtp")
    client.ehlo().expect(250, doing="EHLO")
    client.mail(f"anyone@{bad}").expect(250, doing="MAIL FROM")
    reply = client.rcpt(blocker.address)
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)
    client.rcpt(other.address).expect(250, doing="RCPT TO another user")
    # Taken off the list, the sender is accepted again.
    sa.unlist_sender(blocker.address, f"@{bad}")
    client.rset().expect(250, doing="RSET")
    client.mail(f"anyone@{bad}").expect(250, doing="MAIL FROM")
    client.rcpt(blocker.address).expect(250, doing="RCPT TO after unblocking")


@requirement(
    "PLATFORM",
    "inbound.spam.settings",
    "MUST",
    "a block list entry naming one address refuses that sender, not others of its domain",
    needs=("admin",),
)
def test_blocked_address_is_refused_alone(
    smtp: SMTPConnector, target: Target, admin: Admin
) -> None:
    sa = spam_admin(admin)
    blocker = fresh(admin, target.domain)
    domain = f"{token()}.example"
    sa.block_sender(blocker.address, f"Pest@{domain}")
    client = smtp("smtp")
    client.ehlo().expect(250, doing="EHLO")
    client.mail(f"friend@{domain}").expect(250, doing="MAIL FROM")
    client.rcpt(blocker.address).expect(250, doing="RCPT TO from another sender")
    client.rset().expect(250, doing="RSET")
    client.mail(f"pest@{domain}").expect(250, doing="MAIL FROM")
    reply = client.rcpt(blocker.address)
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)


@requirement(
    "PLATFORM",
    "inbound.spam.settings",
    "MUST",
    "mail from a sender on a user's allow list reaches their inbox unmarked where it would "
    "otherwise be Junk; other users' mail is filtered as before",
    needs=("admin",),
)
def test_allowed_sender_reaches_the_inbox(
    smtp: SMTPConnector, target: Target, admin: Admin
) -> None:
    sa = spam_admin(admin)
    allower, other = fresh(admin, target.domain), fresh(admin, target.domain)
    sender = f"news@{token()}.example"
    sa.allow_sender(allower.address, f"@{sender.split('@')[1]}")
    body = f"This week's letter.\r\n{GTUBE_ADD_HEADER}"
    folder, raw = delivered_to(smtp, target, allower, body, sender)
    assert folder == "INBOX", f"delivered into {folder}"
    assert not marked_as_spam(raw), f"marked as spam:\n{header_section(raw)}"
    folder, _ = delivered_to(smtp, target, other, body, sender)
    assert folder == "Junk", f"another user's copy went to {folder}"


@requirement(
    "PLATFORM",
    "inbound.spam.settings",
    "MUST",
    "a virus from an allow-listed sender is still refused: the allow list skips spam scoring only",
    needs=("admin", "antivirus"),
)
def test_allow_list_never_skips_the_virus_scan(
    smtp: SMTPConnector, target: Target, admin: Admin
) -> None:
    sa = spam_admin(admin)
    allower = fresh(admin, target.domain)
    sender = f"billing@{token()}.example"
    control = send(smtp, sender, allower.address, infected(sender, allower.address))
    if control.code == 250:
        not_applicable("the target does not refuse viruses at DATA")
    sa.allow_sender(allower.address, sender)
    reply = send(smtp, sender, allower.address, infected(sender, allower.address))
    assert reply.code == control.code and reply.enhanced == "5.7.1", str(reply)
