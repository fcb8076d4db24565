"""DNS blocklists: the client address looked up in configured zones, refusing or scoring."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

import dns.asyncresolver

from reference.auth.lookup import DnsTempError, Lookup
from reference.clock import Clock
from reference.log import event
from reference.mail import replies
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse

__all__ = ["BlocklistZone", "Dnsbl", "reverse_name"]

log = logging.getLogger("mailspec.dnsbl")


@dataclass(frozen=True)
class BlocklistZone:
    """A DNSBL zone and what its answers mean.

    ``codes`` maps a return address (``127.0.0.2``) to a weight; an empty map takes any
    answer in 127.0.0.0/8. A weight of ``reject`` or more refuses; less adds to the score.
    """

    zone: str
    codes: dict[str, float]
    weight: float = 10.0  # for any listed code not in ``codes``


MAX_CLIENTS = 10_000  # client addresses whose reversed form is kept (then all are forgotten)


def _reversed(ip: str) -> str:
    """203.0.113.7 -> 7.113.0.203; IPv6 by reversed nibbles (RFC 5782 2.1, 2.4)."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        return ".".join(reversed(str(addr).split(".")))
    return ".".join(reversed(addr.exploded.replace(":", "")))


def reverse_name(ip: str, zone: str) -> str:
    """203.0.113.7 -> 7.113.0.203.zone; IPv6 by reversed nibbles (RFC 5782 2.1, 2.4)."""
    return f"{_reversed(ip)}.{zone}"


class Dnsbl(Check):
    """RCPT: refuse a client listed with a heavy weight (554 5.7.1 naming the list).

    A DNS failure never refuses (RFC 5782 5: fail open): the lookup is skipped, logged.
    Lighter listings are remembered as score for the content checks. Answers are kept for
    their TTL (negative ones for the zone's, RFC 2308) on the server's clock, as the
    authentication lookups keep theirs: each message asks at RCPT and again at DATA.
    """

    name = "dnsbl"

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        zones: list[BlocklistZone],
        *,
        reject_at: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        self.lookup = Lookup(resolver, clock)
        self.zones = zones
        self.reject_at = reject_at
        # Each client's address reversed once (None: not an address): every message asks
        # at RCPT and again at DATA, and parsing the address cost more than the cached answer.
        self._clients: dict[str, str | None] = {}

    def _reversed_client(self, peer: str) -> str | None:
        if peer in self._clients:
            return self._clients[peer]
        if len(self._clients) >= MAX_CLIENTS:
            self._clients.clear()
        try:
            rev: str | None = _reversed(peer)
        except ValueError:
            rev = None
        self._clients[peer] = rev
        return rev

    async def _lookup(self, name: str) -> list[str]:
        return [r.to_text() for r in (await self.lookup.query(name, "A")).records]

    async def _reason(self, name: str) -> str:
        try:
            answer = await self.lookup.query(name, "TXT")
        except DnsTempError:
            return ""
        return " ".join(b.decode("utf-8", "replace") for r in answer.records for b in r.strings)

    async def score(self, peer: str) -> tuple[float, list[tuple[str, str, float]]]:
        """(total, [(zone, code, weight)…]) for the client address."""
        rev = self._reversed_client(peer)
        if rev is None:
            return 0.0, []
        hits: list[tuple[str, str, float]] = []
        for z in self.zones:
            name = f"{rev}.{z.zone}"
            try:
                codes = await self._lookup(name)
            except DnsTempError as e:
                event(log, "dnsbl.temperror", zone=z.zone, peer=peer, error=str(e))
                continue
            for code in codes:
                if not code.startswith("127."):
                    continue  # RFC 5782 2.1: only 127/8 answers are listings
                if z.codes and code not in z.codes:
                    continue
                hits.append((z.zone, code, z.codes.get(code, z.weight)))
        return sum(w for _, _, w in hits), hits

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        if tx.role != "mx" or tx.user is not None:
            return CONTINUE
        total, hits = await self.score(tx.peer)
        if not hits:
            return CONTINUE
        heavy = max(hits, key=lambda h: h[2])
        event(log, "dnsbl.listed", peer=tx.peer, zones=",".join(h[0] for h in hits), score=total)
        if total >= self.reject_at:
            why = await self._reason(f"{self._reversed_client(tx.peer)}.{heavy[0]}")
            text = f"Client host [{tx.peer}] blocked using {heavy[0]}"
            if why:
                text += f"; {why}"
            return refuse(
                replies.DNSBL_LISTED.format(text=text), f"listed in {heavy[0]} ({heavy[1]})"
            )
        return CONTINUE
