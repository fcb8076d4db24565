"""Forwarding stories a customer tells, set up with the command line as an operator would:

- "I forward to my Gmail and DMARC-protected mail still arrives": the bank's mail reaches
  Gmail with an SRS return path that passes SPF there, and the bank's DKIM signature intact,
  so DMARC passes where it lands, and the platform's ARC seal validates there (judged with
  `mailspec auth check`, as a receiver would).
- "a bounce to my forwarded mail comes back to the original sender": refused at once by
  Gmail, or bounced by it later to the SRS return path, the bounce reaches the bank; three
  weeks later on the platform's clock, a bounce to that return path is refused (expired).
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest

from fakes.internet import Provider
from fakes.mx import Policy, Rule
from scenarios.fake_platform import FakePlatform

POOL = "127.0.1.0/24"
ALICE = "alice@example.test"
AT_GMAIL = "alice@gmail.test"
DAY = 86400.0


class Platform(FakePlatform):
    """The reference and the fake internet on one manual clock; the bank is a provider."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.bank = self._bank()
        # What the operator does: the domain, the account, its forwarding, the DNS records.
        self.cli("domain", "add", "example.test")
        self.cli("user", "add", ALICE, "--password", "alice-pw")
        self.internet.dns.load_zone(self.cli("dns", "records", "example.test"))

    def _bank(self) -> Provider:
        self.internet.add_provider("bank", domain="bank.example")
        return self.internet.providers["bank"]

    def bank_mails(self, subject: str) -> None:
        """The bank's statement to Alice, DKIM-signed by the bank, through our MX."""
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = f"statements@{self.bank.domain}", ALICE, subject
        m["Message-ID"] = f"<{subject.replace(' ', '-')}@{self.bank.domain}>"
        m.set_content("Your statement is ready.\n")
        raw = m.as_bytes().replace(b"\n", b"\r\n")
        signed = (
            dkim.sign(
                raw,
                self.bank.dkim_selector.encode(),
                self.bank.domain.encode(),
                self.bank.dkim_private_key,
            )
            + raw
        )
        with smtplib.SMTP("127.0.0.1", self.ref.port("mx"), timeout=10) as s:
            s.sendmail(f"statements@{self.bank.domain}", [ALICE], signed)

    def bounced_home(self, text: str) -> bytes:
        """The bounce that reached the bank's own MX, mentioning ``text``."""
        bank = self.bank.mx
        bank.wait_for(lambda m: any(text.encode() in d.data for d in m.deliveries), timeout=10)
        (bounce,) = [d for d in bank.deliveries if text.encode() in d.data]
        assert bounce.mail_from == "" and bounce.rcpt_tos == (f"statements@{self.bank.domain}",)
        return bounce.data


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = Platform(tmp_path)
    yield p
    p.stop()


def test_forward_to_gmail_and_dmarc_protected_mail_still_arrives(
    platform: Platform, tmp_path: Path
) -> None:
    # Gmail refuses mail that fails SPF, as strict receivers do.
    platform.gmail.policy = Policy([Rule("mail", "gmail.unauthenticated.5xx", spf=["fail"])])
    out = platform.cli("user", "forward", ALICE, AT_GMAIL)
    assert out.startswith(f"{ALICE} forwards to {AT_GMAIL}, keeps no copy")
    platform.bank_mails("statement march")
    platform.gmail.wait_for(lambda m: bool(m.deliveries), timeout=10)
    (copy,) = platform.gmail.deliveries
    assert copy.rcpt_tos == (AT_GMAIL,) and copy.source.startswith("127.0.1.")
    assert copy.mail_from.startswith("SRS0=") and copy.mail_from.endswith("@mail.example.test")
    assert copy.spf == "pass"
    # What Gmail's checks make of it, with the platform's own diagnostics on Gmail's side.
    verdict = platform.verdict(copy)
    assert "spf=pass" in verdict and "dkim=pass" in verdict and "dmarc=pass" in verdict, verdict
    # Sealed by the platform (its key is in the DNS).
    assert "arc=pass instances=1" in verdict, verdict
    platform.ref.wait_delivered()
    assert platform.ref.mailbox_messages(ALICE) == []  # forwarded without keeping a copy


def test_a_bounce_to_forwarded_mail_comes_back_to_the_original_sender(platform: Platform) -> None:
    platform.cli("user", "forward", ALICE, AT_GMAIL, "--keep")
    # 1. Gmail refuses at once: the platform's own bounce goes back through SRS to the bank.
    platform.gmail.policy = Policy(
        [Rule("rcpt", "552 5.2.2 The email account that you tried to reach is over quota")]
    )
    platform.bank_mails("statement april")
    report = platform.bounced_home("over quota")
    assert b"Final-Recipient: rfc822; alice@gmail.test" in report
    assert b"statement april" in report
    # 2. Gmail accepts, then bounces later to the return path it was given.
    platform.gmail.policy = Policy()
    platform.bank_mails("statement may")
    platform.gmail.wait_for(lambda m: bool(m.deliveries), timeout=10)
    return_path = platform.gmail.deliveries[-1].mail_from
    late = "Subject: Undeliverable: statement may\r\n\r\nThe mailbox was closed since.\r\n"
    with smtplib.SMTP("127.0.0.1", platform.ref.port("mx"), timeout=10) as s:
        s.sendmail("", [return_path], late.encode())
    platform.bounced_home("The mailbox was closed since.")
    # Alice kept her copies all along.
    platform.ref.wait_delivered()
    assert len(platform.ref.mailbox_messages(ALICE)) == 2
    # 3. Three weeks on, that return path is no longer honoured (srs.max_age = 21 days).
    platform.clock.advance(22 * DAY)
    with smtplib.SMTP("127.0.0.1", platform.ref.port("mx"), timeout=10) as s:
        s.ehlo()
        s.mail("")
        code, text = s.rcpt(return_path)
    assert (code, text.split()[0]) == (550, b"5.1.1") and b"expired" in text
