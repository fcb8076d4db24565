"""Locust users for a mailspec node or cluster, and the thresholds that end a run.

    locust -f load/locustfile.py --headless --stack DATA/cluster.json -u 20 -r 20 -t 30s \\
        --csv reports/load/run --html reports/load/run.html

(``python -m load.run`` starts the cluster, makes the accounts and runs this for you.)

Users, each firing locust request events, so locust's statistics, percentiles, CSV and HTML
reports hold every figure:

- ``InboundMta``: a remote MTA sending to local mailboxes through the MX, from many client
  addresses: with ``--proxy`` (``python -m load.run``'s default) each connection names its
  client, 198.51.100.x, in a PROXY v1 line, as a load balancer would (the MX must trust
  127.0.0.1 in ``listen.mx_proxy_from``); without it the socket is bound to 127.0.3.x.
- ``BulkSubmitter``: a user sending to remote recipients on the fake MXs (STARTTLS + AUTH)
  under a high limit.
- ``LimitedSubmitter``: many concurrent sessions, spread over the nodes, for the same few
  users at the platform's recipients limit.
- ``ImapReader``: IDLE on an INBOX over IMAPS and fetch what arrives.

Latency entries (request type ``DELIVERY``) come from the run's ledger: for every message,
from its 250 to its arrival in the mailbox (a watcher on the recipients' Maildir ``new/``
directories, timed by the rename) or at the remote MX (the fake MXs' delivery records).

At the end of the run (``test_stop``: before locust writes its reports) the run waits for
every accepted message to arrive, then checks: p99 accept-to-mailbox under
``--max-p99-ms``, no accepted message lost, no limited user over its limit (summed over all
nodes, seen by the clients and at the remote MXs) and the limit reached exactly, and no
failure but the sessions a node kill cut. Any miss sets a non-zero exit code.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import signal
import smtplib
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import User, events, task
from locust.env import Environment

from load.clients import (
    ImapClient,
    ImapError,
    MaildirWatcher,
    MxWatcher,
    build_message,
    smtp_connect,
)
from load.ledger import (
    IMAP,
    IMAP_PUSH,
    MAILBOX,
    RECOVERED,
    REMOTE,
    REMOTE_RECOVERED,
    Ledger,
    ctime_lag,
    message_id,
    window_violations,
)
from load.stack import Accounts, NodeInfo, Stack
from reference.spool.lease import RENEW_EVERY
from reference.values import parse_duration

log = logging.getLogger("mailspec.load")

SMTP_ERRORS = (smtplib.SMTPException, OSError, ValueError)


@dataclass
class Run:
    """The state of this locust process's run (one run per process)."""

    stack: Stack | None = None
    accounts: Accounts | None = None
    opts: Any = None
    env: Environment | None = None
    ctx: ssl.SSLContext | None = None
    ledger: Ledger = field(default_factory=Ledger)
    started: float = 0.0
    stopped: float = 0.0
    polling: bool = False
    down: dict[str, float] = field(default_factory=dict)  # node -> skip it until
    # when, node, request name, error, SMTP reply code (None: no reply, e.g. cut)
    failures: list[tuple[float, str, str, str, int | None]] = field(default_factory=list)
    killed: tuple[str, float, int] | None = None  # node, when, old pid
    restarted: float | None = None
    spooled_at_kill: int = 0
    spool_emptied_after: float | None = None  # seconds from the kill to an empty spool
    result: dict[str, Any] | None = None
    watchers: list[Any] = field(default_factory=list)
    busiest: float = 0.0  # the highest 1-minute load average per core seen during the run

    def sample_load(self) -> None:
        self.busiest = max(self.busiest, os.getloadavg()[0] / (os.cpu_count() or 1))


RUN = Run()
_ids = itertools.count()
_sources = itertools.count()


