"""A distribution list story a customer tells, set up with the command line as an operator
would:

"I post to our team list from a DMARC p=reject domain and every member receives it, a
remote member's bounce goes to the list, not to me": Carol works at corp.example (DMARC
p=reject, her mail DKIM-signed by corp), the list team@example.test has Bob here, Dana at
Gmail and Erin, whose Gmail address no longer exists. Bob and Dana receive the post with
the list's fields and From "Carol via Team" (Reply-To Carol), which passes DMARC at Gmail
(judged with `mailspec auth check`, as a receiver would), DKIM-signed by the list's domain
and ARC-sealed by the platform (both verified with dkimpy against the fake DNS); Erin's
refusal comes back to the list's owner, and corp.example's MX never sees a bounce.
"""

from __future__ import annotations

import email
import email.utils
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
TEAM = "team@example.test"
OWNER, BOB = "alice@example.test", "bob@example.test"
DANA, ERIN = "dana@gmail.test", "erin@gmail.test"


class Platform(FakePlatform):
    """The reference and the fake internet on one manual clock; corp.example is a provider."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.internet.add_provider("corp", domain="corp.example")  # publishes DMARC p=reject
        self.corp: Provider = self.internet.providers["corp"]
        self.carol = f"carol@{self.corp.domain}"
        # The domain, its accounts and DNS records (`mailspec domain add`, `user add` and
        # `dns records`, called in the process: the command line's part here is the list).
        self.ref.add_domain("example.test")
        for user in (OWNER, BOB):
            self.ref.add_user(user, "pw")
        records = self.ref.app.admin.dns_records("example.test")
        self.internet.dns.load_zone("\n".join(r.zone_line for r in records))
        members = [BOB, DANA, ERIN, self.carol]
        self.made = self.cli(
            "list", "create", TEAM, "--owner", OWNER, "--name", "Team",
            *(f"--member={m}" for m in members),
        )  # fmt: skip

    def carol_posts(self, subject: str) -> None:
        """Carol's post to the list, DKIM-signed by corp.example, through our MX."""
        m = EmailMessage()
        m["From"] = email.utils.formataddr(("Carol", self.carol))
        m["To"], m["Subject"] = TEAM, subject
        m["Message-ID"] = f"<{subject.replace(' ', '-')}@{self.corp.domain}>"
        m.set_content("The release is on Thursday.\n")
        raw = m.as_bytes().replace(b"\n", b"\r\n")
        key = self.corp.dkim_private_key
        signed = dkim.sign(raw, self.corp.dkim_selector.encode(), self.corp.domain.encode(), key)
        with smtplib.SMTP("127.0.0.1", self.ref.port("mx"), timeout=10) as s:
            s.sendmail(self.carol, [TEAM], signed + raw)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = Platform(tmp_path)
    yield p
    p.stop()


def test_a_post_from_a_dmarc_reject_domain_reaches_every_member_and_bounces_to_the_list(
    platform: Platform, tmp_path: Path
) -> None:
    # Erin's address at Gmail is gone.
    platform.gmail.policy = Policy([Rule("rcpt", "gmail.nouser.5xx", recipient=[ERIN])])
    platform.carol_posts("release plan")
    platform.gmail.wait_for(lambda m: any(DANA in d.rcpt_tos for d in m.deliveries), timeout=10)
    (dana,) = [d for d in platform.gmail.deliveries if DANA in d.rcpt_tos]
    # From the list's bounce address, so a refusal comes back to the list.
    assert dana.mail_from == "team-bounces@example.test"
    copy = email.message_from_bytes(dana.data)
    assert email.utils.parseaddr(copy["From"]) == ("Carol via Team", TEAM)
    assert email.utils.parseaddr(copy["Reply-To"])[1] == platform.carol
    assert copy["List-Id"] == "Team <team.example.test>"
    assert copy["List-Post"] == f"<mailto:{TEAM}>"
    assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # What Gmail's checks make of it, with the platform's own diagnostics on Gmail's side.
    verdict = platform.verdict(dana)
    assert "spf=pass" in verdict and "dmarc=pass" in verdict, verdict
    # Signed by the list's domain over its List-Unsubscribe fields (RFC 8058 4), and sealed
    # by the platform over what it found when Carol's post arrived: dkimpy, at Gmail, agrees.
    assert dkim.verify(dana.data, dnsfunc=platform.txt), "the list's DKIM signature"
    (signature,) = [
        s for s in copy.get_all("DKIM-Signature", []) if "d=example.test" in s and "rsa" in s
    ]
    assert "list-unsubscribe-post" in signature.lower().replace("\r\n", "").replace("\t", "")
    cv, _, reason = dkim.ARC(dana.data).verify(dnsfunc=platform.txt)
    assert cv == dkim.CV_Pass, f"ARC at Gmail: {cv!r} {reason}"
    # Bob, here, has it too; and Erin's bounce went to the list's owner.
    platform.ref.wait_delivered()
    (bob,) = platform.ref.mailbox_messages(BOB)
    assert b"release plan" in bob and b"List-Id: Team <team.example.test>" in bob
    (bounce,) = platform.ref.mailbox_messages(OWNER)
    assert b"multipart/report" in bounce and ERIN.encode() in bounce
    assert b"release plan" in bounce
    # Carol got her own copy from the list, and no bounce came back to her.
    deliveries = platform.corp.mx.deliveries
    assert [d.rcpt_tos for d in deliveries] == [(platform.carol,)]
    assert deliveries[0].mail_from == "team-bounces@example.test"
    assert f"member {ERIN}" in platform.made
    assert "bounces to team-bounces@example.test" in platform.made
