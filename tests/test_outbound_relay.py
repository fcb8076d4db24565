"""The queue's two lanes, the relay's EHLO name per source address, and its TLS policy seam."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from fakes.internet import FakeInternet
from reference.clock import ManualClock
from reference.delivery import LocalDelivery, Outcome, QueueRunner, lane_of
from reference.delivery.remote import (
    MxResolver,
    OpportunisticTls,
    Relay,
    SourcePool,
    TlsPolicy,
)
from reference.directory import Directory
from reference.mailbox import MailStore
from reference.spool import QueueEntry, Recipient, Spool
from reference.testing import ReferenceServer

MESSAGE = b"From: alice@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


class SlowRemote:
    """A relay whose bulk deliveries wait for a gate; regular ones go at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.inflight = {"bulk": 0, "regular": 0}
        self.most = {"bulk": 0, "regular": 0}
        self.delivered: list[str] = []

    async def deliver(
        self, entry: QueueEntry, rcpts: Sequence[Recipient], data: bytes
    ) -> dict[str, Outcome]:
        lane = lane_of(entry)
        self.inflight[lane] += 1
        self.most[lane] = max(self.most[lane], self.inflight[lane])
        try:
            if lane == "bulk":
                await self.gate.wait()
            self.delivered.append(entry.qid)
            return {r.address: Outcome("delivered", "250 2.0.0 ok") for r in rcpts}
        finally:
            self.inflight[lane] -= 1


async def test_bulk_backlog_never_holds_up_regular_mail(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path / "spool", clock)
    directory = Directory(tmp_path / "dir.sqlite3")
    remote = SlowRemote()
    runner = QueueRunner(
        spool,
        clock,
        LocalDelivery(directory, MailStore(tmp_path / "mail", clock=clock), clock),
        remote=remote,
        concurrency=3,
        bulk_concurrency=2,
    )
    runner.start()
    try:
        for i in range(10):
            e = await spool.enqueue(
                "news@example.test", [f"r{i}@remote.test"], MESSAGE, lane="bulk"
            )
            runner.notify(e.qid)
        for _ in range(100):
            if remote.inflight["bulk"] == 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # (a third would have started by now)
        assert remote.most["bulk"] == 2  # capped at its own slots
        regular = await spool.enqueue("alice@example.test", ["bob@remote.test"], MESSAGE)
        runner.notify(regular.qid)
        for _ in range(100):
            if regular.qid in remote.delivered:
                break
            await asyncio.sleep(0.02)
        assert remote.delivered == [regular.qid]  # while all the bulk mail still waits
        remote.gate.set()
        for _ in range(200):
            if len(remote.delivered) == 11:
                break
            await asyncio.sleep(0.02)
        assert len(remote.delivered) == 11
        assert remote.most["bulk"] == 2
    finally:
        await runner.stop(1)
        directory.close()


def test_lane_of() -> None:
    assert lane_of(QueueEntry("q", "s", [], 0.0, 0.0)) == "regular"
    assert lane_of(QueueEntry("q", "s", [], 0.0, 0.0, lane="bulk")) == "bulk"


# -- the relay against the fake internet


@pytest.fixture
def internet() -> Iterator[FakeInternet]:
    with FakeInternet(providers=["gmail"], clock=ManualClock()) as net:
        yield net


def make_relay(net: FakeInternet, **kw: object) -> Relay:
    resolver = net.dns.resolver(5.0)
    settings: dict[str, object] = {
        "hostname": "mail.example.test",
        "mx": MxResolver(resolver),
        "pool": SourcePool(["127.0.1.5/32"]),
        "port": net.smtp_port,
        "timeout": 5.0,
    }
    settings.update(kw)
    return Relay(**settings)  # type: ignore[arg-type]


def entry(rcpt: str) -> QueueEntry:
    return QueueEntry("Q1", "alice@example.test", [Recipient(rcpt)], 0.0, 0.0)


async def test_helo_name_per_source_address(internet: FakeInternet) -> None:
    relay = make_relay(internet, helo_names={"127.0.1.5": "out5.example.test"})
    e = entry("bob@gmail.test")
    out = await relay.deliver(e, e.recipients, MESSAGE)
    assert out["bob@gmail.test"].status == "delivered"
    (d,) = internet.mx["gmail"].deliveries
    assert (d.source, d.helo) == ("127.0.1.5", "out5.example.test")
    other = make_relay(internet, pool=SourcePool(["127.0.1.6/32"]), helo_names={})
    await other.deliver(e, e.recipients, MESSAGE)
    assert internet.mx["gmail"].deliveries[-1].helo == "mail.example.test"


class Required:
    """A stand-in for an MTA-STS "enforce" policy source."""

    def __init__(self, *patterns: str) -> None:
        self.patterns = patterns

    async def policy_for(self, domain: str) -> TlsPolicy:
        return TlsPolicy(required=True, mx_patterns=self.patterns, source="mta-sts")


