"""Backpressure: past the spool backlog limit, MAIL gets 451 4.3.2 and nothing is lost."""

from __future__ import annotations

import smtplib
import threading
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


def test_mail_waits_at_the_sender_when_the_queue_is_full(tmp_path: Path) -> None:
    clock = ManualClock()
    with FakeInternet(providers=["gmail"], clock=clock) as internet:
        internet.mx["gmail"].policy = Policy(rules=[Rule(stage="rcpt", action="451 4.3.0 later")])
        overrides = {
            "smtp.max_backlog": 2,
            "relay.port": internet.smtp_port,
            "relay.source_addresses": ["127.0.1.0/24"],
        }
        with ReferenceServer(
            tmp_path / "var", clock=clock, nameservers=[internet.nameserver], overrides=overrides
        ) as ref:
            ref.add_domain("example.test")
            ref.add_user("bob@example.test", "pw")
            ctx = smtplib.ssl.create_default_context(cafile=str(ref.cafile))

            def submit() -> tuple[int, bytes]:
                with smtplib.SMTP("127.0.0.1", ref.port("submission"), timeout=10) as s:
                    s.starttls(context=ctx)
                    s.login("bob@example.test", "pw")
                    code, text = s.mail("bob@example.test")
                    if code != 250:
                        return code, text
                    s.rcpt("friend@gmail.test")
                    return s.data(b"Subject: queued\r\n\r\nbody\r\n")

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
    clock = ManualClock()
    with FakeInternet(providers=["gmail"], clock=clock) as internet:
        # Delivery stalls: the receiver defers every message, which stays in the spool.
        internet.mx["gmail"].policy = Policy(rules=[Rule(stage="rcpt", action="451 4.3.0 later")])
        overrides = {
            "smtp.flow_backlog": 3,
            "smtp.flow_delay": "1s",
            "smtp.max_backlog": 3,
            "relay.port": internet.smtp_port,
            "relay.source_addresses": ["127.0.1.0/24"],
        }
        with ReferenceServer(
            tmp_path / "var", clock=clock, nameservers=[internet.nameserver], overrides=overrides
        ) as ref:
            ref.add_domain("example.test")
            ref.add_user("bob@example.test", "pw")
            ctx = smtplib.ssl.create_default_context(cafile=str(ref.cafile))
            replies: list[tuple[int, bytes]] = []

            def submit() -> None:
                with smtplib.SMTP("127.0.0.1", ref.port("submission"), timeout=10) as s:
                    s.starttls(context=ctx)
                    s.login("bob@example.test", "pw")
                    code, text = s.mail("bob@example.test")
                    if code == 250:
                        s.rcpt("friend@gmail.test")
                        code, text = s.data(b"Subject: queued\r\n\r\nbody\r\n")
                    replies.append((code, text))

            def waiting_submit() -> threading.Thread:
                before = len(replies)
                t = threading.Thread(target=submit)
                t.start()
                # The reply is held back: the session waits on the (manual) clock.
                deadline = RealClock().monotonic() + 10
                while not ref.app.spool.waiting:
                    assert RealClock().monotonic() < deadline and t.is_alive()
                    t.join(0.02)
                assert len(replies) == before
                return t

            for _ in range(3):
                submit()
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

