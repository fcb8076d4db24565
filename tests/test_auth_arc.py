"""ARC (RFC 8617): seal and verify round trips over the fake DNS, one and two hops."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.dns import FakeDNS
from reference.auth import arc
from reference.auth.arc import ArcChain, ArcResult
from reference.auth.keys import KeyStore, SigningKey
from reference.auth.lookup import Lookup
from reference.auth.results import authentication_results

NOW = 1_767_225_600.0
MESSAGE = (
    b"From: Alice <alice@bank.example>\r\n"
    b"To: list@lists.example\r\n"
    b"Subject: [list] minutes\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <m1@bank.example>\r\n"
    b"\r\n"
    b"The minutes are attached.\r\n"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SigningKey]:
    store = KeyStore(tmp_path_factory.mktemp("arc"))
    return {
        d: store.generate(d, "arc", ("rsa-sha256",))[0] for d in ("lists.example", "fwd.example")
    }


@pytest.fixture
def lookup(keys: dict[str, SigningKey]) -> Iterator[Lookup]:
    with FakeDNS() as server:
        for k in keys.values():
            v = k.public_record()
            server.add_txt(k.record_name, *[v[i : i + 255] for i in range(0, len(v), 255)])
        yield Lookup(server.resolver())


async def hop(msg: bytes, key: SigningKey, authserv_id: str, chain: ArcChain) -> bytes:
    """What a forwarder does: add its results (with the chain it saw), then seal."""
    ar = authentication_results(authserv_id, arc=chain)
    with_ar = ar + msg
    return await arc.seal(with_ar, key, authserv_id, now=NOW) + with_ar


async def test_unsealed_message_is_none(lookup: Lookup) -> None:
    assert (await arc.verify(lookup, MESSAGE)).result is ArcResult.NONE


async def test_one_hop_round_trip(lookup: Lookup, keys: dict[str, SigningKey]) -> None:
    sealed = await hop(MESSAGE, keys["lists.example"], "mx.lists.example", ArcChain(ArcResult.NONE))
    assert sealed.count(b"ARC-Seal:") == 1 and b"cv=none" in sealed
    chain = await arc.verify(lookup, sealed)
    assert chain.result is ArcResult.PASS
    assert chain.instances == 1 and chain.newest_sealer == "lists.example"


async def test_two_hops_round_trip(lookup: Lookup, keys: dict[str, SigningKey]) -> None:
    first = await hop(MESSAGE, keys["lists.example"], "mx.lists.example", ArcChain(ArcResult.NONE))
    seen = await arc.verify(lookup, first)
    second = await hop(first, keys["fwd.example"], "mx.fwd.example", seen)
    assert b"cv=pass" in second
    chain = await arc.verify(lookup, second)
    assert chain.result is ArcResult.PASS
    assert chain.sealers == ("fwd.example", "lists.example")


async def test_changed_body_after_the_seal_fails(
    lookup: Lookup, keys: dict[str, SigningKey]
) -> None:
    sealed = await hop(MESSAGE, keys["lists.example"], "mx.lists.example", ArcChain(ArcResult.NONE))
    chain = await arc.verify(lookup, sealed.replace(b"minutes are", b"minutes were"))
    assert chain.result is ArcResult.FAIL


async def test_missing_key_fails(lookup: Lookup, keys: dict[str, SigningKey]) -> None:
    sealed = await hop(MESSAGE, keys["lists.example"], "mx.lists.example", ArcChain(ArcResult.NONE))
    chain = await arc.verify(lookup, sealed.replace(b"s=arc-rsa", b"s=gone"))
    assert chain.result is ArcResult.FAIL


async def test_only_rsa_keys_seal(tmp_path: object, keys: dict[str, SigningKey]) -> None:
    from pathlib import Path

    ed = KeyStore(Path(str(tmp_path))).generate("x.example", "s", ("ed25519-sha256",))[0]
    with pytest.raises(ValueError, match="rsa-sha256"):
        await arc.seal(MESSAGE, ed, "mx.x.example", now=NOW)
