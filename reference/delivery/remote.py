"""The relay: MX resolution, a pool of source addresses, reputation retries, the smarthost."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.resolver

from reference.delivery.classify import Action, Classified, classify
from reference.delivery.outcome import Outcome
from reference.log import event
from reference.spool import QueueEntry, Recipient
from reference.values import network

log = logging.getLogger("mailspec.relay")

__all__ = [
    "OPPORTUNISTIC",
    "MxResolver",
    "OpportunisticTls",
    "Relay",
    "SourcePool",
    "TlsPolicy",
    "TlsPolicySource",
]


@dataclass(frozen=True)
class TlsPolicy:
    """What TLS one destination domain asks of the relay.

    The seam for MTA-STS (RFC 8461) and DANE (RFC 7672), a later issue: a source that
    fetches a domain's MTA-STS policy or its TLSA records answers with ``required`` (no
    delivery in cleartext: 4.7.4, retried from the queue), the MX names the policy allows
    (MTA-STS ``mx:`` patterns such as ``*.example.net``) and whether certificates are
    verified against the MX name. Today every domain gets :data:`OPPORTUNISTIC`.
    """

    required: bool = False
    mx_patterns: tuple[str, ...] = ()  # empty: any MX
    verify: bool = False
    source: str = "none"  # where the policy came from ("mta-sts", "dane"), for the log

    def allows(self, mx_host: str) -> bool:
        """RFC 8461 4.1: an exact name, or "*." standing for exactly one leftmost label."""
        if not self.mx_patterns:
            return True
        host = mx_host.lower().rstrip(".")
        label, _, parent = host.partition(".")
        for pattern in (p.lower().rstrip(".") for p in self.mx_patterns):
            if pattern.startswith("*.") and label and parent == pattern[2:]:
                return True
            if host == pattern:
                return True
        return False


# RFC 3207 4.1 between MTAs: STARTTLS when offered, certificates not checked.
OPPORTUNISTIC = TlsPolicy()


class TlsPolicySource(Protocol):
    """Where the relay learns a domain's TLS policy (MTA-STS, DANE: a later issue)."""

    async def policy_for(self, domain: str) -> TlsPolicy: ...


class OpportunisticTls:
    """Every domain: STARTTLS when the MX offers it, cleartext otherwise."""

    async def policy_for(self, domain: str) -> TlsPolicy:
        return OPPORTUNISTIC


class SourcePool:
    """The addresses the relay may send from (``relay.source_addresses``)."""

    def __init__(self, specs: Sequence[str], rng: random.Random | None = None) -> None:
        self.networks = [network(s) for s in specs]
        self.rng = rng or random.Random()

    def __bool__(self) -> bool:
        return bool(self.networks)

    def _size(self) -> int:
        return sum(_usable(n)[1] for n in self.networks)

    def choose(self, exclude: set[str]) -> str | None:
        """A random address not in ``exclude``; None when the pool is exhausted or empty."""
        total = self._size()
        if total == 0 or len(exclude) >= total:
            return None
        for _ in range(64):
            index = self.rng.randrange(total)
            for net in self.networks:
                first, count = _usable(net)
                if index < count:
                    addr = str(net[first + index])
                    break
                index -= count
            if addr not in exclude:
                return addr
        # Mostly excluded: walk the pool in order.
        for net in self.networks:
            first, count = _usable(net)
            for i in range(count):
                addr = str(net[first + i])
                if addr not in exclude:
                    return addr
        return None


