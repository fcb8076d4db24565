"""Sieve at delivery (RFC 5228 and extensions): the user's own script, uploaded over
ManageSieve, decides where the next message goes; mail sent to them through the MX is read
back over IMAP. Replies (reject, vacation) are seen at the fake internet.

A target that does not list an extension in its ManageSieve SIEVE capability makes that
extension's requirement not applicable.
"""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest

from conformance import not_applicable, requirement
from conformance.plugin import SMTPConnector
from conformance.target import Account, ClockControl, Target
from conformance.tests.outbound_support import message, wait_until
from conformance.tests.sieve_support import (
    folder_messages,
    mail_to,
    remote_sender,
    settle,
    sieve_session,
    sieve_user,
    wait_for,
    with_script,
)


def extensions(target: Target, *names: str) -> Account:
    """A fresh user, once the target says it has every extension ``names``."""
    account = sieve_user(target)
    with sieve_session(target, account) as c:
        offered = set(c.capabilities().get("SIEVE", "").lower().split())
    missing = [n for n in names if n not in offered]
    if missing:
        not_applicable(f"the target's Sieve lacks {', '.join(missing)}")
    return account


@requirement("RFC5228", "2.10.2", "MUST", "a script that takes no action keeps the message")
def test_implicit_keep(target: Target, smtp: SMTPConnector) -> None:
    account = extensions(target)
    with with_script(target, account, 'if header :is "subject" "never" { discard; }\r\n'):
        mail_to(smtp, account, "kept")
        assert len(wait_for(target, account, "INBOX", 1)) == 1


@requirement("RFC5228", "4.1", "MUST", "fileinto files the message into the named folder only")
def test_fileinto(target: Target, smtp: SMTPConnector) -> None:
    account = extensions(target, "fileinto")
    script = (
        'require "fileinto";\r\nif header :contains "subject" "report" { fileinto "Reports"; }\r\n'
    )
    with with_script(target, account, script):
        mail_to(smtp, account, "weekly report")
        mail_to(smtp, account, "lunch")
        (filed,) = wait_for(target, account, "Reports", 1)
        assert b"weekly report" in filed[1]
        (kept,) = wait_for(target, account, "INBOX", 1)
        assert b"lunch" in kept[1]


@requirement(
    "RFC5228",
    "4.4",
    "MUST",
    "discard drops the message: the user's own filter is the one place mail may vanish",
)
def test_discard(target: Target, smtp: SMTPConnector) -> None:
    account = extensions(target)
    with with_script(target, account, 'if header :contains "subject" "noise" { discard; }\r\n'):
        mail_to(smtp, account, "noise")
        mail_to(smtp, account, "signal")
        got = wait_for(target, account, "INBOX", 1)
        assert [b"signal" in m for _, m in got] == [True], got


@requirement(
    "RFC5228",
    "2.10.6",
    "MUST",
    "a script that fails while it runs loses nothing: the message is kept in INBOX",
)
def test_runtime_error_keeps(target: Target, smtp: SMTPConnector) -> None:
    account = extensions(target, "variables")
    # Only known at run time: the address comes from a variable and is no address.
    script = 'require "variables";\r\nset "to" "not an address";\r\nredirect "${to}";\r\n'
    with with_script(target, account, script):
        mail_to(smtp, account, "still here")
        # The target may add a note of the failure for the user; the message must be there.
        wait_until(
            lambda: [m for _, m in folder_messages(target, account) if b"still here" in m],
            10,
            "the message in INBOX",
        )


@requirement("RFC5232", "5", "MUST", "fileinto :flags stores the message with those flags")
def test_imap4flags(target: Target, smtp: SMTPConnector) -> None:
    account = extensions(target, "fileinto", "imap4flags")
    script = (
        'require ["fileinto", "imap4flags"];\r\n'
        'fileinto :flags ["\\\\Flagged", "$Label1"] "Flagged";\r\n'
    )
    with with_script(target, account, script):
        mail_to(smtp, account, "flag me")
        ((flags, _),) = wait_for(target, account, "Flagged", 1)
        assert b"\\Flagged" in flags and b"$Label1" in flags, flags


@requirement("RFC3894", "3", "MUST", "fileinto :copy files a copy and keeps the message too")
def test_copy(target: Target, smtp: SMTPConnector) -> None:
    account = extensions(target, "fileinto", "copy")
    with with_script(
        target, account, 'require ["fileinto", "copy"];\r\nfileinto :copy "Copies";\r\n'
    ):
        mail_to(smtp, account, "twice")
        assert len(wait_for(target, account, "Copies", 1)) == 1
        assert len(wait_for(target, account, "INBOX", 1)) == 1


@requirement(
    "RFC5233", "4", "MUST", "address :detail matches the part after the +, :user the part before"
)
def test_subaddress(target: Target, smtp: SMTPConnector) -> None:
    account = extensions(target, "fileinto", "subaddress")
    local, domain = account.address.split("@")
    script = (
        'require ["fileinto", "subaddress"];\r\n'
        f'if allof (address :detail "to" "shop", address :user "to" "{local}")'
        ' { fileinto "Shop"; }\r\n'
    )
    with with_script(target, account, script):
        mail_to(smtp, account, "receipt", to=f"{local}+shop@{domain}")
        assert len(wait_for(target, account, "Shop", 1)) == 1


