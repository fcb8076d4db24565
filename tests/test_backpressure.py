"""Backpressure: past the spool backlog limit, MAIL gets 451 4.3.2 and nothing is lost."""

from __future__ import annotations

import smtplib
from pathlib import Path

from fakes.internet import FakeInternet
from fakes.mx import Policy, Rule
from reference.clock import ManualClock
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
