"""The durable queue: messages written and fsynced before the 250, with per-recipient state."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reference.clock import Clock
from reference.mail.envelope import DsnRequest
from reference.mail.xtext import xtext_decode

# Recipient states.
PENDING = "pending"  # not tried yet, or deferred until entry.next_attempt
DELIVERED = "delivered"
BOUNCED = "bounced"
FINAL = (DELIVERED, BOUNCED)


# How stale a shared spool's count may be (seconds of the clock), and how often a reply
# held back by flow control looks at it again.
BACKLOG_REFRESH = 0.05
FLOW_TICK = 0.05


class SpoolError(OSError):
    """The spool could not take or update a message (disk full, permissions…)."""


@dataclass
class Recipient:
    address: str
    status: str = PENDING
    attempts: int = 0
    reply: str = ""  # the last reply or reason, for queue listings and DSNs
    remote: str = ""  # the host that gave that reply
    # The mailboxes a local delivery filed this recipient's copy into already (an alias
    # with several accounts): a retry after one of them failed files only the others.
    filed: list[str] = field(default_factory=list)


# What a spool file written before the envelope was typed kept in its "meta" dict.
_OLD_META_KEYS = ("role", "peer", "user", "folder", "lane", "body", "smtputf8", "warned")


@dataclass
class QueueEntry:
    qid: str
    sender: str
    recipients: list[Recipient]
    created: float
    next_attempt: float
    size: int = 0
    lane: str = "regular"  # "bulk": mass mail, in a lane that never holds up the rest
    held: bool = False  # from the <qid>.hold marker, set by `mailspec queue hold`
    flushed: bool = False  # from the <qid>.flush marker: try now, whatever the schedule
    attempts: int = 0
    # Where it came from (the listener's role, the client, the authenticated user).
    role: str = ""
    peer: str = ""
    user: str | None = None
    folder: str | None = None  # a local folder other than INBOX (quarantine: "Junk")
    body: str | None = None  # RFC 6152 / RFC 3030: "8BITMIME", "BINARYMIME" (None: 7bit)
    smtputf8: bool = False  # RFC 6531: the transaction was SMTPUTF8
    dsn: DsnRequest = field(default_factory=DsnRequest)
    # "mail"; "dsn" for a delivery status notification we made (never bounced: RFC 3464,
    # no loops); "dmarc-report" for an aggregate report; "forward" for a copy local delivery
    # forwarded elsewhere. ``about``: the queue id a DSN reports on or a copy was forwarded
    # from, the domain a report is for.
    kind: str = "mail"
    about: str | None = None
    warned: bool = False  # the sender has heard of the delay (relay.delay_warning)

    @property
    def pending(self) -> list[Recipient]:
        return [r for r in self.recipients if r.status not in FINAL]

    @property
    def done(self) -> bool:
        return not self.pending

    def to_json(self) -> bytes:
        d = asdict(self)
        # Operator controls live in marker files, so a running delivery never overwrites them.
        d.pop("held")
        d.pop("flushed")
        d["dsn"] = self.dsn.to_dict()
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> QueueEntry:
        d = json.loads(raw)
        d.pop("held", None)
        d.pop("flushed", None)
        d["recipients"] = [Recipient(**r) for r in d["recipients"]]
        if "meta" in d:
            d.update(_from_old_meta(d.pop("meta"), d.get("lane", "regular")))
        d["dsn"] = DsnRequest.from_dict(d.get("dsn") or {})
        return cls(**d)


def _from_old_meta(meta: dict[str, Any], lane: str) -> dict[str, Any]:
    """The typed fields of an entry an older version spooled with a string-keyed "meta":
    its lane twice (the entry's and the checks' meta["lane"]), DSN parameters as sent."""
    out: dict[str, Any] = {k: meta[k] for k in _OLD_META_KEYS if meta.get(k) is not None}
    out["lane"] = "bulk" if meta.get("lane") == "bulk" or lane == "bulk" else "regular"
    if meta.get("is_dsn"):
        out["kind"], out["about"] = "dsn", meta.get("about")
    elif meta.get("dmarc_report"):
        out["kind"], out["about"] = "dmarc-report", meta["dmarc_report"]
    recipients = {}
    for address, params in (meta.get("rcpt_params") or {}).items():
        kind, _, xtext = str(params.get("ORCPT") or "").partition(";")
        orcpt = [kind, xtext_decode(xtext)] if params.get("ORCPT") else None
        recipients[address] = {"notify": params.get("NOTIFY"), "orcpt": orcpt}
    out["dsn"] = {"ret": meta.get("ret"), "envid": meta.get("envid"), "recipients": recipients}
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename: the file is whole or absent."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_claimed(path: Path, data: bytes) -> int:
    """As :func:`_write_durably`, and return a descriptor of the file holding its claim
    (an exclusive flock, taken before the file has its name: nobody can claim it first)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w+b") as f:  # readable too: the claim may read the message back
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        claim = os.dup(f.fileno())  # the same open file: the lock stays with it
    try:
        os.replace(tmp, path)
    except OSError:
        os.close(claim)
        raise
    return claim


