"""Interop vectors: other implementations' test data against the reference, and back.

- dkimpy's own test messages, keys and canonicalisation examples (tests/data/dkimpy,
  zlib licence, see its README.md), verified through the reference's DKIM verifier over
  the fake DNS, and the reference's signatures checked by dkimpy;
- dkimpy's ``dkimverify`` command, run as a separate process that resolves through the
  fake DNS, verifying what the reference signs;
- authres's doctest vectors (tests/data/authres, Apache 2.0): run as they are, and every
  Authentication-Results field in them read by the project's own field readers (the
  reference's forged-field detection and the conformance suite's) as authres reads it.

The RFC 7208 suite lives in test_auth_spf.py; ``tox -e vectors`` runs it with these.
"""

from __future__ import annotations

import base64
import doctest
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import authres  # type: ignore[import-untyped]
import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from conformance.tests.test_auth_inbound import authserv_id, method_results
from fakes.dns import FakeDNS
from reference.auth import dkim
from reference.auth.dkim import DkimResult, _simple_body, relaxed_body, relaxed_header
from reference.auth.keys import KeyStore, SigningKey, txt_strings
from reference.auth.lookup import Lookup
from reference.auth.results import authserv_id_of
from reference.mail.message import Field

DATA = Path(__file__).parent / "data"
DKIMPY = DATA / "dkimpy"
VECTORS = json.loads((DKIMPY / "vectors.json").read_text())
NOW = 1_767_225_600.0


def _value(spec: str) -> str:
    return (DKIMPY / spec[1:]).read_text().strip() if spec.startswith("@") else spec


KEYS = {name: _value(v) for name, v in VECTORS["keys"].items()}


def _lf_to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture(scope="module")
def fdns() -> Iterator[FakeDNS]:
    with FakeDNS() as server:
        for name, value in KEYS.items():
            server.add_txt(name, *txt_strings(value))
        yield server


def make_lookup(server: FakeDNS) -> Lookup:
    return Lookup(server.resolver())


def _dnsfunc(records: dict[str, str]) -> Any:
    return lambda name, timeout=5: (
        records[n].encode() if (n := name.decode().rstrip(".")) in records else None
    )


# -- canonicalisation ------------------------------------------------------------------------

CANON = VECTORS["canonicalization"]


@pytest.mark.parametrize(("given", "expected"), CANON["relaxed_header"])
def test_relaxed_header_vectors(given: list[str], expected: str) -> None:
    name, value = given
    assert relaxed_header(name, value.encode()) == expected.encode()


@pytest.mark.parametrize(("given", "expected"), CANON["relaxed_body"])
def test_relaxed_body_vectors(given: str, expected: str) -> None:
    assert relaxed_body(given.encode()) == expected.encode()
    assert relaxed_body(expected.encode()) == expected.encode()  # canonical stays canonical


@pytest.mark.parametrize(("given", "expected"), CANON["simple_body"])
def test_simple_body_vectors(given: str, expected: str) -> None:
    assert _simple_body(given.encode()) == expected.encode()


# -- dkimpy's signed messages through our verifier -------------------------------------------


@pytest.mark.parametrize("case", VECTORS["verify"], ids=lambda c: c["message"])
@pytest.mark.parametrize("line_ends", ["as-shipped", "crlf"])
async def test_dkimpy_messages_verify(fdns: FakeDNS, case: dict[str, Any], line_ends: str) -> None:
    data = (DKIMPY / case["message"]).read_bytes()
    if line_ends == "crlf":  # as the message arrives over SMTP
        data = _lf_to_crlf(data)
    got = await dkim.verify(make_lookup(fdns), data, now=NOW)
    assert [s.result.value for s in got] == case["expect"], (case["about"], got)


def _test_key() -> SigningKey:
    pk = serialization.load_pem_private_key((DKIMPY / "test.private").read_bytes(), None)
    assert isinstance(pk, rsa.RSAPrivateKey)
    return SigningKey("example.com", "test", "rsa-sha256", pk)


