"""The user's Sieve script at local delivery, through a real reference node."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.internet import FakeInternet
from fakes.mx import FakeMX
from reference.clock import ManualClock
from reference.testing import ReferenceServer

BOB = "bob@example.test"


@pytest.fixture
def internet() -> Iterator[FakeInternet]:
    with FakeInternet(providers=["gmail"], clock=ManualClock()) as net:
        # The senders' domain receives at the fake provider: replies to them are recorded.
        net.dns.add("remote.test", "MX", "10 mx.gmail.test.")
        net.dns.add("elsewhere.test", "MX", "10 mx.gmail.test.")
        yield net


@pytest.fixture
def ref(tmp_path: Path, internet: FakeInternet) -> Iterator[ReferenceServer]:
    with ReferenceServer(
        tmp_path / "var",
        nameservers=[internet.nameserver],
        overrides={"relay.port": internet.smtp_port},
    ) as server:
        server.add_domain("example.test")
        server.add_user(BOB, "secret")
        server.outbound = internet.mx["gmail"]  # type: ignore[attr-defined]
        yield server


def activate(ref: ReferenceServer, script: str) -> None:
    ref.app.scripts.put(BOB, "main", script)
    ref.app.scripts.activate(BOB, "main")


def send(
    ref: ReferenceServer,
    headers: str = "",
    *,
    sender: str = "alice@remote.test",
    rcpt: str = BOB,
    body: str = "hello",
) -> None:
    data = (
        f"From: <{sender or 'mailer-daemon@remote.test'}>\r\nTo: <{BOB}>\r\n"
        f"Subject: test\r\nMessage-ID: <m-{len(headers)}-{body}@remote.test>\r\n"
        f"{headers}\r\n{body}\r\n"
    )
    with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
        s.sendmail(sender, [rcpt], data.encode())
    ref.wait_delivered()


def outbound(ref: ReferenceServer) -> list[tuple[str, list[str], bytes]]:
    """What left the platform: the messages the remote MX took."""
    mx: FakeMX = ref.outbound  # type: ignore[attr-defined]
    return [(d.mail_from, list(d.rcpt_tos), d.data) for d in mx.deliveries]


def test_fileinto_with_flags(ref: ReferenceServer) -> None:
    activate(
        ref,
        'require ["fileinto", "imap4flags"];\r\n'
        'if header :contains "subject" "test" { fileinto :flags "\\\\Seen" "Tests"; }\r\n',
    )
    send(ref)
    assert ref.mailbox_messages(BOB) == []
    with ref.store.open(BOB, "Tests") as box:
        (msg,) = box.messages()
        assert "\\Seen" in msg.flags


def test_a_failing_script_keeps_the_message_and_tells_the_user(ref: ReferenceServer) -> None:
    # Five addresses: past sieve.max_redirects (4).
    activate(ref, "".join(f'redirect "r{i}@x.test";' for i in range(5)))
    send(ref)
    notice, kept = ref.mailbox_messages(BOB)
    assert b"Subject: Your mail filter (Sieve script) failed" in notice
    assert b"more than 4 redirects" in notice
    assert b"Subject: test" in kept
    assert outbound(ref) == []
    (error,) = ref.app.scripts.errors(BOB)
    assert "redirects" in error
    send(ref, body="again")  # told once per script: the next failure is only logged
    assert len(ref.mailbox_messages(BOB)) == 3
    assert len(ref.app.scripts.errors(BOB)) == 2


def test_discard_drops_only_by_the_users_own_choice(ref: ReferenceServer) -> None:
    activate(ref, 'if header :is "x-junk" "yes" { discard; }')
    send(ref, "X-Junk: yes\r\n")
    assert ref.mailbox_messages(BOB) == []
    assert ref.app.spool.entries() == []
    send(ref, "X-Junk: no\r\n")
    assert len(ref.mailbox_messages(BOB)) == 1


def test_redirect_goes_through_the_outbound_queue(ref: ReferenceServer) -> None:
    activate(ref, 'require "copy"; redirect :copy "carol@elsewhere.test";')
    send(ref)
    assert len(ref.mailbox_messages(BOB)) == 1
    (sent,) = outbound(ref)
    assert sent[:2] == ("alice@remote.test", ["carol@elsewhere.test"])
    assert b"Subject: test" in sent[2]
    assert not sent[2].startswith(b"Return-Path:")  # a final delivery's field only
    assert sent[2].startswith(b"Delivered-To: bob@example.test\r\n")  # loops are seen


def test_a_redirect_loop_is_broken_and_the_message_kept(ref: ReferenceServer) -> None:
    activate(ref, f'redirect "{BOB}";')
    send(ref)
    (kept,) = ref.mailbox_messages(BOB)
    assert kept.count(b"Delivered-To: bob@example.test") == 2  # sent round once, no more
    assert ref.app.spool.entries() == []


def test_reject_sends_a_rejection_message_to_the_sender(ref: ReferenceServer) -> None:
    """With two recipients the one reply to DATA cannot refuse for Bob alone: his script's
    refusal becomes a rejection message (RFC 5429 2.1)."""
    ref.add_user("carol@example.test", "pw")
    activate(ref, 'require "reject"; reject "I do not take mail from you.";')
    data = b"From: <alice@remote.test>\r\nSubject: test\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
        s.sendmail("alice@remote.test", [BOB, "carol@example.test"], data)
    ref.wait_delivered()
    assert ref.mailbox_messages(BOB) == []
    assert len(ref.mailbox_messages("carol@example.test")) == 1
    (sent,) = outbound(ref)
    assert sent[:2] == ("", ["alice@remote.test"])
    assert b"report-type=disposition-notification" in sent[2]
    assert b"I do not take mail from you." in sent[2]
    assert b"Auto-Submitted: auto-replied" in sent[2]


VACATION = (
    'require "vacation";\r\n'
    'vacation :days 2 :subject "Away" :addresses ["bobby@example.test"] "Back on Monday.";\r\n'
)


def test_vacation_once_per_sender_per_period(ref: ReferenceServer) -> None:
    activate(ref, VACATION)
    send(ref, body="one")
    send(ref, body="two")
    replies = outbound(ref)
    assert [(s, r) for s, r, _ in replies] == [("", ["alice@remote.test"])]
    reply = replies[0][2]
    assert b"Auto-Submitted: auto-replied" in reply
    assert b"In-Reply-To: <m-0-one@remote.test>" in reply
    assert b"References: <m-0-one@remote.test>" in reply
    assert b"Subject: Away" in reply and b"Back on Monday." in reply
    ref.clock.advance(2 * 86400 + 1)
    send(ref, body="three")
    assert len(outbound(ref)) == 2  # a new period: one more reply
    assert len(ref.mailbox_messages(BOB)) == 3  # vacation keeps every message


@pytest.mark.parametrize(
    ("headers", "sender"),
    [
        ("Auto-Submitted: auto-generated\r\n", "alice@remote.test"),
        ("List-Id: <team.lists.remote.test>\r\n", "alice@remote.test"),
        ("Precedence: bulk\r\n", "alice@remote.test"),
        ("", "MAILER-DAEMON@remote.test"),
        ("", "owner-team@remote.test"),
        ("", ""),
        ("", BOB),
    ],
)
def test_vacation_never_answers_automatic_or_list_mail(
    ref: ReferenceServer, headers: str, sender: str
) -> None:
    activate(ref, VACATION)
    send(ref, headers, sender=sender)
    assert outbound(ref) == []
    assert len(ref.mailbox_messages(BOB)) == 1


def test_vacation_from_must_be_one_of_the_users_addresses(ref: ReferenceServer) -> None:
    activate(
        ref,
        'require "vacation";\r\nvacation :from "ceo@bank.test" :subject "Away" "Away.";\r\n',
    )
    send(ref)
    ((_, _, reply),) = outbound(ref)
    assert b"From: bob@example.test" in reply and b"ceo@bank.test" not in reply


def test_reject_in_the_dialogue_for_one_recipient(ref: ReferenceServer) -> None:
    """One recipient: the verdict is known before the 250, so the refusal is the reply to
    DATA (RFC 5429 2.1.1), on one line of ASCII, and nothing is queued or sent."""
    activate(ref, 'require "ereject"; ereject "Nicht von dir.\r\nGeh weg.";')
    with (
        smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        s.sendmail("alice@remote.test", [BOB], b"Subject: hi\r\n\r\nhello\r\n")
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        550,
        b"5.7.1 Nicht von dir. Geh weg.",
    )
    ref.wait_delivered()
    assert ref.mailbox_messages(BOB) == [] and outbound(ref) == []
    assert ref.app.spool.entries() == []


def test_vacation_and_group_aliases(ref: ReferenceServer) -> None:
    """Bob's own alias is his address (a reply goes out); a group alias he is one of the
    targets of is a distribution: mail to it gets no reply, and no reply goes to it."""
    ref.add_user("carol@example.test", "pw")
    ref.add_alias("robert@example.test", BOB)
    ref.add_alias("team@example.test", BOB, "carol@example.test")
    ref.add_alias("all@example.test", "team@example.test")  # nested: still a group
    activate(ref, 'require "vacation";\r\nvacation :subject "Away" "Back on Monday.";\r\n')

    def to(rcpt: str, sender: str) -> None:
        data = f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: hi\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
            s.sendmail(sender, [rcpt], data.encode())
        ref.wait_delivered()

    to("team@example.test", "alice@remote.test")
    to("all@example.test", "dave@remote.test")
    to(BOB, "team@example.test")
    assert outbound(ref) == []
    to("robert@example.test", "erin@remote.test")
    assert [r for _, r, _ in outbound(ref)] == [["erin@remote.test"]]
    assert len(ref.mailbox_messages(BOB)) == 4