# -- options and setup


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser.add_argument_group("mailspec")
    g.add_argument(
        "--stack",
        default=os.environ.get("MAILSPEC_LOAD_STACK", ""),
        help="state file of `mailspec cluster` (cluster.json)",
    )
    g.add_argument("--accounts", default="", help="accounts file (default: next to --stack)")
    g.add_argument("--inbound-rate", type=float, default=5.0, help="msg/s per InboundMta")
    g.add_argument("--submit-rate", type=float, default=2.0, help="msg/s per BulkSubmitter")
    g.add_argument("--limited-rate", type=float, default=4.0, help="tries/s per limited session")
    g.add_argument("--inbound-users", type=int, default=8, help="InboundMta users")
    g.add_argument("--bulk-users", type=int, default=2, help="BulkSubmitter users")
    g.add_argument("--limited-sessions", type=int, default=6, help="LimitedSubmitter sessions")
    g.add_argument("--imap-readers", type=int, default=2, help="ImapReader users")
    g.add_argument("--per-connection", type=int, default=5, help="messages per MX session")
    g.add_argument("--size", type=int, default=2048, help="message size, bytes")
    g.add_argument(
        "--proxy",
        action="store_true",
        help="claim client addresses through the PROXY protocol (listen.mx_proxy_from)",
    )
    g.add_argument("--kill-node", default="", help="SIGKILL this node (e.g. node2) mid-run")
    g.add_argument("--kill-after", type=float, default=5.0, help="seconds into the run")
    g.add_argument("--max-p99-ms", type=float, default=1000.0, help="accept-to-mailbox p99 gate")
    g.add_argument(
        "--max-imap-p99-ms",
        type=float,
        default=0.0,
        help="accept-to-IMAP (IDLE) p99 gate (0: reported, not gated)",
    )
    g.add_argument(
        "--max-takeover-ms",
        type=float,
        default=0.0,
        help="accept-to-delivery gate for the mail a killed node held (0: the run's p99 "
        "plus twice the lease renewal interval)",
    )
    g.add_argument(
        "--busy-load",
        type=float,
        default=0.0,
        help="above this 1-minute load average per core, the gates that need spare CPU "
        "(latency, limit reached) are reported but not judged (0: always judged)",
    )
    g.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait at the end for accepted mail to arrive",
    )
    g.add_argument("--summary", default="", help="write the run's figures as JSON here")
    g.add_argument(
        "--redis-fault",
        default="",
        help="the Redis fault's record (written by python -m load.run --kill-redis): "
        "judge the run against it",
    )


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None or not opts.stack:
        return  # imported without a run (e.g. by a test); users need --stack
    RUN.env, RUN.opts = environment, opts
    RUN.stack = Stack.load(Path(opts.stack))
    RUN.accounts = Accounts.load(
        Path(opts.accounts) if opts.accounts else Path(opts.stack).with_name("load-accounts.json")
    )
    RUN.ctx = ssl.create_default_context(cafile=str(RUN.stack.cafile))
    RUN.ledger.sink = _latency_event
    # Fixed counts: -u is their sum (python -m load.run passes it).
    InboundMta.fixed_count = opts.inbound_users
    BulkSubmitter.fixed_count = opts.bulk_users if RUN.accounts.bulk else 0
    ImapReader.fixed_count = opts.imap_readers
    LimitedSubmitter.fixed_count = opts.limited_sessions if RUN.accounts.limited else 0


def _latency_event(name: str, ms: float, acc: Any) -> None:
    if RUN.env is not None:
        RUN.env.events.request.fire(
            request_type="IMAP" if name == IMAP else "DELIVERY",
            name=name,
            response_time=ms,
            response_length=0,
            exception=None,
            context={"node": acc.node},
        )


# -- users


class MailUser(User):
    """Picks nodes round robin, skipping one that refused a connection a moment ago."""

    abstract = True
    listener = "mx"
    rate = 1.0

    def on_start(self) -> None:
        self.k = next(_ids)
        self._next_run = time.monotonic() + random.random() / self.pace()
        self.turn = self.k

    def pace(self) -> float:
        return self.rate

    def wait_time(self) -> float:
        # A fixed rate per user, without catch-up bursts after a slow task.
        now = time.monotonic()
        self._next_run = max(self._next_run + 1.0 / self.pace(), now)
        return self._next_run - now

    def pick(self) -> NodeInfo:
        assert RUN.stack is not None
        nodes = RUN.stack.serving(self.listener)
        now = time.monotonic()
        for _ in range(len(nodes)):
            node = nodes[self.turn % len(nodes)]
            self.turn += 1
            if RUN.down.get(node.name, 0) <= now:
                return node
        return nodes[self.turn % len(nodes)]

    def fire(
        self, rtype: str, name: str, t0: float, length: int, exc: Exception | None, node: str
    ) -> None:
        if exc is not None:
            RUN.failures.append((time.time(), node, name, repr(exc), reply_code(exc)))
            if isinstance(exc, ConnectionRefusedError):
                RUN.down[node] = time.monotonic() + 1.0
        self.environment.events.request.fire(
            request_type=rtype,
            name=name,
            response_time=(time.time() - t0) * 1000,
            response_length=length,
            exception=exc,
            context={"node": node},
        )


