"""Greylisting: the first attempt of an unknown (client network, sender, recipient) waits."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from reference.auth.spf import SpfResult
from reference.clock import Clock
from reference.mail import replies
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse
from reference.state import StateStore
from reference.values import network

__all__ = ["Greylist"]

MAX_CLIENTS = 10_000  # client addresses whose network is kept (then all are forgotten)


def client_network(peer: str) -> str:
    """The client's /24 (IPv4) or /64 (IPv6): big senders retry from a neighbouring address."""
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class Greylist(Check):
    """RCPT: ``451 4.7.1`` for a new triplet until ``delay`` has passed, within ``window``.

    A client network that passed once is trusted for ``whitelist`` (default 36 days),
    renewed at each pass. Authenticated users and ``bypass`` networks are never greylisted.
    """

    name = "greylist"

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        *,
        delay: float = 300.0,
        window: float = 4 * 3600.0,
        whitelist: float = 36 * 86400.0,
        bypass: Sequence[str] = (),
        spf_domains: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.clock = clock
        self.delay = delay
        self.window = window
        self.whitelist = whitelist
        self.bypass = [network(n) for n in bypass]
        self.spf_domains = tuple(d.lower().rstrip(".") for d in spf_domains)
        self._clients: dict[str, tuple[str, bool]] = {}

    async def _spf_whitelisted(self, tx: Transaction) -> bool:
        """A sender domain on the list whose SPF passes is not greylisted (big senders).
        The SPF result is the one sender authentication started for this transaction."""
        domain = tx.sender.rpartition("@")[2].lower()
        if not domain or not any(domain == d or domain.endswith("." + d) for d in self.spf_domains):
            return False
        result = await tx.spf_mail_from()
        return result is not None and result.result is SpfResult.PASS

    def _client(self, peer: str) -> tuple[str, bool]:
        """The client's network, and whether a bypass network holds it: worked out once a
        client address (parsing it cost more than the rest of the check on a busy node)."""
        known = self._clients.get(peer)
        if known is None:
            if len(self._clients) >= MAX_CLIENTS:
                self._clients.clear()
            try:
                ip = ipaddress.ip_address(peer)
            except ValueError:
                known = (peer, False)
            else:
                known = (client_network(peer), any(ip in net for net in self.bypass))
            self._clients[peer] = known
        return known

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        sender = tx.sender
        if rcpt in tx.accepted or tx.user is not None or tx.role != "mx":
            return CONTINUE
        net, bypassed = self._client(tx.peer)
        if bypassed or await self._spf_whitelisted(tx):
            return CONTINUE
        now = self.clock.now()
        trusted = f"grey:ok:{net}"
        # A trusted network is read and renewed in one step of the store (one thread hop,
        # one Redis round trip): the usual case, once a network has passed.
        if await self.store.touch(trusted, now, now + self.whitelist) is not None:
            return CONTINUE
        triplet = f"grey:{net}:{sender.lower()}:{rcpt.lower()}"
        first = float(
            await self.store.put_if_absent(triplet, repr(now), now + self.delay + self.window, now)
        )
        waited = now - first
        if waited < self.delay:
            wait = int(self.delay - waited + 0.999)
            return refuse(
                replies.GREYLISTED.format(wait=wait),
                f"greylist {net} {sender} {rcpt} new" if waited == 0 else f"early by {wait}s",
            )
        await self.store.put(trusted, "1", now + self.whitelist)
        await self.store.delete(triplet)
        return CONTINUE
