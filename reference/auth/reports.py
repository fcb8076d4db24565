"""DMARC aggregate reports (RFC 7489 7.1, 7.2): every evaluation kept, reports sent and received.

Three parts share one SQLite file (``data_dir/dmarc.sqlite3``):

- :class:`DmarcStore` is the :class:`~reference.auth.dmarc.DmarcRecorder` the MX hands
  every evaluation to. Rows are aggregated as they come (one row per reporting period,
  policy domain and identical identifiers and results, with a count), so the file grows
  with the variety of mail, not its volume. Periods are explicit: one is open, closing it
  opens the next, and a closed period is sent, then deleted; several nodes sharing the
  file close and claim each period once. Evaluations of reports themselves are optional
  (mox's rule): counted when the domain gets a report anyway, never the reason to send one,
  so two reporters never trade reports about each other's reports forever.
- :class:`AggregateReporter` is the daily task: it sleeps on the injected Clock until the
  open period is ``interval`` old, then builds one report per policy domain that asks for
  reports (``rua=mailto:``), checks external destinations (RFC 7489 7.1) and puts one
  message per destination on the outbound queue. Each report built is kept (its XML, and
  what became of each destination) for ``mailspec dmarc sent`` and the control plane.
- :class:`ReportIntake` is a post-delivery hook: reports mailed to our domains' rua
  addresses are parsed (safely, see :mod:`reference.auth.feedback`) and stored for
  ``mailspec dmarc reports``; the message itself is delivered like any other.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, Protocol

from reference.auth import dkim as dkim_mod
from reference.auth.dmarc import DmarcObservation, DmarcRecord
from reference.auth.feedback import (
    DkimAuth,
    Feedback,
    PolicyPublished,
    Row,
    SpfAuth,
    extract,
    gzipped,
    render,
)
from reference.auth.keys import KeyStore, KeyStoreError
from reference.auth.lookup import DnsTempError, Lookup
from reference.auth.psl import PublicSuffixList, default_list
from reference.clock import Clock
from reference.log import event
from reference.sqlite import connect as connect_sqlite

__all__ = [
    "AggregateReporter",
    "Destination",
    "DmarcStore",
    "Period",
    "ReportIntake",
    "Rua",
    "SentReport",
    "observation_row",
    "parse_rua",
    "report_message",
]

log = logging.getLogger("mailspec.auth.reports")

MAX_DESTINATIONS = 5  # rua URIs served per report; more is a domain using us as a mailer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS periods (
    id INTEGER PRIMARY KEY,
    begin REAL NOT NULL,
    end REAL,
    state TEXT NOT NULL DEFAULT 'open',  -- open, closed, sending, sent
    claimed REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_period ON periods(state) WHERE state = 'open';
CREATE TABLE IF NOT EXISTS observations (
    period INTEGER NOT NULL REFERENCES periods(id),
    policy_domain TEXT NOT NULL,
    policy TEXT NOT NULL,  -- JSON: the record as published, with rua
    row TEXT NOT NULL,     -- JSON: a Row without its count
    count INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    required INTEGER NOT NULL DEFAULT 1,  -- 0: optional (a report itself), see record()
    UNIQUE (period, policy_domain, policy, row)
);
CREATE TABLE IF NOT EXISTS received (
    id INTEGER PRIMARY KEY,
    org_name TEXT NOT NULL,
    report_id TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    begin INTEGER NOT NULL,
    end INTEGER NOT NULL,
    received_at REAL NOT NULL,
    rcpt TEXT NOT NULL,
    report TEXT NOT NULL,  -- JSON: Feedback.to_json()
    UNIQUE (org_name, report_id)
);
CREATE INDEX IF NOT EXISTS received_domain ON received(policy_domain, begin);
CREATE TABLE IF NOT EXISTS sent (
    id INTEGER PRIMARY KEY,
    report_id TEXT NOT NULL UNIQUE,  -- the same period sent again (a node died) replaces it
    policy_domain TEXT NOT NULL,
    begin INTEGER NOT NULL,
    end INTEGER NOT NULL,
    sent_at REAL NOT NULL,
    messages INTEGER NOT NULL,
    passed INTEGER NOT NULL,       -- messages with aligned SPF or DKIM
    destinations TEXT NOT NULL,    -- JSON: [Destination]
    xml BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sent_domain ON sent(policy_domain, begin);
"""

