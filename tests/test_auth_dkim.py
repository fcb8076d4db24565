"""DKIM (RFC 6376, RFC 8463): our signer against dkimpy's verifier and back, over the fake DNS."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import dkim as dkimpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes.dns import FakeDNS
from reference.auth import dkim
from reference.auth.dkim import DkimResult, relaxed_body, relaxed_header
from reference.auth.keys import KeyStore, SigningKey
from reference.auth.lookup import Lookup

NOW = 1_767_225_600.0

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: quarterly   numbers\r\n"
    b"  (folded)\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"\r\n"
    b"Hello Bob,  \r\n"
    b"\r\n"
    b"the numbers\tare in.\r\n"
    b"\r\n"
    b"\r\n"
)


def make_lookup(server: FakeDNS) -> Lookup:
    return Lookup(server.resolver())


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[SigningKey]:
    return KeyStore(tmp_path_factory.mktemp("dkim")).generate("example.test", "sel")


@pytest.fixture
def fdns(keys: list[SigningKey]) -> Iterator[FakeDNS]:
    with FakeDNS() as server:
        for k in keys:
            server.add_txt(k.record_name, *_strings(k.public_record()))
        yield server


def _strings(value: str) -> list[str]:
    return [value[i : i + 255] for i in range(0, len(value), 255)]


def _dnsfunc(keys: list[SigningKey]):  # type: ignore[no-untyped-def]
    records = {k.record_name.encode(): k.public_record().encode() for k in keys}
    return lambda name, timeout=5: records.get(name.rstrip(b"."))


# -- canonicalisation (RFC 6376 3.4.5's example) ---------------------------------------------


def test_relaxed_canonicalisation_example() -> None:
    assert relaxed_header("A", b" X\r\n") == b"a:X\r\n"
    assert relaxed_header("B ", b" Y\t\r\n\tZ  \r\n") == b"b:Y Z\r\n"
    assert relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert relaxed_body(b"") == b"" and relaxed_body(b"\r\n\r\n") == b""
    assert relaxed_body(b"no newline") == b"no newline\r\n"


@given(st.binary(max_size=300))
def test_relaxed_body_is_idempotent(body: bytes) -> None:
    once = relaxed_body(body)
    assert relaxed_body(once) == once


# -- signing ---------------------------------------------------------------------------------


@given(
    st.lists(st.sampled_from([b"a", b" ", b"\t", b"\r", b"\n", b"\r\n", b"  \r\n"]), max_size=40)
)
def test_relaxed_body_agrees_with_the_line_by_line_definition(parts: list[bytes]) -> None:
    """RFC 6376 3.4.4 step by step, a line at a time, against the whole-body version."""
    body = b"".join(parts)
    lines = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in re.split(rb"\r?\n", body)]
    while lines and lines[-1] == b"":
        lines.pop()
    assert relaxed_body(body) == (b"\r\n".join(lines) + b"\r\n" if lines else b"")


def test_dual_signature_verifies_with_dkimpy(keys: list[SigningKey]) -> None:
    fields = dkim.sign(MESSAGE, keys, now=NOW)
    signed = fields + MESSAGE
    assert fields.count(b"DKIM-Signature:") == 2
    assert b"a=rsa-sha256" in fields and b"a=ed25519-sha256" in fields
    d = dkimpy.DKIM(signed)
    assert d.verify(idx=0, dnsfunc=_dnsfunc(keys))
    assert d.verify(idx=1, dnsfunc=_dnsfunc(keys))


def test_signature_tags(keys: list[SigningKey]) -> None:
    fields = dkim.sign(MESSAGE, keys[:1], now=NOW)
    tags = dkimpy.util.parse_tag_value(fields.split(b":", 1)[1].replace(b"\r\n", b""))
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == b"example.test" and tags[b"s"] == b"sel-rsa"
    assert tags[b"t"] == str(int(NOW)).encode()
    h = tags[b"h"].split(b":")
    assert h.count(b"from") == 2, "From is oversigned"
    for name in (b"subject", b"date", b"to", b"message-id"):
        assert name in h
    canon = relaxed_body(MESSAGE.split(b"\r\n\r\n", 1)[1])
    assert base64.b64decode(tags[b"bh"]) == hashlib.sha256(canon).digest()
    assert all(len(line) <= 78 for line in fields.split(b"\r\n"))


def test_signing_an_rsa_message_is_fast(keys: list[SigningKey]) -> None:
    """Not a gate on speed: prints the rates (cryptography signs; dkimpy would do ~124/s)."""
    rates = []
    for key in keys:
        n, t0 = 200, time.perf_counter()
        for _ in range(n):
            dkim.sign(MESSAGE, [key], now=NOW)
        rates.append(f"{key.algorithm} {n / (time.perf_counter() - t0):.0f}/s")
    print("DKIM signing:", ", ".join(rates))


# -- verification over the fake DNS ----------------------------------------------------------


async def test_round_trip_passes(fdns: FakeDNS, keys: list[SigningKey]) -> None:
    signed = dkim.sign(MESSAGE, keys, now=NOW) + MESSAGE
    got = await dkim.verify(make_lookup(fdns), signed, now=NOW)
    assert [s.result for s in got] == [DkimResult.PASS, DkimResult.PASS]
    assert [s.algorithm for s in got] == ["rsa-sha256", "ed25519-sha256"]
    assert all(s.domain == "example.test" and s.b for s in got)


async def test_tampered_body_and_header_fail(fdns: FakeDNS, keys: list[SigningKey]) -> None:
    signed = dkim.sign(MESSAGE, keys, now=NOW) + MESSAGE
    lookup = make_lookup(fdns)
    body = await dkim.verify(lookup, signed.replace(b"are in", b"are out"), now=NOW)
    assert {s.result for s in body} == {DkimResult.FAIL}
    assert "body hash" in body[0].reason
    header = await dkim.verify(lookup, signed.replace(b"quarterly", b"Quarterly"), now=NOW)
    assert {s.result for s in header} == {DkimResult.FAIL}


async def test_a_large_body_verifies_as_a_small_one(fdns: FakeDNS, keys: list[SigningKey]) -> None:
    # Past INLINE_BODY the check runs in a worker thread: the same results.
    large = MESSAGE + b"More of the same, line after line.\r\n" * (dkim.INLINE_BODY // 30)
    assert len(large) > dkim.INLINE_BODY
    signed = dkim.sign(large, keys, now=NOW) + large
    lookup = make_lookup(fdns)
    got = await dkim.verify(lookup, signed, now=NOW)
    assert [s.result for s in got] == [DkimResult.PASS, DkimResult.PASS]
    tampered = await dkim.verify(lookup, signed.replace(b"line after", b"line before", 1), now=NOW)
    assert {s.result for s in tampered} == {DkimResult.FAIL}


async def test_an_added_from_breaks_the_signature(fdns: FakeDNS, keys: list[SigningKey]) -> None:
    signed = dkim.sign(MESSAGE, keys, now=NOW) + MESSAGE
    forged = signed.replace(b"Message-ID:", b"From: ceo@example.test\r\nMessage-ID:")
    got = await dkim.verify(make_lookup(fdns), forged, now=NOW)
    assert {s.result for s in got} == {DkimResult.FAIL}


async def test_a_from_added_above_a_signature_that_signs_from_once_breaks_it(
    fdns: FakeDNS, keys: list[SigningKey]
) -> None:
    """A signer that lists From once (not oversigned, as dkimpy by default) leaves room for
    a second From above the signed one; a message with two is not vouched for."""
    now = time.time()  # dkimpy stamps t= from the wall clock
    field = dkimpy.DKIM(MESSAGE).sign(
        b"sel-rsa", b"example.test", keys[0].private_pem(), include_headers=[b"from", b"subject"]
    )
    lookup = make_lookup(fdns)
    assert (await dkim.verify(lookup, field + MESSAGE, now=now))[0].passed
    forged = field + b"From: ceo@example.test\r\n" + MESSAGE
    assert (await dkim.verify(lookup, forged, now=now))[0].result is DkimResult.FAIL


async def test_a_key_of_another_algorithm_is_permerror(
    fdns: FakeDNS, keys: list[SigningKey]
) -> None:
    """RFC 6376 6.1.2: a key record whose k= does not fit the signature's a= is refused."""
    signed = dkim.sign(MESSAGE, keys[:1], now=NOW) + MESSAGE
    ed = next(k for k in keys if k.algorithm == "ed25519-sha256")
    fdns.dkim("example.test", keys[0].selector, ed.public_record())
    got = await dkim.verify(make_lookup(fdns), signed, now=NOW)
    assert got[0].result is DkimResult.PERMERROR and "a=" in got[0].reason


