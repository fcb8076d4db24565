"""Outbound relay stories: reputation retries, the smarthost, backoff, DSNs, null MX."""

from __future__ import annotations

import email
import random
import smtplib
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from fakes.internet import FakeInternet
from fakes.mx import FakeMX, Policy, Rule
from reference.clock import ManualClock
from reference.delivery.remote import SourcePool
from reference.testing import ReferenceServer

POOL = "127.0.1.0/24"


class Platform:
    """The reference wired to the fake internet, sharing one manual clock."""

    def __init__(self, tmp: Path) -> None:
        self.clock = ManualClock()
        self.internet = FakeInternet(clock=self.clock).start()
        sh = self.internet.smarthost
        self.ref = ReferenceServer(
            tmp / "var",
            clock=self.clock,
            nameservers=[self.internet.nameserver],
            overrides={
                "relay.port": self.internet.smtp_port,
                "relay.source_addresses": [POOL],
                "relay.smarthost": f"{sh.host}:{sh.port}",
                "relay.timeout": "5s",
                "dns.timeout": "2s",
            },
        ).start()
        self.ref.add_domain("example.test")
        self.ref.add_user("alice@example.test", "alice-pw")

    def stop(self) -> None:
        self.ref.stop()
        self.internet.stop()

    def submit(
        self, to: list[str], subject: str = "hello", sender: str = "alice@example.test"
    ) -> None:
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = sender, ", ".join(to), subject
        m["Message-ID"] = f"<{subject.replace(' ', '-')}@example.test>"
        m.set_content("hello from the relay tests\n")
        ctx = smtplib.ssl.create_default_context(cafile=str(self.ref.cafile))
        with smtplib.SMTP("127.0.0.1", self.ref.port("submission"), timeout=10) as s:
            s.starttls(context=ctx)
            s.login("alice@example.test", "alice-pw")
            s.send_message(m, from_addr=sender, to_addrs=to)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def inbox(self, address: str = "alice@example.test") -> list[bytes]:
        return self.ref.mailbox_messages(address)

    def wait(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met")
            time.sleep(0.02)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = Platform(tmp_path)
    yield p
    p.stop()


def delivered_to(mx: FakeMX, rcpt: str) -> Callable[[FakeMX], bool]:
    return lambda m: any(rcpt in d.rcpt_tos for d in m.deliveries)


def test_delivers_through_mx_from_the_pool_with_tls(platform: Platform) -> None:
    gmail = platform.internet.mx["gmail"]
    platform.submit(["bob@gmail.test"])
    gmail.wait_for(delivered_to(gmail, "bob@gmail.test"))
    d = gmail.deliveries[0]
    assert d.source.startswith("127.0.1.")
    assert d.tls
    assert d.mail_from == "alice@example.test"
    assert b"Subject: hello" in d.data
    platform.ref.wait_delivered()
    assert platform.ref.app.spool.entries() == []


def test_reputation_rejection_is_retried_from_another_address(platform: Platform) -> None:
    gmail = platform.internet.mx["gmail"]
    # Make the pool's choices predictable, and refuse whichever address comes first: in
    # every worker, since the one that accepts the message delivers it.
    for app in platform.ref.apps:
        app.relay.pool.rng = random.Random(7)
    first = SourcePool([POOL], random.Random(7)).choose(set())
    assert first is not None
    gmail.policy = Policy(rules=[Rule(stage="rcpt", action="gmail.reputation.5xx", source=[first])])
    platform.submit(["carol@gmail.test"], subject="reputation")
    gmail.wait_for(delivered_to(gmail, "carol@gmail.test"), timeout=10)
    refused = [a for a in gmail.attempts if a.refusals]
    assert [a.source for a in refused] == [first]
    reply = refused[0].refusals[0].reply
    assert reply is not None and (reply.code, reply.enhanced) == (550, "5.7.1")
    assert "unsolicited mail" in reply.text
    assert gmail.deliveries[-1].source != first
    assert gmail.deliveries[-1].source.startswith("127.0.1.")
    assert platform.internet.smarthost.deliveries == []


def test_whole_pool_refused_goes_to_the_smarthost(platform: Platform) -> None:
    outlook = platform.internet.mx["outlook"]
    outlook.policy = Policy(
        rules=[Rule(stage="rcpt", action="outlook.blocklist.5xx", source=[POOL])]
    )
    platform.submit(["dave@outlook.test"], subject="via smarthost")
    sh = platform.internet.smarthost
    sh.wait_for(delivered_to(sh, "dave@outlook.test"), timeout=10)
    assert len([a for a in outlook.attempts if a.refusals]) == 3  # relay.reputation_retries
    assert len({a.source for a in outlook.attempts}) == 3
    assert outlook.deliveries == []


def test_permanent_failure_bounces_at_once_with_a_dsn(platform: Platform) -> None:
    yahoo = platform.internet.mx["yahoo"]
    yahoo.policy = Policy(
        rules=[
            Rule(
                stage="rcpt", action="550 5.1.1 No such user here", recipient=["nobody@yahoo.test"]
            )
        ]
    )
    platform.submit(["nobody@yahoo.test", "erin@yahoo.test"], subject="partly bounced")
    yahoo.wait_for(delivered_to(yahoo, "erin@yahoo.test"))
    platform.wait(lambda: len(platform.inbox()) == 1)
    dsn = email.message_from_bytes(platform.inbox()[0])
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    status = dsn.get_payload()[1]
    text = status.as_string()
    assert "Final-Recipient: rfc822; nobody@yahoo.test" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user here" in text
    assert "erin@yahoo.test" not in text
    assert "Subject: partly bounced" in dsn.get_payload()[2].as_string()
    assert platform.inbox()[0].find(b"Return-Path: <>") == 0


def test_tempfail_for_24_hours_gives_exactly_one_dsn(platform: Platform) -> None:
    gmail = platform.internet.mx["gmail"]
    gmail.policy = Policy(rules=[Rule(stage="rcpt", action="451 4.3.0 Try again later, please")])
    platform.submit(["frank@gmail.test"], subject="never arrives")
    gmail.wait_for(lambda m: len(m.attempts) >= 1)
    hours = 0.0
    while hours < 26:
        platform.advance(1800)
        hours += 0.5
        platform.ref.wait_delivered()
    platform.wait(lambda: len(platform.inbox()) >= 2)
    time.sleep(0.2)
    inbox = [email.message_from_bytes(m) for m in platform.inbox()]
    subjects = sorted(m["Subject"] for m in inbox)
    assert subjects == ["Delivery delayed: still trying", "Undelivered Mail Returned to Sender"]
    failed = next(m for m in inbox if m["Subject"].startswith("Undelivered"))
    assert "451 4.3.0 Try again later, please" in failed.as_string()
    assert gmail.deliveries == []
    assert 5 < len(gmail.attempts) < 30  # the backoff schedule, not a tight loop
    assert platform.ref.app.spool.entries() == []


def test_null_mx_and_missing_domain_bounce_at_once(platform: Platform) -> None:
    platform.internet.dns.add("nomail.test", "MX", "0 .")
    platform.submit(["x@nomail.test", "y@does-not-exist.test"], subject="nowhere")
    platform.wait(lambda: len(platform.inbox()) == 1)
    text = platform.inbox()[0].decode()
    assert "x@nomail.test" in text and "5.1.10" in text
    assert "y@does-not-exist.test" in text and "5.1.2" in text


def test_dns_failure_defers(platform: Platform) -> None:
    platform.internet.dns.fail("broken.test", "MX", mode="servfail")
    platform.submit(["z@broken.test"], subject="dns trouble")
    platform.ref.wait_delivered()
    entries = platform.ref.app.spool.entries()
    assert len(entries) == 1
    assert entries[0].recipients[0].reply.startswith("4.4.3")
    assert platform.inbox() == []
    platform.internet.dns.heal("broken.test")
    platform.internet.dns.add("broken.test", "MX", "10 mx.gmail.test")
    platform.advance(120)
    gmail = platform.internet.mx["gmail"]
    gmail.wait_for(delivered_to(gmail, "z@broken.test"))


def test_bounces_are_not_bounced(platform: Platform) -> None:
    # A DSN (null sender) that cannot be delivered is dropped with a log line, not bounced.
    platform.ref.add_user("gone@example.test", "pw")
    gmail = platform.internet.mx["gmail"]
    gmail.policy = Policy(rules=[Rule(stage="rcpt", action="550 5.1.1 No such user")])
    platform.submit(["a@gmail.test"], subject="loop", sender="alice@example.test")
    platform.wait(lambda: len(platform.inbox()) == 1)
    platform.ref.wait_delivered()
    assert platform.ref.app.spool.entries() == []


def test_remote_hanging_up_mid_data_is_retried_not_lost(platform: Platform) -> None:
    gmail = platform.internet.mx["gmail"]
    gmail.policy = Policy(rules=[Rule(stage="data", action="hangup:64")])
    platform.submit(["ivy@gmail.test"], subject="cut short")
    gmail.wait_for(lambda m: len(m.attempts) >= 1)
    platform.ref.wait_delivered()
    (entry,) = platform.ref.app.spool.entries()
    assert entry.recipients[0].status == "pending"
    assert entry.recipients[0].reply.startswith("451 4.4.2")
    assert gmail.deliveries == []
    gmail.policy = Policy.accept_all()
    platform.advance(120)
    gmail.wait_for(delivered_to(gmail, "ivy@gmail.test"))
    assert b"cut short" in gmail.deliveries[0].data
    platform.ref.wait_delivered()
    assert platform.ref.app.spool.entries() == []
    assert platform.inbox() == []  # no bounce: it was delivered in the end
