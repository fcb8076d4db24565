"""`server.workers`: one node as several processes sharing its listeners, one queue runner.

A small supervisor (no event loop, no threads, so forking it is safe) binds every listening
socket once, recovers the spool once, then forks the workers; each inherits the sockets
and runs its own event loop and its own :class:`~reference.app.App`. The kernel hands each
new connection to whichever worker accepts it first. Nothing a check decides lives in one
worker's memory: greylists, rate windows, lockouts and Bayes tokens are in the state
stores (SQLite under data_dir by default, Redis across nodes), mail in the spool.

Each worker starts the delivery of the mail it accepts itself, from memory, under a claim
on the message (a flock the kernel drops if the worker dies; see ``Spool.claim``), so the
delivery of a node runs on every core. Worker 0, the primary, also runs what a node must
run once: the queue runner (retries, the mail a dead worker left, flush, hold and release,
DSNs, the spool's lease and takeover; the other workers hand it what they do not deliver
through a pipe, and the supervisor wakes it when a worker dies), the DMARC report task,
the web listener (the control plane: the admin API's flush and release wake the runner
in the same process, and /readyz probes the node) and ManageSieve (a user's script limit
is checked and written under an in-process lock).

The supervisor forwards SIGUSR1 to the primary, restarts a worker that dies, and on
SIGTERM or SIGINT stops every worker and waits for them. A worker dies with it (Linux
PR_SET_PDEATHSIG), so a supervisor killed outright leaves no orphan holding the ports.

For per-process files (e.g. prometheus_client's multiprocess directory), each worker has
its index in the environment (``MAILSPEC_WORKER``, 0 is the primary, with the count in
``MAILSPEC_WORKERS``) and :func:`run_dir` is a directory under data_dir the supervisor
empties at start; :meth:`Supervisor.exited` is called with the pid of each worker that ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reference.clock import RealClock
from reference.config import LISTENERS, Config
from reference.log import event, name_worker
from reference.metrics import prepare_workers, worker_exited
from reference.spool import Board, Spool

__all__ = [
    "PRIMARY_ONLY",
    "WORKER_ENV",
    "StartupError",
    "Supervisor",
    "Worker",
    "bind",
    "lease_board",
    "run_dir",
    "worker_count",
]

log = logging.getLogger("mailspec")

WORKER_ENV = "MAILSPEC_WORKER"
COUNT_ENV = "MAILSPEC_WORKERS"
# Listeners only the primary serves (see the module's docstring for why).
PRIMARY_ONLY = ("web", "managesieve")

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGUSR1)
_START_TIMEOUT = 60.0  # a worker on a busy 2-core machine
_STOP_TIMEOUT = 20.0  # the App's own grace (10 s) and then some
_RESTART_DELAY = 1.0  # a worker that keeps dying does not spin
_PR_SET_PDEATHSIG = 1

# A supervisor of real processes: its deadlines are real time.
_REAL = RealClock()


def worker_count(cfg: Config) -> int:
    """``server.workers``, with 0 meaning one per core."""
    return cfg.server.workers or os.cpu_count() or 1


def run_dir(cfg: Config) -> Path:
    """A directory for the workers' per-process files, emptied when the supervisor starts;
    next to the pid file, so each node of a cluster (sharing data_dir) has its own."""
    return cfg.pid_path.parent / "run"


def lease_board(cfg: Config) -> Path:
    """Where the primary posts the node's spool lease for the other workers (see
    :class:`~reference.spool.Board`)."""
    return run_dir(cfg) / "lease"


class StartupError(RuntimeError):
    """The server cannot start; the message says what to change."""


@dataclass
class Worker:
    """What one worker process is given: its index, the shared sockets, the wake-up pipe."""

    index: int
    count: int
    sockets: dict[str, socket.socket]
    wake_read: int  # the primary reads the queue ids the others accepted here
    wake_write: int
    ready_fd: int = -1  # where it tells the supervisor it is serving
    # One pipe per worker: a mailbox path written to worker i's tells its IMAP IDLE
    # sessions that another worker changed that mailbox.
    bells: Sequence[tuple[int, int]] = ()

    @property
    def primary(self) -> bool:
        return self.index == 0

    def serves(self, listener: str) -> bool:
        return self.primary or listener not in PRIMARY_ONLY

    def ready(self) -> None:
        """Tell the supervisor this worker is serving."""
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, b"ok\n")

    @property
    def bell(self) -> int:
        """Where this worker hears of the others' mailbox changes."""
        return self.bells[self.index][0]

    def ring_others(self, path: Path) -> None:
        """Tell every other worker that the mailbox at ``path`` changed (a lost message only
        delays the news until IDLE's next look)."""
        line = f"{path}\n".encode()
        for index, (_, write) in enumerate(self.bells):
            if index != self.index and len(line) <= select.PIPE_BUF:
                with contextlib.suppress(BlockingIOError, BrokenPipeError):
                    os.write(write, line)

    def wake(self, qid: str) -> None:
        """Tell the primary's queue runner about ``qid`` (one write, atomic under PIPE_BUF).

        A full pipe (the primary is stuck or restarting) loses only the hint: the runner
        reads the whole spool at start and at least every second while mail flows.
        """
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.wake_write, f"{qid}\n".encode())