async def test_every_signature_is_evaluated(fdns: FakeDNS, keys: list[SigningKey]) -> None:
    good = dkim.sign(MESSAGE, keys[1:], now=NOW)
    broken = dkim.sign(MESSAGE.replace(b"Bob", b"Eve"), keys[:1], now=NOW)
    got = await dkim.verify(make_lookup(fdns), broken + good + MESSAGE, now=NOW)
    assert [s.result for s in got] == [DkimResult.FAIL, DkimResult.PASS]


async def test_missing_key_is_permerror_and_servfail_temperror(
    fdns: FakeDNS, keys: list[SigningKey]
) -> None:
    signed = dkim.sign(MESSAGE, keys, now=NOW) + MESSAGE
    fdns.remove(keys[0].record_name)
    fdns.fail(keys[1].record_name, "TXT", "servfail")
    got = await dkim.verify(make_lookup(fdns), signed, now=NOW)
    assert [s.result for s in got] == [DkimResult.PERMERROR, DkimResult.TEMPERROR]


async def test_bad_key_record_is_permerror(fdns: FakeDNS, keys: list[SigningKey]) -> None:
    signed = dkim.sign(MESSAGE, keys[:1], now=NOW) + MESSAGE
    fdns.dkim("example.test", "sel-rsa", "v=DKIM1; k=rsa; p=notbase64!!")
    got = await dkim.verify(make_lookup(fdns), signed, now=NOW)
    assert got[0].result is DkimResult.PERMERROR


