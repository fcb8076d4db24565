"""Backpressure: past the spool backlog limit, MAIL gets 451 4.3.2 and nothing is lost."""

from __future__ import annotations

import contextlib
import smtplib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fakes.internet import FakeInternet
from fakes.mx import Policy, Rule
from reference.clock import ManualClock, RealClock
from reference.spool import Spool
from reference.testing import ReferenceServer


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

    def submit(self) -> tuple[int, bytes]:
        """One message to a remote friend: the reply to MAIL, or to DATA once taken."""
        ctx = smtplib.ssl.create_default_context(cafile=str(self.ref.cafile))
        with smtplib.SMTP("127.0.0.1", self.ref.port("submission"), timeout=10) as s:
            s.starttls(context=ctx)
            s.login("bob@example.test", "pw")
            code, text = s.mail("bob@example.test")
            if code != 250:
                return code, text
            s.rcpt("friend@gmail.test")
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


def test_mail_replies_wait_for_delivery_then_451_past_the_bound(tmp_path: Path) -> None:
    """In-flow delay: past smtp.flow_backlog the MAIL reply waits for delivery to catch up,
    at most smtp.flow_delay; past smtp.max_backlog the sender gets 451 4.3.2."""
    with stalled(tmp_path, flow_backlog=3, flow_delay="1s", max_backlog=3) as node:
        ref, clock = node.ref, node.clock
        replies: list[tuple[int, bytes]] = []

        def waiting_submit() -> threading.Thread:
            before = len(replies)
            t = threading.Thread(target=lambda: replies.append(node.submit()))
            t.start()
            # The reply is held back: the session waits on the (manual) clock.
            deadline = RealClock().monotonic() + 10
            while not ref.app.spool.waiting:
                assert RealClock().monotonic() < deadline and t.is_alive()
                t.join(0.02)
            assert len(replies) == before
            return t

        replies += [node.submit() for _ in range(3)]
        ref.wait_delivered()
        assert [c for c, _ in replies] == [250, 250, 250]
        # Three in the spool: the next MAIL waits; delivery catching up ends the wait
        # (here an operator deletes one), and the mail is taken.
        t = waiting_submit()
        ref.app.spool.delete(ref.app.spool.entries()[0].qid)
        clock.advance(0.05)
        t.join(10)
        assert replies[-1][0] == 250
        # Three again: the wait is bounded (flow_delay), then 451 4.3.2, try later.
        t = waiting_submit()
        clock.advance(0.5)
        t.join(0.1)
        assert t.is_alive()  # half the bound: still waiting
        clock.advance(0.5)
        t.join(10)
        assert (replies[-1][0], replies[-1][1][:5]) == (451, b"4.3.2")
        assert len(ref.app.spool.entries()) == 3