def _rfc8032_key() -> SigningKey:
    # RFC 8032 7.1 TEST 1's secret key, as dkimpy stores it (base64 of the 32-byte seed).
    seed = base64.b64decode((DKIMPY / "rfc8032_7_1.key").read_bytes())
    pk = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return SigningKey("football.example.com", "brisbane", "ed25519-sha256", pk)


@pytest.mark.parametrize("name", ["test.message", "message.mbox", "rfc6376.msg"])
async def test_our_signatures_verify_in_dkimpy(fdns: FakeDNS, name: str) -> None:
    """The reference signs dkimpy's messages with dkimpy's keys; dkimpy verifies."""
    msg = _lf_to_crlf((DKIMPY / name).read_bytes())
    if name == "message.mbox":
        msg = msg.split(b"\r\n", 1)[1]  # the mbox "From " line is no header field
    rsa_key, ed_key = _test_key(), _rfc8032_key()
    signed = dkim.sign(msg, [rsa_key, ed_key], now=NOW) + msg
    records = {
        "test._domainkey.example.com": KEYS["test._domainkey.example.com"],
        "brisbane._domainkey.football.example.com": KEYS[
            "brisbane._domainkey.football.example.com"
        ],
    }
    d = dkimpy.DKIM(signed)
    assert d.verify(idx=0, dnsfunc=_dnsfunc(records)), "rsa-sha256 signature"
    assert d.verify(idx=1, dnsfunc=_dnsfunc(records)), "ed25519-sha256 signature"
    ours = await dkim.verify(make_lookup(fdns), signed, now=NOW)
    # message.mbox carries a signature of its own, whose key nobody publishes.
    assert [s.result for s in ours][:2] == [DkimResult.PASS, DkimResult.PASS]


@pytest.mark.parametrize("canon", [b"simple/simple", b"relaxed/simple", b"simple/relaxed"])
async def test_dkimpy_canonicalisations_verify_here(fdns: FakeDNS, canon: bytes) -> None:
    """We sign relaxed/relaxed only; dkimpy signs the others and we must verify them."""
    msg = _lf_to_crlf((DKIMPY / "test.message").read_bytes())
    header, body = canon.split(b"/")
    sig = dkimpy.sign(
        msg,
        b"test",
        b"example.com",
        (DKIMPY / "test.private").read_bytes(),
        canonicalize=(header, body),
    )
    got = await dkim.verify(make_lookup(fdns), sig + msg, now=NOW)
    assert [s.result for s in got] == [DkimResult.PASS]
    tampered = sig + msg.replace(b"test message", b"tost message")
    got = await dkim.verify(make_lookup(fdns), tampered, now=NOW)
    assert [s.result for s in got] == [DkimResult.FAIL]


@pytest.mark.parametrize("case", VECTORS["bad_keys"], ids=lambda c: c["record"])
async def test_dkimpy_bad_keys(case: dict[str, Any]) -> None:
    msg = _lf_to_crlf((DKIMPY / "test.message").read_bytes())
    signed = dkim.sign(msg, [_test_key()], now=NOW) + msg
    with FakeDNS() as server:
        server.add_txt("test._domainkey.example.com", *txt_strings(_value(case["record"])))
        got = await dkim.verify(make_lookup(server), signed, now=NOW)
    assert [s.result.value for s in got] == [case["expect"]], (case["about"], got)


# -- dkimverify, a separate program, on what the reference signs -------------------------------

# Loaded by the child's interpreter (PYTHONPATH): dkimpy resolves through dnspython's
# default resolver, pointed here at the fake DNS instead of the system's.
SITECUSTOMIZE = """\
import os
_ns = os.environ.get("MAILSPEC_TEST_NAMESERVER")
if _ns:
    import dns.resolver
    _host, _, _port = _ns.rpartition(":")
    _r = dns.resolver.Resolver(configure=False)
    _r.nameservers = [_host]
    _r.port = int(_port)
    _r.lifetime = 5.0
    dns.resolver.default_resolver = _r
"""