@requirement("RFC5229", "3", "MUST", "match variables from :matches are expanded in later strings")
def test_variables(target: Target, smtp: SMTPConnector) -> None:
    account = extensions(target, "fileinto", "variables")
    script = (
        'require ["fileinto", "variables"];\r\n'
        'if header :matches "subject" "[*] *" { fileinto "List-${1}"; }\r\n'
    )
    with with_script(target, account, script):
        mail_to(smtp, account, "[dev] build broke")
        assert len(wait_for(target, account, "List-dev", 1)) == 1


@requirement("RFC5173", "5", "MUST", "body :contains finds text in the message body")
def test_body(target: Target, smtp: SMTPConnector) -> None:
    account = extensions(target, "fileinto", "body")
    script = (
        'require ["fileinto", "body"];\r\nif body :contains "unsubscribe" { fileinto "Ads"; }\r\n'
    )
    with with_script(target, account, script):
        mail_to(smtp, account, "offer", body="To unsubscribe, click here.")
        assert len(wait_for(target, account, "Ads", 1)) == 1


@requirement(
    "RFC5235",
    "3.2",
    "MUST",
    "spamtest gives a message the platform scored a value of 1 or more (0: not tested)",
    needs=("fake-dns",),
)
def test_spamtest(target: Target, smtp: SMTPConnector) -> None:
    account = extensions(target, "fileinto", "spamtest", "relational")
    script = (
        'require ["fileinto", "spamtest", "relational", "comparator-i;ascii-numeric"];\r\n'
        'if spamtest :value "ge" :comparator "i;ascii-numeric" "1" { fileinto "Scored"; }\r\n'
    )
    with with_script(target, account, script):
        mail_to(smtp, account, "hello")
        assert len(wait_for(target, account, "Scored", 1)) == 1


def _replies(mx: Any, rcpt: str) -> list[Any]:
    return [d for d in mx.deliveries if rcpt in d.rcpt_tos]


@requirement(
    "RFC5429",
    "2.1",
    "MUST",
    "reject keeps the message out of the mailbox and sends the sender a rejection",
    needs=("fake-dns",),
)
def test_reject(target: Target, smtp: SMTPConnector, fake_internet: Any, fake_dns: Any) -> None:
    account = extensions(target, "reject")
    sender, mx = remote_sender(fake_internet, fake_dns)
    other = target.account  # two recipients: one reply to DATA, so the refusal comes later
    with with_script(target, account, 'require "reject";\r\nreject "Not from you.";\r\n'):
        client = smtp.session("smtp")
        client.mail(sender).expect(250, doing="MAIL FROM")
        for rcpt in (account.address, other.address):
            client.rcpt(rcpt).expect(250, doing=f"RCPT TO:<{rcpt}>")
        data = message(sender, [account.address, other.address], "let me in")
        client.data(data).expect(250, doing="DATA")
        (notice,) = wait_until(lambda: _replies(mx, sender), 10, "the rejection message")
        assert notice.mail_from == ""  # never answered in turn
        assert b"Not from you." in notice.data
        settle(target)  # the queue has finished with it: nothing is on its way to INBOX
        assert folder_messages(target, account) == []


@requirement(
    "RFC5429",
    "2.1.1",
    "MUST",
    "a reject known before the reply to DATA is refused in the dialogue with the script's reason",
    needs=("fake-dns",),
)
def test_reject_in_the_dialogue(
    target: Target, smtp: SMTPConnector, fake_internet: Any, fake_dns: Any
) -> None:
    account = extensions(target, "reject")
    sender, mx = remote_sender(fake_internet, fake_dns)
    script = (
        'require "reject";\r\nif header :contains "subject" "offer" { reject "No offers."; }\r\n'
    )
    with with_script(target, account, script):
        client = smtp.session("smtp")
        client.mail(sender).expect(250, doing="MAIL FROM")
        client.rcpt(account.address).expect(250, doing="RCPT TO")
        refused = client.data(message(sender, [account.address], "a great offer"))
        assert refused.code == 550, f"RFC 5429 2.1.1 SHOULD use 550: {refused}"
        assert "No offers." in refused.text
        mail_to(smtp, account, "a question", sender=sender)  # the script keeps this one
        (kept,) = wait_for(target, account, "INBOX", 1)
        assert b"a question" in kept[1]
        settle(target)
        assert _replies(mx, sender) == [], "refused in the dialogue: no rejection message too"


VACATION = 'require "vacation";\r\nvacation :days 1 :subject "Away" "I am away.";\r\n'


