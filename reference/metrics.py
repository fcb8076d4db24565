"""The node's Prometheus metrics: one registry per node, counted where things happen.

The front ends, the policy chain and the queue runner are each handed the node's
:class:`Metrics` (or a listener's :class:`ListenerMetrics`) and count in one place each:
where a reply is sent, where a check refuses or returns, where a delivery attempt is
recorded. The web listener only renders the registry. Each node (each
:class:`~reference.app.App`) has its own registry, so several nodes in one test process
never add up each other's counts.

An event costs a float addition: every series is a plain Python value, counted on the
event loop's thread, and it is *published* to the prometheus_client metric behind it
(to its file, in multiprocess mode) only when the registry is rendered, every
:data:`PUBLISH_EVERY` seconds, and when the node stops (or the process exits). The
library's own ``inc`` (a lock, a pid check and a write into a mapped file in
multiprocess mode) cost some 9 % of a worker's CPU at some fifty counts per message.

A node that runs several worker processes uses prometheus_client's multiprocess mode: the
process that starts the workers calls :func:`prepare_workers` (a fresh folder under
``data_dir``, and the environment each worker starts with: ``PROMETHEUS_MULTIPROC_DIR``,
which the library reads when it is imported), and :func:`worker_exited` for each worker
that ends. Each worker's counts then go to its own files in that folder, and /metrics in
any worker sums every worker's. A scrape stays exact: before reading the files, the
scraping worker asks every other live worker to publish (a line on the FIFO each one reads
in a thread of its own, ``publish-<pid>`` in that folder) and waits for their answers, at
most :data:`GATHER_WAIT` seconds (a worker stopped or stuck answers late, and is read as
it last published). Only a worker killed outright loses its counts of the last
:data:`PUBLISH_EVERY` seconds. In that mode all metrics of a process are the node's: a
process is a worker of one node.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import re
import select
import shutil
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "GATHER_WAIT",
    "LANES",
    "MULTIPROC_ENV",
    "PUBLISH_EVERY",
    "ListenerMetrics",
    "Metrics",
    "QueueView",
    "prepare_workers",
    "stopwatch",
    "worker_exited",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LANES = ("regular", "bulk")

# Seconds between a worker's own publishes: what a worker killed outright (SIGKILL) loses.
PUBLISH_EVERY = 1.0
# Seconds a scrape waits for the other workers to publish (a stopped one answers late).
GATHER_WAIT = 2.0

# (lane, messages, age of the oldest in seconds or None) for every lane, read at scrape time.
QueueView = Callable[[], Sequence[tuple[str, int, float | None]]]

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
# Delivery in milliseconds on one node, minutes behind a slow receiver or a retry.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)
# A check answers in microseconds (a look-up in memory) to seconds (DNS, clamd, a big body).
_CHECK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_FIFO = "publish-{}"

log = logging.getLogger("mailspec")


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """Seconds the block took, read after it. Real elapsed time, not the node's clock: it
    measures work done for the metrics, and no decision depends on it."""
    start = time.perf_counter()
    end: list[float] = []
    try:
        yield lambda: (end[0] if end else time.perf_counter()) - start
    finally:
        end.append(time.perf_counter())


def prepare_workers(path: Path, *, forking: bool = False) -> dict[str, str]:
    """Make ``path`` an empty folder for the workers' counts (the library wants it wiped
    between runs) and return the environment each worker must start with.

    ``forking``: the workers are forks of this process, which has imported the library
    already; it is switched to multiprocess values here (each fork's values then go to
    files of its own pid: the library notices the pid change), and the environment set."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    env = {MULTIPROC_ENV: str(path)}
    if forking:
        os.environ.update(env)
        if values.ValueClass is values.MutexValue:
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return env


def worker_exited(path: Path, pid: int) -> None:
    """A worker ended: its open sessions no longer count (its counters still do), and no
    scrape asks it to publish any more."""
    mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    (path / _FIFO.format(pid)).unlink(missing_ok=True)


def _multiprocess_dir() -> Path | None:
    """The workers' folder when this process is one of a node's workers, else None."""
    where = os.environ.get(MULTIPROC_ENV)
    if not where:
        return None
    if values.ValueClass is values.MutexValue:
        # Set after prometheus_client was imported: its counts would stay in this process.
        raise RuntimeError(f"{MULTIPROC_ENV} must be in the environment the process starts with")
    return Path(where)