class SmtpUser(MailUser):
    abstract = True
    smtp: smtplib.SMTP | None = None
    node: str = ""

    def drop(self) -> None:
        # Never QUIT from a kill path: close the socket only (LIBRARIES.md, locust).
        if self.smtp is not None:
            try:
                self.smtp.close()
            finally:
                self.smtp = None

    def on_stop(self) -> None:
        self.drop()

    def session(self) -> smtplib.SMTP | None:
        if self.smtp is not None:
            return self.smtp
        node = self.pick()
        host, port = node.endpoints[self.listener]
        t0 = time.time()
        try:
            self.smtp = self.connect(host, port)
        except SMTP_ERRORS as e:
            self.fire("SMTP", f"{self.listener} connect", t0, 0, e, node.name)
            return None
        self.node = node.name
        self.sent = 0
        self.fire("SMTP", f"{self.listener} connect", t0, 0, None, node.name)
        return self.smtp

    def connect(self, host: str, port: int) -> smtplib.SMTP:
        raise NotImplementedError

    def done_one(self) -> None:
        self.sent += 1
        if self.sent >= RUN.opts.per_connection and self.smtp is not None:
            with contextlib.suppress(*SMTP_ERRORS):
                self.smtp.quit()
            self.drop()


class InboundMta(SmtpUser):
    """A remote MTA delivering to local users, from many client addresses."""

    fixed_count = 8
    listener = "mx"

    def pace(self) -> float:
        return float(RUN.opts.inbound_rate)

    def connect(self, host: str, port: int) -> smtplib.SMTP:
        n = next(_sources) % 250 + 1
        if RUN.opts.proxy:  # from 127.0.0.1, naming a TEST-NET-2 client
            return smtp_connect(host, port, proxy_source=f"198.51.100.{n}")
        return smtp_connect(host, port, source=f"127.0.3.{n}")

    @task
    def send(self) -> None:
        assert RUN.accounts is not None
        smtp = self.session()
        if smtp is None:
            return
        rcpt = random.choice(RUN.accounts.recipients)
        sender = f"mta{self.k}@remote{self.k % 20}.test"
        msgid, data = build_message(sender, [rcpt], RUN.opts.size)
        t0 = time.time()
        try:
            smtp.sendmail(sender, [rcpt], data)
        except SMTP_ERRORS as e:
            self.fire("SMTP", "mx accept", t0, len(data), e, self.node)
            self.drop()
            return
        RUN.ledger.accept(msgid, time.time(), self.node, "inbound", 1)
        self.fire("SMTP", "mx accept", t0, len(data), None, self.node)
        self.done_one()


class _Submitter(SmtpUser):
    abstract = True
    listener = "submission"
    user = ""

    def connect(self, host: str, port: int) -> smtplib.SMTP:
        assert RUN.accounts is not None
        return smtp_connect(
            host,
            port,
            helo="client.load.test",
            starttls=RUN.ctx,
            login=(self.user, RUN.accounts.password),
        )

    def remote_rcpts(self) -> list[str]:
        assert RUN.accounts is not None
        domains = RUN.accounts.remote
        return [
            f"r{random.randrange(1000)}@{random.choice(domains)}"
            for _ in range(random.randint(1, 3))
        ]


class BulkSubmitter(_Submitter):
    """A user under a high limit sending to remote recipients: accept-to-remote-MX."""

    fixed_count = 2

    def on_start(self) -> None:
        super().on_start()
        assert RUN.accounts is not None
        self.user = RUN.accounts.bulk[self.k % len(RUN.accounts.bulk)]

    def pace(self) -> float:
        return float(RUN.opts.submit_rate)

    @task
    def send(self) -> None:
        smtp = self.session()
        if smtp is None:
            return
        rcpts = self.remote_rcpts()
        msgid, data = build_message(self.user, rcpts, RUN.opts.size)
        t0 = time.time()
        try:
            refused = smtp.sendmail(self.user, rcpts, data)
        except SMTP_ERRORS as e:
            self.fire("SMTP", "submission accept", t0, len(data), e, self.node)
            self.drop()
            return
        RUN.ledger.accept(msgid, time.time(), self.node, "outbound", len(rcpts) - len(refused))
        self.fire("SMTP", "submission accept", t0, len(data), None, self.node)
        self.done_one()


