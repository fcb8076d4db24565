"""A reference node in a background thread, for tests, scenarios and the conformance suite."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference import config as config_mod
from reference.app import App
from reference.auth.keys import SigningKey
from reference.clock import ManualClock, RealClock
from reference.config import LISTENERS
from reference.directory import Directory
from reference.mailbox import MailStore
from reference.spool import Spool
from reference.workers import Worker, bind, pipes

# Starting and stopping real processes takes real time: these deadlines use the real clock.
_REAL = RealClock()


WORKERS_ENV = "MAILSPEC_TEST_WORKERS"


@dataclass
class _Run:
    """One worker of a :class:`ReferenceServer`: its loop, thread and App."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread | None = None
    stopped: asyncio.Event | None = None
    app: App | None = None


class ReferenceServer:
    """Runs :class:`App` on its own event loop; every listener on 127.0.0.1, port 0."""

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: ManualClock | None = None,
        nameservers: list[str] | None = None,
        overrides: dict[str, Any] | None = None,
        hostname: str = "mail.example.test",
        workers: int | None = None,
    ) -> None:
        self.clock = clock or ManualClock()
        settings: dict[str, Any] = {f"listen.{name}": "127.0.0.1:0" for name in LISTENERS}
        settings["server.hostname"] = hostname
        # Tests never ask the system resolver: without nameservers, an empty fake DNS
        # (every name NXDOMAIN) stands in for the internet.
        self._own_dns: Any = None
        if nameservers is None:
            from fakes.dns import FakeDNS

            self._own_dns = FakeDNS().start()
            nameservers = [self._own_dns.nameserver]
        settings["dns.nameservers"] = list(nameservers)
        settings.update(overrides or {})
        self._data_dir, self._settings = data_dir, settings
        self.config = config_mod.load(None, data_dir=str(data_dir), overrides=settings)
        self.hostname = self.config.server.hostname
        # Several workers (server.workers) run as threads here, each an App with its own
        # event loop on the shared sockets, as the processes of a node do (on one manual
        # clock); MAILSPEC_TEST_WORKERS runs every test so.
        self.workers = workers or int(os.environ.get(WORKERS_ENV) or 1)
        self._runs: list[_Run] = []
        self._sockets: dict[str, socket.socket] = {}
        self._pipe: tuple[int, int] = (-1, -1)
        self._bells: list[tuple[int, int]] = []

    # -- lifecycle
    def start(self) -> ReferenceServer:
        if self.workers > 1:
            # As the supervisor of `mailspec serve` does: the sockets bound once, the spool
            # recovered once, a pipe for the others' queue ids to the primary's runner.
            self._sockets = bind(self.config)
            Spool(self.config.spool_path, self.clock)
            [self._pipe] = pipes(1)
            self._bells = pipes(self.workers)
        try:
            for index in range(self.workers):
                # Each its own copy of the sockets (a process has its own descriptors):
                # closing its servers closes only those.
                own = {name: sock.dup() for name, sock in self._sockets.items()}
                worker = (
                    Worker(
                        index, self.workers, own, self._pipe[0], self._pipe[1], bells=self._bells
                    )
                    if self.workers > 1
                    else None
                )
                self._runs.append(self._start(worker))
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, worker: Worker | None) -> _Run:
        """One App on its own event loop in its own thread."""
        started: Future[App] = Future()
        run = _Run(asyncio.new_event_loop())

        def main() -> None:
            asyncio.set_event_loop(run.loop)
            try:
                run.loop.run_until_complete(self._main(started, worker, run))
            except asyncio.CancelledError:
                pass  # crashed (restart): nothing ran after the cancellation
            finally:
                run.loop.close()

        name = "reference" if worker is None else f"reference-w{worker.index}"
        run.thread = threading.Thread(target=main, name=name, daemon=True)
        run.thread.start()
        run.app = started.result(timeout=30)
        return run

    async def _main(self, started: Future[App], worker: Worker | None, run: _Run) -> None:
        run.stopped = asyncio.Event()
        try:
            app = App(self.config, self.clock, worker=worker)
            await app.start()
        except BaseException as e:
            started.set_exception(e)
            return
        started.set_result(app)
        await run.stopped.wait()
        await app.stop(grace=5.0)

    def stop(self) -> None:
        for run in reversed(self._runs):  # the primary last: it delivers what they took
            if run.stopped is not None and run.thread is not None:
                run.loop.call_soon_threadsafe(run.stopped.set)
                run.thread.join(timeout=30)
        self._runs.clear()
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        for fd in (*self._pipe, *(fd for bell in self._bells for fd in bell)):
            if fd >= 0:
                os.close(fd)
        self._pipe, self._bells = (-1, -1), []
        if self._own_dns is not None:
            self._own_dns.stop()
            self._own_dns = None

    def restart(self) -> None:
        """Crash and start again on the same data_dir and ports, as `kill -9` and a restart
        would: no grace, nothing flushed; only what is on disk survives."""
        ports = {name: ep.port for name, ep in self.app.endpoints.items()}
        for run in reversed(self._runs):
            asyncio.run_coroutine_threadsafe(_crash(run.app), run.loop)
            assert run.thread is not None
            run.thread.join(timeout=30)
        self._runs.clear()
        if self.workers == 1:
            # Ports were 0 (any): the new App must listen where clients know to reconnect.
            self._settings.update({f"listen.{n}": f"127.0.0.1:{p}" for n, p in ports.items()})
            self.config = config_mod.load(
                None, data_dir=str(self._data_dir), overrides=self._settings
            )
            self.start()
            return
        # Several workers share the sockets this object bound: they stay open, as a
        # supervisor's do when its worker processes die; the spool is recovered once.
        Spool(self.config.spool_path, self.clock)
        for index in range(self.workers):
            own = {name: sock.dup() for name, sock in self._sockets.items()}
            worker = Worker(
                index, self.workers, own, self._pipe[0], self._pipe[1], bells=self._bells
            )
            self._runs.append(self._start(worker))

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use
    @property
    def app(self) -> App:
        """The App of the only worker, or of the primary (it runs the queue)."""
        assert self._runs and self._runs[0].app is not None, "not started"
        return self._runs[0].app

    @property
    def apps(self) -> list[App]:
        """Every worker's App: each delivers the mail it accepted itself."""
        return [run.app for run in self._runs if run.app is not None]

    @property
    def endpoints(self) -> dict[str, str]:
        return {name: ep.url for name, ep in self.app.endpoints.items()}

    def port(self, name: str) -> int:
        return self.app.endpoints[name].port

    @property
    def cafile(self) -> Path:
        return self.app.cert_path

    @property
    def directory(self) -> Directory:
        return self.app.directory

    def add_domain(self, name: str) -> None:
        self.directory.add_domain(name)

    def add_user(self, address: str, password: str) -> None:
        self.directory.add_user(address, password)

    def set_quota(
        self, address: str, *, bytes: int | None = None, messages: int | None = None
    ) -> None:
        self.directory.set_quota(address, bytes=bytes, messages=messages)

    def disable_user(self, address: str) -> None:
        self.directory.set_enabled(address, False)

    def add_access(self, scope: str, kind: str, pattern: str, action: str, text: str = "") -> None:
        """An access-list rule ("" scope: the platform's; else a domain's)."""
        self.directory.add_access(scope, kind, pattern, action, text)

    def remove_access(self, scope: str, kind: str, pattern: str) -> None:
        self.directory.remove_access(scope, kind, pattern)

    def create_cos(self, name: str, **settings: object) -> None:
        """A class of service (settings as ClassOfService's fields)."""
        self.directory.create_cos(name, **settings)

    def assign_cos(self, target: str, name: str | None) -> None:
        """Give an account or a domain a class (None: take it away)."""
        self.directory.assign_cos(target, name)

    def delete_cos(self, name: str) -> None:
        self.directory.delete_cos(name)

    def add_alias(self, alias: str, *targets: str) -> None:
        self.directory.add_alias(alias, *targets)

    # Addresses and forwarding, for conformance/tests/test_addresses.py and test_forwarding.py.
    def set_catchall(self, domain: str, *targets: str) -> None:
        self.directory.add_alias("@" + domain, *targets)

    def add_alias_domain(self, name: str, target: str) -> None:
        self.directory.add_alias_domain(name, target)

    def set_forward(self, address: str, targets: list[str], *, keep: bool) -> None:
        self.directory.set_forward(address, targets, keep=keep)

    def delete_user(self, address: str, archive: str | None = None) -> str | None:
        """Delete an account; its mail moves to ``archive`` (the folder is returned), or is
        removed (None), through the service layer the CLI, the API and the panel call."""
        retired = self.app.admin.delete_account(
            address, archive_to=archive, remove_mail=archive is None
        )
        return retired.archived_in

    # Lists and archive accounts, for conformance/tests/test_lists.py and test_archive.py.
    def create_list(
        self,
        address: str,
        *,
        owner: str,
        name: str = "",
        policy: str = "public",
        members: Sequence[str] = (),
    ) -> None:
        self.directory.create_list(address, owner=owner, name=name, policy=policy)
        if members:
            self.directory.add_members(address, *members)

    def add_list_members(self, address: str, *members: str) -> None:
        self.directory.add_members(address, *members)

    def set_archive(self, scope: str, archive: str) -> None:
        self.directory.set_archive(scope, archive)

    # Spam settings and sender lists, for conformance/tests/test_inbound_spam_settings.py.
    def set_spam_thresholds(
        self, scope: str, *, reject: float | None = None, junk: float | None = None
    ) -> None:
        self.directory.set_spam_settings(scope, reject_score=reject, junk_score=junk)

    def clear_spam_thresholds(self, scope: str) -> None:
        self.directory.clear_spam_settings(scope)

    def allow_sender(self, address: str, pattern: str) -> None:
        self.directory.set_sender_list(address, "allow", pattern)

    def block_sender(self, address: str, pattern: str) -> None:
        self.directory.set_sender_list(address, "block", pattern)

    def unlist_sender(self, address: str, pattern: str) -> None:
        self.directory.remove_sender_list(address, pattern)

    @property
    def arc_key(self) -> SigningKey:
        """The key forwarded mail is ARC-sealed with (its record goes in the fake DNS)."""
        return self.app.arc_key

    @property
    def store(self) -> MailStore:
        return self.app.store

    def mailbox_messages(self, address: str, folder: str = "INBOX") -> list[bytes]:
        with self.store.open(address, folder) as box:
            return [box.read(m.uid) for m in box.messages()]

    def dmarc_reports(self, domain: str) -> list[dict[str, Any]]:
        """DMARC aggregate reports received about ``domain`` (`mailspec dmarc reports --json`)."""
        return [r.to_json() for r in self.app.dmarc_store.received(domain)]

    def dmarc_sent(self, domain: str) -> list[dict[str, Any]]:
        """DMARC aggregate reports sent about ``domain`` (`mailspec dmarc sent --json`)."""
        return [r.to_json() for r in self.app.dmarc_store.sent([domain])]

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop (e.g. to wait for the queue to drain)."""
        assert self._runs, "not started"
        return asyncio.run_coroutine_threadsafe(coro, self._runs[0].loop).result(timeout)

    def wait_delivered(self, timeout: float = 10.0) -> None:
        """Block until the spool holds no message that is due now."""

        async def drained() -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            empty = 0
            while True:
                due = await asyncio.to_thread(self.app.spool.due, self.clock.now())
                # Twice in a row: a listing can miss a bounce written while the message it
                # is about was being removed (the listing saw the message, which was gone
                # when read). Mail is always queued before what caused it is removed, so a
                # second listing, begun after that removal, sees it.
                empty = 0 if due else empty + 1
                if empty == 2:
                    return
                if loop.time() > deadline:
                    raise TimeoutError(f"still queued: {[e.qid for e in due]}")
                await asyncio.sleep(0.02)

        self.run(drained(), timeout + 5)


async def _crash(app: App | None) -> None:
    """Close the listening sockets (so a new App can bind them) and cancel every task: what
    was only in memory is gone, as in a crash."""
    if app is not None:
        for server in app.servers:
            server.close()
        app.spool.close()  # the claims on its messages end with the process
    this = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not this:
            task.cancel()


# -- `mailspec serve` as a real process (scenarios, load runs)

MAILSPEC = [sys.executable, "-m", "reference.cli"]


def mailspec(*args: str, data_dir: Path, config: Path | None = None) -> str:
    """Run a mailspec command as a user would; raise with its stderr if it fails."""
    cmd = [*MAILSPEC, *args, "--data-dir", str(data_dir)]
    if config:
        cmd += ["--config", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"mailspec {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def write_config(path: Path, hostname: str = "mail.example.test", **sections: Any) -> Path:
    """A config with every listener on 127.0.0.1 port 0, plus ``sections`` as TOML tables."""
    tables: dict[str, dict[str, Any]] = {
        # One process unless a test asks for more (tests/test_workers.py runs two), or
        # MAILSPEC_TEST_WORKERS says how many (tox -e workers2).
        "server": {"hostname": hostname, "workers": int(os.environ.get(WORKERS_ENV) or 1)},
        "listen": {name: "127.0.0.1:0" for name in LISTENERS},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    out = []
    for name, values in tables.items():
        out.append(f"[{name}]")
        out += [f"{k} = {config_mod._toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(out) + "\n")
    return path


@dataclass
class ServedProcess:
    """A running `mailspec serve` process and the endpoints it printed."""

    proc: subprocess.Popen[str]
    data_dir: Path
    config: Path
    ports: dict[str, int] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    startup_seconds: float = 0.0

    @property
    def cafile(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def serve_process(
    data_dir: Path, config: Path, timeout: float = 60.0, *, options_first: bool = False
) -> ServedProcess:
    """Start `mailspec serve` and read the endpoint lines it prints.

    The deadline is generous: a node of several workers (MAILSPEC_TEST_WORKERS) starts
    more processes, and on a busy 2-core machine two such nodes started together took
    over 20 s."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = _REAL.monotonic()
    options = ["--config", str(config), "--data-dir", str(data_dir)]
    proc = subprocess.Popen(
        [*MAILSPEC, *options, "serve"] if options_first else [*MAILSPEC, "serve", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    served = ServedProcess(proc, data_dir, config)
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"mailspec serve exited early: {''.join(served.output)}{err}")
        served.output.append(line)
        m = re.match(r"\s+(\w+)\s+\w+://[\d.]+:(\d+)", line)
        if m and m.group(1) in LISTENERS:
            served.ports[m.group(1)] = int(m.group(2))
        if line.startswith("Stop with"):
            break
        if _REAL.monotonic() - t0 > timeout:
            proc.kill()
            raise RuntimeError("mailspec serve did not start in time")
    served.startup_seconds = _REAL.monotonic() - t0
    return served


# -- a real clamd on loopback, with the project's own signatures


SIGNATURES = Path(__file__).parent / "scan" / "test-signatures.ndb"
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
VIRUS_MARKER = b"MAILSPEC-TEST-VIRUS-MARKER-7f3a"

# Names the clamd binary to run instead of looking for one; "none" runs without clamd
# (how a machine without it is reproduced on one that has it).
CLAMD_ENV = "MAILSPEC_CLAMD"
# Debian installs clamd in /usr/sbin, which is not on an ordinary user's PATH.
CLAMD_FALLBACKS = ("/usr/sbin/clamd",)
CLAMD_PACKAGE = "Debian: apt-get install clamav-daemon"


class ClamdNotFound(RuntimeError):
    """No clamd binary to run; the message says where it was looked for and what to install."""


def find_clamd(
    environ: Mapping[str, str] | None = None, fallbacks: Sequence[str] = CLAMD_FALLBACKS
) -> str:
    """The clamd binary: ``$MAILSPEC_CLAMD``, else ``clamd`` on PATH, else a fallback path."""
    env = os.environ if environ is None else environ
    chosen = env.get(CLAMD_ENV, "").strip()
    if chosen.lower() == "none":
        raise ClamdNotFound(f"{CLAMD_ENV}=none: running without clamd")
    if chosen:
        if not os.access(chosen, os.X_OK) or not Path(chosen).is_file():
            raise ClamdNotFound(f"{CLAMD_ENV}={chosen}: no such executable ({CLAMD_PACKAGE})")
        return chosen
    found = shutil.which("clamd", path=env.get("PATH", os.defpath))
    if found:
        return found
    for path in fallbacks:
        if os.access(path, os.X_OK) and Path(path).is_file():
            return path
    where = " or ".join(["PATH", *fallbacks])
    raise ClamdNotFound(f"clamd is not installed: not found on {where} ({CLAMD_PACKAGE})")


class ClamdServer:
    """clamd with a database of two signatures (EICAR and a marker string): no download."""

    def __init__(self, workdir: Path, binary: str | None = None, port: int = 0) -> None:
        self.workdir = workdir
        self.binary = binary
        self.port = port  # 0: a free one
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ClamdServer:
        binary = self.binary or find_clamd()
        db = self.workdir / "db"
        db.mkdir(parents=True, exist_ok=True)
        shutil.copy(SIGNATURES, db / "mailspec.ndb")
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        conf = self.workdir / "clamd.conf"
        conf.write_text(
            "Foreground yes\n"
            f"DatabaseDirectory {db}\n"
            f"TCPSocket {self.port}\nTCPAddr 127.0.0.1\n"
            f"LogFile {self.workdir / 'clamd.log'}\n"
            "StreamMaxLength 30M\nMaxThreads 4\nSelfCheck 0\n"
            # Running as root in CI: clamd must not switch to a clamav user it cannot use.
            "User root\n"
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = _REAL.monotonic() + timeout
        while _REAL.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
                    c.sendall(b"zPING\0")
                    if c.recv(16).startswith(b"PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        log = (
            (self.workdir / "clamd.log").read_text()
            if (self.workdir / "clamd.log").exists()
            else ""
        )
        self.stop()
        raise RuntimeError(f"clamd did not start: {log[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def __enter__(self) -> ClamdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
