"""RFC 7208, RFC 6376, RFC 8301, RFC 8463, RFC 7489, RFC 9091, RFC 8601: every result path.

``test_auth_inbound`` checks the headline promises; this file walks the other results
each mechanism can reach through the fake DNS: SPF none, neutral, softfail, temperror
(SERVFAIL and timeout) and permerror; DKIM without a key, with a key that cannot be
fetched, with a missing tag, with SHA-1 or a short RSA key, with Ed25519 and with l=;
DMARC without a record, with a broken one, through the organizational domain (sp=, np=),
with strict and relaxed alignment, pct=, and DNS failures that must defer, not refuse.

Every test publishes under names of its own and removes them (and heals injected
failures) when it ends: the target and its fake DNS are shared by the whole run.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from typing import Any

import authres  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]
import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.smtp_client import Reply
from conformance.target import Target
from conformance.tests.test_auth_inbound import (
    find_message,
    make_message,
    method_results,
    ours,
    rsa_key,
    send_inbound,
    token,
)

# A 512-bit RSA key (made for this suite; `cryptography` refuses to generate one this short).
SHORT_KEY = b"""-----BEGIN RSA PRIVATE KEY-----
MIIBOwIBAAJBAOZqWsze54Bbo1sMwS4Zbt9kmvwqRh6q16nZ3Y+8G+PcPZRorop/
UBZJrkTKKFcRoBjx8CYaKC/P/GvJHzj4Zo8CAwEAAQJANrsGjGlaFewudj8mV9vk
sR2FjuY/t6MfDRJaBX1KJqpDW0lQDysIQjVS24sgAQOIAP2s/PnLVVUOb3z5e25J
4QIhAP4D7FsaRYZA4SmyacDtOKXgLdsZBzlHNsUchKi36VJ/AiEA6Dc6Ng9Dpf70
kBGtjhs7QLJVPjPKBvtnvJqte0AFw/ECIBewhfp5GMLMijM5UGONvBq8LYqhausM
mS8I2dZiUIBBAiEAmIjWgvYp4JsFuLD0CRmYJVo/JjnMpiN0M+6CsCgQ4XECIQCG
80bT27j7qnRgulb+f6rrIjNwTr1HBrq17t1vACShXg==
-----END RSA PRIVATE KEY-----
"""
ANY_CLIENT = "v=spf1 ip4:0.0.0.0/0 ip6:::/0 -all"  # the suite's address is unknown: allow all


class Zone:
    """DNS data one test publishes; removed, and injected failures healed, at its end."""

    def __init__(self, dns: Any) -> None:
        self.dns = dns
        self.names: set[str] = set()
        self.failed: set[str] = set()

    def domain(self, prefix: str = "d") -> str:
        return f"{prefix}{token()}.example"

    def txt(self, name: str, *strings: str) -> None:
        self.names.add(name)
        self.dns.add_txt(name, *strings)

    def spf(self, domain: str, record: str) -> None:
        self.names.add(domain)
        self.dns.spf(domain, record)

    def dmarc(self, domain: str, record: str) -> None:
        self.names.add(f"_dmarc.{domain}")
        self.dns.dmarc(domain, record)

    def key(self, domain: str, selector: str, value: str) -> None:
        self.txt(
            f"{selector}._domainkey.{domain}",
            *[value[i : i + 255] for i in range(0, len(value), 255)],
        )

    def fail(self, name: str, rtype: str, mode: str) -> None:
        self.failed.add(name)
        self.dns.fail(name, rtype, mode)

    def cleanup(self) -> None:
        for name in self.failed:
            self.dns.heal(name)
        for name in self.names:
            self.dns.remove(name)


@pytest.fixture
def zone(fake_dns: Any) -> Iterator[Zone]:
    z = Zone(fake_dns)
    try:
        yield z
    finally:
        z.cleanup()


def deliver(
    smtp: SMTPConnector,
    target: Target,
    sender: str,
    from_: str,
    *,
    signer: Any = None,
    helo: str | None = None,
    body: str = "",
) -> tuple[str, str]:
    """Send one message to the test account and read it back: (folder, our A-R value)."""
    acc, subject = target.account, f"paths {token()}"
    msg = make_message(from_, acc.address, subject, body=body)
    if signer is not None:
        msg = signer(msg)
    send_inbound(smtp, sender, acc.address, msg, helo=helo).expect(250, doing="DATA")
    folder, raw = find_message(target, acc, subject)
    return folder, ours(target, raw)


def refused(
    smtp: SMTPConnector, target: Target, sender: str, from_: str, signer: Any = None
) -> Reply:
    acc = target.account
    msg = make_message(from_, acc.address, f"paths {token()}")
    if signer is not None:
        msg = signer(msg)
    return send_inbound(smtp, sender, acc.address, msg)


def rsa_signer(
    zone: Zone, domain: str, selector: str = "s1", publish: bool = True, **kw: Any
) -> Any:
    pem, public = rsa_key()
    if publish:
        zone.key(domain, selector, f"v=DKIM1; k=rsa; p={public}")
    return lambda msg: dkimpy.sign(msg, selector.encode(), domain.encode(), pem, **kw) + msg


def spf_of(res: str) -> str:
    found = method_results(res, "spf")
    assert found, f"no spf result: {res}"
    return found[0]


def dkim_of(res: str) -> list[str]:
    return method_results(res, "dkim")


# -- SPF (RFC 7208) ----------------------------------------------------------------------------


@requirement("RFC7208", "2.6.1", "MUST", "a domain publishing no SPF record gets spf=none")
def test_spf_none(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.txt(d, "not an spf record")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert spf_of(res) == "none", res


@requirement("RFC7208", "8.2", "MUST", "a ?all that matches gives spf=neutral")
def test_spf_neutral(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, "v=spf1 ?all")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert spf_of(res) == "neutral", res


@requirement(
    "RFC7208", "8.5", "MUST", "a ~all that matches gives spf=softfail; the message is accepted"
)
def test_spf_softfail(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, "v=spf1 ~all")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert spf_of(res) == "softfail", res


@requirement(
    "RFC7208",
    "8.6",
    "MUST",
    "a SERVFAIL fetching the SPF record gives spf=temperror, and alone refuses nothing",
)
def test_spf_temperror_servfail(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.fail(d, "TXT", "servfail")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert spf_of(res) == "temperror", res


@requirement("RFC7208", "8.6", "MUST", "a DNS timeout fetching the SPF record gives spf=temperror")
def test_spf_temperror_timeout(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.fail(d, "TXT", "timeout")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert spf_of(res) == "temperror", res


@requirement("RFC7208", "8.7", "MUST", "an SPF record with a syntax error gives spf=permerror")
def test_spf_permerror_syntax(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, "v=spf1 ip4:192.0.2.300 -all")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert spf_of(res) == "permerror", res


@requirement("RFC7208", "4.6.4", "MUST", "more than 10 DNS-querying terms give spf=permerror")
def test_spf_lookup_limit(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    names = [f"i{i}.{d}" for i in range(12)]
    for here, there in itertools.pairwise(names):
        zone.spf(here, f"v=spf1 include:{there} -all")
    zone.spf(names[-1], ANY_CLIENT)
    zone.spf(d, f"v=spf1 include:{names[0]} -all")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert spf_of(res) == "permerror", res


@requirement("RFC7208", "4.5", "MUST", "two SPF records for one domain give spf=permerror")
def test_spf_two_records(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.txt(d, ANY_CLIENT)
    zone.txt(d, "v=spf1 -all")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert spf_of(res) == "permerror", res


@requirement(
    "RFC7208",
    "2.4",
    "MUST",
    "with a null reverse-path, SPF checks the HELO identity (smtp.helo)",
)
def test_spf_null_sender_uses_helo(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    helo = zone.domain("helo")
    zone.spf(helo, ANY_CLIENT)
    d = zone.domain()
    _, res = deliver(smtp, target, "", f"mailer-daemon@{d}", helo=helo)
    assert spf_of(res) == "pass", res
    assert f"smtp.helo={helo}" in res, res


# -- DKIM (RFC 6376, RFC 8301, RFC 8463) -------------------------------------------------------


@requirement(
    "RFC6376",
    "6.1.2",
    "MUST",
    "a signature whose key record does not exist gives dkim=permerror (no key)",
)
def test_dkim_no_key(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}", signer=rsa_signer(zone, d, publish=False))
    assert dkim_of(res) == ["permerror"], res


@requirement(
    "PLATFORM",
    "inbound.dkim",
    "MUST",
    "a SERVFAIL fetching a DKIM key gives dkim=temperror, never fail",
)
def test_dkim_key_servfail(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    signer = rsa_signer(zone, d, "sf")
    zone.fail(f"sf._domainkey.{d}", "TXT", "servfail")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}", signer=signer)
    assert dkim_of(res) == ["temperror"], res


@requirement(
    "PLATFORM",
    "inbound.dkim",
    "MUST",
    "a DNS timeout fetching a DKIM key gives dkim=temperror, never fail",
)
def test_dkim_key_timeout(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    signer = rsa_signer(zone, d, "slow")
    zone.fail(f"slow._domainkey.{d}", "TXT", "timeout")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}", signer=signer)
    assert dkim_of(res) == ["temperror"], res


@requirement(
    "RFC6376",
    "6.1.1",
    "MUST",
    "a signature missing a required tag (bh=) is not a pass (dkim=permerror or neutral)",
)
def test_dkim_missing_tag(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    signer = rsa_signer(zone, d)

    def strip_bh(msg: bytes) -> bytes:
        signed = signer(msg)
        head, _, rest = signed.partition(b"bh=")
        return head + rest.partition(b";")[2].lstrip()

    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}", signer=strip_bh)
    assert dkim_of(res)[:1] in (["permerror"], ["neutral"]), res


@requirement("RFC8301", "3.1", "MUST", "an rsa-sha1 signature is not a pass")
def test_dkim_sha1_is_not_valid(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    signer = rsa_signer(zone, d, signature_algorithm=b"rsa-sha1")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}", signer=signer)
    results = dkim_of(res)
    assert results and "pass" not in results, res


@requirement(
    "RFC8301", "3.2", "MUST", "a signature made with an RSA key under 1024 bits is not a pass"
)
def test_dkim_short_key_is_not_valid(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    key = serialization.load_pem_private_key(SHORT_KEY, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    zone.key(d, "short", f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}")
    _, res = deliver(
        smtp,
        target,
        f"a@{d}",
        f"a@{d}",
        signer=lambda m: dkimpy.sign(m, b"short", d.encode(), SHORT_KEY) + m,
    )
    results = dkim_of(res)
    assert results and "pass" not in results, res


@requirement(
    "RFC8463",
    "3",
    "MUST",
    "an ed25519-sha256 signature (the message's only one) verifies: dkim=pass",
)
def test_dkim_ed25519(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    zone.key(d, "ed", f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}")

    def sign(m: bytes) -> bytes:
        sig = dkimpy.sign(
            m, b"ed", d.encode(), base64.b64encode(seed), signature_algorithm=b"ed25519-sha256"
        )
        return sig + m

    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}", signer=sign)
    assert dkim_of(res) == ["pass"], res


@requirement(
    "PLATFORM",
    "inbound.dkim",
    "MUST",
    "a signature covering only part of the body (l=), with text added after it, is not a pass",
)
def test_dkim_body_length_tag(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    signer = rsa_signer(zone, d, length=True)
    _, res = deliver(
        smtp,
        target,
        f"a@{d}",
        f"a@{d}",
        signer=lambda m: signer(m) + b"Added by someone else: click here.\r\n",
    )
    results = dkim_of(res)
    assert results and "pass" not in results, res


# -- DMARC (RFC 7489, RFC 9091) ----------------------------------------------------------------


@requirement("RFC7489", "6.6.3", "MUST", "a From domain without a DMARC record gets dmarc=none")
def test_dmarc_none(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, "v=spf1 -all")
    folder, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert method_results(res, "dmarc") == ["none"] and folder == "INBOX", (folder, res)


@requirement(
    "RFC7489",
    "6.6.3",
    "MUST",
    "a DMARC record without a valid p= (and no rua=) applies no policy: the mail is accepted",
)
def test_dmarc_broken_record(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, "v=spf1 -all")
    zone.dmarc(d, "v=DMARC1; p=bogus")
    folder, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert method_results(res, "dmarc") in (["permerror"], ["none"]), res
    assert folder == "INBOX", folder


@requirement(
    "RFC7489",
    "6.6.3",
    "MUST",
    "a subdomain without a record falls under its organizational domain's sp= (reject: 550)",
)
def test_dmarc_subdomain_policy(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    org = zone.domain()
    sub = f"news.{org}"
    zone.spf(sub, "v=spf1 -all")
    zone.dmarc(org, "v=DMARC1; p=none; sp=reject")
    reply = refused(smtp, target, f"a@{sub}", f"a@{sub}")
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)


@requirement(
    "RFC9091",
    "4",
    "MUST",
    "mail from a non-existent subdomain falls under np= (reject: 550) while sp= is none",
)
def test_dmarc_np_for_non_existent_subdomain(
    smtp: SMTPConnector, target: Target, zone: Zone
) -> None:
    org = zone.domain()
    zone.spf(org, "v=spf1 -all")
    zone.dmarc(org, "v=DMARC1; p=none; sp=none; np=reject")
    ghost = f"ghost.{org}"  # no A, AAAA or MX: it does not exist
    reply = refused(smtp, target, f"a@{ghost}", f"a@{ghost}")
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)


@requirement(
    "RFC7489",
    "3.1.1",
    "MUST",
    "with adkim=s a signature by a subdomain does not align: p=reject refuses the mail",
)
def test_dmarc_strict_dkim_alignment(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, "v=spf1 -all")
    zone.dmarc(d, "v=DMARC1; p=reject; adkim=s")
    signer = rsa_signer(zone, f"mail.{d}")
    reply = refused(smtp, target, "fwd@forwarder.example", f"ceo@{d}", signer=signer)
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)


@requirement(
    "RFC7489",
    "3.1.2",
    "MUST",
    "in relaxed mode an SPF pass for a subdomain envelope aligns with the From domain",
)
def test_dmarc_relaxed_spf_alignment(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, "v=spf1 -all")
    zone.spf(f"bounce.{d}", ANY_CLIENT)
    zone.dmarc(d, "v=DMARC1; p=reject")
    folder, res = deliver(smtp, target, f"b@bounce.{d}", f"news@{d}")
    assert method_results(res, "dmarc") == ["pass"] and folder == "INBOX", (folder, res)


@requirement(
    "RFC7489",
    "6.6.4",
    "MUST",
    "mail outside pct= gets the next weaker policy: p=reject pct=0 is quarantined, not refused",
)
def test_dmarc_pct_zero(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, "v=spf1 -all")
    zone.dmarc(d, "v=DMARC1; p=reject; pct=0")
    folder, res = deliver(smtp, target, f"a@{d}", f"a@{d}")
    assert method_results(res, "dmarc") == ["fail"], res
    assert folder == "Junk", folder


@requirement(
    "PLATFORM",
    "inbound.dmarc",
    "MUST",
    "a SERVFAIL reading the DMARC record of unauthenticated mail defers it (451 4.4.3)",
)
def test_dmarc_record_servfail_defers(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, "v=spf1 -all")
    zone.fail(f"_dmarc.{d}", "TXT", "servfail")
    reply = refused(smtp, target, f"a@{d}", f"a@{d}")
    assert reply.code == 451 and reply.enhanced.startswith("4."), str(reply)


@requirement(
    "PLATFORM",
    "inbound.dmarc",
    "MUST",
    "a DNS timeout reading the DMARC record of unauthenticated mail defers it (451)",
)
def test_dmarc_record_timeout_defers(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, "v=spf1 -all")
    zone.fail(f"_dmarc.{d}", "TXT", "timeout")
    reply = refused(smtp, target, f"a@{d}", f"a@{d}")
    assert reply.code == 451, str(reply)


@requirement(
    "PLATFORM",
    "inbound.dmarc",
    "MUST",
    "an SPF temperror that may hide an aligned pass defers p=reject mail (451), never refuses it",
)
def test_dmarc_spf_temperror_defers(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.fail(d, "TXT", "servfail")
    zone.dmarc(d, "v=DMARC1; p=reject")
    reply = refused(smtp, target, f"a@{d}", f"a@{d}")
    assert reply.code == 451, str(reply)


# -- Authentication-Results (RFC 8601) -------------------------------------------------------


@requirement(
    "RFC8601",
    "2.2",
    "MUST",
    "our Authentication-Results field is well-formed: an independent parser reads every result",
)
def test_results_field_parses(smtp: SMTPConnector, target: Target, zone: Zone) -> None:
    d = zone.domain()
    zone.spf(d, ANY_CLIENT)
    zone.dmarc(d, "v=DMARC1; p=none")
    _, res = deliver(smtp, target, f"a@{d}", f"a@{d}", signer=rsa_signer(zone, d))
    parsed = authres.FeatureContext(authres.dmarc).parse_value(res)
    assert parsed.authserv_id.lower() == (target.hostname or "").lower()
    found = {(r.method, r.result) for r in parsed.results}
    assert {("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")} <= found, found