class LimitedSubmitter(_Submitter):
    """Concurrent sessions of the same few users, on every node, past the limit."""

    fixed_count = 6

    def on_start(self) -> None:
        super().on_start()
        assert RUN.accounts is not None
        self.user = RUN.accounts.limited[self.k % len(RUN.accounts.limited)]

    def pace(self) -> float:
        return float(RUN.opts.limited_rate)

    @task
    def send(self) -> None:
        smtp = self.session()
        if smtp is None:
            return
        rcpts = self.remote_rcpts()
        ok: list[str] = []
        t0 = time.time()
        try:
            code, reply = smtp.mail(self.user)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, self.user)
            for rcpt in rcpts:
                sent = time.time()
                try:
                    code, reply = smtp.rcpt(rcpt)
                except SMTP_ERRORS:
                    RUN.ledger.rcpt(self.user, sent, time.time(), None)
                    raise
                RUN.ledger.rcpt(self.user, sent, time.time(), code)
                if code == 250:
                    ok.append(rcpt)
                    self.fire("SMTP", "submission rcpt accepted", sent, 0, None, self.node)
                elif code == 450 and b"4.7.1" in reply:
                    self.fire("SMTP", "submission rcpt 450 rate limit", sent, 0, None, self.node)
                else:
                    raise smtplib.SMTPRecipientsRefused({rcpt: (code, reply)})
            if not ok:
                smtp.rset()
                return
            msgid, data = build_message(self.user, ok, RUN.opts.size)
            code, reply = smtp.data(data)
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        except SMTP_ERRORS as e:
            self.fire("SMTP", "submission limited", t0, 0, e, self.node)
            self.drop()
            return
        RUN.ledger.accept(msgid, time.time(), self.node, "outbound", len(ok))
        self.fire("SMTP", "submission accept", t0, len(data), None, self.node)
        self.done_one()


class ImapReader(MailUser):
    """IDLE on a recipient's INBOX (read-only) and fetch the Message-IDs of new mail."""

    fixed_count = 2
    listener = "imaps"
    imap: ImapClient | None = None

    def on_start(self) -> None:
        super().on_start()
        assert RUN.accounts is not None
        self.address = RUN.accounts.recipients[self.k % len(RUN.accounts.recipients)]
        self.last_uid = 0
        self.known = 0  # the highest sequence number fetched (EXAMINE: no expunges)
        self.node = ""

    def pace(self) -> float:
        return 50.0  # IDLE paces itself

    def on_stop(self) -> None:
        if self.imap is not None:
            self.imap.close()
            self.imap = None

    def login(self) -> ImapClient | None:
        assert RUN.accounts is not None and RUN.ctx is not None
        node = self.pick()
        host, port = node.endpoints[self.listener]
        t0 = time.time()
        try:
            imap = ImapClient(host, port, RUN.ctx)
            imap.command(f'LOGIN "{self.address}" "{RUN.accounts.password}"')
            lines = imap.command("EXAMINE INBOX")
        except (ImapError, OSError) as e:
            self.fire("IMAP", "login+examine", t0, 0, e, node.name)
            return None
        for line in lines:
            if b"[UIDNEXT " in line:
                self.last_uid = int(line.split(b"[UIDNEXT ")[1].split(b"]")[0]) - 1
        self.known = imap.count  # the messages already there (EXAMINE's EXISTS)
        self.node = node.name
        self.fire("IMAP", "login+examine", t0, 0, None, node.name)
        self.imap = imap
        return imap

    @task
    def idle(self) -> None:
        """IDLE until the server announces more messages than were fetched, then fetch
        them. Each message is timed by the first EXISTS that covered it, wherever it came:
        in IDLE, or untagged in the reply to DONE or to the last FETCH (a message announced
        there and waited for until the next one arrived used to count that wait)."""
        imap = self.imap or self.login()
        if imap is None:
            return
        try:
            if imap.count <= self.known:
                imap.idle(2.0)
                if imap.count <= self.known:
                    return
            t0 = time.time()
            lines = imap.command(
                f"UID FETCH {self.last_uid + 1}:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
            )
        except (ImapError, OSError) as e:
            self.fire("IMAP", "idle+fetch", time.time(), 0, e, self.node)
            self.on_stop()
            return
        size = 0
        for line in lines:
            if b"FETCH" not in line or b"UID " not in line:
                continue
            seq = int(line.split()[1])
            uid = int(line.split(b"UID ")[1].split()[0].rstrip(b")"))
            self.known = max(self.known, seq)
            if uid <= self.last_uid:
                continue
            self.last_uid = uid
            size += len(line)
            RUN.ledger.seen_by_imap(message_id(line), imap.heard(seq) or t0)
        imap.forget(self.known)
        self.fire("IMAP", "fetch new", t0, size, None, self.node)


# -- the run: watchers, the node kill, the checks

_pids: dict[int, str] = {}  # process id -> node name (a node's workers included)