# -- the series: counted in plain Python, published to the library's metrics -------------


class _Count:
    """A counter's or gauge's series: the hot path adds to ``value``; :meth:`publish`
    hands what was added since to the library's child (its file, in multiprocess mode)."""

    __slots__ = ("child", "published", "value")

    def __init__(self, child: Counter | Gauge) -> None:
        self.child = child
        self.value = 0.0
        self.published = 0.0

    def publish(self) -> None:
        value = self.value
        if value != self.published:
            self.child.inc(value - self.published)
            self.published = value


class _Observed:
    """A histogram's series: a count per bucket (not cumulative, as the library keeps them)
    and the sum, published to the library's values of the same."""

    __slots__ = ("bounds", "child", "counts", "published", "published_sum", "sum")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        # The library's own bounds, +Inf last; an observation goes to the first >= it.
        self.bounds: list[float] = list(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.published = [0] * len(self.bounds)
        self.sum = 0.0
        self.published_sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount

    def publish(self) -> None:
        # The library has no public way to add n observations at once: its values are
        # written directly (the same objects its own observe() increments).
        child: Any = self.child
        if self.counts != self.published:  # most series have nothing new most seconds
            for i, count in enumerate(self.counts):
                if count != self.published[i]:
                    child._buckets[i].inc(count - self.published[i])
                    self.published[i] = count
        total = self.sum
        if total != self.published_sum:
            child._sum.inc(total - self.published_sum)
            self.published_sum = total


# One publish at a time in a process (the timer's, a scrape's, the last one at stop): each
# hands over exactly what was added since the one before.
_PUBLISHING = threading.Lock()


class _Publisher:
    """This worker's side of multiprocess mode: a thread that publishes every
    :class:`Metrics` of the process each :data:`PUBLISH_EVERY` seconds, and at once when
    a scrape in another worker asks (the name of a FIFO to answer on, written to this
    process's ``publish-<pid>`` FIFO); and a last publish when the process exits."""

    def __init__(self, folder: Path) -> None:
        self.pid = os.getpid()
        self.folder = folder
        self.metrics: weakref.WeakSet[Metrics] = weakref.WeakSet()
        self.fifo = folder / _FIFO.format(self.pid)
        self.fifo.unlink(missing_ok=True)
        os.mkfifo(self.fifo, 0o600)
        # Read and write: the FIFO never reads as closed, and a scrape's open for writing
        # succeeds exactly while this process lives (ENXIO once it is gone).
        self.fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        threading.Thread(target=self._run, name="metrics-publisher", daemon=True).start()
        atexit.register(self.publish)

    def publish(self) -> None:
        with _PUBLISHING:
            for m in list(self.metrics):
                m._publish()

    def _run(self) -> None:
        while True:
            try:
                asked = b""
                if select.select([self.fd], [], [], PUBLISH_EVERY)[0]:
                    with contextlib.suppress(BlockingIOError):
                        asked = os.read(self.fd, 1 << 16)  # a pipe holds 64 KiB
                self.publish()
                for name in asked.decode().split():
                    _write_fifo(self.folder / name, b".")
            except Exception:  # the counting goes on; the next round tries again
                log.exception("metrics.publish-failed")
                time.sleep(PUBLISH_EVERY)


_publisher: _Publisher | None = None


def _publisher_for(folder: Path) -> _Publisher:
    """The process's publisher (a fork gets one of its own: threads do not survive fork)."""
    global _publisher
    if _publisher is None or _publisher.pid != os.getpid():
        _publisher = _Publisher(folder)
    return _publisher


def _write_fifo(path: Path, data: bytes) -> bool:
    """Write ``data`` (at most PIPE_BUF: atomic) into a FIFO someone reads; False when
    nobody does (ENXIO: its process is gone), it is gone, or full."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.write(fd, data) == len(data)
    except OSError:
        return False
    finally:
        os.close(fd)


_asks = itertools.count()


def _gather(folder: Path, own: Path | None) -> None:
    """Ask every other live worker to publish and wait for their answers (at most
    :data:`GATHER_WAIT` seconds): the files then hold all they counted before the ask."""
    answers = folder / f"ack-{os.getpid()}-{next(_asks)}"
    try:
        os.mkfifo(answers, 0o600)
    except OSError:  # the folder is gone: the node is stopping
        return
    try:
        fd = os.open(answers, os.O_RDWR | os.O_NONBLOCK)
        try:
            line = f"{answers.name}\n".encode()
            waiting = sum(
                _write_fifo(fifo, line) for fifo in folder.glob(_FIFO.format("*")) if fifo != own
            )
            deadline = time.monotonic() + GATHER_WAIT
            while waiting > 0:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    break
                with contextlib.suppress(BlockingIOError):
                    waiting -= len(os.read(fd, select.PIPE_BUF))
        finally:
            os.close(fd)
    finally:
        answers.unlink(missing_ok=True)


class _Queue(Collector):
    """Queue depth and the oldest message's age per lane, asked of the spool when scraped."""

    def __init__(self) -> None:
        self.view: QueueView | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "mailspec_queue_messages", "Messages in the spool, per lane", labels=["lane"]
        )
        oldest = GaugeMetricFamily(
            "mailspec_queue_oldest_age_seconds",
            "Age of the oldest message in the spool, per lane (0 when the lane is empty)",
            labels=["lane"],
        )
        for lane, count, age in self.view() if self.view else [(lane, 0, None) for lane in LANES]:
            depth.add_metric([lane], count)
            oldest.add_metric([lane], age or 0.0)
        yield depth
        yield oldest