async def test_expiry_is_judged_on_our_clock(fdns: FakeDNS, keys: list[SigningKey]) -> None:
    signed = dkim.sign(MESSAGE, keys, now=NOW, expire=NOW + 3600) + MESSAGE
    lookup = make_lookup(fdns)
    assert {s.result for s in await dkim.verify(lookup, signed, now=NOW + 60)} == {DkimResult.PASS}
    late = await dkim.verify(lookup, signed, now=NOW + 7200)
    assert {s.result for s in late} == {DkimResult.FAIL}
    assert late[0].reason == "signature expired"


async def test_body_length_limit(fdns: FakeDNS, keys: list[SigningKey]) -> None:
    # dkimpy signs with l= (our signer never does); content after l= is not vouched for.
    pem = keys[0].private_pem()
    field = dkimpy.DKIM(MESSAGE).sign(b"sel-rsa", b"example.test", pem, length=True)
    whole = field + MESSAGE
    lookup = make_lookup(fdns)
    now = time.time()  # dkimpy stamps t= from the wall clock
    assert (await dkim.verify(lookup, whole, now=now))[0].result is DkimResult.PASS
    appended = whole + b"Click here: http://phish.example/\r\n"
    got = (await dkim.verify(lookup, appended, now=now))[0]
    assert got.result is DkimResult.POLICY and "l=" in got.reason


async def test_rsa_sha1_and_missing_tags_are_permerror(fdns: FakeDNS) -> None:
    sha1 = (
        b"DKIM-Signature: v=1; a=rsa-sha1; d=example.test; s=sel-rsa; h=from; bh=AA==; b=AA==\r\n"
    )
    missing = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; h=from; bh=AA==; b=AA==\r\n"
    garbage = b"DKIM-Signature: this is not a tag list\r\n"
    got = await dkim.verify(make_lookup(fdns), sha1 + missing + garbage + MESSAGE, now=NOW)
    assert [s.result for s in got] == [DkimResult.PERMERROR] * 3


async def test_unsigned_message_has_no_results(fdns: FakeDNS) -> None:
    assert await dkim.verify(make_lookup(fdns), MESSAGE, now=NOW) == []


def test_keys_survive_a_restart(tmp_path: Path) -> None:
    made = KeyStore(tmp_path).generate("Example.TEST", "s1")
    again = KeyStore(tmp_path).load("example.test", "s1")
    assert [k.public_record() for k in made] == [k.public_record() for k in again]
    assert (tmp_path / "example.test" / "s1.rsa.key").stat().st_mode & 0o077 == 0
    assert b"BEGIN RSA PRIVATE KEY" in made[0].private_pem()
