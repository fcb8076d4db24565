"""DNS for the authentication mechanisms: the injected resolver, with errors made plain values."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

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


class Lookup:
    """Typed queries over the resolver built in the composition root (never the system's)."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self.resolver = resolver

    async def query(self, name: str, rtype: str) -> Answer:
        qname = _name(name)
        if qname is None:
            return Answer((), nxdomain=True)  # a name that cannot exist does not exist
        try:
            ans = await self.resolver.resolve(qname, rtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return Answer((), nxdomain=True)
        except dns.resolver.YXDOMAIN:
            return Answer((), nxdomain=True)
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
            raise DnsTempError(f"{rtype} {name}: {type(e).__name__}") from None
        except dns.exception.DNSException as e:
            raise DnsTempError(f"{rtype} {name}: {e}") from None
        if ans.rrset is None:
            return Answer(())
        return Answer(tuple(ans.rrset))

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
