"""Sender authentication through the whole reference, on the fake internet.

Submitted mail leaves signed with keys the fake DNS publishes, and the signatures verify;
mail signed by a fake provider passes DMARC at our MX and carries our results; mail
spoofing that provider is refused.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import dkim as dkimpy
import pytest

from fakes.internet import FakeInternet
from reference.auth import dkim
from reference.auth.dkim import DkimResult
from reference.auth.keys import KeyStore
from reference.auth.lookup import Lookup
from reference.clock import ManualClock
from reference.testing import ReferenceServer


class Node:
    def __init__(self, tmp: Path) -> None:
        self.clock = ManualClock()
        self.internet = FakeInternet(clock=self.clock).start()
        # Keys made before the start, as `mailspec dkim keygen` would, and published.
        keys = KeyStore(tmp / "var" / "dkim").generate("example.test", "mailspec")
        for k in keys:
            v = k.public_record()
            self.internet.dns.add_txt(
                k.record_name, *[v[i : i + 255] for i in range(0, len(v), 255)]
            )
        self.ref = ReferenceServer(
            tmp / "var",
            clock=self.clock,
            nameservers=[self.internet.nameserver],
            overrides={
                "relay.port": self.internet.smtp_port,
                "relay.source_addresses": ["127.0.1.0/24"],
                "relay.timeout": "5s",
                "dns.timeout": "2s",
            },
        ).start()
        self.ref.add_domain("example.test")
        self.ref.add_user("alice@example.test", "alice-pw")

    def stop(self) -> None:
        self.ref.stop()
        self.internet.stop()

    def lookup(self) -> Lookup:
        return Lookup(self.internet.dns.resolver(5.0))

    def mx(self, sender: str, msg: bytes) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", self.ref.port("mx"), timeout=10) as s:
            s.ehlo("client.example")
            code, text = s.mail(sender)
            assert code == 250
            code, text = s.rcpt("alice@example.test")
            assert code == 250
            code, text = s.data(msg)
            return code, text


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    yield n
    n.stop()


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


async def test_submitted_mail_verifies_at_the_receiver(node: Node) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "Alice <alice@example.test>", "f@gmail.test", "signed"
    m.set_content("a signed message\n")
    ctx = ssl.create_default_context(cafile=str(node.ref.cafile))
    with smtplib.SMTP("127.0.0.1", node.ref.port("submission"), timeout=10) as s:
        s.starttls(context=ctx)
        s.login("alice@example.test", "alice-pw")
        s.send_message(m)
    gmail = node.internet.mx["gmail"]
    wait_for(lambda: gmail.deliveries)
    data = gmail.deliveries[0].data
    got = await dkim.verify(node.lookup(), data, now=node.clock.now())
    assert [(s.result, s.algorithm) for s in got] == [
        (DkimResult.PASS, "rsa-sha256"),
        (DkimResult.PASS, "ed25519-sha256"),
    ]
    assert dkimpy.verify(data, dnsfunc=_dnsfunc(node))


def _dnsfunc(node: Node):  # type: ignore[no-untyped-def]
    recs = {r.name: b"".join(r.rdata.data) for r in node.internet.dns.records() if r.rtype == "TXT"}
    return lambda name, timeout=5: recs.get(name.decode().rstrip("."))


def provider_message(subject: str) -> bytes:
    return (
        "From: PayPal <service@gmail.test>\r\nTo: alice@example.test\r\n"
        f"Subject: {subject}\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "Message-ID: <p1@gmail.test>\r\n\r\nYour account.\r\n"
    ).encode()


def test_signed_provider_mail_passes_and_spoofed_is_refused(node: Node) -> None:
    gmail = node.internet.providers["gmail"]
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(gmail.dkim_private_key, password=None)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    msg = provider_message("genuine")
    signed = dkimpy.sign(msg, gmail.dkim_selector.encode(), gmail.domain.encode(), pem) + msg
    code, _ = node.mx("bounce@gmail.test", signed)
    assert code == 250
    wait_for(lambda: node.ref.mailbox_messages("alice@example.test"))
    (delivered,) = node.ref.mailbox_messages("alice@example.test")
    head = delivered.split(b"\r\n\r\n", 1)[0].decode()
    assert "Authentication-Results: mail.example.test;" in head
    assert "dkim=pass" in head and "dmarc=pass" in head and "spf=fail" in head

    code, text = node.mx("service@gmail.test", provider_message("spoofed"))
    assert code == 550 and text.startswith(b"5.7.1") and b"gmail.test" in text
    recorder = node.ref.app.dmarc_recorder
    assert [o.applied.value for o in recorder.observations] == ["none", "reject"]