def _link_durably(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise
        # No hard links between these directories: a whole copy, renamed into place.
        _write_durably(target, source.read_bytes())


class Spool:
    """Files under ``root``: ``<qid>.eml`` (the message) and ``<qid>.json`` (the envelope).

    The JSON file is written last, so its presence marks a committed message; a message
    file without one is an interrupted enqueue and is removed at start.
    """

    def __init__(self, root: Path, clock: Clock, *, shared: bool = False) -> None:
        self.root = root
        self.clock = clock
        # ``shared``: the worker processes of a node (server.workers) all enqueue here and
        # one of them delivers. Recovery is then the supervisor's, run once before any
        # worker starts: a worker starting again must not take another's half-written
        # message for an interrupted one.
        self.shared = shared
        root.mkdir(parents=True, exist_ok=True)
        if not shared:
            self._recover()
        # How many messages this spool holds, kept as it changes (listing the directory on
        # every MAIL would cost more than the check it serves). Shared, the others' changes
        # are read from the directory again at most every BACKLOG_REFRESH.
        self._count_lock = threading.Lock()
        self._count = self._listed()
        self._listed_at = clock.monotonic()
        self.waiting = 0  # replies held back by wait_for_room, now
        # The messages this process has claimed (qid -> the descriptor holding the lock),
        # and those of them it accepted and has not attempted yet (qid -> when, in the
        # order they came).
        self._claims: dict[str, int] = {}
        self._unstarted: dict[str, float] = {}
        self._room = asyncio.Event()  # set when one of them is attempted, for wait_for_room

    def _listed(self) -> int:
        with os.scandir(self.root) as it:
            return sum(1 for e in it if e.name.endswith(".json"))

    @property
    def backlog(self) -> int:
        """Messages in the spool: queued and not yet delivered or bounced."""
        if self.shared and self.clock.monotonic() - self._listed_at >= BACKLOG_REFRESH:
            self._count, self._listed_at = self._listed(), self.clock.monotonic()
        return self._count

    def behind(self, backlog: int, lag: float) -> bool:
        """Whether delivery here is behind acceptance: ``backlog`` messages or more accepted
        and not yet attempted, or the oldest of them waiting ``lag`` seconds or more (0:
        that measure is off)."""
        count, age = self.lag()
        return bool(count) and ((backlog > 0 and count >= backlog) or (lag > 0 and age >= lag))

    async def wait_for_room(self, backlog: int, longest: float, lag: float = 0.0) -> float:
        """Wait while delivery is :meth:`behind`, at most ``longest`` seconds; return how
        long that was (Postfix's in_flow_delay: acceptance slows to the pace of delivery,
        bounded). Mail deferred for a retry never holds a reply back."""
        if not self.behind(backlog, lag):
            return 0.0
        start = self.clock.monotonic()
        self.waiting += 1
        try:
            while self.behind(backlog, lag):
                left = start + longest - self.clock.monotonic()
                if left <= 0:
                    break
                # Woken as soon as a message is attempted (Postfix's token per message), or
                # after a tick: the age of the oldest grows meanwhile.
                self._room.clear()
                room = asyncio.ensure_future(self._room.wait())
                tick = asyncio.ensure_future(self.clock.sleep(min(FLOW_TICK, left)))
                await asyncio.wait({room, tick}, return_when=asyncio.FIRST_COMPLETED)
                room.cancel()
                tick.cancel()
        finally:
            self.waiting -= 1
        return self.clock.monotonic() - start

    def _counted(self, delta: int) -> None:
        with self._count_lock:
            self._count = max(0, self._count + delta)

    def _recover(self) -> None:
        """Remove what an interrupted enqueue left (no process may be writing here now)."""
        for tmp in self.root.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        for eml in self.root.glob("*.eml"):
            if not eml.with_suffix(".json").exists():
                eml.unlink(missing_ok=True)
        for marker in [*self.root.glob("*.hold"), *self.root.glob("*.flush")]:
            if not marker.with_suffix(".json").exists():
                marker.unlink(missing_ok=True)

    def new_qid(self) -> str:
        # Time-ordered prefix (so listings sort by arrival) plus randomness (so several
        # processes sharing the spool never collide).
        return f"{int(self.clock.now() * 1000):011X}{secrets.token_hex(3).upper()}"

    def _enqueue_sync(self, entry: QueueEntry, data: bytes, claim: bool) -> None:
        eml = self.root / f"{entry.qid}.eml"
        fd = -1
        try:
            if claim:
                fd = _write_claimed(eml, data)
            else:
                _write_durably(eml, data)
            _write_durably(self.root / f"{entry.qid}.json", entry.to_json())
            _fsync_dir(self.root)
            if fd >= 0:
                self._claims[entry.qid] = fd
        except OSError as e:
            if fd >= 0:
                os.close(fd)
            for suffix in (".eml", ".json", ".eml.tmp", ".json.tmp"):
                (self.root / f"{entry.qid}{suffix}").unlink(missing_ok=True)
            raise SpoolError(e.errno, f"spool write failed: {e.strerror}") from e

    async def enqueue(
        self,
        sender: str,
        recipients: list[str],
        data: bytes,
        *,
        qid: str | None = None,
        lane: str = "regular",
        folder: str | None = None,
        role: str = "",
        peer: str = "",
        user: str | None = None,
        body: str | None = None,
        smtputf8: bool = False,
        dsn: DsnRequest | None = None,
        kind: str = "mail",
        about: str | None = None,
        claim: bool = False,
    ) -> QueueEntry:
        """Write the message durably; when this returns, the 250 may be sent.

        ``claim``: this process delivers it now (see :meth:`claim`); it holds the claim
        from before the message is committed, so no other process starts it meanwhile, and
        it counts as accepted and not yet attempted (the lag flow control measures) until
        :meth:`attempted` or :meth:`unclaim`."""
        now = self.clock.now()
        entry = QueueEntry(
            qid=qid or self.new_qid(),
            sender=sender,
            recipients=[Recipient(r) for r in recipients],
            created=now,
            next_attempt=now,
            size=len(data),
            lane=lane,
            role=role,
            peer=peer,
            user=user,
            folder=folder,
            body=body,
            smtputf8=smtputf8,
            dsn=dsn or DsnRequest(),
            kind=kind,
            about=about,
        )
        await asyncio.to_thread(self._enqueue_sync, entry, data, claim)
        self._counted(+1)
        if claim:
            self._unstarted[entry.qid] = self.clock.monotonic()
        return entry

    # -- claims: which process delivers a message now

    def claim(self, qid: str) -> bool:
        """Take the right to deliver ``qid`` now, without waiting: False if another process
        (or another delivery in this one) holds it, or the message is gone.

        The claim is an exclusive flock on the message file, which is never rewritten: the
        kernel drops it when its holder ends, kill -9 included, so a message a dead worker
        was delivering is claimed by the queue runner at its next look."""
        if qid in self._claims:
            return False
        try:
            fd = os.open(self.root / f"{qid}.eml", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._claims[qid] = fd
        return True

    def unclaim(self, qid: str) -> None:
        """Give the claim on ``qid`` back (after its envelope was saved or removed)."""
        self.attempted(qid)
        fd = self._claims.pop(qid, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Give every claim back, as the kernel does when the process ends."""
        for qid in list(self._claims):
            self.unclaim(qid)

    def attempted(self, qid: str) -> None:
        """The first attempt of ``qid``, accepted here, has filed it into the mailboxes of
        its local recipients (its relaying, slow or not, is not lag): it is no longer lag."""
        if self._unstarted.pop(qid, None) is not None and self.waiting:
            self._room.set()

    def lag(self) -> tuple[int, float]:
        """Messages this process accepted and has not attempted yet, and how long
        the oldest of them has waited (seconds): how far delivery is behind acceptance.
        Mail deferred for a retry is not in it."""
        if not self._unstarted:
            return 0, 0.0
        oldest = next(iter(self._unstarted.values()))
        return len(self._unstarted), self.clock.monotonic() - oldest

    def save(self, entry: QueueEntry) -> None:
        if not (self.root / f"{entry.qid}.eml").exists():
            return  # deleted by the operator while a delivery was running: stay deleted
        _write_durably(self.root / f"{entry.qid}.json", entry.to_json())

    def load(self, qid: str) -> QueueEntry | None:
        try:
            entry = QueueEntry.from_json((self.root / f"{qid}.json").read_bytes())
        except (FileNotFoundError, ValueError, TypeError, KeyError):
            return None
        entry.held = (self.root / f"{qid}.hold").exists()
        entry.flushed = (self.root / f"{qid}.flush").exists()
        return entry

    # -- operator controls (`mailspec queue …`), safe while the server runs

    def _mark(self, qid: str, marker: str, on: bool) -> bool:
        if not (self.root / f"{qid}.json").exists():
            return False
        path = self.root / f"{qid}.{marker}"
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)
        return True

    def hold(self, qid: str) -> bool:
        return self._mark(qid, "hold", True)

    def release(self, qid: str) -> bool:
        return self._mark(qid, "hold", False)

    def flush(self, qid: str) -> bool:
        return self._mark(qid, "flush", True)

    def flushed_done(self, qid: str) -> None:
        (self.root / f"{qid}.flush").unlink(missing_ok=True)

    def delete(self, qid: str) -> bool:
        if not (self.root / f"{qid}.json").exists():
            return False
        self.remove(qid)
        return True

    def read_message(self, qid: str) -> bytes:
        fd = self._claims.get(qid)
        if fd is None:
            return (self.root / f"{qid}.eml").read_bytes()
        # Through the claim: no second open of the file.
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def remove(self, qid: str) -> None:
        # Envelope first: a crash in between leaves an orphan message, removed at start.
        try:
            (self.root / f"{qid}.json").unlink()
            self._counted(-1)
        except FileNotFoundError:
            pass
        (self.root / f"{qid}.eml").unlink(missing_ok=True)
        (self.root / f"{qid}.hold").unlink(missing_ok=True)
        (self.root / f"{qid}.flush").unlink(missing_ok=True)

    def recount(self) -> None:
        """Count the messages again (after a takeover moved some out while this node was
        away)."""
        with self._count_lock:
            self._count = self._listed()

    def take_over(self, other: Path) -> list[str]:
        """Move every committed message of the spool at ``other`` (a dead node's, whose
        lease the caller holds) into this one; returns their queue ids.

        Per message: the message file is hard-linked here, then the envelope renamed here
        (the move's commit point), then the old message file removed. A crash at any step
        leaves the message whole in exactly one spool: a message file without its envelope
        is removed at start (see ``_recover``), and the other spool still has both."""
        moved = []
        for envelope in sorted(other.glob("*.json")):
            qid = envelope.stem
            eml = other / f"{qid}.eml"
            try:
                if not (self.root / f"{qid}.eml").exists():
                    _link_durably(eml, self.root / f"{qid}.eml")
                os.replace(envelope, self.root / f"{qid}.json")
            except FileNotFoundError:
                continue  # delivered and removed meanwhile (or taken by another node)
            eml.unlink(missing_ok=True)
            for marker in ("hold", "flush"):
                if (other / f"{qid}.{marker}").exists():
                    os.replace(other / f"{qid}.{marker}", self.root / f"{qid}.{marker}")
            moved.append(qid)
        if moved:
            _fsync_dir(self.root)
            _fsync_dir(other)
            self._counted(len(moved))
        return moved

    def entries(self) -> list[QueueEntry]:
        out = []
        for path in sorted(self.root.glob("*.json")):
            entry = self.load(path.stem)
            if entry is not None:
                out.append(entry)
        return out

    def due(self, now: float) -> list[QueueEntry]:
        return [
            e
            for e in self.entries()
            if not e.held and (e.next_attempt <= now or e.flushed) and not e.done
        ]
