"""The queue runner: due messages from the spool to local delivery or the relay, retries, DSNs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from reference.clock import Clock
from reference.credentials import TemporarilyUnavailable
from reference.delivery.dsn import Failure, build_dsn, should_notify
from reference.delivery.local import LocalDelivery
from reference.delivery.outcome import Outcome
from reference.log import event
from reference.mailbox import QuotaExceeded
from reference.metrics import Metrics
from reference.spool import BOUNCED, DELIVERED, QueueEntry, Recipient, Spool, SpoolLease

log = logging.getLogger("mailspec.delivery")

# While mail flows, the queue runner reads every envelope in the spool at most this often
# (seconds of the injected clock); new mail is started from its notification.
RESCAN_INTERVAL = 1.0
# With nothing due, it still looks at the whole spool this often: another worker's hint of
# a retry lost in a full pipe delays that retry by this much at most.
IDLE_LOOK = 60.0


class RemoteDelivery(Protocol):
    """The relay's seam: deliver to recipients outside our domains."""

    async def deliver(
        self, entry: QueueEntry, rcpts: Sequence[Recipient], data: bytes
    ) -> dict[str, Outcome]: ...


class QueueRunner:
    """Takes due messages from the spool and delivers them, one task per message."""

    def __init__(
        self,
        spool: Spool,
        clock: Clock,
        local: LocalDelivery,
        *,
        remote: RemoteDelivery | None = None,
        backoff: Sequence[float] = (60.0, 300.0, 900.0, 1800.0, 3600.0),
        max_age: float = 86400.0,
        delay_warning: float = 4 * 3600.0,
        hostname: str = "localhost",
        concurrency: int = 16,
        bulk_concurrency: int = 4,
        metrics: Metrics | None = None,
        lease: SpoolLease | None = None,
        handoff: Callable[[str], None] | None = None,
    ) -> None:
        self.spool = spool
        # One of several worker processes of a node, other than the primary (whose runner
        # runs the loop): it delivers the mail it accepts itself, and hands the rest to the
        # primary's runner by ``handoff``: queue ids to start ("<qid>"), or the time a
        # message it deferred is due again ("@<time>").
        self.handoff = handoff
        # With a lease (nodes sharing Redis), the spool is delivered only while it is held;
        # the lease's task also takes over other nodes' lapsed spools into this one.
        self.lease = lease
        self._lease_task: asyncio.Task[None] | None = None
        self.metrics = metrics
        self.clock = clock
        self.local = local
        self.remote = remote
        self.backoff = list(backoff) or [60.0]
        self.max_age = max_age
        self.delay_warning = delay_warning
        self.hostname = hostname
        self._wake = asyncio.Event()
        self._fresh: set[str] = set()  # queued since the runner last looked
        self._due: float | None = None  # the next time an entry is due, as last seen
        self._rescan = True  # read every envelope at the next look
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(concurrency)
        # Mass mail has its own, smaller set of slots: it never takes the regular lane's,
        # so a newsletter backlog towards a slow receiver cannot hold up a person's mail.
        self._bulk_slots = asyncio.Semaphore(bulk_concurrency)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def notify(self, qid: str = "") -> None:
        """A message was queued (``qid``): start it now. Without a queue id (an operator's
        flush or release): look at the whole spool now."""
        if self.handoff is not None:
            self.handoff(qid)
            return
        if qid:
            self._fresh.add(qid)
        else:
            self._rescan = True
        self._wake.set()

    def due_at(self, when: float) -> None:
        """An entry is due again at ``when`` (another worker deferred it): look then."""
        if self._due is None or when < self._due:
            self._due = when
            self._wake.set()

    def accepted(self, entry: QueueEntry, data: bytes) -> None:
        """Deliver a message this process has just queued with its claim (see
        :meth:`Spool.enqueue`): from memory, without reading the spool again."""
        if self._stopping or (self.lease is not None and not self.lease.held):
            # Not to be delivered now (the node's spool lease is not held): the primary's
            # runner starts it once the lease is held again.
            self.spool.unclaim(entry.qid)
            self.notify(entry.qid)
            return
        self._start(entry.qid, (entry, data))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-runner")
        if self.lease is not None:
            self._lease_task = asyncio.create_task(self.lease.run(self._taken), name="lease")

    def _taken(self, qids: list[str]) -> None:
        """Messages taken over from a node that stopped: due now (their node's backoff was
        for that node's attempts; this one has not tried)."""
        for qid in qids:
            # Marked flushed on disk, not only woken: if this node's own lease lapses just
            # then, the attempt is skipped, and a later look would wait out the dead node's
            # backoff (minutes) instead of delivering at once.
            self.spool.flush(qid)
            self.notify(qid)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages; let in-flight deliveries finish, or leave them spooled."""
        self._stopping = True
        self._wake.set()
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            _, pending = await asyncio.wait(list(self._inflight.values()), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                event(log, "stop.deliveries-returned", count=len(pending))
            # A cancelled delivery leaves its recipients pending in the spool.
            await asyncio.gather(*pending, return_exceptions=True)
        if self._lease_task is not None and self.lease is not None:
            self.lease.stop()
            self._lease_task.cancel()
            await asyncio.gather(self._lease_task, return_exceptions=True)
            await self.lease.close()

    async def _run(self) -> None:
        scanned = 0.0
        while not self._stopping:
            if self.lease is not None and not self.lease.held:
                # Not ours now (at start, or lost): look at the whole spool once it is.
                self._rescan = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.lease.acquired.wait(), self.lease.every / 2)
                continue
            self._wake.clear()
            now = self.clock.now()
            fresh, self._fresh = self._fresh, set()
            next_due = self._due
            if (
                not self._rescan
                and self.clock.monotonic() - scanned < RESCAN_INTERVAL
                and (next_due is None or next_due > now)
            ):
                # Mail is flowing: start what was just queued without reading every
                # envelope again (under a backlog, once per message is quadratic); the
                # full look at the spool follows within RESCAN_INTERVAL.
                for qid in fresh:
                    self._start(qid)
                rescan_at = now + RESCAN_INTERVAL
                await self._sleep(rescan_at if next_due is None else min(next_due, rescan_at))
                continue
            self._rescan = False
            scanned = self.clock.monotonic()
            entries = await asyncio.to_thread(self.spool.entries)
            next_due = None
            for entry in entries:
                if entry.qid in self._inflight or entry.held or entry.done:
                    continue
                if entry.next_attempt <= now or entry.flushed:
                    # Another worker may be delivering it (its claim says so), or may
                    # have deferred it since this look: checked again under the claim.
                    self._start(entry.qid, scanned=True)
                elif next_due is None or entry.next_attempt < next_due:
                    next_due = entry.next_attempt
            self._due = next_due
            await self._sleep(next_due)

    def _start(
        self,
        qid: str,
        given: tuple[QueueEntry, bytes] | None = None,
        *,
        scanned: bool = False,
    ) -> None:
        if qid in self._inflight:
            if given is not None:
                self.spool.unclaim(qid)
            return
        task = asyncio.create_task(self._attempt(qid, given, scanned), name=qid)
        self._inflight[qid] = task
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task.get_name(), None)
        if task.cancelled():
            # Cancelled before it began, its own ``finally`` never ran: the claim is given
            # back here (a no-op otherwise).
            self.spool.unclaim(task.get_name())
        # Its next attempt time changed: the full look that follows within RESCAN_INTERVAL
        # reads it.
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            event(
                log,
                "attempt.error",
                level=logging.ERROR,
                qid=task.get_name(),
                error=repr(task.exception()),
            )

    async def _sleep(self, next_due: float | None) -> None:
        waiter = asyncio.create_task(self._wake.wait())
        # An absolute deadline: a test thread moving a manual clock between now() and the
        # start of the wait must wake this runner, not push its deadline further away.
        until = next_due if next_due is not None else self.clock.now() + IDLE_LOOK
        timer = asyncio.create_task(self.clock.sleep_until(until))
        await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
        for t in (waiter, timer):
            t.cancel()

    async def _attempt(
        self, qid: str, given: tuple[QueueEntry, bytes] | None, scanned: bool
    ) -> None:
        """One attempt at ``qid`` under its claim: ``given``, the entry and message this
        process accepted (claimed at enqueue); else claimed and read from the spool now."""
        if given is None and not await asyncio.to_thread(self.spool.claim, qid):
            return  # another process is delivering it (or it is gone)
        try:
            await self._claimed(qid, given, scanned)
        finally:
            self.spool.unclaim(qid)

    async def _claimed(
        self, qid: str, given: tuple[QueueEntry, bytes] | None, scanned: bool
    ) -> None:
        queued = given[0] if given else await asyncio.to_thread(self.spool.load, qid)
        bulk = queued is not None and lane_of(queued) == "bulk"
        async with self._bulk_slots if bulk else self._slots:
            if self.lease is not None and not self.lease.held:
                return  # its lease lapsed: another node may be delivering this spool now
            if given is not None:
                entry, data = given
            else:
                taken, read = await asyncio.to_thread(self._take, qid, scanned)
                if taken is None or read is None:
                    return
                entry, data = taken, read
            if entry.attempts == 0:
                # Archive-all: a user's sent mail as it left, once, whatever its delivery.
                await self.local.archive_sent(entry, data)
            entry.attempts += 1
            bounced: list[Recipient] = []
            remote: list[Recipient] = []
            for rcpt in entry.pending:
                try:
                    if not self.local.is_local(rcpt.address):
                        remote.append(rcpt)
                        continue
                    outcome = await self.local.deliver(entry, rcpt.address, data)
                except TemporarilyUnavailable as e:
                    # The directory's database is down: kept, and tried again on schedule.
                    outcome = Outcome("deferred", f"4.3.0 {e}")
                except QuotaExceeded:
                    # RFC 3463 4.2.2: over quota is temporary: the user may make room.
                    outcome = Outcome("deferred", "4.2.2 mailbox full, over quota")
                except OSError as e:
                    outcome = Outcome("deferred", f"4.3.0 mailbox write failed: {e.strerror}")
                if self._record(entry, rcpt, outcome, "local"):
                    bounced.append(rcpt)
                # Saved after each recipient, so a restart never delivers one twice; not
                # after the last, when the entry is removed right away instead (one fsync
                # less; a crash in between delivers it again either way).
                if entry.pending or bounced:
                    await asyncio.to_thread(self.spool.save, entry)
            # In its local recipients' mailboxes: what flow control waits for is done.
            self.spool.attempted(qid)
            if remote:
                if self.remote is None:
                    outcomes = {}
                else:
                    outcomes = await self.remote.deliver(entry, remote, data)
                for rcpt in remote:
                    outcome = outcomes.get(rcpt.address) or Outcome(
                        "deferred", "4.4.0 relay not enabled"
                    )
                    if self._record(entry, rcpt, outcome, "remote"):
                        bounced.append(rcpt)
            if entry.pending and self.clock.now() - entry.created >= self.max_age:
                # Past relay.max_age: give up, and tell the sender with the last reply.
                for rcpt in entry.pending:
                    rcpt.status = BOUNCED
                    rcpt.reply = f"{rcpt.reply} (gave up after {self.max_age / 3600:g} h)"
                    bounced.append(rcpt)
                    event(log, "expired", qid=entry.qid, rcpt=rcpt.address)
            if bounced:
                await self._notify(entry, bounced, data, delayed=False)
            elif (
                entry.pending
                and not entry.warned
                and self.clock.now() - entry.created >= self.delay_warning
            ):
                entry.warned = True
                await self._notify(entry, entry.pending, data, delayed=True)
            await self._finish(entry)

    async def _notify(
        self, entry: QueueEntry, rcpts: Sequence[Recipient], data: bytes, *, delayed: bool
    ) -> None:
        """Queue a DSN to the sender (never for a null sender: no bounce loops)."""
        if not should_notify(entry):
            event(log, "dsn.suppressed", qid=entry.qid, sender=entry.sender or "<>")
            return
        failures = [
            Failure(r.address, _status_of(r.reply, delayed), r.reply, r.remote) for r in rcpts
        ]
        dsn = build_dsn(
            reporting_mta=self.hostname,
            entry=entry,
            failures=failures,
            original=data,
            now=self.clock.now(),
            delayed=delayed,
        )
        queued = await self.spool.enqueue("", [entry.sender], dsn, kind="dsn", about=entry.qid)
        event(
            log,
            "dsn.queued",
            qid=queued.qid,
            about=entry.qid,
            to=entry.sender,
            kind="delayed" if delayed else "failed",
            rcpts=len(failures),
        )
        self.notify(queued.qid)

    def _record(
        self, entry: QueueEntry, rcpt: Recipient, outcome: Outcome, destination: str
    ) -> bool:
        """Apply an outcome (and count it); True when the recipient has just bounced."""
        if self.metrics is not None:
            self.metrics.delivery(destination, outcome.status, self.clock.now() - entry.created)
        rcpt.attempts += 1
        rcpt.reply = outcome.detail
        rcpt.remote = outcome.remote
        if outcome.status == "delivered":
            rcpt.status = DELIVERED
        elif outcome.status == "bounced":
            rcpt.status = BOUNCED
        event(
            log,
            outcome.status,
            qid=entry.qid,
            rcpt=rcpt.address,
            detail=outcome.detail,
            attempt=rcpt.attempts,
        )
        return rcpt.status == BOUNCED

    def _take(self, qid: str, scanned: bool) -> tuple[QueueEntry | None, bytes | None]:
        """The entry as it is now and its message, when it is to be delivered (None, None:
        gone, done or held; found by a look at the spool, not due now: another worker
        deferred it since); a flush asked for is taken. One hop to a worker thread."""
        entry = self.spool.load(qid)
        if entry is None or entry.done or entry.held:
            return None, None
        if scanned and not entry.flushed and entry.next_attempt > self.clock.now():
            return None, None
        if entry.flushed:
            self.spool.flushed_done(qid)
        return entry, self.spool.read_message(qid)

    async def _finish(self, entry: QueueEntry) -> None:
        if entry.done:
            await asyncio.to_thread(self.spool.remove, entry.qid)
            event(log, "removed", qid=entry.qid)
            return
        delay = self.backoff[min(entry.attempts - 1, len(self.backoff) - 1)]
        entry.next_attempt = self.clock.now() + delay
        await asyncio.to_thread(self.spool.save, entry)
        if self.handoff is not None:
            self.handoff(f"@{entry.next_attempt!r}")  # the retry is the primary's runner's
        event(log, "deferred.entry", qid=entry.qid, next_in=int(delay), pending=len(entry.pending))


_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def _status_of(reply: str, delayed: bool) -> str:
    """The RFC 3463 status for a DSN: from the reply, with the class a DSN needs."""
    m = _ENHANCED.search(reply)
    cls = "4" if delayed else "5"
    return f"{cls}.{m.group(2)}.{m.group(3)}" if m else f"{cls}.0.0"


def lane_of(entry: QueueEntry) -> str:
    """The entry's lane: "bulk" or "regular"."""
    return "bulk" if entry.lane == "bulk" else "regular"
