"""DNS for the authentication mechanisms: the injected resolver, with errors made plain values."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from reference.clock import Clock, RealClock

__all__ = ["Answer", "DnsTempError", "Lookup"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DnsTempError(Exception):
    """The lookup failed in a way that may heal: timeout, SERVFAIL, REFUSED, no server."""


@dataclass(frozen=True)
class Answer:
    """The records of one query; ``nxdomain`` tells "no such name" apart from "no data"."""

    records: tuple[Any, ...]
    nxdomain: bool = False

    @property
    def void(self) -> bool:
        """RFC 7208 4.6.4: an answer with no records, NXDOMAIN or NODATA alike."""
        return not self.records


def _name(name: str) -> dns.name.Name | None:
    """An absolute DNS name, or None when the text cannot be one (empty label, too long)."""
    try:
        return dns.name.from_text(name.rstrip(".") + ".")
    except (dns.exception.SyntaxError, dns.name.LabelTooLong, dns.name.NameTooLong, ValueError):
        return None


_WALL = RealClock()
MAX_CACHED = 10_000  # answers kept; past it the expired go, then everything


def _negative_ttl(e: dns.resolver.NXDOMAIN) -> float:
    """RFC 2308 5: an NXDOMAIN is cached for the SOA's TTL or minimum, whichever is less."""
    responses: dict[Any, dns.message.Message] = e.responses()  # type: ignore[no-untyped-call]
    for response in responses.values():
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                return float(min(rrset.ttl, rrset[0].minimum))
    return 0.0


class Lookup:
    """Typed queries over the resolver built in the composition root (never the system's).

    When the resolver caches (the server's does), answers are also kept here as our own
    values until their TTL runs out: a hit in dnspython's cache still costs about 0.1 ms of
    name and message objects, and every message asks the same few names several times.
    """

    def __init__(self, resolver: dns.asyncresolver.Resolver, clock: Clock | None = None) -> None:
        self.resolver = resolver
        self.clock = clock or RealClock()  # TTLs run on the server's clock
        self._answers: dict[tuple[str, str], tuple[float, Answer]] = {}

    async def query(self, name: str, rtype: str) -> Answer:
        caching = self.resolver.cache is not None
        if caching:
            key = (name.lower(), rtype)
            hit = self._answers.get(key)
            if hit is not None and hit[0] > self.clock.monotonic():
                return hit[1]
        answer, ttl = await self._resolve(name, rtype)
        if caching and ttl > 0:
            if len(self._answers) >= MAX_CACHED:
                now = self.clock.monotonic()
                self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
                if len(self._answers) >= MAX_CACHED:
                    self._answers.clear()
            self._answers[key] = (self.clock.monotonic() + ttl, answer)
        return answer

    async def _resolve(self, name: str, rtype: str) -> tuple[Answer, float]:
        """The answer and how long it may be kept (0: not at all)."""
        qname = _name(name)
        if qname is None:
            return Answer((), nxdomain=True), 0.0  # a name that cannot exist does not exist
        try:
            ans = await self.resolver.resolve(qname, rtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as e:
            return Answer((), nxdomain=True), _negative_ttl(e)
        except dns.resolver.YXDOMAIN:
            return Answer((), nxdomain=True), 0.0
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
            raise DnsTempError(f"{rtype} {name}: {type(e).__name__}") from None
        except dns.exception.DNSException as e:
            raise DnsTempError(f"{rtype} {name}: {e}") from None
        ttl = max(0.0, ans.expiration - _WALL.now())  # dnspython's expiry is on the wall clock
        if ans.rrset is None:
            return Answer(()), ttl
        return Answer(tuple(ans.rrset)), ttl

    async def txt(self, name: str) -> list[bytes]:
        """Each TXT record with its character-strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        return [b"".join(r.strings) for r in (await self.query(name, "TXT")).records]

    async def addresses(self, name: str, rtype: str) -> Answer:
        """A or AAAA records as ipaddress values."""
        a = await self.query(name, rtype)
        return Answer(tuple(ipaddress.ip_address(r.address) for r in a.records), a.nxdomain)

    async def mx(self, name: str) -> Answer:
        """(preference, exchange) pairs, exchange without the final dot."""
        a = await self.query(name, "MX")
        recs = tuple((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in a.records)
        return Answer(recs, a.nxdomain)

    async def ptr(self, ip: IPAddress) -> Answer:
        """PTR names of an address, without the final dot."""
        a = await self.query(ip.reverse_pointer, "PTR")
        return Answer(tuple(r.target.to_text(omit_final_dot=True) for r in a.records), a.nxdomain)

    async def exists(self, name: str) -> bool:
        """RFC 9091 (np=): a name exists unless A, AAAA and MX all say NXDOMAIN."""
        for rtype in ("A", "AAAA", "MX"):
            if not (await self.query(name, rtype)).nxdomain:
                return True
        return False
