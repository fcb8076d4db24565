"""Usage per account and per day: messages and bytes in and out, refusals by reason, storage.

Counted where mail is handled (the submission's 250, local delivery, a check's refusal) into
one SQLite file under ``data_dir`` (``usage.sqlite3``). Every count is one UPSERT adding to
its row inside SQLite's write lock, so several worker processes, or nodes sharing
``data_dir``, add up exactly; a crash loses no count already made. A day is the UTC date on
the node's clock. Rows whose account is empty belong to the domain alone (a refusal for an
address that does not exist there).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reference.clock import Clock
from reference.sqlite import connect

__all__ = ["UsageRow", "UsageStore", "day_of", "domain_totals"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traffic (
    day TEXT NOT NULL, domain TEXT NOT NULL, account TEXT NOT NULL,
    messages_in INTEGER NOT NULL DEFAULT 0, bytes_in INTEGER NOT NULL DEFAULT 0,
    messages_out INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0,
    storage_bytes INTEGER,
    PRIMARY KEY (day, domain, account)
);
CREATE TABLE IF NOT EXISTS refusals (
    day TEXT NOT NULL, domain TEXT NOT NULL, account TEXT NOT NULL, reason TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, domain, account, reason)
);
"""


def day_of(when: float) -> str:
    """The UTC date of a clock reading, as YYYY-MM-DD."""
    # POSIX time has 86,400 seconds in every day: the date changes with when // 86400.
    return _date(int(when // 86400))


@functools.lru_cache(maxsize=64)
def _date(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


@dataclass
class UsageRow:
    """One account's day (``account`` empty: the domain's own row, or its total)."""

    day: str
    domain: str
    account: str
    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    # Bytes in the account's mailboxes as last seen that day (or carried from an earlier
    # day); None when never seen.
    storage_bytes: int | None = None

    def add(self, other: UsageRow) -> None:
        self.messages_in += other.messages_in
        self.bytes_in += other.bytes_in
        self.messages_out += other.messages_out
        self.bytes_out += other.bytes_out
        for reason, n in other.refused.items():
            self.refused[reason] = self.refused.get(reason, 0) + n


class UsageStore:
    """The counts, kept in SQLite; thread-safe (delivery counts from worker threads)."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._db = connect(path)
        # Counts are not mail: after a power cut the last few may be lost, never after a
        # crash of the process (WAL, synchronous=NORMAL), and no count waits for an fsync.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _traffic(self, account: str, domain: str, column: str, value: int) -> None:
        with self._lock:
            self._db.execute(
                f"INSERT INTO traffic (day, domain, account, {column}) VALUES (?, ?, ?, ?) "
                f"ON CONFLICT (day, domain, account) DO UPDATE SET {column} = {column} + ?",
                (day_of(self.clock.now()), domain, account, value, value),
            )

    def received(self, account: str, size: int, storage: int | None = None) -> None:
        """A message delivered into ``account``'s mailbox (``storage``: what it holds now)."""
        day, domain = day_of(self.clock.now()), _domain(account)
        with self._lock:
            self._db.execute(
                "INSERT INTO traffic (day, domain, account, messages_in, bytes_in, storage_bytes)"
                " VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (day, domain, account) DO UPDATE SET"
                " messages_in = messages_in + 1, bytes_in = bytes_in + excluded.bytes_in,"
                " storage_bytes = COALESCE(excluded.storage_bytes, storage_bytes)",
                (day, domain, account, size, storage),
            )

    def sent(self, account: str, size: int) -> None:
        """A message ``account`` submitted, accepted for delivery (the submission's 250)."""
        day, domain = day_of(self.clock.now()), _domain(account)
        with self._lock:
            self._db.execute(
                "INSERT INTO traffic (day, domain, account, messages_out, bytes_out)"
                " VALUES (?, ?, ?, 1, ?) ON CONFLICT (day, domain, account) DO UPDATE SET"
                " messages_out = messages_out + 1, bytes_out = bytes_out + excluded.bytes_out",
                (day, domain, account, size),
            )

    def refused(self, reason: str, owners: Iterable[tuple[str, str]]) -> None:
        """A refusal of mail to or from each (domain, account); account "" for the domain's
        alone. Each owner counts once, however many of its addresses were named."""
        day = day_of(self.clock.now())
        rows = [(day, d, a, reason) for d, a in sorted(set(owners))]
        if not rows:
            return
        with self._lock:
            self._db.executemany(
                "INSERT INTO refusals (day, domain, account, reason, count) VALUES (?, ?, ?, ?, 1)"
                " ON CONFLICT (day, domain, account, reason) DO UPDATE SET count = count + 1",
                rows,
            )

    def rows(
        self,
        *,
        domains: Sequence[str] | None = None,
        account: str | None = None,
        since: str = "",
    ) -> list[UsageRow]:
        """Every recorded (day, account) from ``since`` on, in the domains (all: None) or of
        one account; storage carried forward from each account's earlier days."""
        where: list[str] = ["1 = 1"]
        args: list[str] = []
        if domains is not None:
            where.append(f"domain IN ({', '.join('?' * len(domains))})")
            args.extend(domains)
        if account is not None:
            where.append("account = ?")
            args.append(account)
        cond = " AND ".join(where)
        with self._lock:
            traffic = self._db.execute(
                "SELECT day, domain, account, messages_in, bytes_in, messages_out, bytes_out,"
                f" storage_bytes FROM traffic WHERE {cond} ORDER BY day",
                args,
            ).fetchall()
            refusals = self._db.execute(
                f"SELECT day, domain, account, reason, count FROM refusals WHERE {cond}", args
            ).fetchall()
        found: dict[tuple[str, str, str], UsageRow] = {}
        for day, dom, acc, m_in, b_in, m_out, b_out, storage in traffic:
            found[(day, dom, acc)] = UsageRow(day, dom, acc, m_in, b_in, m_out, b_out, {}, storage)
        for day, dom, acc, reason, count in refusals:
            row = found.setdefault((day, dom, acc), UsageRow(day, dom, acc))
            row.refused[reason] = count
        last: dict[tuple[str, str], int] = {}
        out = []
        for key in sorted(found):
            row = found[key]
            if row.storage_bytes is None:
                row.storage_bytes = last.get((row.domain, row.account))
            elif row.account:
                last[(row.domain, row.account)] = row.storage_bytes
            if row.day >= since:
                out.append(row)
        return out


def domain_totals(rows: Iterable[UsageRow]) -> list[UsageRow]:
    """Each domain's day: the sum of its accounts' rows and its own; its storage, the sum of
    what each of its accounts held when last seen up to that day."""
    totals: dict[tuple[str, str], UsageRow] = {}
    held: dict[str, dict[str, int]] = defaultdict(dict)  # domain -> account -> bytes
    for row in sorted(rows, key=lambda r: (r.day, r.domain, r.account)):
        total = totals.setdefault((row.day, row.domain), UsageRow(row.day, row.domain, ""))
        total.add(row)
        if row.account and row.storage_bytes is not None:
            held[row.domain][row.account] = row.storage_bytes
        if held[row.domain]:
            total.storage_bytes = sum(held[row.domain].values())
    return [totals[k] for k in sorted(totals)]