def test_dkimverify_checks_what_the_reference_signs(tmp_path: Path) -> None:
    tool = Path(sys.executable).parent / "dkimverify"
    if not tool.exists():
        pytest.skip("dkimpy's dkimverify is not installed next to this interpreter")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    keys = KeyStore(tmp_path / "dkim").generate("example.test", "mailspec")
    msg = (
        b"From: Alice <alice@example.test>\r\nTo: bob@example.org\r\n"
        b"Subject: checked elsewhere\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        b"Message-ID: <v1@example.test>\r\n\r\nSigned by mailspec,  verified by dkimpy.\r\n"
    )
    signed = dkim.sign(msg, keys, now=time.time()) + msg
    with FakeDNS() as server:
        for k in keys:
            server.add_txt(k.record_name, *txt_strings(k.public_record()))
        env = dict(
            os.environ,
            PYTHONPATH=str(tmp_path / "site"),
            MAILSPEC_TEST_NAMESERVER=server.nameserver,
        )

        def verify(data: bytes, index: int) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [str(tool), "--index", str(index)],
                input=data,
                capture_output=True,
                env=env,
                timeout=60,
                check=False,
            )

        for index, alg in enumerate(k.algorithm for k in keys):
            done = verify(signed, index)
            assert done.returncode == 0, (alg, done.stdout, done.stderr)
            assert done.stdout.strip() == b"signature ok", alg
        # The same tool says no to a changed body, so "ok" above means something.
        # (dkimverify reports a body hash mismatch as a traceback, exit status 1.)
        bad = verify(signed.replace(b"verified by", b"forged for"), 0)
        assert bad.returncode == 1 and b"signature ok" not in bad.stdout
        assert any(q.name.endswith("_domainkey.example.test") for q in server.queries)


# -- authres's Authentication-Results vectors ------------------------------------------------

AUTHRES = DATA / "authres" / "tests.txt"


def test_authres_doctests_pass() -> None:
    """authres 1.2.0's own examples hold for the installed authres (we render with it)."""
    result = doctest.testfile(str(AUTHRES), module_relative=False, verbose=False)
    assert result.failed == 0 and result.attempted > 100, result


def _fields() -> list[str]:
    text = AUTHRES.read_text()
    found = re.findall(r"""(['"])(Authentication-Results: .*?)\1\)?$""", text, re.MULTILINE)
    return sorted({f for _, f in found})


FIELDS = _fields()
CONTEXT = authres.all_features()
# authres's negative examples: fields it must refuse, and why.
REFUSED = {
    "Authentication-Results: mail.bmsi.com; iprev=pass policy.iprev=2001:748:100:40::2:2 "
    "(mout0.freenet.de); spf=none smtp.mailfrom=markuslaudi@freenet.de": (
        "an IPv6 address is not an RFC 8601 token: the value must be quoted"
    ),
}


def test_vectors_were_found() -> None:
    assert len(FIELDS) > 25 and set(REFUSED) <= set(FIELDS)


@pytest.mark.parametrize("field", FIELDS)
def test_our_readers_agree_with_authres(field: str) -> None:
    if field in REFUSED:
        with pytest.raises(authres.core.SyntaxError):
            CONTEXT.parse(field)
        return
    parsed = CONTEXT.parse(field)
    expected_id = str(parsed.authserv_id).lower()
    ours = Field("Authentication-Results", (field + "\r\n").encode())
    assert authserv_id_of(ours) == expected_id
    value = field.split(":", 1)[1].strip()
    assert authserv_id(value) == expected_id
    for method in ("spf", "dkim", "dmarc", "arc"):
        want = [str(r.result) for r in parsed.results if r.method == method]
        assert method_results(value, method) == want, method
