"""Backpressure: while delivery is behind acceptance the reply to MAIL waits (bounded), past
the spool backlog limit MAIL gets 451 4.3.2, and nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakes.internet import FakeInternet
from fakes.mx import Policy, Rule
from reference.clock import ManualClock, RealClock
from reference.spool import Spool
from reference.testing import ReferenceServer


async def test_the_lag_is_mail_accepted_and_not_yet_attempted(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path, clock)
    await spool.enqueue("a@x.test", ["b@y.test"], b"x")  # not this process's to deliver
    first = await spool.enqueue("a@x.test", ["b@y.test"], b"x", claim=True)
    clock.advance(0.3)
    second = await spool.enqueue("a@x.test", ["b@y.test"], b"x", claim=True)
    assert spool.lag() == (2, pytest.approx(0.3))
    assert spool.behind(2, 0) and spool.behind(0, 0.25) and not spool.behind(3, 0.5)
    assert not Spool(tmp_path, clock).claim(first.qid)  # claimed here: no one else's
    spool.attempted(first.qid)
    assert spool.lag() == (1, 0.0)
    spool.unclaim(second.qid)
    assert spool.lag() == (0, 0.0) and not spool.behind(1, 0.1)
    assert Spool(tmp_path, clock).claim(second.qid)


async def test_backlog_follows_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path, ManualClock())
    entries = [await spool.enqueue("a@x.test", ["b@y.test"], b"x") for _ in range(3)]
    assert spool.backlog == 3
    spool.remove(entries[0].qid)
    spool.remove(entries[0].qid)  # twice: counted once
    assert spool.backlog == 2
    assert Spool(tmp_path, ManualClock()).backlog == 2  # counted again at start


@dataclass
class Stalled:
    """A node whose outbound delivery stalls (the receiver defers everything)."""

    clock: ManualClock
    internet: FakeInternet
    ref: ReferenceServer

    def submit(self, rcpt: str = "friend@gmail.test") -> tuple[int, bytes]:
        """One message to a remote friend: the reply to MAIL, or to DATA once taken."""
        ctx = smtplib.ssl.create_default_context(cafile=str(self.ref.cafile))
        with smtplib.SMTP("127.0.0.1", self.ref.port("submission"), timeout=10) as s:
            s.starttls(context=ctx)
            s.login("bob@example.test", "pw")
            code, text = s.mail("bob@example.test")
            if code != 250:
                return code, text
            s.rcpt(rcpt)
            return s.data(b"Subject: queued\r\n\r\nbody\r\n")


@contextlib.contextmanager
def stalled(tmp_path: Path, **smtp: object) -> Iterator[Stalled]:
    clock = ManualClock()
    with FakeInternet(providers=["gmail"], clock=clock) as internet:
        internet.mx["gmail"].policy = Policy(rules=[Rule(stage="rcpt", action="451 4.3.0 later")])
        overrides = {
            **{f"smtp.{k}": v for k, v in smtp.items()},
            "relay.port": internet.smtp_port,
            "relay.source_addresses": ["127.0.1.0/24"],
        }
        # One worker: the tests look at its spool (test_workers.py runs two).
        with ReferenceServer(
            tmp_path / "var",
            clock=clock,
            nameservers=[internet.nameserver],
            overrides=overrides,
            workers=1,
        ) as ref:
            ref.add_domain("example.test")
            ref.add_user("bob@example.test", "pw")
            yield Stalled(clock, internet, ref)


def test_mail_waits_at_the_sender_when_the_queue_is_full(tmp_path: Path) -> None:
    with stalled(tmp_path, max_backlog=2) as node:
        ref, submit, clock, internet = node.ref, node.submit, node.clock, node.internet
        assert submit()[0] == 250
        assert submit()[0] == 250
        ref.wait_delivered()  # both deferred by the receiver: still in the spool
        code, text = submit()
        assert (code, text[:5]) == (451, b"4.3.2")
        assert len(ref.app.spool.entries()) == 2
        internet.mx["gmail"].policy = Policy.accept_all()
        clock.advance(120)
        internet.mx["gmail"].wait_for(lambda m: len(m.deliveries) == 2)
        ref.wait_delivered()
        assert submit()[0] == 250  # room again


def waiting_submit(node: Stalled, replies: list[tuple[int, bytes]]) -> threading.Thread:
    """Submit in a thread whose MAIL reply the node holds back (waiting on its clock)."""
    before = len(replies)
    t = threading.Thread(target=lambda: replies.append(node.submit()))
    t.start()
    deadline = RealClock().monotonic() + 10
    while not node.ref.app.spool.waiting:
        assert RealClock().monotonic() < deadline and t.is_alive()
        t.join(0.02)
    assert len(replies) == before
    return t


def test_mail_replies_wait_for_delivery_to_catch_up_bounded(tmp_path: Path) -> None:
    """In-flow delay: while mail accepted waits for its first attempt (past
    smtp.flow_backlog messages), the MAIL reply waits for delivery to catch up, at most
    smtp.flow_delay, and then goes on (past smtp.max_backlog it would be 451 4.3.2)."""
    with stalled(tmp_path, flow_backlog=1, flow_lag="0s", flow_delay="1s") as node:
        # One delivery at a time, and the first one takes a while at the receiver: what is
        # accepted meanwhile waits for its first attempt.
        node.internet.mx["gmail"].policy = Policy(
            rules=[Rule(stage="rcpt", recipient="slow@gmail.test", delay=3.0)]
        )
        node.ref.app.runner._slots = asyncio.Semaphore(1)
        replies: list[tuple[int, bytes]] = []
        replies.append(node.submit("slow@gmail.test"))
        replies.append(node.submit())  # waits for the slot: one message behind
        assert [c for c, _ in replies] == [250, 250]
        t = waiting_submit(node, replies)
        node.clock.advance(0.5)
        t.join(0.1)
        assert t.is_alive()  # half the bound: still waiting
        node.clock.advance(0.5)
        t.join(10)
        assert replies[-1][0] == 250  # the bound: taken (two behind now)
        # Delivery catching up ends the wait: the slow delivery ends, the others begin.
        t = waiting_submit(node, replies)
        node.internet.mx["gmail"].wait_for(lambda m: len(m.deliveries) == 3, timeout=15)
        node.clock.advance(0.05)
        t.join(10)
        assert replies[-1][0] == 250
        node.internet.mx["gmail"].wait_for(lambda m: len(m.deliveries) == 4, timeout=15)
        node.ref.wait_delivered()


def test_deferred_mail_never_holds_replies_back(tmp_path: Path) -> None:
    """Mail waiting for a retry (the receiver defers it) is not lag: new mail is taken at
    once however much of it there is."""
    with stalled(tmp_path, flow_backlog=1, flow_lag="1ms", flow_delay="10m") as node:
        for _ in range(3):
            assert node.submit()[0] == 250
        node.ref.wait_delivered()  # all deferred by the receiver: still in the spool
        node.clock.advance(5)
        replies: list[tuple[int, bytes]] = []
        t = threading.Thread(target=lambda: replies.append(node.submit()))
        t.start()
        t.join(10)  # a reply held back would wait for the manual clock: for ever
        assert not t.is_alive() and replies[0][0] == 250
        assert len(node.ref.app.spool.entries()) == 4