async def test_tls_policy_seam() -> None:
    with FakeInternet(providers=["gmail"], clock=ManualClock(), starttls=False) as net:
        e = entry("bob@gmail.test")
        # Opportunistic (today's default): cleartext when STARTTLS is not offered.
        out = await make_relay(net, tls_policy=OpportunisticTls()).deliver(e, e.recipients, MESSAGE)
        assert out["bob@gmail.test"].status == "delivered"
        # A required policy never sends in cleartext: deferred with 4.7.4.
        out = await make_relay(net, tls_policy=Required()).deliver(e, e.recipients, MESSAGE)
        assert out["bob@gmail.test"].status == "deferred"
        assert "4.7.4" in out["bob@gmail.test"].detail
        # An MX the policy does not name is not even tried.
        out = await make_relay(net, tls_policy=Required("*.elsewhere.test")).deliver(
            e, e.recipients, MESSAGE
        )
        assert out["bob@gmail.test"].status == "deferred"
        assert "no MX of gmail.test is allowed" in out["bob@gmail.test"].detail
        assert len(net.mx["gmail"].deliveries) == 1


def test_mta_sts_mx_patterns() -> None:
    p = TlsPolicy(required=True, mx_patterns=("mx.example.net", "*.mail.example.net"))
    assert p.allows("MX.example.net.")
    assert p.allows("a.mail.example.net")
    assert not p.allows("a.b.mail.example.net")  # one label only (RFC 8461 4.1)
    assert not p.allows("mail.example.net")
    assert TlsPolicy().allows("anything.test")


def test_helo_names_wired_from_config(tmp_path: Path, internet: FakeInternet) -> None:
    """relay.helo_names reaches the relay: the fake MX records the EHLO name."""
    with ReferenceServer(
        tmp_path / "var",
        nameservers=[internet.nameserver],
        overrides={
            "relay.port": internet.smtp_port,
            "relay.source_addresses": ["127.0.1.9/32"],
            "relay.helo_names": ["127.0.1.9=out9.example.test"],
        },
    ) as ref:
        ref.add_domain("example.test")
        ref.add_user("alice@example.test", "pw")
        ctx = smtplib.ssl.create_default_context(cafile=str(ref.cafile))
        with smtplib.SMTP("127.0.0.1", ref.port("submission"), timeout=10) as s:
            s.starttls(context=ctx)
            s.login("alice@example.test", "pw")
            s.sendmail("alice@example.test", ["carol@gmail.test"], MESSAGE)
        gmail = internet.mx["gmail"]
        gmail.wait_for(lambda m: bool(m.deliveries), timeout=10)
        assert (gmail.deliveries[0].source, gmail.deliveries[0].helo) == (
            "127.0.1.9",
            "out9.example.test",
        )


def test_disclaimer_and_header_rules_are_signed(tmp_path: Path, internet: FakeInternet) -> None:
    """The rewritten message is what DKIM signs: the receiver's verification passes."""
    import dkim as dkimpy

    from reference.auth.keys import KeyStore

    data = tmp_path / "var"
    (data / "disclaimers").mkdir(parents=True)
    (data / "disclaimers" / "example.test.txt").write_text("Example Ltd: confidential.\n")
    with ReferenceServer(
        data,
        nameservers=[internet.nameserver],
        overrides={
            "relay.port": internet.smtp_port,
            "relay.source_addresses": ["127.0.1.9/32"],
            "headers.add": ["X-Mailspec-Submitted: yes"],
        },
    ) as ref:
        ref.add_domain("example.test")
        ref.add_user("alice@example.test", "pw")
        msg = (
            b"From: alice@example.test\r\nTo: carol@gmail.test\r\nSubject: signed\r\n"
            b"X-Originating-IP: [198.51.100.7]\r\n\r\nHello Carol.\r\n"
        )
        ctx = smtplib.ssl.create_default_context(cafile=str(ref.cafile))
        with smtplib.SMTP("127.0.0.1", ref.port("submission"), timeout=10) as s:
            s.starttls(context=ctx)
            s.login("alice@example.test", "pw")
            s.sendmail("alice@example.test", ["carol@gmail.test"], msg)
        gmail = internet.mx["gmail"]
        gmail.wait_for(lambda m: bool(m.deliveries), timeout=10)
        got = gmail.deliveries[0].data
        keys = KeyStore(data / "dkim").load(
            "example.test", ref.config.auth.selector, ref.config.auth.sign_algorithms
        )
    assert got.rstrip(b"\r\n").endswith(b"Example Ltd: confidential.")
    assert b"X-Mailspec-Submitted: yes\r\n" in got and b"X-Originating-IP" not in got
    records = {f"{k.record_name}.".encode(): k.public_record().encode() for k in keys}
    d = dkimpy.DKIM(got)
    for i in range(2):
        assert d.verify(idx=i, dnsfunc=lambda name, timeout=5: records.get(name))