class _Timed:
    """A block's duration into a histogram: a class, not a generator, as it times every
    check at every stage of every message."""

    __slots__ = ("series", "start")

    def __init__(self, series: _Observed) -> None:
        self.series = series

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.series.observe(time.perf_counter() - self.start)  # never < 0: monotonic


class ListenerMetrics:
    """What one listener counts: its connections and the replies it sends."""

    def __init__(self, metrics: Metrics, listener: str) -> None:
        self.metrics = metrics
        self.listener = listener
        self._connections = metrics.counted(metrics.connections, listener)
        self._sessions = metrics.counted(metrics.sessions, listener)
        # (code, enhanced code) -> its series: a reply of the catalogue is counted by both.
        self._replies: dict[tuple[int, str], _Count] = {}

    def connected(self) -> None:
        self._connections.value += 1

    def session_opened(self) -> None:
        self._sessions.value += 1

    def session_closed(self) -> None:
        self._sessions.value -= 1

    def replied(self, code: int, enhanced: str) -> None:
        """Count one reply of the catalogue (its codes as they are sent)."""
        series = self._replies.get((code, enhanced))
        if series is None:
            shown = enhanced if _ENHANCED.match(enhanced) else ""
            series = self._replies[code, enhanced] = self.metrics.counted(
                self.metrics.smtp_replies, self.listener, f"{code // 100}xx", str(code), shown
            )
        series.value += 1

    def reply(self, status: str) -> None:
        """Count one SMTP reply as sent (its first line; continuation lines are not counted)."""
        code = status[:3]
        if not code.isdigit() or (len(status) > 3 and status[3] == "-" and "\r\n" not in status):
            return
        head = status[4:].split(" ", 1)[0]
        self.replied(int(code), head if _ENHANCED.match(head) else "")


