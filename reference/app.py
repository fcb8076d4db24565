"""The composition root: builds clock, config, directory, spool, policy and listeners once."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import dns.asyncresolver

from reference import tls
from reference.assembly import Parts, check_chain
from reference.auth import Lookup, MemoryRecorder
from reference.auth.dkim import DomainSigner
from reference.auth.keys import KeyStore
from reference.auth.reports import AggregateReporter, DmarcStore, ReportIntake
from reference.auth.srs import Srs, load_secrets
from reference.clock import Clock, RealClock
from reference.config import LISTENERS, Config, helo_names
from reference.credentials import TemporarilyUnavailable
from reference.delivery import Forwarder, LocalDelivery, QueueRunner
from reference.delivery.filters import SieveFilter
from reference.delivery.forward import ArcSealer
from reference.delivery.lists import ListDistributor
from reference.delivery.remote import MxResolver, Relay, SourcePool
from reference.directory import CachedDirectory, Directory
from reference.dns import make_resolver
from reference.imap import searchable_text
from reference.imap.server import ImapServer
from reference.log import event
from reference.mailbox import MailStore, Quota
from reference.mailbox.feed import ChangeFeed
from reference.managesieve import ManageSieveServer
from reference.metrics import Metrics
from reference.policy import Policy, UsageCount
from reference.policy.spam import open_classifiers
from reference.pop3.server import Pop3Server
from reference.scan.bayes import Classifiers, junk_trainer
from reference.scan.clamd import ClamdClient
from reference.service import Admin, arc_key, sieve_replies, sieve_scripts
from reference.sieve import Limits
from reference.smtp.authlimit import AuthLimiter, LimitedAuthenticator
from reference.smtp.server import Listener
from reference.spool import Spool, SpoolLease
from reference.state import StateStore
from reference.state.redis import RedisStore
from reference.state.sqlite import SqliteStore
from reference.usage import UsageStore
from reference.workers import StartupError, Worker, lease_board

log = logging.getLogger("mailspec")

# What each listener speaks, for the endpoint URLs printed at start.
SCHEMES = {
    "mx": "smtp",
    "submission": "smtp",
    "submissions": "smtps",
    "imap": "imap",
    "imaps": "imaps",
    "pop3": "pop3",
    "pop3s": "pop3s",
    "managesieve": "sieve",  # RFC 5804 3: sieve://host:port
    "web": "https",
}


class StreamHandler(Protocol):
    def __call__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool
    ) -> Awaitable[None]: ...


Starter = Callable[[str, int, socket.socket | None], Awaitable[asyncio.Server]]


@dataclass(frozen=True)
class Endpoint:
    name: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{SCHEMES[self.name]}://{host}:{self.port}"


def cert_path(cfg: Config) -> Path:
    """The node's certificate: tls.cert, else the self-signed one under data_dir."""
    return Path(cfg.tls.cert) if cfg.tls.cert else cfg.data_path / "tls" / "cert.pem"


def directory_path(cfg: Config) -> Path:
    """The embedded directory's SQLite file (whether or not ``directory.url`` names another)."""
    return cfg.data_path / "directory.sqlite3"


def directory_url(cfg: Config) -> Path | str:
    """Where the directory is: ``directory.url``, else the SQLite file under data_dir."""
    return cfg.directory.url or directory_path(cfg)


def mail_store(cfg: Config, directory: Directory, clock: Clock) -> MailStore:
    """The mailboxes under data_dir, each with its quota (the account's own, field by field
    over the platform's) and its text index."""
    default = Quota(cfg.mailbox.quota_bytes, cfg.mailbox.quota_messages)

    def quota(address: str) -> Quota:
        # The account's own quota, else its class of service's, else the platform's.
        own_bytes, own_messages = directory.quota(address)
        cos, _ = directory.effective_cos(address)
        if cos is not None:
            own_bytes = cos.quota_bytes if own_bytes is None else own_bytes
            own_messages = cos.quota_messages if own_messages is None else own_messages
        return Quota(
            default.bytes if own_bytes is None else own_bytes,
            default.messages if own_messages is None else own_messages,
        )

    # Delivery and APPEND keep each mailbox's text index (IMAP SEARCH BODY/TEXT).
    return MailStore(cfg.data_path / "mail", clock=clock, quota=quota, text_of=searchable_text)


