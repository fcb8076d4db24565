"""`mailspec queue` on a live server: list, hold, release, flush, delete."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

from fakes.internet import FakeInternet
from fakes.mx import Policy, Rule
from reference.testing import ServedProcess, mailspec, serve_process, write_config


def submit(node: ServedProcess, rcpt: str, subject: str) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "alice@example.test", rcpt, subject
    m.set_content("queued\n")
    with smtplib.SMTP("127.0.0.1", node.ports["submission"], timeout=10) as s:
        s.starttls(context=node.tls_context())
        s.login("alice@example.test", "alice-pw")
        s.send_message(m)


def qids(data_dir: Path) -> list[str]:
    return sorted(p.stem for p in (data_dir / "spool").glob("*.json"))


def test_hold_release_flush_delete(tmp_path: Path) -> None:
    data = tmp_path / "var"
    with FakeInternet(providers=["gmail"]) as internet:
        gmail = internet.mx["gmail"]
        gmail.policy = Policy(rules=[Rule(stage="rcpt", action="451 4.3.0 not now")])
        config = write_config(
            tmp_path / "c.toml",
            dns={"nameservers": [internet.nameserver]},
            relay={"port": internet.smtp_port, "source_addresses": ["127.0.1.0/24"]},
            queue={"retry": ["1h"]},
        )
        mailspec("domain", "add", "example.test", data_dir=data)
        mailspec("user", "add", "alice@example.test", "--password", "alice-pw", data_dir=data)
        node = serve_process(data, config)
        try:
            submit(node, "keep@gmail.test", "keep me")
            submit(node, "drop@gmail.test", "drop me")
            gmail.wait_for(lambda m: len(m.attempts) >= 2)
            keep, drop = qids(data)
            listing = mailspec("queue", "list", data_dir=data, config=config)
            assert "2 message(s) queued" in listing
            assert "keep@gmail.test" in listing and "451 4.3.0 not now" in listing

            mailspec("queue", "hold", keep, data_dir=data, config=config)
            assert "held" in mailspec("queue", "list", data_dir=data, config=config)
            assert "drop@gmail.test" in mailspec(
                "queue", "show", drop, data_dir=data, config=config
            )
            mailspec("queue", "delete", drop, data_dir=data, config=config)
            assert qids(data) == [keep]

            gmail.policy = Policy.accept_all()
            out = mailspec("queue", "flush", data_dir=data, config=config)
            assert "notified" in out
            # Held: the flush does not deliver it.
            assert "1 message(s) queued" in mailspec("queue", "list", data_dir=data, config=config)
            # Released, the flush asked for earlier applies at once (the schedule says 1 h).
            mailspec("queue", "release", keep, data_dir=data, config=config)
            gmail.wait_for(lambda m: len(m.deliveries) == 1, timeout=15)
            assert list(gmail.deliveries[0].rcpt_tos) == ["keep@gmail.test"]
        finally:
            assert node.stop() == 0
    assert qids(data) == []
    assert not (data / "mail" / "example.test" / "alice" / "new").exists() or not any(
        (data / "mail" / "example.test" / "alice" / "new").iterdir()
    )  # the deleted message was not bounced