# One statement, so that the row always lands in the period open at that instant.
_RECORD = (
    "INSERT INTO observations"
    "(period, policy_domain, policy, row, count, first_seen, last_seen, required) "
    "VALUES ((SELECT id FROM periods WHERE state = 'open'), ?, ?, ?, 1, ?, ?, ?) "
    "ON CONFLICT (period, policy_domain, policy, row) DO UPDATE "
    "SET count = count + 1, last_seen = excluded.last_seen, "
    "required = max(required, excluded.required)"
)
SENDING_TIMEOUT = 3600.0  # a period claimed this long ago by a node that died is sent again


class Queued(Protocol):
    qid: str


class OutboundQueue(Protocol):
    """Where reports go out: the spool (``reference.spool.Spool``), durable like any mail."""

    async def enqueue(
        self,
        sender: str,
        recipients: list[str],
        data: bytes,
        *,
        kind: str = ...,
        about: str | None = ...,
    ) -> Queued: ...


@dataclass(frozen=True)
class Period:
    id: int
    begin: float
    end: float


@dataclass(frozen=True)
class Destination:
    """What became of one rua= destination of a report: queued (with its queue id) or not."""

    rua: str
    qid: str = ""
    skipped: str = ""  # why not: "not authorized (RFC 7489 7.1)", "larger than !100", ...


@dataclass(frozen=True)
class SentReport:
    """A report we built about a domain: its period, what it counts, where it went."""

    report_id: str
    policy_domain: str
    begin: int
    end: int
    sent_at: float
    messages: int
    passed: int  # messages with aligned SPF or DKIM (DMARC pass)
    destinations: tuple[Destination, ...]

    @property
    def failed(self) -> int:
        return self.messages - self.passed

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["failed"] = self.failed
        return d


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def observation_row(obs: DmarcObservation) -> Row:
    """The report row one evaluation contributes (its count is 1)."""
    ev = obs.evaluation
    spf: tuple[SpfAuth, ...] = ()
    if obs.spf is not None and obs.spf.domain:
        scope = "helo" if obs.spf.identity == "helo" else "mfrom"
        spf = (SpfAuth(obs.spf.domain.lower(), scope, obs.spf.result.value),)
    return Row(
        source_ip=obs.source_ip,
        count=1,
        disposition=obs.applied.value,
        dkim="pass" if ev.dkim_aligned else "fail",
        spf="pass" if ev.spf_aligned else "fail",
        header_from=ev.from_domain,
        envelope_from=_domain_of(obs.envelope_from) if obs.envelope_from else "",
        reasons=tuple((o, "") for o in obs.overrides),
        dkim_results=tuple(
            DkimAuth(s.domain, s.selector, s.result.value) for s in obs.dkim if s.domain
        ),
        spf_results=spf,
    )


def _row_key(row: Row) -> str:
    # The text asdict() gave (rows recorded before are matched by it), without its deep
    # copy: the nested DkimAuth and SpfAuth values are written as their fields.
    d = dict(vars(row))
    d.pop("count")
    return json.dumps(d, sort_keys=True, separators=(",", ":"), default=vars)


@functools.lru_cache(maxsize=256)
def _policy_json(domain: str, rec: DmarcRecord) -> str:
    """The published policy as a report's policy_published keeps it (few differ: cached)."""
    return json.dumps(
        {
            "domain": domain,
            "adkim": rec.adkim,
            "aspf": rec.aspf,
            "p": rec.p.value,
            "sp": rec.sp.value,
            "pct": rec.pct,
            "fo": rec.fo,
            "rua": list(rec.rua),
        },
        sort_keys=True,
    )


