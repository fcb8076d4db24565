"""The node's Prometheus metrics: one registry per node, counted where things happen.

The front ends, the policy chain and the queue runner are each handed the node's
:class:`Metrics` (or a listener's :class:`ListenerMetrics`) and count in one place each:
where a reply is sent, where a check refuses or returns, where a delivery attempt is
recorded. The web listener only renders the registry. Each node (each
:class:`~reference.app.App`) has its own registry, so several nodes in one test process
never add up each other's counts.

A node that runs several worker processes uses prometheus_client's multiprocess mode: the
process that starts the workers calls :func:`prepare_workers` (a fresh folder under
``data_dir``, and the environment each worker starts with: ``PROMETHEUS_MULTIPROC_DIR``,
which the library reads when it is imported), and :func:`worker_exited` for each worker
that ends. Each worker's counts then go to its own files in that folder, and /metrics in
any worker sums every worker's. In that mode all metrics of a process are the node's: a
process is a worker of one node.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "LANES",
    "MULTIPROC_ENV",
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

M = TypeVar("M", Counter, Gauge, Histogram)

# (lane, messages, age of the oldest in seconds or None) for every lane, read at scrape time.
QueueView = Callable[[], Sequence[tuple[str, int, float | None]]]

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
# Delivery in milliseconds on one node, minutes behind a slow receiver or a retry.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)
# A check answers in microseconds (a look-up in memory) to seconds (DNS, clamd, a big body).
_CHECK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


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
    """A worker ended: its open sessions no longer count (its counters still do)."""
    mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def _multiprocess_dir() -> Path | None:
    """The workers' folder when this process is one of a node's workers, else None."""
    where = os.environ.get(MULTIPROC_ENV)
    if not where:
        return None
    if values.ValueClass is values.MutexValue:
        # Set after prometheus_client was imported: its counts would stay in this process.
        raise RuntimeError(f"{MULTIPROC_ENV} must be in the environment the process starts with")
    return Path(where)


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

    __slots__ = ("histogram", "start")

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.start = 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.histogram.observe(max(0.0, time.perf_counter() - self.start))


class ListenerMetrics:
    """What one listener counts: its connections and the replies it sends."""

    def __init__(self, metrics: Metrics, listener: str) -> None:
        self.metrics = metrics
        self.listener = listener

    def connected(self) -> None:
        self.metrics.connections.labels(self.listener).inc()

    def session_opened(self) -> None:
        self.metrics.sessions.labels(self.listener).inc()

    def session_closed(self) -> None:
        self.metrics.sessions.labels(self.listener).dec()

    def reply(self, status: str) -> None:
        """Count one SMTP reply as sent (its first line; continuation lines are not counted)."""
        code = status[:3]
        if not code.isdigit() or (len(status) > 3 and status[3] == "-" and "\r\n" not in status):
            return
        head = status[4:].split(" ", 1)[0]
        enhanced = head if _ENHANCED.match(head) else ""
        self.metrics.child(
            self.metrics.smtp_replies, self.listener, f"{code[0]}xx", code, enhanced
        ).inc()


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
        self._children: dict[tuple[int, tuple[str, ...]], object] = {}
        self._queue = _Queue()
        if self.multiprocess is None:
            r.register(self._queue)
            self._rendered = r
        else:
            # Every worker's files, and the spool (the node's, read once per scrape).
            self._rendered = CollectorRegistry()
            MultiProcessCollector(self._rendered, path=str(self.multiprocess))  # type: ignore[no-untyped-call]
            self._rendered.register(self._queue)
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
        self.refusals.labels(check, stage, reason).inc()

    def delivery(self, destination: str, outcome: str, seconds: float | None = None) -> None:
        """One attempt for one recipient; a delivery records how long after acceptance."""
        self.delivery_attempts.labels(destination, outcome).inc()
        if outcome == "delivered" and seconds is not None:
            hist = self.accept_to_mailbox if destination == "local" else self.accept_to_remote
            hist.observe(max(0.0, seconds))

    def checked(self, check: str, stage: str, seconds: float) -> None:
        self.child(self.check_duration, check, stage).observe(max(0.0, seconds))

    def child(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, kept: a message counts some fifty times (every check
        at every stage), and the library's look-up costs more than the count itself."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found  # type: ignore[return-value]

    def timed(self, check: str, stage: str) -> _Timed:
        """Observe how long the block took (when it ends without an exception)."""
        return _Timed(self.child(self.check_duration, check, stage))

    def auth_failed(self, service: str) -> None:
        self.auth_failures.labels(service).inc()

    def locked_out(self, scope: str) -> None:
        self.lockouts.labels(scope).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self._rendered)