def bind(cfg: Config) -> dict[str, socket.socket]:
    """A listening socket for every listener the node serves; a failure names the key."""
    sockets: dict[str, socket.socket] = {}
    try:
        for name in LISTENERS:
            if not cfg.serves(name):
                continue
            host, port = cfg.address(name)
            try:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.create_server((host, port), family=family, backlog=511)
                # Non-blocking for good: every worker's event loop accepts on it, and a
                # copy made blocking (socket.dup keeps the mode) would clear the flag that
                # all copies share, leaving a worker stuck in accept() after another won.
                sock.setblocking(False)
                sockets[name] = sock
            except OSError as e:
                why = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror
                raise StartupError(
                    f"listen.{name}: cannot listen on {host}:{port}: {why}"
                ) from None
    except BaseException:
        for s in sockets.values():
            s.close()
        raise
    return sockets


@dataclass
class Supervisor:
    """Forks ``count`` workers running ``serve(worker)`` and keeps them running until told."""

    cfg: Config
    count: int
    serve: Callable[[Worker], int]
    sockets: dict[str, socket.socket] = field(default_factory=dict)
    pids: dict[int, int] = field(default_factory=dict)  # pid -> worker index
    restarts: int = 0
    _wake: tuple[int, int] = (-1, -1)
    _ready: tuple[int, int] = (-1, -1)
    _parent: int = 0
    _bells: list[tuple[int, int]] = field(default_factory=list)
    stopping: bool = False

    def start(self) -> None:
        """Bind, recover the spool, fork every worker and wait until each is serving.

        Raises :class:`StartupError` when a worker cannot start.
        """

        # Signals are taken synchronously (sigtimedwait) by the supervisor; a worker
        # unblocks them again and handles them on its own loop.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        run = run_dir(self.cfg)
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True, exist_ok=True)
        # /metrics in the primary sums every worker's counts (prometheus_client's
        # multiprocess mode, one file per worker pid under the run directory).
        prepare_workers(self.metrics_dir, forking=True)
        self.sockets = bind(self.cfg)
        Spool(self.cfg.spool_path, _REAL)  # the one recovery, before any worker writes
        [self._wake] = pipes(1)
        self._ready = os.pipe()
        self._bells = pipes(self.count)
        self._parent = os.getpid()
        try:
            # The primary first, alone: it makes what a first start makes (certificate,
            # keys, databases), which the others then only open.
            for index in range(self.count):
                self._fork(index)
                self._await_ready(index)
        except BaseException:
            self.stop()
            raise

    def _fork(self, index: int) -> None:
        pid = os.fork()
        if pid:
            self.pids[pid] = index
            event(log, "worker.started", worker=index, pid=pid)
            return
        code = 1
        try:
            os.environ[WORKER_ENV] = str(index)
            os.environ[COUNT_ENV] = str(self.count)
            _die_with_parent(self._parent)
            name_worker(index)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            os.close(self._ready[0])
            worker = Worker(
                index, self.count, self.sockets, *self._wake, self._ready[1], self._bells
            )
            code = self.serve(worker)
        except BaseException as e:  # the worker's end, whatever it was
            code = 0 if isinstance(e, SystemExit) and not e.code else 1
            if not isinstance(e, (SystemExit, KeyboardInterrupt)):
                print(f"mailspec: worker {index}: {e!r}", file=sys.stderr)
        finally:
            logging.shutdown()
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _await_ready(self, index: int) -> None:
        deadline = _REAL.monotonic() + _START_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - _REAL.monotonic()
            if left <= 0:
                raise StartupError(f"worker {index} did not start within {_START_TIMEOUT:.0f}s")
            if signal.sigtimedwait([signal.SIGCHLD], 0) is not None or self._reap():
                raise StartupError(f"worker {index} stopped while starting")
            readable, _, _ = select.select([self._ready[0]], [], [], min(left, 0.1))
            if readable:
                line += os.read(self._ready[0], 1)

    def _reap(self) -> list[int]:
        """Collect the workers that ended; the indices they had."""
        ended = []
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            if index == 0 and self.cfg.state.url:
                # The lease died with the primary: the others stop delivering at once.
                Board(lease_board(self.cfg)).post(0.0)
            self.exited(pid)
            ended.append(index)
            code = os.waitstatus_to_exitcode(status)
            level = logging.INFO if self.stopping else logging.WARNING
            event(log, "worker.exited", level=level, worker=index, pid=pid, status=code)
        return ended

    @property
    def metrics_dir(self) -> Path:
        return run_dir(self.cfg) / "metrics"

    def exited(self, pid: int) -> None:
        """A worker ended: its open sessions leave /metrics (its counts stay)."""
        worker_exited(self.metrics_dir, pid)

    def primary_pid(self) -> int | None:
        return next((pid for pid, i in self.pids.items() if i == 0), None)

    def run(self) -> None:
        """Until SIGTERM or SIGINT: restart workers that die, forward SIGUSR1 to the primary."""
        waiting: list[int] = []  # worker indices to start again
        while True:
            info = signal.sigtimedwait(_SIGNALS, _RESTART_DELAY)
            if info is None:
                for index in waiting:
                    self.restarts += 1
                    self._fork(index)
                waiting = []
                self._drain_ready()
            elif info.si_signo in (signal.SIGTERM, signal.SIGINT):
                return
            elif info.si_signo == signal.SIGUSR1:
                pid = self.primary_pid()
                if pid is not None:
                    os.kill(pid, signal.SIGUSR1)
            else:
                ended = self._reap()
                waiting += ended
                pid = self.primary_pid()
                if pid is not None and ended and not self.stopping:
                    # The claims of the mail a dead worker was delivering died with it:
                    # the primary's runner looks at the spool now and delivers that mail.
                    os.kill(pid, signal.SIGUSR1)

    def _drain_ready(self) -> None:
        """Read what restarted workers said when they were up (the pipe must not fill)."""
        os.set_blocking(self._ready[0], False)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._ready[0], 4096):
                pass

    def stop(self) -> None:
        """SIGTERM every worker, wait for them (then SIGKILL), close the shared sockets."""
        self.stopping = True
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = _REAL.monotonic() + _STOP_TIMEOUT
        while self.pids and _REAL.monotonic() < deadline:
            self._reap()
            if self.pids:
                signal.sigtimedwait([signal.SIGCHLD], 0.2)
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.pids.pop(pid, None)
        for s in self.sockets.values():
            s.close()
        for fd in (*self._wake, *self._ready, *(fd for bell in self._bells for fd in bell)):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        shutil.rmtree(run_dir(self.cfg), ignore_errors=True)


def pipes(count: int) -> list[tuple[int, int]]:
    """``count`` pipes whose write ends never block (a full pipe loses a hint, no more)."""
    out = []
    for _ in range(count):
        read, write = os.pipe()
        os.set_blocking(write, False)
        out.append((read, write))
    return out


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this worker when the supervisor dies (no orphan keeps the ports)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the supervisor died before the line above
        os._exit(1)
