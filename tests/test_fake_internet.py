"""The fake internet: DNS and providers wired together, reachable on one port, torn down clean."""

from __future__ import annotations

import base64
import os
import smtplib
import socket
import threading

import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization

from fakes.internet import FakeInternet
from fakes.mx import Policy, Rule
from fakes.mx.fixtures import fake_internet  # noqa: F401 - the fixture under test
from reference.clock import ManualClock

MESSAGE = b"From: alice@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def resolver(internet: FakeInternet) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [internet.dns.host]
    r.port = internet.dns.port
    r.lifetime = 5
    return r


def txt(r: dns.resolver.Resolver, name: str) -> list[str]:
    return [b"".join(rr.strings).decode() for rr in r.resolve(name, "TXT")]


def deliver(internet: FakeInternet, rcpt: str, source: str = "127.0.1.77") -> None:
    """What a relay does: MX lookup in the fake DNS, then the one configured port."""
    r = resolver(internet)
    mx_host = str(r.resolve(rcpt.rpartition("@")[2], "MX")[0].exchange)
    address = str(r.resolve(mx_host, "A")[0])
    with smtplib.SMTP(address, internet.smtp_port, source_address=(source, 0), timeout=5) as s:
        s.sendmail("alice@example.test", [rcpt], MESSAGE)


def test_providers_are_published_in_dns(fake_internet: FakeInternet) -> None:  # noqa: F811
    r = resolver(fake_internet)
    assert set(fake_internet.mx) == {"gmail", "outlook", "yahoo", "smarthost"}
    assert fake_internet.nameserver == f"127.0.0.1:{fake_internet.dns.port}"
    for i, name in enumerate(("gmail", "outlook", "yahoo", "smarthost"), 1):
        provider = fake_internet.providers[name]
        assert provider.address == f"127.0.2.{i}" == fake_internet.mx[name].host
        assert fake_internet.mx[name].port == fake_internet.smtp_port
        assert [str(a) for a in r.resolve(provider.mx_host, "A")] == [provider.address]
        assert txt(r, provider.domain) == [f"v=spf1 ip4:{provider.address} -all"]
        assert txt(r, f"_dmarc.{provider.domain}")[0].startswith("v=DMARC1; p=reject")
        [dkim] = txt(r, f"fake._domainkey.{provider.domain}")
        public = serialization.load_pem_private_key(provider.dkim_private_key, None).public_key()
        spki = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert dkim == f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"
        ptr = r.resolve_address(provider.address)
        assert [str(p) for p in ptr] == [provider.mx_host + "."]
    assert [str(m.exchange) for m in r.resolve("gmail.test", "MX")] == ["mx.gmail.test."]
    with pytest.raises(dns.resolver.NoAnswer):
        r.resolve("smarthost.test", "MX")  # reached by name, not by MX
    assert fake_internet.smarthost is fake_internet.mx["smarthost"]


def test_mail_reaches_each_provider_through_dns_and_one_port(
    fake_internet: FakeInternet,  # noqa: F811
) -> None:
    fake_internet.mx["gmail"].policy = Policy(
        [Rule("rcpt", "gmail.reputation.5xx", source="127.0.1.5")]
    )
    deliver(fake_internet, "bob@gmail.test")
    deliver(fake_internet, "carol@outlook.test")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        deliver(fake_internet, "dave@gmail.test", source="127.0.1.5")
    assert [d.rcpt_tos for d in fake_internet.mx["gmail"].deliveries] == [("bob@gmail.test",)]
    assert [d.rcpt_tos for d in fake_internet.mx["outlook"].deliveries] == [("carol@outlook.test",)]
    assert fake_internet.mx["yahoo"].deliveries == []
    fake_internet.clear()
    assert fake_internet.mx["outlook"].deliveries == []


def test_add_provider_while_running_and_smarthost_auth() -> None:
    clock = ManualClock()
    with FakeInternet(["gmail"], clock=clock, smarthost_auth={"relay": "secret"}) as internet:
        corp = internet.add_provider("corp", Policy([Rule("rcpt", "greylist:60")]))
        assert (corp.host, corp.port) == ("127.0.2.3", internet.smtp_port)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            deliver(internet, "eve@corp.test")
        clock.advance(60)
        deliver(internet, "eve@corp.test")
        assert corp.deliveries[0].time == clock.now()
        with pytest.raises(ValueError, match="exists"):
            internet.add_provider("corp")
        host = internet.smarthost
        with smtplib.SMTP(host.host, internet.smtp_port, timeout=5) as s:
            s.starttls()
            s.login("relay", "secret")
            s.sendmail("alice@example.test", ["x@anywhere.test"], MESSAGE)
        assert host.deliveries[0].auth_user == "relay"
    with pytest.raises(RuntimeError, match="start"):
        internet.add_provider("late")


def test_dns_can_listen_on_a_given_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.9", 0))
        port = probe.getsockname()[1]
    with FakeInternet(["gmail"], dns_host="127.0.0.9", dns_port=port) as internet:
        assert internet.nameserver == f"127.0.0.9:{port}"
        assert str(resolver(internet).resolve("mx.gmail.test", "A")[0]) == "127.0.2.1"


def test_teardown_leaks_no_thread_or_socket() -> None:
    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    for _ in range(2):
        with FakeInternet() as internet:
            deliver(internet, "bob@yahoo.test")
            idle = smtplib.SMTP(internet.mx["gmail"].host, internet.smtp_port, timeout=5)
        idle.close()  # the server side was closed by stop()
    assert threading.active_count() == threads
    assert len(os.listdir("/proc/self/fd")) == fds


def test_every_mx_checks_spf_as_a_receiver(fake_internet: FakeInternet) -> None:  # noqa: F811
    """A receiver's SPF check of MAIL FROM, against the fake DNS: recorded and acted on."""
    fake_internet.dns.spf("forwarder.test", "v=spf1 ip4:127.0.1.0/24 -all")
    gmail = fake_internet.mx["gmail"]
    gmail.policy = Policy([Rule("mail", "gmail.unauthenticated.5xx", spf=["fail", "softfail"])])
    r = resolver(fake_internet)
    address = str(r.resolve("mx.gmail.test", "A")[0])

    def send(sender: str, source: str) -> None:
        with smtplib.SMTP(address, fake_internet.smtp_port, source_address=(source, 0)) as s:
            s.sendmail(sender, ["someone@gmail.test"], MESSAGE)

    send("bounces@forwarder.test", "127.0.1.9")
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send("bounces@forwarder.test", "127.0.3.9")  # not in forwarder.test's SPF
    assert refused.value.smtp_code == 550 and b"5.7.26" in refused.value.smtp_error
    (delivery,) = gmail.deliveries
    assert (delivery.mail_from, delivery.spf) == ("bounces@forwarder.test", "pass")
    send("someone@nospf.test", "127.0.1.9")
    assert gmail.deliveries[-1].spf == "none"