class Metrics:
    """The node's registry and every metric it exports."""

    def __init__(self) -> None:
        self.multiprocess = _multiprocess_dir()
        r = self.registry = CollectorRegistry()
        self.connections = Counter(
            "mailspec_connections", "Connections accepted, per listener", ["listener"], registry=r
        )
        self.sessions = Gauge(
            "mailspec_sessions",
            "Sessions open now, per listener",
            ["listener"],
            registry=r,
            multiprocess_mode="livesum",  # the node's: every live worker's, added
        )
        self.smtp_replies = Counter(
            "mailspec_smtp_replies",
            "SMTP replies sent, by listener, class, code and enhanced code (RFC 3463)",
            ["listener", "class", "code", "enhanced"],
            registry=r,
        )
        self.refusals = Counter(
            "mailspec_refusals",
            "Transactions refused by a check, by check, stage and reason",
            ["check", "stage", "reason"],
            registry=r,
        )
        self.delivery_attempts = Counter(
            "mailspec_delivery_attempts",
            "Delivery attempts per recipient, by destination (local, remote) and outcome",
            ["destination", "outcome"],
            registry=r,
        )
        self.accept_to_mailbox = Histogram(
            "mailspec_accept_to_mailbox_seconds",
            "From the 250 that accepted a message to its delivery into a local mailbox",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.accept_to_remote = Histogram(
            "mailspec_accept_to_remote_seconds",
            "From the 250 that accepted a message to a remote MX's acceptance of it",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "mailspec_auth_failures", "Failed logins, by service", ["service"], registry=r
        )
        self.lockouts = Counter(
            "mailspec_auth_lockouts",
            "Lockouts after failed logins, by scope (account, client)",
            ["scope"],
            registry=r,
        )
        self.check_duration = Histogram(
            "mailspec_check_duration_seconds",
            "Time a check took on one stage of a transaction (spf, dkim, arc and dmarc: each "
            "mechanism within sender-authentication)",
            ["check", "stage"],
            buckets=_CHECK_BUCKETS,
            registry=r,
        )
        # Every series counted so far, by metric and labels: what a publish walks.
        self._counts: dict[tuple[int, tuple[str, ...]], _Count] = {}
        self._checks: dict[tuple[str, str], _Observed] = {}  # check_duration's, by labels
        self._to_mailbox = _Observed(self.accept_to_mailbox)
        self._to_remote = _Observed(self.accept_to_remote)
        self._queue = _Queue()
        self._publisher: _Publisher | None = None
        if self.multiprocess is None:
            r.register(self._queue)
            self._rendered = r
        else:
            # Every worker's files, and the spool (the node's, read once per scrape).
            self._rendered = CollectorRegistry()
            MultiProcessCollector(self._rendered, path=str(self.multiprocess))  # type: ignore[no-untyped-call]
            self._rendered.register(self._queue)
            self._publisher = _publisher_for(self.multiprocess)
            self._publisher.metrics.add(self)
        # Present from the start: a dashboard sees 0, not nothing.
        for destination in ("local", "remote"):
            for outcome in ("delivered", "deferred", "bounced"):
                self.delivery_attempts.labels(destination, outcome)

    def listener(self, name: str) -> ListenerMetrics:
        self.connections.labels(name)
        return ListenerMetrics(self, name)

    def watch_queue(self, view: QueueView) -> None:
        self._queue.view = view

    def refused(self, check: str, stage: str, reason: str) -> None:
        self.counted(self.refusals, check, stage, reason).value += 1

    def delivery(self, destination: str, outcome: str, seconds: float | None = None) -> None:
        """One attempt for one recipient; a delivery records how long after acceptance."""
        self.counted(self.delivery_attempts, destination, outcome).value += 1
        if outcome == "delivered" and seconds is not None:
            hist = self._to_mailbox if destination == "local" else self._to_remote
            hist.observe(max(0.0, seconds))

    def checked(self, check: str, stage: str, seconds: float) -> None:
        self._check(check, stage).observe(max(0.0, seconds))

    def counted(self, metric: Counter | Gauge, *labels: str) -> _Count:
        """The series ``metric.labels(*labels)`` is counted in, made once: the library's
        look-up costs more than the count itself."""
        key = (id(metric), labels)
        found = self._counts.get(key)
        if found is None:
            found = self._counts[key] = _Count(metric.labels(*labels))
        return found

    def _check(self, check: str, stage: str) -> _Observed:
        found = self._checks.get((check, stage))
        if found is None:
            found = self._checks[check, stage] = _Observed(self.check_duration.labels(check, stage))
        return found

    def timed(self, check: str, stage: str) -> _Timed:
        """Observe how long the block took (when it ends without an exception)."""
        return _Timed(self._checks.get((check, stage)) or self._check(check, stage))

    def auth_failed(self, service: str) -> None:
        self.counted(self.auth_failures, service).value += 1

    def locked_out(self, scope: str) -> None:
        self.counted(self.lockouts, scope).value += 1

    def _publish(self) -> None:
        """Hand every series' news to the library (call with :data:`_PUBLISHING` held)."""
        for count in list(self._counts.values()):
            count.publish()
        for observed in [self._to_mailbox, self._to_remote, *list(self._checks.values())]:
            observed.publish()

    def publish(self) -> None:
        """What was counted so far, into the library's metrics (this worker's files)."""
        if self._publisher is not None:
            self._publisher.publish()
        else:
            with _PUBLISHING:
                self._publish()

    def close(self) -> None:
        """The node stops: a last publish (a worker ends with os._exit: no atexit)."""
        self.publish()

    def render(self) -> bytes:
        """The registry in the Prometheus text format: every worker's counts up to now."""
        if self.multiprocess is not None:
            own = self._publisher.fifo if self._publisher is not None else None
            _gather(self.multiprocess, own)
        self.publish()
        return generate_latest(self._rendered)
