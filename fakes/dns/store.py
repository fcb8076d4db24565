"""The fake DNS data: records and injected failures behind one lock, and how a query is answered."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dnslib import RCODE, SOA

from fakes.dns.zone import Record, label, normalize_name

MODES = ("servfail", "refused", "timeout", "truncate", "slow")
MAX_CHAIN = 16  # CNAME links followed before giving up (loops end earlier)


@dataclass(frozen=True)
class Failure:
    """A failure injected for a name and type."""

    mode: str
    delay: float = 0.0


@dataclass(frozen=True)
class Resolution:
    """What the data says about a question: rcode, answer and authority as (owner, record)."""

    rcode: int
    answer: list[tuple[str, Record]]
    authority: list[tuple[str, Record]]


def _parent(name: str) -> str:
    return name.partition(".")[2]


def _ancestors(name: str) -> Iterable[str]:
    """Proper ancestors, nearest first, ending with the root ""."""
    while name:
        name = _parent(name)
        yield name


class Store:
    """Records by name and type, thread-safe: tests change it while the server reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, dict[str, list[Record]]] = {}
        # How many nodes lie below each name: a name with none of its own but some below is
        # an empty non-terminal, which exists (NODATA, and it blocks wildcards, RFC 4592 2.2.2).
        self._below: Counter[str] = Counter()
        self._failures: dict[tuple[str, str], Failure] = {}

    # -- records ------------------------------------------------------------------------

    def add(self, record: Record, replace: Callable[[Record], bool] | None = None) -> None:
        """Add a record, first removing those of its name and type that ``replace`` matches.

        The same data again only updates the TTL: an RRset has no duplicates.
        """
        with self._lock:
            node = self._nodes.get(record.name)
            if node is None:
                node = self._nodes[record.name] = {}
                self._below.update(_ancestors(record.name))
            rrset = node.setdefault(record.rtype, [])
            keep = [r for r in rrset if r.wire != record.wire and not (replace and replace(r))]
            rrset[:] = [*keep, record]

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove a name's records of one type, or all of them."""
        name = normalize_name(name)
        with self._lock:
            node = self._nodes.get(name)
            if node is None:
                return
            for t in [rtype.upper()] if rtype else list(node):
                node.pop(t, None)
            if not node:
                del self._nodes[name]
                for ancestor in _ancestors(name):
                    self._below[ancestor] -= 1
                    if not self._below[ancestor]:
                        del self._below[ancestor]

    def records(self) -> list[Record]:
        """Every record, for inspection."""
        with self._lock:
            return [r for node in self._nodes.values() for rrset in node.values() for r in rrset]

    # -- failures -----------------------------------------------------------------------

    def fail(self, name: str, rtype: str, failure: Failure) -> None:
        if failure.mode not in MODES:
            raise ValueError(f"unknown failure mode {failure.mode!r} (one of {', '.join(MODES)})")
        key = (normalize_name(name), rtype.upper())
        with self._lock:
            self._failures[key] = failure

    def heal(self, name: str | None) -> None:
        with self._lock:
            if name is None:
                self._failures.clear()
                return
            name = normalize_name(name)
            for key in [k for k in self._failures if k[0] == name]:
                del self._failures[key]

    def failure(self, name: str, rtype: str) -> Failure | None:
        """The failure for a query: exact name first, then "*.parent" patterns, nearest first."""
        with self._lock:
            if not self._failures:
                return None
            for pattern in [name, *("*." + a if a else "*" for a in _ancestors(name))]:
                found = self._failures.get((pattern, rtype)) or self._failures.get((pattern, "*"))
                if found:
                    return found
            return None

    # -- answering ----------------------------------------------------------------------

    def resolve(self, qname: str, qtype: str) -> Resolution:
        """Answer from our data as an authoritative server would (RFC 1034 4.3.2)."""
        answer: list[tuple[str, Record]] = []
        name, seen = qname, {qname}
        with self._lock:
            for _ in range(MAX_CHAIN):
                node = self._find(name)
                if node is None:
                    # RFC 6604: the rcode describes the last name of a CNAME chain.
                    return Resolution(RCODE.NXDOMAIN, answer, self._soa(name))
                if qtype == "ANY":
                    found = [r for rrset in node.values() for r in rrset]
                else:
                    found = node.get(qtype, [])
                if found:
                    return Resolution(RCODE.NOERROR, answer + [(name, r) for r in found], [])
                cname = node.get("CNAME")
                if not cname or qtype == "CNAME":
                    return Resolution(RCODE.NOERROR, answer, self._soa(name))  # NODATA
                answer.append((name, cname[0]))
                name = str(cname[0].rdata.label).lower().removesuffix(".")
                if name in seen:
                    break
                seen.add(name)
            return Resolution(RCODE.NOERROR, answer, [])

    def _exists(self, name: str) -> bool:
        return name in self._nodes or self._below[name] > 0

    def _find(self, name: str) -> dict[str, list[Record]] | None:
        """The node answering for a name: its own, an empty one, a wildcard's, or None."""
        if self._exists(name):
            return self._nodes.get(name, {})
        if not name:
            return None
        # RFC 4592 3.3.1: only the wildcard child of the closest encloser can match.
        encloser = next(a for a in _ancestors(name) if not a or self._exists(a))
        wildcard = f"*.{encloser}" if encloser else "*"
        return self._nodes.get(wildcard, {}) if self._exists(wildcard) else None

    def _soa(self, name: str) -> list[tuple[str, Record]]:
        """The SOA for a negative answer (RFC 2308 3): the zone's own, or a made-up one."""
        for owner in [name, *_ancestors(name)]:
            soa = self._nodes.get(owner, {}).get("SOA")
            if soa:
                rd = soa[0].rdata
                return [(owner, Record(owner, "SOA", min(soa[0].ttl, rd.times[4]), rd))]
        # Records added one by one have no zone: take the last two labels as its apex. TTL 0,
        # so that a record added mid-test is seen at once even by a caching resolver.
        apex = ".".join(name.split(".")[-2:])
        mname, rname = label(f"ns.{apex}".strip(".")), label(f"hostmaster.{apex}".strip("."))
        return [(apex, Record(apex, "SOA", 0, SOA(mname, rname, (1, 3600, 600, 86400, 0))))]