def _node_of(pid: int) -> str | None:
    """The node a mailbox writer's process belongs to: a node's pid, or its child's."""
    if pid in _pids:
        return _pids[pid]
    assert RUN.stack is not None
    with contextlib.suppress(OSError, ValueError, KeyError):
        RUN.stack.reload()
    nodes = {n.pid: n.name for n in RUN.stack.nodes if n.pid is not None}
    _pids.update(nodes)
    if pid not in nodes:
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent in nodes:
                _pids[pid] = nodes[parent]
    return _pids.get(pid)


def _scan() -> None:
    for w in RUN.watchers:
        w.scan()


def _poll() -> None:
    while RUN.polling:
        try:
            _scan()
        except OSError as e:  # a file vanishing under the watcher: look again next round
            log.debug("watch: %s", e)
        gevent.sleep(0.02)


def _spooled(spool: Path | None) -> int:
    """Committed messages in a spool (the envelope file marks a committed message)."""
    if spool is None:
        return 0
    try:
        with os.scandir(spool) as it:
            return sum(1 for e in it if e.name.endswith(".json"))
    except FileNotFoundError:
        return 0


def _kill(name: str) -> None:
    """SIGKILL the node, at a moment its spool holds accepted mail not yet delivered (a
    kill between deliveries would prove nothing about the spool), or after 3 s anyway."""
    assert RUN.stack is not None
    RUN.stack.reload()
    node = RUN.stack.node(name)
    if node.pid is None:
        return
    deadline = time.monotonic() + 3.0
    while not _spooled(node.spool) and time.monotonic() < deadline:
        gevent.sleep(0.001)
    os.kill(node.pid, signal.SIGKILL)
    when = time.time()
    RUN.killed = (name, when, node.pid)
    RUN.ledger.kill = (name, when)
    RUN.spooled_at_kill = _spooled(node.spool)
    log.warning(
        "killed %s (pid %s) with SIGKILL, %d message(s) in its spool",
        name,
        node.pid,
        RUN.spooled_at_kill,
    )
    # The takeover itself: how long until another node moved the spool's messages away.
    while _spooled(node.spool) and time.time() - when < 10.0:
        gevent.sleep(0.005)
    if not _spooled(node.spool):
        RUN.spool_emptied_after = time.time() - when

    def back(stack: Stack) -> bool:
        n = stack.node(name)
        return n.up and n.pid != node.pid

    if RUN.stack.wait(back, timeout=60):
        RUN.restarted = RUN.ledger.restart_at = time.time()
        log.warning("%s is back after %.1fs", name, RUN.restarted - when)


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    if RUN.stack is None or RUN.accounts is None:
        raise RuntimeError("the mailspec users need --stack (the cluster's state file)")
    RUN.started = time.time()
    RUN.sample_load()
    lag = ctime_lag(RUN.stack.mail_dir.parent / ".load-ctime")
    _pids.update({n.pid: n.name for n in RUN.stack.nodes if n.pid is not None})
    RUN.watchers = [
        MaildirWatcher(RUN.stack.mail_dir, RUN.accounts.recipients, RUN.ledger, lag, _node_of)
    ]
    if RUN.stack.deliveries is not None:
        RUN.watchers.append(MxWatcher(RUN.stack.deliveries, RUN.ledger))
    _scan()  # what is there already is not this run's
    RUN.ledger.accepted.clear()
    RUN.ledger.early.clear()
    RUN.polling = True
    gevent.spawn(_poll)
    if RUN.opts.kill_node:
        gevent.spawn_later(RUN.opts.kill_after, _kill, RUN.opts.kill_node)


@events.test_stop.add_listener
def _stop(environment: Environment, **_: Any) -> None:
    if RUN.stack is None or RUN.result is not None:
        return
    RUN.stopped = time.time()
    deadline = time.monotonic() + RUN.opts.drain_timeout
    while RUN.ledger.missing() and time.monotonic() < deadline:
        gevent.sleep(0.1)
    RUN.polling = False
    gevent.sleep(0.05)
    _scan()
    RUN.result = evaluate()
    environment.process_exit_code = 0 if RUN.result["passed"] else 1


