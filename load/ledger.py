"""The load run's books: every message that got a 250, where and when it arrived, rate counts.

Pure bookkeeping (no sockets, no locust), so the checks at the end of a run are testable:
nothing accepted is lost, latencies, rate limits held, clients moved off a killed node.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Accepted", "LatencyReport", "Ledger", "window_violations"]

# name of the latency entry, milliseconds, the accepted message
LatencySink = Callable[[str, float, "Accepted"], None]

MAILBOX = "accept-to-mailbox"
RECOVERED = "accept-to-mailbox (in flight at node kill)"
REMOTE = "accept-to-remote-MX"
REMOTE_RECOVERED = "accept-to-remote-MX (in flight at node kill)"
IMAP = "accept-to-IMAP (IDLE)"
IMAP_PUSH = "mailbox-to-IMAP (IDLE's share of it)"

_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(<[^>\r\n]+>)")


def message_id(head: bytes) -> str | None:
    m = _MESSAGE_ID.search(head)
    return m.group(1).decode("ascii", "replace") if m else None


@dataclass
class Accepted:
    """A message the platform answered 250 for."""

    msgid: str
    at: float  # wall clock when the 250 came back
    node: str
    kind: str  # "inbound" (to a mailbox) or "outbound" (to a remote MX)
    rcpts: int  # recipients expected to arrive
    arrived: int = 0
    first_arrival: float | None = None
    by: str | None = None  # who delivered it first (a node's name), when the watcher knows
    extra: int = 0  # copies beyond ``rcpts``: duplicates
    imap_at: float | None = None  # when an IDLE session first heard of it


@dataclass
class LatencyReport:
    count: int
    p50: float
    p99: float
    max: float


@dataclass
class Ledger:
    sink: LatencySink | None = None
    accepted: dict[str, Accepted] = field(default_factory=dict)
    # arrived before the 250 was read: (when, copies, by whom)
    early: dict[str, list[tuple[float, int, str | None]]] = field(default_factory=dict)
    duplicates: int = 0
    # Of those, copies filed in a mailbox: local delivery is exactly once, so none; copies
    # at a remote MX may happen (relaying is at least once).
    mailbox_duplicates: int = 0
    unknown_arrivals: int = 0  # arrivals of messages no client saw a 250 for
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    kill: tuple[str, float] | None = None  # (node, when)
    restart_at: float | None = None
    accepts_by_node: list[tuple[float, str]] = field(default_factory=list)
    # rate limits: per user, the RCPT replies (sent, replied, accepted?) and unknown outcomes
    rcpts: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    rcpt_refused: Counter[str] = field(default_factory=Counter)
    rcpt_unknown: Counter[str] = field(default_factory=Counter)
    remote_rcpts_by_sender: Counter[str] = field(default_factory=Counter)
    _remote_rcpts: set[tuple[str, str]] = field(default_factory=set)  # (Message-ID, rcpt)

    # -- the clients' side

    def accept(self, msgid: str, at: float, node: str, kind: str, rcpts: int) -> None:
        acc = Accepted(msgid, at, node, kind, rcpts)
        self.accepted[msgid] = acc
        self.accepts_by_node.append((at, node))
        for when, count, by in self.early.pop(msgid, []):
            self._arrive(acc, when, count, by)

    def rcpt(self, user: str, sent: float, replied: float, code: int | None) -> None:
        """One RCPT of a rate-limited user: 250, 450 (over the limit) or None (unknown)."""
        if code is None:
            self.rcpt_unknown[user] += 1
        elif code == 250:
            self.rcpts[user].append((sent, replied))
        else:
            self.rcpt_refused[user] += 1

    # -- the store's and the fake MXs' side

    def remote_delivery(self, sender: str, msgid: str | None, rcpts: Iterable[str]) -> None:
        """A fake MX's delivery record: each recipient of a message counts once against its
        sender's limit. A copy relayed again by a restarted node (relaying is at least once;
        counted in ``duplicates``) is not a recipient the limit let through twice."""
        for rcpt in rcpts:
            key = (msgid or "", rcpt.lower())
            if msgid is not None and key in self._remote_rcpts:
                continue
            self._remote_rcpts.add(key)
            self.remote_rcpts_by_sender[sender.lower()] += 1

    def arrive(self, msgid: str | None, when: float, count: int = 1, by: str | None = None) -> None:
        if msgid is None:
            self.unknown_arrivals += 1
            return
        acc = self.accepted.get(msgid)
        if acc is None:
            # Seen before the client handled the 250 (or never accepted: a user stopped
            # mid-transaction). Matched when the acceptance is recorded.
            self.early.setdefault(msgid, []).append((when, count, by))
            return
        self._arrive(acc, when, count, by)

    def _arrive(self, acc: Accepted, when: float, count: int, by: str | None = None) -> None:
        if acc.arrived >= acc.rcpts:
            acc.extra += count
            self.duplicates += count
            if acc.kind == "inbound":
                self.mailbox_duplicates += count
            return
        acc.arrived += count
        if acc.first_arrival is not None:
            return
        acc.first_arrival, acc.by = when, by
        ms = max(0.0, (when - acc.at) * 1000)
        if acc.kind == "inbound":
            name = RECOVERED if self._recovered(acc, when) else MAILBOX
        else:
            name = REMOTE_RECOVERED if self._recovered(acc, when) else REMOTE
        self.latencies[name].append(ms)
        if self.sink is not None:
            self.sink(name, ms, acc)

    def seen_by_imap(self, msgid: str | None, when: float) -> None:
        acc = self.accepted.get(msgid or "")
        if acc is None or acc.imap_at is not None:
            return
        acc.imap_at = when
        ms = max(0.0, (when - acc.at) * 1000)
        self.latencies[IMAP].append(ms)
        if self.sink is not None:
            self.sink(IMAP, ms, acc)

    def _recovered(self, acc: Accepted, when: float) -> bool:
        """Accepted by the killed node before the kill, delivered after it: it waited for
        the restart, by design; reported apart from the latency of healthy nodes.

        A 250 the client read after the kill (but before the restart) was sent before the
        kill: the client was only slow to read it."""
        if self.kill is None:
            return False
        node, at = self.kill
        restart = self.restart_at if self.restart_at is not None else float("inf")
        return acc.node == node and acc.at <= restart and when >= at

    def in_flight_at_kill(self) -> list[Accepted]:
        """The killed node's accepted mail not yet delivered when it was killed: delivered
        since (taken over by another node, or by itself once restarted) or still missing."""
        if self.kill is None:
            return []
        return [
            a for a in self.accepted.values() if self._recovered(a, a.first_arrival or self.kill[1])
        ]

    # -- the end of the run

    def push_lags(self) -> list[float]:
        """For each message an IDLE session heard of: milliseconds from its arrival in the
        mailbox to the EXISTS (the push's share of accept-to-IMAP; delivery is the rest)."""
        return sorted(
            max(0.0, (a.imap_at - a.first_arrival) * 1000)
            for a in self.accepted.values()
            if a.imap_at is not None and a.first_arrival is not None
        )

    def missing(self) -> list[Accepted]:
        return [a for a in self.accepted.values() if a.arrived < a.rcpts]

    def report(self, name: str) -> LatencyReport | None:
        values = sorted(self.latencies.get(name, []))
        if not values:
            return None
        return LatencyReport(len(values), _pct(values, 0.50), _pct(values, 0.99), values[-1])

    def accepted_between(self, start: float, end: float) -> Counter[str]:
        return Counter(node for at, node in self.accepts_by_node if start <= at < end)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def window_violations(
    accepted: Iterable[tuple[float, float]], limit: int, window: float
) -> list[tuple[float, int]]:
    """Windows proven to hold more than ``limit`` accepted recipients.

    The server counted each recipient at some instant between sending the RCPT and reading
    its reply. ``limit + 1`` recipients all sent at or after ``t`` and all answered before
    ``t + window`` were certainly counted inside one window: a violation. Clock jitter never
    makes a false one.
    """
    items = sorted(accepted)
    sent = [s for s, _ in items]
    out = []
    for i, (start, _) in enumerate(items):
        end = start + window
        j = bisect.bisect_left(sent, end)
        inside = sum(1 for _, replied in items[i:j] if replied < end)
        if inside > limit:
            out.append((start, inside))
    return out


def ctime_lag(directory: Path, samples: int = 200) -> float:
    """How far a file's ctime trails the wall clock on this file system, on average.

    Arrivals are timed by the ctime a Maildir rename sets; the kernel stamps it from its
    coarse clock, which ticks every few milliseconds (4 ms here) and so reads early. Adding
    this mean lag makes the arrival time unbiased (its spread stays about one tick).
    """
    directory.mkdir(parents=True, exist_ok=True)
    lags = []
    try:
        for i in range(samples):
            path = directory / f"calibrate-{i}"
            path.touch()
            lags.append(time.time() - path.stat().st_ctime)
            path.unlink()
    finally:
        with contextlib.suppress(OSError):
            directory.rmdir()
    lags.sort()
    return max(0.0, lags[len(lags) // 2])


def read_head(path: Path, size: int = 16384) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)