@requirement(
    "RFC5230",
    "4.2",
    "MUST",
    "vacation replies once to a sender within :days, and again after",
    needs=("fake-dns", "clock"),
)
def test_vacation_once_per_period(
    target: Target, smtp: SMTPConnector, fake_internet: Any, fake_dns: Any, clock: ClockControl
) -> None:
    account = extensions(target, "vacation")
    sender, mx = remote_sender(fake_internet, fake_dns)
    with with_script(target, account, VACATION):
        mail_to(smtp, account, "one", sender=sender)
        wait_until(lambda: _replies(mx, sender), 10, "the vacation reply")
        mail_to(smtp, account, "two", sender=sender)
        wait_for(target, account, "INBOX", 2)
        settle(target)
        assert len(_replies(mx, sender)) == 1
        clock.advance(86400 + 60)
        mail_to(smtp, account, "three", sender=sender)
        wait_until(lambda: len(_replies(mx, sender)) == 2, 10, "a reply in the next period")


@requirement(
    "RFC3834",
    "3.1",
    "SHOULD",
    "an automatic reply carries Auto-Submitted: auto-replied and In-Reply-To and References "
    "naming the message it answers, and goes from the null sender",
    needs=("fake-dns",),
)
def test_vacation_reply_fields(
    target: Target, smtp: SMTPConnector, fake_internet: Any, fake_dns: Any
) -> None:
    account = extensions(target, "vacation")
    sender, mx = remote_sender(fake_internet, fake_dns)
    with with_script(target, account, VACATION):
        msgid = mail_to(smtp, account, "are you there", sender=sender)
        (reply,) = wait_until(lambda: _replies(mx, sender), 10, "the vacation reply")
    fields = email.message_from_bytes(reply.data, policy=email.policy.compat32)
    auto = [str(v).strip().lower() for v in fields.get_all("Auto-Submitted", [])]
    assert auto and auto[0].startswith("auto-replied"), auto
    assert [str(v).strip() for v in fields.get_all("In-Reply-To", [])] == [msgid]
    (refs,) = fields.get_all("References", [])
    assert msgid in str(refs).split()
    assert reply.mail_from == ""


@requirement(
    "RFC3834",
    "2",
    "MUST",
    "no automatic reply to automatic mail, list mail or a null sender",
    needs=("fake-dns",),
)
@pytest.mark.parametrize(
    "headers",
    [
        ("Auto-Submitted: auto-generated",),
        ("List-Id: <team.lists.example>",),
        ("Precedence: bulk",),
        ("Precedence: list",),
    ],
    ids=["auto-submitted", "list-id", "precedence-bulk", "precedence-list"],
)
def test_vacation_stays_silent(
    target: Target,
    smtp: SMTPConnector,
    fake_internet: Any,
    fake_dns: Any,
    headers: tuple[str, ...],
) -> None:
    account = extensions(target, "vacation")
    sender, mx = remote_sender(fake_internet, fake_dns)
    with with_script(target, account, VACATION):
        mail_to(smtp, account, "automatic", sender=sender, headers=headers)
        mail_to(smtp, account, "bounce", sender="")  # null sender: never answered
        assert len(wait_for(target, account, "INBOX", 2)) == 2
        settle(target)
    assert _replies(mx, sender) == []


@requirement(
    "RFC5228",
    "4.2",
    "MUST",
    "redirect sends the message on to the new address and does not keep it",
    needs=("fake-dns",),
)
def test_redirect(target: Target, smtp: SMTPConnector, fake_internet: Any, fake_dns: Any) -> None:
    account = extensions(target)
    elsewhere, mx = remote_sender(fake_internet, fake_dns)
    with with_script(target, account, f'redirect "{elsewhere}";\r\n'):
        mail_to(smtp, account, "pass it on")
        (sent,) = wait_until(lambda: _replies(mx, elsewhere), 10, "the redirected message")
        assert b"pass it on" in sent.data
        settle(target)  # the queue has finished with it: nothing is on its way to INBOX
        assert folder_messages(target, account) == []


@requirement(
    "PLATFORM",
    "sieve.redirect-limit",
    "MUST",
    "a script redirecting to more addresses than its MAXREDIRECTS fails: the message is kept "
    "and sent to none of them",
    needs=("fake-dns",),
)
def test_redirect_limit(
    target: Target, smtp: SMTPConnector, fake_internet: Any, fake_dns: Any
) -> None:
    account = extensions(target)
    with sieve_session(target, account) as c:
        limit = c.capabilities().get("MAXREDIRECTS", "")
    if not limit.isdigit():
        not_applicable("the target announces no MAXREDIRECTS limit")
    targets = [remote_sender(fake_internet, fake_dns) for _ in range(int(limit) + 1)]
    script = "".join(f'redirect "{address}";\r\n' for address, _ in targets)
    with with_script(target, account, script):
        mail_to(smtp, account, "too many")
        wait_until(
            lambda: [m for _, m in folder_messages(target, account) if b"too many" in m],
            10,
            "the message kept in INBOX",
        )
        settle(target)
    mx = targets[0][1]
    assert not [d for d in mx.deliveries if set(d.rcpt_tos) & {a for a, _ in targets}]