def _row_of(key: str, count: int) -> Row:
    d = json.loads(key)
    return Row(
        **{
            **d,
            "count": count,
            "reasons": tuple(tuple(x) for x in d["reasons"]),
            "dkim_results": tuple(DkimAuth(**x) for x in d["dkim_results"]),
            "spf_results": tuple(SpfAuth(**x) for x in d["spf_results"]),
        }
    )


class DmarcStore:
    """Evaluations waiting to be reported, and reports received; thread-safe.

    ``record`` runs on the event loop (the recorder seam is synchronous): one small
    INSERT in WAL mode, durable across a crash of the process.
    """

    def __init__(self, path: Path, *, recent: int = 1000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = connect_sqlite(path)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._add_required_column()
        # The latest evaluations in memory, reportable or not, for diagnostics and tests.
        self.observations: deque[DmarcObservation] = deque(maxlen=recent)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _add_required_column(self) -> None:
        """A file an older version made has no ``required`` column: every row was required."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(observations)")}
        if "required" in columns:
            return
        try:
            self._db.execute(
                "ALTER TABLE observations ADD COLUMN required INTEGER NOT NULL DEFAULT 1"
            )
        except sqlite3.OperationalError as e:  # another process added it first
            if "duplicate column" not in str(e):
                raise

    # -- the recorder seam ------------------------------------------------------------------

    def record(self, observation: DmarcObservation) -> None:
        self.observations.append(observation)
        ev = observation.evaluation
        if ev.record is None or not ev.policy_domain:
            return  # no policy found: no one to report to
        policy = _policy_json(ev.policy_domain, ev.record)
        key = _row_key(observation_row(observation))
        when = observation.when
        try:
            with self._lock:
                for _ in range(2):
                    try:
                        self._db.execute(
                            _RECORD,
                            (ev.policy_domain, policy, key, when, when, not observation.optional),
                        )
                        return
                    except sqlite3.IntegrityError:  # no open period yet: open one
                        self._open(when)
        except sqlite3.Error:
            # A report row is statistics: losing one must never lose the message.
            log.exception("event=dmarc.record.error domain=%s", ev.policy_domain)

    # -- periods ----------------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self._db.execute(
            "INSERT INTO periods(begin) SELECT ? "
            "WHERE NOT EXISTS (SELECT 1 FROM periods WHERE state = 'open')",
            (now,),
        )

    def open_period(self, now: float) -> float:
        """The begin of the open period (opened now if there is none)."""
        with self._lock:
            self._open(now)
            row = self._db.execute("SELECT begin FROM periods WHERE state = 'open'").fetchone()
        return float(row[0])

    def rotate(self, now: float, interval: float) -> bool:
        """Close the open period if it is ``interval`` old and open the next; True if so."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id, begin FROM periods WHERE state = 'open'"
                ).fetchone()
                if row is None or row[1] + interval > now:
                    self._db.execute("COMMIT")
                    return False
                self._db.execute(
                    "UPDATE periods SET state = 'closed', end = ? WHERE id = ?", (now, row[0])
                )
                self._db.execute("INSERT INTO periods(begin) VALUES (?)", (now,))
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def claim(self, now: float) -> list[Period]:
        """Closed periods (or ones a dead node left half sent) for this node to send."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT id, begin, end FROM periods WHERE state = 'closed' "
                    "OR (state = 'sending' AND claimed < ?) ORDER BY id",
                    (now - SENDING_TIMEOUT,),
                ).fetchall()
                for r in rows:
                    self._db.execute(
                        "UPDATE periods SET state = 'sending', claimed = ? WHERE id = ?",
                        (now, r[0]),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [Period(int(r[0]), float(r[1]), float(r[2])) for r in rows]

    def rows(self, period: int) -> dict[str, tuple[dict[str, Any], list[Row]]]:
        """policy domain -> (the latest policy seen, its rows), for one period; a domain
        only optional evaluations came from (reports about reports) is left out."""
        with self._lock:
            found = self._db.execute(
                "SELECT policy_domain, policy, row, count, last_seen FROM observations "
                "WHERE period = ? AND policy_domain IN "
                "(SELECT policy_domain FROM observations WHERE period = ? AND required) "
                "ORDER BY policy_domain, last_seen",
                (period, period),
            ).fetchall()
        out: dict[str, tuple[dict[str, Any], list[Row]]] = {}
        for domain, policy, key, count, _ in found:
            _, rows = out.get(domain, ({}, []))
            rows.append(_row_of(key, int(count)))
            out[domain] = (json.loads(policy), rows)  # ordered by last_seen: the latest wins
        return out

    def finish(self, period: int) -> None:
        """The period's reports are queued: forget its rows."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM observations WHERE period = ?", (period,))
                self._db.execute("UPDATE periods SET state = 'sent' WHERE id = ?", (period,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pending(self) -> list[tuple[str, int]]:
        """(policy domain, messages) recorded and not reported yet."""
        with self._lock:
            found = self._db.execute(
                "SELECT policy_domain, SUM(count) FROM observations GROUP BY policy_domain "
                "ORDER BY policy_domain"
            ).fetchall()
        return [(str(d), int(n)) for d, n in found]

    # -- reports sent -----------------------------------------------------------------------

    def store_sent(self, report: SentReport, xml: bytes) -> None:
        """Keep a report built (again, if a node that died had built it: it replaces it)."""
        destinations = json.dumps([asdict(d) for d in report.destinations])
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO sent(report_id, policy_domain, begin, end, sent_at, "
                "messages, passed, destinations, xml) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report.report_id,
                    report.policy_domain,
                    report.begin,
                    report.end,
                    report.sent_at,
                    report.messages,
                    report.passed,
                    destinations,
                    xml,
                ),
            )

    def sent(self, domains: Sequence[str] | None = None) -> list[SentReport]:
        """Reports built, newest period first: all, or those about ``domains`` (and their
        subdomains' policies)."""
        where, params = "", []
        if domains is not None:
            if not domains:
                return []
            names = [d.lower().rstrip(".") for d in domains]
            where = "WHERE " + " OR ".join(
                ["policy_domain = ? OR policy_domain LIKE ?"] * len(names)
            )
            params = [p for d in names for p in (d, "%." + d)]
        with self._lock:
            found = self._db.execute(
                "SELECT report_id, policy_domain, begin, end, sent_at, messages, passed, "
                f"destinations FROM sent {where} ORDER BY begin DESC, policy_domain",
                params,
            ).fetchall()
        return [
            SentReport(
                r[0],
                r[1],
                int(r[2]),
                int(r[3]),
                float(r[4]),
                int(r[5]),
                int(r[6]),
                tuple(Destination(**d) for d in json.loads(r[7])),
            )
            for r in found
        ]

    def sent_xml(self, report_id: str) -> tuple[str, bytes] | None:
        """(policy domain, the XML document) of a report built, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT policy_domain, xml FROM sent WHERE report_id = ?", (report_id,)
            ).fetchone()
        return (str(row[0]), bytes(row[1])) if row is not None else None

    # -- reports received -------------------------------------------------------------------

    def store_received(self, report: Feedback, received_at: float, rcpt: str) -> bool:
        """Keep a report; False if the same reporter's report id is already kept."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO received"
                "(org_name, report_id, policy_domain, begin, end, received_at, rcpt, report) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report.org_name,
                    report.report_id,
                    report.policy.domain,
                    report.begin,
                    report.end,
                    received_at,
                    rcpt,
                    json.dumps(report.to_json(), sort_keys=True),
                ),
            )
            return cur.rowcount == 1

    def received(self, domain: str) -> list[Feedback]:
        """Reports about ``domain`` (and its subdomains' policies), oldest period first."""
        d = domain.lower().rstrip(".")
        with self._lock:
            found = self._db.execute(
                "SELECT report FROM received WHERE policy_domain = ? OR policy_domain LIKE ? "
                "ORDER BY begin, org_name",
                (d, "%." + d),
            ).fetchall()
        return [Feedback.from_json(json.loads(r[0])) for r in found]