def _usable(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    """(first host index, host count): a /24 gives .1 to .254, a /32 its one address."""
    if net.num_addresses <= 2:
        return 0, net.num_addresses
    return 1, min(net.num_addresses - 2, 1 << 20)


class DnsTempError(Exception):
    """The DNS could not answer now: try again later."""


class NoSuchDomain(Exception):
    """The domain does not exist (NXDOMAIN)."""


class NullMx(Exception):
    """The domain publishes a null MX (RFC 7505): it accepts no mail."""


@dataclass(frozen=True)
class Hop:
    """One MX host and its addresses."""

    name: str
    addresses: tuple[str, ...]


class MxResolver:
    """MX lookup with preference order, shuffled equal preferences, and implicit MX."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, rng: random.Random | None = None):
        self.resolver = resolver
        self.rng = rng or random.Random()

    async def _query(self, name: str, rtype: str) -> list[str]:
        try:
            answer = await self.resolver.resolve(name, rtype)
        except dns.resolver.NXDOMAIN:
            raise NoSuchDomain(name) from None
        except dns.resolver.NoAnswer:
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as e:
            raise DnsTempError(f"{name}/{rtype}: {e.__class__.__name__}") from None
        return [r.to_text() for r in answer]

    async def addresses(self, host: str) -> tuple[str, ...]:
        found: list[str] = []
        for rtype in ("A", "AAAA"):
            try:
                found += await self._query(host, rtype)
            except NoSuchDomain:
                return ()
        return tuple(found)

    async def hops(self, domain: str) -> list[Hop]:
        records: list[tuple[int, str]] = []
        for text in await self._query(domain, "MX"):
            pref, _, host = text.partition(" ")
            records.append((int(pref), host.rstrip(".").lower()))
        if len(records) == 1 and records[0][1] == "":
            # RFC 7505 3: a single MX with the root as exchange says "no mail here".
            raise NullMx(domain)
        if not records:
            # RFC 5321 5.1: no MX records: the domain itself is the implicit MX.
            records = [(0, domain)]
        # RFC 5321 5.1: lowest preference first; equal preferences in random order.
        records.sort(key=lambda r: (r[0], self.rng.random()))
        hops = []
        for _, host in records:
            if host == "":
                continue
            addrs = await self.addresses(host)
            if addrs:
                hops.append(Hop(host, addrs))
        return hops


@dataclass(frozen=True)
class RcptResult:
    address: str
    code: int
    enhanced: str
    text: str
    host: str

    @property
    def verdict(self) -> Classified:
        return classify(self.code, self.enhanced, self.text)

    @property
    def reply(self) -> str:
        return " ".join(str(p) for p in (self.code, self.enhanced, self.text) if p)


def _split_reply(code: int, message: str) -> tuple[str, str]:
    first, _, rest = message.partition(" ")
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return first, rest.replace("\n", " ")
    return "", message.replace("\n", " ")


class Relay:
    """Delivers to recipients outside our domains (the RemoteDelivery seam)."""

    def __init__(
        self,
        *,
        hostname: str,
        mx: MxResolver,
        pool: SourcePool,
        port: int = 25,
        smarthost: tuple[str, int] | None = None,
        helo_names: dict[str, str] | None = None,
        reputation_retries: int = 3,
        timeout: float = 60.0,
        tls_policy: TlsPolicySource | None = None,
    ) -> None:
        self.hostname = hostname
        self.mx = mx
        self.pool = pool
        self.port = port
        self.smarthost = smarthost
        self.helo_names = helo_names or {}
        self.reputation_retries = reputation_retries
        self.timeout = timeout
        # Opportunistic TLS between MTAs (RFC 3207 4.1): encrypt, do not authenticate.
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE
        self.tls_policy: TlsPolicySource = tls_policy or OpportunisticTls()
        self.verified_tls = ssl.create_default_context()

    async def deliver(
        self, entry: QueueEntry, rcpts: Sequence[Recipient], data: bytes
    ) -> dict[str, Outcome]:
        by_domain: dict[str, list[str]] = {}
        for r in rcpts:
            by_domain.setdefault(r.address.rpartition("@")[2].lower(), []).append(r.address)
        results = await asyncio.gather(
            *(self._domain(entry, d, addrs, data) for d, addrs in by_domain.items())
        )
        out: dict[str, Outcome] = {}
        for found in results:
            out.update(found)
        return out

    async def _domain(
        self, entry: QueueEntry, domain: str, rcpts: list[str], data: bytes
    ) -> dict[str, Outcome]:
        try:
            hops = await self.mx.hops(domain)
        except NullMx:
            return _all(rcpts, "bounced", "5.1.10 domain publishes a null MX: accepts no mail")
        except NoSuchDomain:
            return _all(rcpts, "bounced", f"5.1.2 domain {domain} does not exist")
        except DnsTempError as e:
            return _all(rcpts, "deferred", f"4.4.3 DNS lookup failed: {e}")
        if not hops:
            return _all(rcpts, "bounced", f"5.1.2 no address for the mail hosts of {domain}")
        policy = await self.tls_policy.policy_for(domain)
        if policy is not OPPORTUNISTIC:
            hops = [h for h in hops if policy.allows(h.name)]
            if not hops:
                why = f"4.7.4 no MX of {domain} is allowed by its {policy.source} TLS policy"
                return _all(rcpts, "deferred", why)

        outcomes: dict[str, Outcome] = {}
        todo = list(rcpts)
        tried: set[str] = set()
        for _ in range(max(1, self.reputation_retries) if self.pool else 1):
            source = self.pool.choose(tried) if self.pool else None
            if self.pool and source is None:
                break  # every address of the pool has been refused
            if source:
                tried.add(source)
            results = await self._via_hops(entry, hops, source, todo, data, policy)
            todo = []
            for addr, res in results.items():
                outcomes[addr] = _outcome(res)
                if res.verdict.action is Action.REPUTATION:
                    event(
                        log,
                        "reputation",
                        qid=entry.qid,
                        rcpt=addr,
                        source=source,
                        host=res.host,
                        reply=res.reply,
                        category=res.verdict.category,
                    )
                    todo.append(addr)
            if not todo:
                break
        if todo and self.smarthost:
            # Every source address we tried was refused for reputation: hand it on.
            host, port = self.smarthost
            event(log, "smarthost", qid=entry.qid, rcpts=len(todo), host=host)
            results = await self._session(entry, host, host, port, None, todo, data)
            outcomes.update({a: _outcome(r) for a, r in results.items()})
        # A reputation refusal that nothing could get around is retried from the queue.
        return {
            a: Outcome("deferred", o.detail, o.remote) if o.status == "reputation" else o
            for a, o in outcomes.items()
        }

    async def _via_hops(
        self,
        entry: QueueEntry,
        hops: list[Hop],
        source: str | None,
        rcpts: list[str],
        data: bytes,
        policy: TlsPolicy = OPPORTUNISTIC,
    ) -> dict[str, RcptResult]:
        """Try each MX in order until one gives an answer that is not a tempfail."""
        last: dict[str, RcptResult] = {}
        for hop in hops:
            for ip in _compatible(hop.addresses, source):
                last = await self._session(
                    entry, hop.name, ip, self.port, source, rcpts, data, policy
                )
                if any(r.verdict.action is not Action.TEMPFAIL for r in last.values()):
                    return last
        if not last:
            fam = "IPv6" if source and ":" in source else "IPv4"
            return {
                a: RcptResult(a, 451, "4.4.4", f"no {fam} address for the MX hosts", "")
                for a in rcpts
            }
        return last

    async def _session(
        self,
        entry: QueueEntry,
        host: str,
        ip: str,
        port: int,
        source: str | None,
        rcpts: list[str],
        data: bytes,
        policy: TlsPolicy = OPPORTUNISTIC,
    ) -> dict[str, RcptResult]:
        """One SMTP transaction; every recipient gets a result."""
        helo = self.helo_names.get(source or "", self.hostname)
        client = aiosmtplib.SMTP(
            hostname=ip,
            port=port,
            local_hostname=helo,
            source_address=(source, 0) if source else None,
            timeout=self.timeout,
            start_tls=False,
            use_tls=False,
        )

        def everyone(code: int, enhanced: str, text: str) -> dict[str, RcptResult]:
            return {a: RcptResult(a, code, enhanced, text, host) for a in rcpts}

        results: dict[str, RcptResult] = {}
        try:
            await client.connect()
            await client.ehlo()
            if client.supports_extension("starttls"):
                try:
                    if policy.verify:
                        await client.starttls(server_hostname=host, tls_context=self.verified_tls)
                    else:
                        await client.starttls(tls_context=self.tls)
                    await client.ehlo()
                except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as e:
                    event(log, "starttls.failed", qid=entry.qid, host=host, error=str(e))
                    return everyone(451, "4.7.5", f"STARTTLS failed at {host}: {e}")
            elif policy.required:
                # MTA-STS enforce / DANE: never in cleartext; the queue retries.
                event(log, "tls.required", qid=entry.qid, host=host, policy=policy.source)
                return everyone(451, "4.7.4", f"TLS is required, but was not offered by {host}")
            await client.mail(entry.sender)
            accepted: list[str] = []
            for addr in rcpts:
                try:
                    resp = await client.rcpt(addr)
                    accepted.append(addr)
                    enh, text = _split_reply(resp.code, resp.message)
                    results[addr] = RcptResult(addr, resp.code, enh, text, host)
                except aiosmtplib.SMTPResponseException as e:
                    enh, text = _split_reply(e.code, e.message)
                    results[addr] = RcptResult(addr, e.code, enh, text, host)
            if accepted:
                resp = await client.data(data)
                enh, text = _split_reply(resp.code, resp.message)
                for addr in accepted:
                    results[addr] = RcptResult(addr, resp.code, enh, text, host)
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        except aiosmtplib.SMTPResponseException as e:
            # A refusal of the whole session (greeting, EHLO, MAIL or DATA).
            enh, text = _split_reply(e.code, e.message)
            for addr in rcpts:
                if addr not in results or results[addr].code < 400 or e.code >= 400:
                    results[addr] = RcptResult(addr, e.code, enh, text, host)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            # Connection refused, timed out, or lost mid-transaction (a hang-up mid-DATA
            # never counts as delivered).
            results = everyone(451, "4.4.2", f"connection to {host} [{ip}] failed: {e}")
        finally:
            client.close()
        event(
            log,
            "relay.session",
            qid=entry.qid,
            host=host,
            ip=ip,
            source=source,
            results=";".join(f"{a}={r.code}" for a, r in results.items()),
        )
        return results


def _compatible(addresses: Sequence[str], source: str | None) -> list[str]:
    if source is None:
        return list(addresses)
    v6 = ":" in source
    return [a for a in addresses if (":" in a) == v6]


def _outcome(res: RcptResult) -> Outcome:
    v = res.verdict
    status = {
        Action.DELIVERED: "delivered",
        Action.TEMPFAIL: "deferred",
        Action.PERMANENT: "bounced",
        Action.REPUTATION: "reputation",
    }[v.action]
    return Outcome(status, res.reply, remote=res.host)


def _all(rcpts: list[str], status: str, detail: str) -> dict[str, Outcome]:
    return {a: Outcome(status, detail) for a in rcpts}