def aggregate_reporter(
    cfg: Config,
    store: DmarcStore,
    spool: Spool,
    clock: Clock,
    resolver: dns.asyncresolver.Resolver,
    notify: Callable[[str], None] | None = None,
) -> AggregateReporter:
    """What sends DMARC aggregate reports: the server's daily task, `mailspec dmarc flush`."""
    return AggregateReporter(
        store,
        spool,
        clock,
        Lookup(resolver, clock),
        hostname=cfg.server.hostname,
        org_name=cfg.dmarc.org_name,
        report_from=cfg.dmarc_report_from,
        interval=cfg.dmarc.report_interval,
        notify=notify,
        keys=KeyStore(cfg.data_path / "dkim"),
        selector=cfg.auth.selector,
        algorithms=cfg.auth.sign_algorithms,
    )


class App:
    """One node running every role."""

    def __init__(
        self, cfg: Config, clock: Clock | None = None, *, worker: Worker | None = None
    ) -> None:
        self.cfg = cfg
        self.clock = clock or RealClock()
        # One of several processes of this node (server.workers), or the only one.
        self.worker = worker
        self.primary = worker is None or worker.primary
        data = cfg.data_path
        data.mkdir(parents=True, exist_ok=True)
        self.cert_path = cert_path(cfg)
        key_path = Path(cfg.tls.key) if cfg.tls.key else data / "tls" / "key.pem"
        if not cfg.tls.cert:
            tls.self_signed(cfg.server.hostname, self.cert_path, key_path)
        try:
            self.tls_context: ssl.SSLContext = tls.server_context(self.cert_path, key_path)
        except (OSError, ssl.SSLError) as e:
            raise StartupError(f"tls.cert/tls.key: cannot load {self.cert_path}: {e}") from e
        # The mail path asks it the same questions many times a message: answers are kept
        # until the database changes (in any process; an SQLite directory only).
        self.directory = CachedDirectory(directory_url(cfg), delimiter=cfg.addresses.delimiter)
        # Counted by the listeners, the checks and the queue runner; served at /metrics.
        self.metrics = Metrics()
        self.store = mail_store(cfg, self.directory, self.clock)
        # Nodes sharing Redis tell each other of mailbox changes: IDLE wakes on any node.
        self.feed = ChangeFeed(cfg.state.url, self.store) if cfg.state.url else None
        self.spool = Spool(
            cfg.spool_path, self.clock, shared=worker is not None and worker.count > 1
        )
        # Forwarded mail is ARC-sealed with the SRS domain's own RSA key (made at first start;
        # `mailspec dns records` prints its record).
        self.arc_key = arc_key(cfg)
        # Forwarded mail leaves with an SRS return path signed with secrets under data_dir.
        self.srs = Srs(
            load_secrets(data / "srs" / "secrets"),
            cfg.srs_domain,
            max_age_days=int(cfg.srs.max_age // 86400),
        )
        self.resolver = make_resolver(cfg)
        self.state: StateStore = (
            RedisStore(cfg.state.url) if cfg.state.url else SqliteStore(data / "state.sqlite3")
        )
        sub = cfg.submission
        self.auth_limiter = AuthLimiter(
            self.state,
            self.clock,
            max_failures=sub.auth_max_failures,
            max_failures_per_client=sub.auth_max_failures_per_client,
            window=cfg.submission.auth_window,
            lockout=cfg.submission.auth_lockout,
            delay=cfg.submission.auth_delay,
            delay_after=sub.auth_delay_after,
            max_delay=cfg.submission.auth_max_delay,
            ignore_networks=sub.auth_ignore_networks,
            metrics=self.metrics,
        )
        # DMARC aggregate reports: every evaluation is recorded in the store (or, with
        # dmarc.reports off, only kept in memory), and reports received are kept there too.
        self.dmarc_store = DmarcStore(data / "dmarc.sqlite3")
        self.dmarc_recorder: DmarcStore | MemoryRecorder = (
            self.dmarc_store if cfg.dmarc.reports else MemoryRecorder(limit=10_000)
        )
        # The token database the spam check reads and the IMAP Junk hook trains.
        self.bayes: Classifiers | None = (
            open_classifiers(
                cfg.state.url,
                data,
                min_spam=cfg.spam.bayes_min,
                min_ham=cfg.spam.bayes_min,
                user_min=cfg.spam.bayes_user_min,
            )
            if cfg.spam.enabled and cfg.spam.bayes
            else None
        )
        # Each account's Sieve scripts, and who had a vacation reply when.
        self.scripts = sieve_scripts(cfg)
        self.replies = sieve_replies(cfg)
        # Each account's usage per day (the submission's 250, local delivery, refusals).
        self.usage = UsageStore(data / "usage.sqlite3", self.clock)
        self.policy = Policy(
            check_chain(
                cfg,
                Parts(
                    self.clock,
                    self.resolver,
                    self.directory,
                    self.store,
                    self.spool,
                    self.state,
                    self.bayes,
                    self.dmarc_recorder,
                    self.srs,
                    self.scripts,
                ),
            ),
            self.metrics,
            UsageCount(self.usage, self.directory),
        )
        self.relay = Relay(
            hostname=cfg.server.hostname,
            mx=MxResolver(self.resolver),
            pool=SourcePool(cfg.relay.source_addresses),
            port=cfg.relay.port,
            smarthost=cfg.relay.smarthost.pair if cfg.relay.smarthost else None,
            reputation_retries=cfg.relay.reputation_retries,
            timeout=cfg.relay.timeout,
            helo_names=helo_names(cfg.relay.helo_names),
        )
        self.sieve = (
            SieveFilter(
                self.scripts,
                self.replies,
                self.spool,
                self.clock,
                hostname=cfg.server.hostname,
                addresses=self.directory.addresses_of,
                spam_threshold=cfg.spam.reject_score,
                limits=Limits(max_steps=cfg.sieve.max_steps, max_redirects=cfg.sieve.max_redirects),
                subaddress_delimiter=cfg.addresses.delimiter,
            )
            if cfg.sieve.enabled
            else None
        )
        # Forwarded mail and a list's copies are sealed alike; a list's copies are also
        # signed with the list domain's key, as submitted mail is with its author's.
        sealer = ArcSealer(self.arc_key, cfg.server.hostname, self.clock)
        self.forwarder = Forwarder(
            self.spool,
            self.clock,
            self.srs,
            is_local=self.directory.is_local_domain,
            sealer=sealer,
        )
        self.lists = ListDistributor(
            self.directory,
            self.spool,
            self.clock,
            Lookup(self.resolver, self.clock),
            web_base=self._web_base,
            signer=(
                DomainSigner(
                    KeyStore(data / "dkim"),
                    selector=cfg.auth.selector,
                    algorithms=cfg.auth.sign_algorithms,
                )
                if cfg.auth.sign
                else None
            ),
            sealer=sealer,
        )
        self.runner = QueueRunner(
            self.spool,
            self.clock,
            LocalDelivery(
                self.directory,
                self.store,
                self.clock,
                after=ReportIntake(self.dmarc_store, self.directory.is_local_domain, self.clock),
                sieve=self.sieve,
                forwarder=self.forwarder,
                lists=self.lists,
                usage=self.usage,
            ),
            remote=self.relay,
            backoff=list(cfg.queue.retry),
            max_age=cfg.relay.max_age,
            delay_warning=cfg.relay.delay_warning,
            hostname=cfg.server.hostname,
            concurrency=cfg.queue.concurrency,
            bulk_concurrency=cfg.queue.bulk_concurrency,
            metrics=self.metrics,
            # Nodes sharing Redis lease their spools, and take over a dead node's.
            lease=SpoolLease(
                cfg.state.url,
                self.spool,
                # Held by the primary; posted for the others, which deliver what they accept.
                board=lease_board(cfg) if self.spool.shared else None,
            )
            if cfg.state.url
            else None,
            # Each worker delivers what it accepts; the rest (retries, mail its deliveries
            # queue) goes to the primary's runner through the pipe.
            handoff=None if self.primary or worker is None else self._handoff,
        )
        self.metrics.watch_queue(self._queue_view)
        # What an operator does, for the admin API (the command line uses the same layer).
        self.admin = Admin(
            self.directory,
            cfg,
            spool=self.spool,
            notify=self._wake_runner,
            clock=self.clock,
            usage=self.usage,
            mail=self.store,
            dmarc=self.dmarc_store,
            scripts=self.scripts,
            replies=self.replies,
        )
        # Imported here: the command line imports this module for its paths, and needs
        # neither aiohttp nor pydantic for that.
        from reference.web import WebServer

        self.web = WebServer(
            self.admin,
            self.metrics,
            self.auth_limiter,
            self.clock,
            probes={
                "listeners": self._listeners_up,
                "spool": self._spool_writable,
                "directory": self._directory_reachable,
                "redis" if cfg.state.url else "state": self._state_reachable,
                **({"clamd": self._clamd_reachable} if cfg.antivirus.clamd else {}),
            },
            panel=True,
        )
        if self.sieve is not None:
            self.sieve.notify = self.runner.notify
        self.forwarder.notify = self.runner.notify
        self.lists.notify = self.runner.notify
        # The daily task that sends DMARC aggregate reports through the queue.
        self.dmarc_reporter = (
            aggregate_reporter(
                cfg, self.dmarc_store, self.spool, self.clock, self.resolver, self.runner.notify
            )
            if cfg.dmarc.reports
            else None
        )
        self._dmarc_task: asyncio.Task[None] | None = None
        self.servers: list[asyncio.Server] = []
        self.endpoints: dict[str, Endpoint] = {}
        self._listeners: list[Listener] = []
        # IMAP and POP3 sessions: their tasks, and the writers that end them.
        self._streams: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._wake_fd = -1  # the primary of several workers: the others' queue ids
        self._bell_fd = -1  # one of several workers: the mailboxes the others changed

    # -- what /metrics and /readyz ask of the node

    def _queue_view(self) -> list[tuple[str, int, float | None]]:
        """(lane, messages, age of the oldest) for every lane: read from the spool."""
        return self.admin.queue_depth()

    def _web_base(self) -> str:
        """The control plane's address as members' mail names it (one-click unsubscribe)."""
        bound = self.endpoints.get("web")
        port = bound.port if bound is not None else self.cfg.listen.web.port
        if bound is None and self.worker is not None and "web" in self.worker.sockets:
            # A worker other than the primary delivers lists too: the port the node's web
            # listener was bound to (the primary's alone serves it).
            port = self.worker.sockets["web"].getsockname()[1]
        return f"https://{self.cfg.server.hostname}:{port}"

    def _wake_runner(self, qids: Sequence[str]) -> str:
        for qid in qids:  # each started now (a whole rescan waits for its interval)
            self.runner.notify(qid)
        return "queue runner notified"

    async def _listeners_up(self) -> str | None:
        down = [n for n, s in zip(self.endpoints, self.servers, strict=False) if not s.is_serving()]
        if len(self.servers) < len(self.endpoints) or not self.endpoints:
            return "not started"
        return f"not listening: {', '.join(down)}" if down else None

    async def _spool_writable(self) -> str | None:
        probe = self.spool.root / ".readyz"
        try:
            await asyncio.to_thread(probe.write_bytes, b"ok")
            await asyncio.to_thread(probe.unlink)
        except OSError as e:
            return f"cannot write {self.spool.root}: {e.strerror or e}"
        return None

    async def _directory_reachable(self) -> str | None:
        try:
            await asyncio.to_thread(self.directory.domains)
        except TemporarilyUnavailable as e:  # the server is down: it says which, and why
            return str(e)
        except Exception as e:  # any failure of the database is the answer here
            return f"directory database: {e}"
        return None

    async def _state_reachable(self) -> str | None:
        try:
            await asyncio.wait_for(self.state.get("readyz", self.clock.now()), 5.0)
        except Exception as e:  # a connection refused, a timeout, a closed database
            return f"{type(e).__name__}: {e}"[:200]
        return None

    async def _clamd_reachable(self) -> str | None:
        address = self.cfg.antivirus.clamd
        if address is None:
            return None  # no scanner configured: nothing to wait for
        clamd = ClamdClient(address, timeout=5.0)
        return None if await clamd.ping() else f"no PONG from {address}"

    def _smtp(self, name: str, role: str, *, implicit_tls: bool) -> Listener:
        listener = Listener(
            role,
            hostname=self.cfg.server.hostname,
            policy=self.policy,
            spool=self.spool,
            clock=self.clock,
            auth=self.directory,
            auth_limiter=self.auth_limiter,
            tls_context=self.tls_context,
            implicit_tls=implicit_tls,
            max_message_size=self.cfg.smtp.max_message_size,
            max_recipients=self.cfg.smtp.max_recipients,
            timeout=self.cfg.smtp.timeout,
            # Each worker starts the delivery of what it accepted itself, from memory.
            on_queued=self.runner.accepted,
            flow_backlog=self.cfg.smtp.flow_backlog,
            flow_delay=self.cfg.smtp.flow_delay,
            flow_lag=self.cfg.smtp.flow_lag,
            # Only the MX sits behind load balancers that speak PROXY.
            proxy_from=self.cfg.listen.mx_proxy_from if role == "mx" else (),
            max_connections=self.cfg.smtp.max_connections,
            max_per_client=self.cfg.smtp.max_connections_per_client,
            metrics=self.metrics.listener(name),
            usage=self.usage,
        )
        self._listeners.append(listener)
        return listener

    def _stream_server(self, name: str, handle: StreamHandler, *, implicit_tls: bool) -> Starter:
        """An IMAP or POP3 listener whose connections are tracked, so stop() can close them."""
        counted = self.metrics.listener(name)

        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._streams[task] = w
            counted.connected()
            counted.session_opened()
            try:
                await handle(r, w, tls=implicit_tls)
            finally:
                counted.session_closed()
                self._streams.pop(task, None)
                w.close()

        def start(host: str, port: int, sock: socket.socket | None) -> Awaitable[asyncio.Server]:
            ctx = self.tls_context if implicit_tls else None
            if sock is not None:
                return asyncio.start_server(on_connect, sock=sock, ssl=ctx)
            return asyncio.start_server(on_connect, host, port, ssl=ctx, reuse_address=True)

        return start

    async def start(self) -> dict[str, Endpoint]:
        """Open every listener and start the queue runner; a bind failure names the key."""
        cfg = self.cfg
        # IMAP, POP3 and ManageSieve logins count against the same limits, per account and
        # per client address, each under its own service in /metrics.
        imap = ImapServer(
            self.store,
            LimitedAuthenticator(self.directory, self.auth_limiter, self.clock, "imap"),
            hostname=cfg.server.hostname,
            tls_context=self.tls_context,
            clock=self.clock,
            # Moving mail into or out of Junk teaches the spam classifier.
            on_junk=junk_trainer(self.bayes) if self.bayes is not None else None,
            read_only=self.directory.is_archive,
        )
        pop3 = Pop3Server(
            self.store,
            LimitedAuthenticator(self.directory, self.auth_limiter, self.clock, "pop3"),
            hostname=cfg.server.hostname,
            tls_context=self.tls_context,
            clock=self.clock,
        )
        managesieve = ManageSieveServer(
            self.scripts,
            LimitedAuthenticator(self.directory, self.auth_limiter, self.clock, "managesieve"),
            hostname=cfg.server.hostname,
            tls_context=self.tls_context,
            clock=self.clock,
            max_redirects=cfg.sieve.max_redirects,
        )
        starters: dict[str, Starter] = {
            "mx": self._smtp("mx", "mx", implicit_tls=False).start,
            "submission": self._smtp("submission", "submission", implicit_tls=False).start,
            "submissions": self._smtp("submissions", "submission", implicit_tls=True).start,
            "imap": self._stream_server("imap", imap.handle, implicit_tls=False),
            "imaps": self._stream_server("imaps", imap.handle, implicit_tls=True),
            "pop3": self._stream_server("pop3", pop3.handle, implicit_tls=False),
            "pop3s": self._stream_server("pop3s", pop3.handle, implicit_tls=True),
            "managesieve": self._stream_server(
                "managesieve", managesieve.handle, implicit_tls=False
            ),
            "web": lambda host, port, sock: self.web.start(host, port, self.tls_context, sock),
        }
        try:
            for name in LISTENERS:
                if not cfg.serves(name):  # server.roles
                    continue
                if self.worker is not None and not self.worker.serves(name):
                    continue  # the primary's alone
                host, port = cfg.address(name)
                sock = self.worker.sockets[name] if self.worker is not None else None
                try:
                    server = await starters[name](host, port, sock)
                except OSError as e:
                    why = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror
                    raise StartupError(
                        f"listen.{name}: cannot listen on {host}:{port}: {why}"
                    ) from None
                self.servers.append(server)
                sock = server.sockets[0].getsockname()
                self.endpoints[name] = Endpoint(name, sock[0], sock[1])
        except BaseException:
            await self._close_servers()
            await self.web.stop()
            raise
        if self.worker is not None and self.worker.bells:
            # IMAP IDLE hears at once of changes the node's other workers make.
            self.store.on_change = self.worker.ring_others
            self._bell_fd = self.worker.bell
            asyncio.get_running_loop().add_reader(self._bell_fd, self._rung)
        if self.feed is not None:  # in every worker: each has its own IDLE sessions
            self.feed.start()
        if not self.primary:
            event(log, "started", worker=self.worker.index if self.worker else 0)
            return self.endpoints
        self.runner.start()
        if self.worker is not None:
            self._wake_fd = self.worker.wake_read
            asyncio.get_running_loop().add_reader(self._wake_fd, self._woken)
        if self.dmarc_reporter is not None:
            self._dmarc_task = asyncio.create_task(self.dmarc_reporter.run(), name="dmarc-reports")
        urls = ",".join(ep.url for ep in self.endpoints.values())
        event(log, "started", hostname=cfg.server.hostname, endpoints=urls)
        if not cfg.antivirus.clamd:
            # Said once at start (not per message: load runs go without a scanner): mail
            # accepted from now on was never scanned, whatever a client makes of the 250.
            event(
                log,
                "antivirus.off",
                level=logging.WARNING,
                detail="no virus scanner configured (antivirus.clamd): mail is accepted unscanned",
            )
        return self.endpoints

    def _handoff(self, qid: str) -> None:
        """A worker's hint to the primary's runner (see :meth:`_woken`)."""
        assert self.worker is not None
        self.worker.wake(qid or "*")

    def _woken(self) -> None:
        """What the other workers hand the primary's runner: queue ids to start now, "*" to
        look at the whole spool, "@<time>" when mail they deferred is due again."""
        try:
            data = os.read(self._wake_fd, 65536)
        except BlockingIOError:
            return
        for word in data.decode("ascii", "replace").split():
            if word.startswith("@"):
                with contextlib.suppress(ValueError):
                    self.runner.due_at(float(word[1:]))
            else:
                self.runner.notify("" if word == "*" else word)

    def _rung(self) -> None:
        """Mailboxes another worker changed: ring their IDLE sessions here."""
        try:
            data = os.read(self._bell_fd, 65536)
        except BlockingIOError:
            return
        for path in set(data.decode("utf-8", "surrogateescape").splitlines()):
            self.store.ring(Path(path))

    async def _close_servers(self) -> None:
        for s in self.servers:
            s.close()
        for s in self.servers:
            await s.wait_closed()
        self.servers.clear()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening, close sessions, let deliveries finish or return to the spool."""
        for fd in (self._wake_fd, self._bell_fd):
            if fd >= 0:
                asyncio.get_running_loop().remove_reader(fd)
        self._wake_fd = self._bell_fd = -1
        for s in self.servers:
            s.close()
        for listener in self._listeners:
            for session in list(listener.sessions):
                session.close()
        for w in list(self._streams.values()):
            w.close()
        if self._dmarc_task is not None:
            self._dmarc_task.cancel()
            await asyncio.gather(self._dmarc_task, return_exceptions=True)
        # One grace period for everything: a supervisor waits a fixed time, then kills.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self.runner.stop(grace)
        await self._close_servers()
        await self.web.stop()
        # Let the closed sessions' tasks run to their end before the loop goes away; they
        # only have to notice their connection is gone, so they get a short while at most.
        sessions = list(self._streams)
        if sessions:
            wait = max(0.1, min(2.0, deadline - loop.time()))
            _, stuck = await asyncio.wait(sessions, timeout=wait)
            for t in stuck:
                t.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
            if stuck:
                event(log, "stop.sessions-cancelled", count=len(stuck))
        await asyncio.sleep(0)
        for check in self.policy.checks:
            check.close()
        self.directory.close()
        self.store.close()
        self.spool.close()
        self.dmarc_store.close()
        self.usage.close()
        self.replies.close()
        if self.feed is not None:
            await self.feed.close()
        await self.state.close()
        if self.bayes is not None:
            self.bayes.close()
        self.metrics.close()  # the last counts, into this worker's files
        event(log, "stopped")