@events.quitting.add_listener
def _quitting(environment: Environment, **_: Any) -> None:
    if RUN.result is None:
        return
    print(summary_text(RUN.result), flush=True)
    if RUN.opts.summary:
        Path(RUN.opts.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(RUN.opts.summary).write_text(json.dumps(RUN.result, indent=2) + "\n")
    environment.process_exit_code = 0 if RUN.result["passed"] else 1


def _limit() -> tuple[int, float]:
    assert RUN.accounts is not None
    count, _, window = RUN.accounts.limit.partition("/")
    return int(count), parse_duration(window)


def evaluate() -> dict[str, Any]:
    """The figures of the run and the verdict of each threshold."""
    assert RUN.accounts is not None and RUN.opts is not None
    led = RUN.ledger
    checks: dict[str, dict[str, Any]] = {}
    duration = max(1e-3, RUN.stopped - RUN.started)
    inbound = [a for a in led.accepted.values() if a.kind == "inbound"]
    outbound = [a for a in led.accepted.values() if a.kind == "outbound"]
    missing = led.missing()
    latency = {}
    led.latencies[IMAP_PUSH] = led.push_lags()
    for name in (MAILBOX, RECOVERED, REMOTE, REMOTE_RECOVERED, IMAP, IMAP_PUSH):
        r = led.report(name)
        if r is not None:
            latency[name] = {
                "count": r.count,
                "p50_ms": round(r.p50, 1),
                "p99_ms": round(r.p99, 1),
                "max_ms": round(r.max, 1),
            }
    # A latency gate, or proof that the limited users reached their limit, needs CPU to
    # spare: on a machine carrying several times its cores in other jobs (a shared CI box)
    # they are reported and not judged, with the load that made them so. What needs no
    # spare CPU (none lost, never over a limit, the killed node recovered) is always judged.
    RUN.sample_load()
    busy = bool(RUN.opts.busy_load) and RUN.busiest > RUN.opts.busy_load
    why_not = (
        f"not judged: load average {RUN.busiest:.1f} per core during the run "
        f"(above --busy-load {RUN.opts.busy_load:g})"
    )
    mailbox = led.report(MAILBOX)
    p99_ok = mailbox is not None and mailbox.p99 < RUN.opts.max_p99_ms
    checks["p99 accept-to-mailbox"] = {
        "passed": p99_ok or (busy and mailbox is not None),
        "value_ms": round(mailbox.p99, 1) if mailbox else None,
        "limit_ms": RUN.opts.max_p99_ms,
        **({"judged": False, "why": why_not} if busy and not p99_ok else {}),
    }
    imap = led.report(IMAP)
    if RUN.opts.max_imap_p99_ms:
        imap_ok = imap is not None and imap.p99 < RUN.opts.max_imap_p99_ms
        checks["p99 accept-to-IMAP (IDLE)"] = {
            "passed": imap_ok or (busy and imap is not None),
            "value_ms": round(imap.p99, 1) if imap else None,
            "limit_ms": RUN.opts.max_imap_p99_ms,
            **({"judged": False, "why": why_not} if busy and not imap_ok else {}),
        }
    checks["no accepted message lost"] = {
        # Nor any filed twice: local delivery is exactly once (remote copies may repeat).
        "passed": not missing and bool(inbound) and not led.mailbox_duplicates,
        "accepted": len(led.accepted),
        "lost": len(missing),
        "lost_ids": [f"{a.msgid} ({a.node}, {a.kind})" for a in missing[:10]],
        "duplicates": led.duplicates,
        "in_mailboxes": led.mailbox_duplicates,
    }
    # Rate limits: summed over every node, as the clients saw them and at the remote MXs.
    limit, window = _limit()
    rates = {}
    rate_ok = bool(RUN.accounts.limited) and LimitedSubmitter.fixed_count > 0
    for user in RUN.accounts.limited:
        ok = len(led.rcpts.get(user, []))
        refused, unknown = led.rcpt_refused[user], led.rcpt_unknown[user]
        at_mx = led.remote_rcpts_by_sender[user.lower()]
        within = duration < window
        over = ok > limit if within else bool(window_violations(led.rcpts[user], limit, window))
        # Exact: once asked for more than the limit, the limit was granted, less only the
        # RCPTs whose reply a node kill swallowed (counted by the server, not seen by us).
        exact = not within or ok + refused + unknown <= limit or ok + unknown >= limit
        reached = ok + refused + unknown > limit
        never_over = not over and (not within or at_mx <= limit)
        passed = never_over and exact and (reached or busy)
        rate_ok = rate_ok and passed
        rates[user] = {
            "accepted_rcpts": ok,
            "refused_450": refused,
            "unknown": unknown,
            "at_remote_mx": at_mx,
            "limit": RUN.accounts.limit,
            "limit_reached": reached,
            "passed": passed,
        }
        if busy and not reached:
            rates[user]["why"] = f"limit not reached, only 'never over' judged; {why_not}"
    checks["rate limits exact"] = {"passed": rate_ok, "users": rates}
    if any("why" in r for r in rates.values()):
        checks["rate limits exact"]["judged"] = False
    # Failures: none, but for sessions on a killed node while it was down, and tempfails
    # (4xx) while Redis was away.
    fault = _redis_fault()
    outage = (0.0, 0.0)
    if fault.get("restarted_at"):
        back = fault["restarted_at"] + (fault["ready_again_s"] or 30.0) + 2.0
        outage = (fault["killed_at"], back)
    expected, tempfails, unexpected = [], [], []
    for when, node, name, err, code in RUN.failures:
        if (
            RUN.killed
            and node == RUN.killed[0]
            and when >= RUN.killed[1]
            and (RUN.restarted is None or when <= RUN.restarted + 2.0)
        ):
            expected.append((node, name, err))
        elif fault and code is not None and 400 <= code < 500 and outage[0] <= when <= outage[1]:
            tempfails.append(code)
        else:
            unexpected.append((f"{when - RUN.started:.1f}s", node, name, err))
    checks["no failures (but the killed node's)"] = {
        "passed": not unexpected,
        "unexpected": len(unexpected),
        "examples": [" ".join(f) for f in unexpected[:5]],
        "cut_by_kill": len(expected),
        **({"tempfails_while_redis_away": dict(Counter(tempfails))} if fault else {}),
    }
    if RUN.opts.redis_fault:
        checks["Redis killed and back"] = redis_fault_check(fault, tempfails)
    kill: dict[str, Any] | None = None
    if RUN.opts.kill_node:
        name = RUN.opts.kill_node
        if RUN.killed is None:
            checks["node kill"] = {"passed": False, "why": "the node was not killed"}
        else:
            end = RUN.restarted or RUN.stopped
            during = led.accepted_between(RUN.killed[1], end)
            # A 250 of the killed node read after the kill was sent before it: the client
            # was slow to read it. Those are not clients staying on a dead node.
            late = during.pop(name, 0)
            others = sum(during.values())
            kill = {
                "node": name,
                "at_s": round(RUN.killed[1] - RUN.started, 1),
                "down_s": round(end - RUN.killed[1], 1) if RUN.restarted else None,
                "accepted_by_others_while_down": dict(during),
                "its_250s_read_late": late,
                "spooled_at_kill": RUN.spooled_at_kill,
                "recovered": latency.get(RECOVERED, {}).get("count", 0)
                + latency.get(REMOTE_RECOVERED, {}).get("count", 0),
            }
            checks["node kill"] = {
                "passed": RUN.restarted is not None and others > 0,
                **kill,
            }
            p99s = {"inbound": MAILBOX, "outbound": REMOTE}
            checks["killed node's mail"] = killed_mail(
                {k: r.p99 for k, name in p99s.items() if (r := led.report(name)) is not None},
                why_not if busy else "",
            )
    passed = all(c["passed"] for c in checks.values())
    return {
        "passed": passed,
        "duration_s": round(duration, 1),
        "load_per_core": round(RUN.busiest, 2),
        "nodes": len(RUN.stack.nodes) if RUN.stack else 0,
        "accepted": {"inbound": len(inbound), "outbound": len(outbound)},
        "rate_msg_s": {
            "inbound": round(len(inbound) / duration, 1),
            "outbound": round(len(outbound) / duration, 1),
        },
        "latency": latency,
        "unknown_arrivals": led.unknown_arrivals,
        "checks": checks,
    }


def reply_code(exc: Exception) -> int | None:
    """The SMTP reply code a failure carried (the highest of refused recipients')."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return int(exc.smtp_code)
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        return max(int(code) for code, _ in exc.recipients.values())
    return None


def _redis_fault() -> dict[str, Any]:
    """What ``python -m load.run --kill-redis`` saw (empty without a Redis fault)."""
    path = Path(RUN.opts.redis_fault) if RUN.opts.redis_fault else None
    if path is None or not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def redis_fault_check(fault: dict[str, Any], tempfails: list[int]) -> dict[str, Any]:
    """Redis killed mid-run and started again: clients got 4xx (never 5xx), every node's
    /readyz named Redis meanwhile and was ready again, the nodes carried on without a
    restart and took mail again. None lost or doubled is the run's own check."""
    assert RUN.stack is not None
    if not fault.get("restarted_at"):
        return {"passed": False, "why": "Redis was not killed and restarted (see load.run)"}
    with contextlib.suppress(OSError, ValueError, KeyError):
        RUN.stack.reload()
    permanent = [f for f in RUN.failures if f[4] is not None and f[4] >= 500]
    said = fault["readyz_while_down"]
    named = sorted(n for n, why in said.items() if "redis" in why.lower())
    nodes = sorted(n.name for n in RUN.stack.nodes)
    restarted = sorted(n.name for n in RUN.stack.nodes if n.restarts)
    resumed = RUN.ledger.accepted_between(fault["restarted_at"], RUN.stopped)
    return {
        "passed": not permanent
        and named == nodes
        and fault["ready_again_s"] is not None
        and not restarted
        and all(resumed[n] for n in nodes),
        "at_s": round(fault["killed_at"] - RUN.started, 1),
        "down_s": round(fault["restarted_at"] - fault["killed_at"], 1),
        "tempfails": len(tempfails),
        "5xx": len(permanent),
        "5xx_examples": [f[3] for f in permanent[:3]],
        "readyz_while_down": said,
        "ready_again_s": fault["ready_again_s"],
        "nodes_restarted": restarted,
        "accepted_after_restart": dict(resumed),
    }


def killed_mail(p99_ms: dict[str, float], busy: str = "") -> dict[str, Any]:
    """The mail the killed node had acknowledged and not yet delivered at the kill: who
    delivered it, how late, and whether all of it arrived exactly once in time.

    Another node takes the spool over at its next look at the leases (every
    ``RENEW_EVERY``: the killed node's connections to Redis closed with it), so that mail
    waits up to that much longer than the rest, and the look itself takes a moment on a
    busy machine: each message's bound is the run's p99 for its kind (``p99_ms``, inbound:
    to a mailbox, outbound: to a remote MX) plus twice ``RENEW_EVERY``, or
    ``--max-takeover-ms``. Lateness is not judged on a busy machine (``busy`` says why);
    lost or doubled is judged always."""
    led = RUN.ledger
    assert RUN.killed is not None
    kill_at = RUN.killed[1]
    held = led.in_flight_at_kill()
    given = RUN.opts.max_takeover_ms
    bounds = {k: given or p99 + 2 * RENEW_EVERY * 1000 for k, p99 in p99_ms.items()}
    arrived = [(a, a.first_arrival) for a in held if a.first_arrival is not None]
    latency = {a.msgid: (when - a.at) * 1000 for a, when in arrived}
    after_kill = sorted((when - kill_at) * 1000 for _, when in arrived)
    lost = [a for a in held if a.arrived < a.rcpts]
    doubled = [a for a in held if a.extra]
    late = [a for a, _ in arrived if latency[a.msgid] > bounds.get(a.kind, 0.0)]
    by_kind: dict[str, Any] = {}
    for kind in sorted({a.kind for a, _ in arrived}):
        worst = max(latency[a.msgid] for a, _ in arrived if a.kind == kind)
        by_kind[kind] = {
            "accept_to_delivery_max_ms": round(worst, 1),
            "run_p99_ms": round(p99_ms.get(kind, 0.0), 1),
            "limit_ms": round(bounds.get(kind, 0.0), 1),
        }
    return {
        "passed": not lost and not doubled and (not late or bool(busy)),
        **({"judged": False, "why": busy} if busy and late else {}),
        "in_flight_at_kill": len(held),
        # Relayed mail is seen at the fake MXs, which do not know the sending node.
        "delivered_by": dict(
            Counter(a.by or ("relayed" if a.kind == "outbound" else "unknown") for a, _ in arrived)
        ),
        "spool_taken_over_after_ms": round(RUN.spool_emptied_after * 1000)
        if RUN.spool_emptied_after is not None
        else None,
        "delivered_after_kill_ms": [round(after_kill[0]), round(after_kill[-1])]
        if after_kill
        else None,
        **by_kind,
        "limit_is": "--max-takeover-ms"
        if given
        else f"the run's p99 + 2 x the lease renewal interval ({RENEW_EVERY:g} s)",
        "lost": len(lost),
        "doubled": len(doubled),
        "late": len(late),
        **({"why": "nothing was in flight at the kill: nothing to judge"} if not held else {}),
    }


def summary_text(result: dict[str, Any]) -> str:
    lines = [
        f"mailspec load: {result['nodes']} node(s), {result['duration_s']}s: "
        f"{result['accepted']['inbound']} inbound ({result['rate_msg_s']['inbound']}/s), "
        f"{result['accepted']['outbound']} outbound accepted"
    ]
    for name, r in result["latency"].items():
        lines.append(
            f"  {name:<48} n={r['count']:<6} p50 {r['p50_ms']:>7.1f} ms  "
            f"p99 {r['p99_ms']:>7.1f} ms  max {r['max_ms']:>7.1f} ms"
        )
    for name, c in result["checks"].items():
        detail = {k: v for k, v in c.items() if k != "passed"}
        verdict = "FAIL" if not c["passed"] else "NOT JUDGED" if "judged" in c else "PASS"
        lines.append(f"  [{verdict}] {name}: {json.dumps(detail)}")
    lines.append(f"mailspec load: {'PASSED' if result['passed'] else 'FAILED'}")
    return "\n".join(lines)
