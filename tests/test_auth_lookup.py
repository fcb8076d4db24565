"""The lookup layer's answer cache: kept for the record's TTL (RFC 2308 for negative
answers), never when the resolver itself does not cache, never past a change with TTL 0."""

from __future__ import annotations

import dns.resolver

from fakes.dns.server import FakeDNS
from reference.auth.dmarc import Disposition, evaluate
from reference.auth.lookup import Lookup
from reference.auth.spf import SpfResult, check_host
from reference.clock import ManualClock


def asked(fake: FakeDNS, name: str) -> int:
    return sum(1 for q in fake.queries if q.name == name)


async def test_answers_are_kept_for_their_ttl() -> None:
    with FakeDNS() as fake:
        fake.load_zone(
            "example.test. 300 IN SOA ns.example.test. h.example.test. 1 3600 600 86400 60\n"
            'a.example.test. 300 IN TXT "kept"\n'
            'b.example.test. 0 IN TXT "not kept"\n'
        )
        resolver = fake.resolver()
        resolver.cache = dns.resolver.Cache()
        lookup = Lookup(resolver)
        for _ in range(3):
            assert await lookup.txt("a.example.test") == [b"kept"]
            assert await lookup.txt("A.Example.Test") == [b"kept"]  # names are case-blind
            assert await lookup.txt("b.example.test") == [b"not kept"]
            assert (await lookup.query("none.example.test", "TXT")).nxdomain
        assert asked(fake, "a.example.test") == 1
        assert asked(fake, "b.example.test") == 3  # TTL 0: asked every time
        assert asked(fake, "none.example.test") == 1  # NXDOMAIN kept for the SOA minimum


async def test_nothing_is_kept_when_the_resolver_does_not_cache() -> None:
    with FakeDNS() as fake:
        fake.add_txt("a.example.test", "v1")
        lookup = Lookup(fake.resolver())  # no cache: tests that change records use this
        assert await lookup.txt("a.example.test") == [b"v1"]
        fake.remove("a.example.test", "TXT")
        fake.add_txt("a.example.test", "v2")
        assert await lookup.txt("a.example.test") == [b"v2"]


async def test_ttls_run_on_the_injected_clock() -> None:
    with FakeDNS() as fake:
        fake.add_txt("a.example.test", "v1", ttl=60)
        resolver = fake.resolver()
        resolver.cache = dns.resolver.Cache()
        clock = ManualClock()
        lookup = Lookup(resolver, clock)
        await lookup.txt("a.example.test")
        resolver.cache.flush()  # only our layer keeps it now
        await lookup.txt("a.example.test")
        assert asked(fake, "a.example.test") == 1
        clock.advance(61)
        await lookup.txt("a.example.test")
        assert asked(fake, "a.example.test") == 2


async def test_parsed_spf_and_dmarc_records_last_no_longer_than_their_answers() -> None:
    # SPF and DMARC keep what they parsed by the record's text: a changed record is read
    # once its answer's TTL has run out, as if nothing were kept.
    with FakeDNS() as fake:
        fake.add_txt("example.test", "v=spf1 ip4:192.0.2.1 -all", ttl=60)
        fake.add_txt("_dmarc.example.test", "v=DMARC1; p=none", ttl=60)
        resolver = fake.resolver()
        resolver.cache = dns.resolver.Cache()
        clock = ManualClock()
        lookup = Lookup(resolver, clock)

        async def now() -> tuple[SpfResult, Disposition]:
            spf = await check_host(lookup, "192.0.2.1", "example.test", "a@example.test")
            ev = await evaluate(lookup, "example.test", None, [])
            return spf.result, ev.policy

        assert await now() == (SpfResult.PASS, Disposition.NONE)
        fake.remove("example.test", "TXT")
        fake.remove("_dmarc.example.test", "TXT")
        fake.add_txt("example.test", "v=spf1 -all", ttl=60)
        fake.add_txt("_dmarc.example.test", "v=DMARC1; p=reject", ttl=60)
        resolver.cache.flush()
        assert await now() == (SpfResult.PASS, Disposition.NONE)  # within the TTL
        clock.advance(61)
        assert await now() == (SpfResult.FAIL, Disposition.REJECT)