# -- destinations (RFC 7489 6.2, 7.1) ---------------------------------------------------------


@dataclass(frozen=True)
class Rua:
    address: str
    max_size: int | None = None  # bytes, from a "!10m" suffix

    @property
    def domain(self) -> str:
        return _domain_of(self.address)


_SIZE = re.compile(r"^(\d+)([kmgt]?)$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


def parse_rua(uri: str) -> Rua | None:
    """RFC 7489 6.2: "mailto:address[!size]"; other schemes (and bad addresses): None."""
    uri = uri.strip()
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() != "mailto":
        return None
    target, bang, size = rest.partition("!")
    limit = None
    if bang:
        m = _SIZE.match(size.strip())
        if m is None:
            return None
        limit = int(m.group(1)) * _UNITS[m.group(2).lower()]
    address = urllib.parse.unquote(target.split("?", 1)[0]).strip()
    if not _ADDRESS.match(address):
        return None
    return Rua(address, limit)


async def authorized(
    lookup: Lookup, policy_domain: str, rua: Rua, psl: PublicSuffixList | None = None
) -> list[Rua]:
    """RFC 7489 7.1: where a report for ``policy_domain`` may go instead of/through ``rua``.

    Same organizational domain: as it is. Otherwise the destination must publish
    ``<policy domain>._report._dmarc.<destination host>`` with v=DMARC1; a rua= there
    replaces the destination, if it keeps the same host. Raises DnsTempError.
    """
    lst = psl or default_list()
    if lst.organizational_domain(rua.domain) == lst.organizational_domain(policy_domain):
        return [rua]
    texts = await lookup.txt(f"{policy_domain}._report._dmarc.{rua.domain}")
    records = [
        t.decode("utf-8", "replace")
        for t in texts
        if re.match(rb"^v\s*=\s*DMARC1\s*(;|$)", t.strip())
    ]
    if not records:
        return []
    for record in records:
        for part in record.split(";"):
            k, eq, v = part.partition("=")
            if eq and k.strip().lower() == "rua":
                overrides = [parse_rua(u) for u in v.split(",")]
                same_host = [o for o in overrides if o is not None and o.domain == rua.domain]
                if same_host:
                    return same_host
    return [rua]


# -- the report message (RFC 7489 7.2.1.1) ----------------------------------------------------


def report_id(hostname: str, policy_domain: str, begin: int, end: int) -> str:
    digest = hashlib.sha256(f"{hostname}!{policy_domain}!{begin}!{end}".encode()).hexdigest()
    return f"{begin}.{digest[:16]}@{hostname}"


def report_message(
    fb: Feedback,
    *,
    to: str,
    sender: str,
    submitter: str,
    now: float,
) -> bytes:
    """A multipart/mixed message: a short text and the gzipped XML as an attachment."""
    xml = render(fb)
    data = gzipped(xml, mtime=fb.end)
    filename = f"{submitter}!{fb.policy.domain}!{fb.begin}!{fb.end}.xml.gz"
    msg = EmailMessage()
    msg["From"] = formataddr((f"DMARC reports from {submitter}", sender))
    msg["To"] = to
    # RFC 7489 7.2.1.1: this Subject, so that report processors can sort reports.
    msg["Subject"] = (
        f"Report Domain: {fb.policy.domain} Submitter: {submitter} Report-ID: <{fb.report_id}>"
    )
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    msg["Message-ID"] = f"<{fb.report_id}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to reports
    begin = time.strftime("%Y-%m-%d %H:%M", time.gmtime(fb.begin))
    end = time.strftime("%Y-%m-%d %H:%M", time.gmtime(fb.end))
    msg.set_content(
        f"This is a DMARC aggregate report (RFC 7489) from {submitter} for "
        f"{fb.policy.domain},\ncovering {begin} to {end} UTC: {fb.messages} message(s) "
        f"from {len({r.source_ip for r in fb.rows})} source address(es).\n"
    )
    msg.add_attachment(data, maintype="application", subtype="gzip", filename=filename)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


class AggregateReporter:
    """The daily task: closes the reporting period and queues one report per destination."""

    def __init__(
        self,
        store: DmarcStore,
        spool: OutboundQueue,
        clock: Clock,
        lookup: Lookup,
        *,
        hostname: str,
        org_name: str = "",
        report_from: str = "",
        interval: float = 86400.0,
        notify: Callable[[str], None] | None = None,
        keys: KeyStore | None = None,
        selector: str = "mailspec",
        algorithms: Sequence[str] = ("rsa-sha256", "ed25519-sha256"),
        psl: PublicSuffixList | None = None,
    ) -> None:
        self.store = store
        self.spool = spool
        self.clock = clock
        self.lookup = lookup
        self.hostname = hostname.lower()
        self.org_name = org_name or self.hostname
        self.report_from = report_from or f"dmarc-reports@{self.hostname}"
        self.interval = interval
        self.notify = notify
        self.keys = keys
        self.selector = selector
        self.algorithms = tuple(algorithms)
        self.psl = psl or default_list()

    async def run(self) -> None:
        """Forever: sleep (on the Clock) until the open period is due, then send."""
        while True:
            begin = await asyncio.to_thread(self.store.open_period, self.clock.now())
            due = begin + self.interval
            if due > self.clock.now():
                await self.clock.sleep_until(due)
                continue
            try:
                await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event=dmarc.report.error")
                await self.clock.sleep(min(self.interval, 3600.0))

    async def send_due(self, *, now: bool = False) -> list[SentReport]:
        """Close the period if due (``now``: whatever its age), then queue the reports of
        every closed one; the reports built."""
        when = self.clock.now()
        await asyncio.to_thread(self.store.rotate, when, 0.0 if now else self.interval)
        built: list[SentReport] = []
        for period in await asyncio.to_thread(self.store.claim, when):
            by_domain = await asyncio.to_thread(self.store.rows, period.id)
            for domain, (policy, rows) in sorted(by_domain.items()):
                report = await self._send(period, domain, policy, rows)
                if report is not None:
                    built.append(report)
            await asyncio.to_thread(self.store.finish, period.id)
        return built

    def feedback(self, period: Period, policy: dict[str, Any], rows: list[Row]) -> Feedback:
        begin, end = int(period.begin), int(period.end)
        domain = str(policy["domain"])
        return Feedback(
            org_name=self.org_name,
            email=self.report_from,
            report_id=report_id(self.hostname, domain, begin, end),
            begin=begin,
            end=end,
            policy=PolicyPublished(
                domain=domain,
                adkim=str(policy.get("adkim", "r")),
                aspf=str(policy.get("aspf", "r")),
                p=str(policy.get("p", "none")),
                sp=str(policy.get("sp", "none")),
                pct=int(policy.get("pct", 100)),
                fo=str(policy.get("fo", "0")),
            ),
            rows=tuple(sorted(rows, key=lambda r: (r.source_ip, r.header_from, -r.count))),
        )

    async def _destinations(
        self, domain: str, uris: Sequence[str]
    ) -> tuple[list[Rua], list[Destination]]:
        """The destinations a report may go to, and those it may not (with why)."""
        out: list[Rua] = []
        skipped: list[Destination] = []
        for uri in uris:
            rua = parse_rua(uri)
            if rua is None:
                skipped.append(Destination(uri[:100], skipped="not a mailto: address"))
                continue
            try:
                allowed = await authorized(self.lookup, domain, rua, self.psl)
            except DnsTempError as e:
                skipped.append(Destination(rua.address, skipped=f"DNS: {e}"[:200]))
                continue
            if not allowed:
                # RFC 7489 7.1: the destination did not agree to receive this domain's reports.
                why = f"no {domain}._report._dmarc.{rua.domain} record (RFC 7489 7.1)"
                skipped.append(Destination(rua.address, skipped=why))
            for a in allowed:
                if a.address.lower() not in {o.address.lower() for o in out}:
                    out.append(a)
        skipped += [
            Destination(r.address, skipped="too many rua= addresses")
            for r in out[MAX_DESTINATIONS:]
        ]
        for d in skipped:
            event(log, "dmarc.report.skip", domain=domain, rua=d.rua, why=d.skipped)
        return out[:MAX_DESTINATIONS], skipped

    async def _send(
        self, period: Period, domain: str, policy: dict[str, Any], rows: list[Row]
    ) -> SentReport | None:
        uris = policy.get("rua", [])
        if not uris:
            return None
        allowed, skipped = await self._destinations(domain, uris)
        fb = self.feedback(period, policy, rows)
        now = self.clock.now()
        done: list[Destination] = []
        for rua in allowed:
            data = report_message(
                fb, to=rua.address, sender=self.report_from, submitter=self.hostname, now=now
            )
            if rua.max_size is not None and len(data) > rua.max_size:
                # RFC 7489 6.2: never more than the destination's "!size" limit.
                why = f"{len(data)} bytes, larger than its limit of {rua.max_size}"
                event(log, "dmarc.report.skip", domain=domain, rua=rua.address, why=why)
                done.append(Destination(rua.address, skipped=why))
                continue
            data = await asyncio.to_thread(self._signed, data, now)
            entry = await self.spool.enqueue(
                self.report_from, [rua.address], data, kind="dmarc-report", about=domain
            )
            done.append(Destination(rua.address, qid=entry.qid))
            event(
                log,
                "dmarc.report.queued",
                qid=entry.qid,
                domain=domain,
                to=rua.address,
                messages=fb.messages,
                rows=len(fb.rows),
                report_id=fb.report_id,
            )
            if self.notify is not None:
                self.notify(entry.qid)
        report = SentReport(
            fb.report_id,
            domain,
            fb.begin,
            fb.end,
            now,
            fb.messages,
            sum(r.count for r in fb.rows if r.aligned),
            tuple(done + skipped),
        )
        await asyncio.to_thread(self.store.store_sent, report, render(fb))
        return report

    def _signed(self, data: bytes, now: float) -> bytes:
        """DKIM-signed when keys for the report address's domain exist (none are made)."""
        if self.keys is None:
            return data
        try:
            keys = self.keys.load(_domain_of(self.report_from), self.selector, self.algorithms)
        except KeyStoreError:
            return data
        if not keys:
            return data
        return dkim_mod.sign(data, keys, now=now) + data


class ReportIntake:
    """After local delivery: keep the aggregate reports about our domains that arrive."""

    def __init__(
        self, store: DmarcStore, is_local_domain: Callable[[str], bool], clock: Clock
    ) -> None:
        self.store = store
        self.is_local_domain = is_local_domain
        self.clock = clock

    def __call__(self, rcpt: str, message: bytes) -> None:
        """Runs in the delivery worker thread; never raises (the message is delivered)."""
        try:
            self._take(rcpt, message)
        except Exception:
            log.exception("event=dmarc.received.error rcpt=%s", rcpt)

    def _take(self, rcpt: str, message: bytes) -> None:
        for fb in extract(message):
            if not self._ours(fb.policy.domain):
                event(log, "dmarc.received.ignored", rcpt=rcpt, domain=fb.policy.domain)
                continue
            new = self.store.store_received(fb, self.clock.now(), rcpt)
            event(
                log,
                "dmarc.received",
                rcpt=rcpt,
                domain=fb.policy.domain,
                reporter=fb.org_name,
                report_id=fb.report_id,
                messages=fb.messages,
                duplicate=not new,
            )

    def _ours(self, domain: str) -> bool:
        labels = domain.split(".")
        # A report about a subdomain's policy is ours if the domain above it is.
        return any(self.is_local_domain(".".join(labels[i:])) for i in range(len(labels) - 1))
