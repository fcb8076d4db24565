"""PLATFORM inbound.spam / outbound.spam: spam is refused in the dialogue or filed into Junk.

Spam is made with the test strings filters agree on, as the virus tests use EICAR: GTUBE
(SpamAssassin, Rspamd: certain spam, refused) and Rspamd's "add header" variant of it
(``YJS*…``; Rspamd honours it with ``gtube_patterns = "all"``), which must land between
the junk and the reject thresholds. Phishing is a link whose text names one site while it
goes to a raw IP address. For the URI blocklist test, a target with the ``fake-dns``
capability is expected to look link domains up in :data:`URIBL_ZONE`. Where mail went is
read over IMAP, as a user would see it.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.smtp_client import Reply
from conformance.target import URIBL_ZONE, Target
from conformance.tests.test_auth_inbound import find_message, header_section

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_ADD_HEADER = "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
SENDER = "news@sender.example"


def token() -> str:
    return secrets.token_hex(6)


def mail(to: str, subject: str, body: str, content_type: str = "text/plain") -> bytes:
    return (
        f"From: Sender <{SENDER}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{token()}@sender.example>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: {content_type}; charset=utf-8\r\n"
        f"\r\n{body}\r\n"
    ).encode()


def send(smtp: SMTPConnector, rcpt: str, message: bytes) -> Reply:
    client = smtp("smtp")
    client.ehlo().expect(250, doing="EHLO")
    client.mail(SENDER).expect(250, doing=f"MAIL FROM:<{SENDER}>")
    client.rcpt(rcpt).expect(250, doing=f"RCPT TO:<{rcpt}>")
    return client.data(message)


def marked_as_spam(raw: bytes) -> bool:
    """SpamAssassin's X-Spam-Flag/X-Spam-Status or Rspamd's X-Spam say yes."""
    head = header_section(raw)
    return bool(
        re.search(r"(?im)^x-spam-flag:\s*yes\b", head)
        or re.search(r"(?im)^x-spam-status:\s*yes\b", head)
        or re.search(r"(?im)^x-spam:\s*yes\b", head)
    )


def refused_as_spam(reply: Reply) -> None:
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)


@requirement(
    "PLATFORM",
    "inbound.spam",
    "MUST",
    "a message scoring over the reject threshold is refused at DATA with 550 5.7.1 stating "
    "the score",
)
def test_spam_is_refused_stating_the_score(smtp: SMTPConnector, target: Target) -> None:
    rcpt = target.account.address
    reply = send(smtp, rcpt, mail(rcpt, f"offer {token()}", f"Hello\r\n{GTUBE}"))
    refused_as_spam(reply)
    assert "spam" in reply.text.lower(), f"the reply does not say why: {reply}"
    assert re.search(r"score\s+-?\d+(?:\.\d+)?", reply.text), f"no score in {reply}"


@requirement(
    "PLATFORM",
    "inbound.spam",
    "MUST",
    "a message scoring between the junk and the reject thresholds is accepted, marked as "
    "spam and filed into Junk",
)
def test_junk_level_is_filed_into_junk(smtp: SMTPConnector, target: Target) -> None:
    acc, subject = target.account, f"junk-level {token()}"
    reply = send(smtp, acc.address, mail(acc.address, subject, f"Hi\r\n{GTUBE_ADD_HEADER}"))
    reply.expect(250, doing="DATA")
    folder, raw = find_message(target, acc, subject)
    assert folder == "Junk", f"delivered into {folder}"
    assert marked_as_spam(raw), f"no spam mark in:\n{header_section(raw)}"


@requirement(
    "PLATFORM",
    "inbound.spam",
    "MUST",
    "an ordinary message is delivered into the inbox, not marked as spam",
)
def test_ordinary_mail_reaches_the_inbox(smtp: SMTPConnector, target: Target) -> None:
    acc, subject = target.account, f"minutes {token()}"
    body = "Hello, the minutes of Tuesday's meeting are below. See you next week."
    send(smtp, acc.address, mail(acc.address, subject, body)).expect(250, doing="DATA")
    folder, raw = find_message(target, acc, subject)
    assert folder == "INBOX", f"delivered into {folder}"
    assert not marked_as_spam(raw)


@requirement(
    "PLATFORM",
    "inbound.spam",
    "MUST",
    "a link whose text names one site while it goes to a raw IP address makes the message "
    "Junk or refused",
)
def test_deceptive_link_adds_score(smtp: SMTPConnector, target: Target) -> None:
    acc, subject = target.account, f"statement {token()}"
    html = (
        "<p>Dear customer, your monthly statement is ready. To see the statement and keep "
        "your online access, sign in to the bank website within two days, as usual, with "
        "your customer number and password.</p>"
        '<p><a href="http://203.0.113.66/signin">https://www.bank.example/signin</a></p>'
    )
    reply = send(smtp, acc.address, mail(acc.address, subject, html, "text/html"))
    if reply.code != 250:
        refused_as_spam(reply)
        return
    folder, _ = find_message(target, acc, subject)
    assert folder == "Junk", f"delivered into {folder}"


@requirement(
    "PLATFORM",
    "inbound.spam",
    "MUST",
    "a message linking to a domain listed in the URI blocklist is refused at DATA with 550 5.7.1",
)
def test_uri_blocklisted_domain_is_refused(
    smtp: SMTPConnector, target: Target, fake_dns: Any
) -> None:
    domain = f"d{token()}.example"
    fake_dns.blocklist(URIBL_ZONE).list_name(domain, "127.0.0.2")
    rcpt = target.account.address
    body = f"Our new catalogue is online: http://www.{domain}/catalogue"
    refused_as_spam(send(smtp, rcpt, mail(rcpt, f"catalogue {token()}", body)))
    # The same message with an unlisted domain is accepted: it was the listing.
    clean = body.replace(domain, f"d{token()}.example")
    send(smtp, rcpt, mail(rcpt, f"catalogue {token()}", clean)).expect(250, doing="DATA")


@requirement(
    "PLATFORM",
    "outbound.spam",
    "MUST",
    "a user submitting spam gets 550 5.7.1 saying it looks like spam; nothing is sent",
)
def test_outbound_spam_is_refused(smtp: SMTPConnector, target: Target) -> None:
    acc = target.account
    client = smtp.session("submission", tls=True)
    client.auth_plain(acc.address, acc.password).expect(235, doing="AUTH PLAIN")
    client.mail(acc.address).expect(250, doing="MAIL FROM")
    client.rcpt("friend@remote.example").expect(250, doing="RCPT TO")
    reply = client.data(
        mail("friend@remote.example", f"hello {token()}", f"Hi\r\n{GTUBE}").replace(
            SENDER.encode(), acc.address.encode()
        )
    )
    refused_as_spam(reply)
    assert "spam" in reply.text.lower(), f"the reply does not say why: {reply}"
