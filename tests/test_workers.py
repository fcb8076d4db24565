"""server.workers: one node as two processes sharing its listeners, counting as one.

The node is a real `mailspec serve` with ``server.workers = 2``. Which worker accepts a
connection is the kernel's choice, so the tests make it theirs: a worker stopped with
SIGSTOP accepts nothing, and the other one takes every connection until it is resumed.
Each worker's log lines carry its name (``mailspec[w0]``, ``mailspec[w1]``), which shows
where each session ran.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from reference.clock import RealClock
from reference.config import LISTENERS
from reference.directory import Directory
from reference.testing import write_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")

_REAL = RealClock()  # real processes: real deadlines


@dataclass
class Node:
    proc: subprocess.Popen[str]
    data: Path
    log: Path
    ports: dict[str, int]
    banner: str

    @property
    def workers(self) -> list[int]:
        """The worker pids, the primary's first."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        index = {}  # the supervisor says which worker it started as which pid
        for line in self.lines("worker.started"):
            m = re.search(r"worker=(\d+) pid=(\d+)", line)
            assert m is not None
            index[int(m.group(2))] = int(m.group(1))
        return sorted((int(p) for p in children.split()), key=lambda p: index.get(p, -1))

    def lines(self, event: str) -> list[str]:
        return [ln for ln in self.log.read_text().splitlines() if f"event={event}" in ln]

    def session(self) -> smtplib.SMTP:
        """A submission session inside TLS, not logged in."""
        s = smtplib.SMTP("127.0.0.1", self.ports["submission"], timeout=20)
        s.starttls(context=ssl.create_default_context(cafile=str(self.data / "tls/cert.pem")))
        s.ehlo()
        return s

    def smtp(self, user: str, password: str = "pw") -> smtplib.SMTP:
        return login(self.session(), user, password)


def login(s: smtplib.SMTP, user: str, password: str = "pw") -> smtplib.SMTP:
    s.user, s.password = user, password
    s.auth("PLAIN", s.auth_plain)  # one mechanism: one failure per failed login
    return s


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = _REAL.monotonic() + timeout
    while not predicate():
        if _REAL.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)  # polling real processes


def start_node(tmp: Path, **sections: dict[str, object]) -> Node:
    tmp.mkdir(parents=True, exist_ok=True)
    data = tmp / "var"
    directory = Directory(data / "directory.sqlite3")
    directory.add_domain("example.test")
    for user in ("alice", "bob", "carol", "dave", "erin", "frank", "gina"):
        directory.add_user(f"{user}@example.test", "pw")
    directory.close()
    config = write_config(
        tmp / "mailspec.toml",
        server={"data_dir": str(data), "workers": 2},
        # Failed logins answered at once: the count, not the delay, is under test.
        submission={"auth_delay": "0s"},
        **sections,
    )
    log = tmp / "node.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reference.cli", "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    assert proc.stdout is not None
    out = []
    while not (out and out[-1].startswith("Stop with")):
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"serve ended: {''.join(out)}{log.read_text()}")
        out.append(line)
    ports = {}
    for line in out:
        m = re.match(r"\s+(\w+)\s+\w+://[\d.]+:(\d+)", line)
        if m and m.group(1) in LISTENERS:
            ports[m.group(1)] = int(m.group(2))
    return Node(proc, data, log, ports, "".join(out))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = start_node(tmp_path_factory.mktemp("workers"))
    pids = n.workers
    yield n
    for pid in pids:  # nothing stays stopped, whatever a test left
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    pids = n.workers
    n.proc.send_signal(signal.SIGTERM)  # SIGTERM stops every worker, and the node with 0
    assert n.proc.wait(30) == 0
    assert [p for p in pids if _alive(p)] == []
    assert len(n.lines("stopped")) == 2


@contextlib.contextmanager
def only(node: Node, index: int) -> Iterator[None]:
    """Every new connection goes to worker ``index``: the other one is stopped meanwhile."""
    other = node.workers[1 - index]
    os.kill(other, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(other, signal.SIGCONT)


def test_the_banner_is_printed_once_with_the_worker_count(node: Node) -> None:
    assert node.banner.count("mailspec 0.") == 1
    assert "workers      2 processes" in node.banner
    assert len(node.workers) == 2


def test_the_recipient_rate_limit_holds_across_workers(node: Node) -> None:
    """PLATFORM outbound.ratelimit: 60 recipients per 5 minutes per user, whichever worker."""
    accepted = []
    for index, tries in ((0, 35), (1, 35)):
        with only(node, index), node.smtp("alice@example.test") as s:
            s.mail("alice@example.test")
            codes = [s.rcpt(f"bob+{index}-{i}@example.test")[0] for i in range(tries)]
            accepted.append(codes.count(250))
            s.rset()
    # 35 on one worker, then 25 of 35 on the other: 60 in all, not 35 + 35.
    assert accepted == [35, 25]
    refused = node.lines("rcpt.refused")
    assert len(refused) == 10 and all("[w1] " in ln for ln in refused)


def test_a_login_lockout_holds_across_workers(node: Node) -> None:
    """PLATFORM auth lockout: 10 failures lock the account, counted over every worker."""
    for index, failures in ((0, 6), (1, 4)):
        with only(node, index):
            for _ in range(failures):
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    node.smtp("carol@example.test", "wrong").quit()
    with only(node, 0), pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        node.smtp("carol@example.test").quit()  # the right password, six failures here
    assert refused.value.smtp_code == 454, refused.value


def one_on_each(node: Node, session: Callable[[], smtplib.SMTP]) -> list[smtplib.SMTP]:
    """A session held on worker 0 and one on worker 1, both running again when it returns."""
    held = []
    for index in (0, 1):
        with only(node, index):
            held.append(session())
    return held


def at_once(*steps: Callable[[], int]) -> list[int]:
    """Run the steps in threads at the same time (each on its own session); their results."""
    with ThreadPoolExecutor(len(steps)) as pool:
        return [f.result() for f in [pool.submit(step) for step in steps]]


def test_the_recipient_rate_limit_is_exact_when_both_workers_count_at_once(node: Node) -> None:
    """PLATFORM outbound.ratelimit: both workers counting erin's recipients at the same time
    accept 60 in all, not one more: each count is one transaction of the shared store."""
    sessions = one_on_each(node, lambda: node.smtp("erin@example.test"))
    refused_before = len(node.lines("rcpt.refused"))

    def recipients(s: smtplib.SMTP, index: int) -> int:
        s.mail("erin@example.test")
        return [s.rcpt(f"bob+c{index}-{i}@example.test")[0] for i in range(40)].count(250)

    try:
        accepted = at_once(*(partial(recipients, s, i) for i, s in enumerate(sessions)))
    finally:
        for s in sessions:
            s.quit()
    assert sum(accepted) == 60, accepted
    assert len(node.lines("rcpt.refused")) - refused_before == 20


def failures(s: smtplib.SMTP, user: str, count: int) -> int:
    """``count`` logins with a wrong password on one session; how many were answered 535."""
    codes = []
    for _ in range(count):
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            login(s, user, "wrong")
        codes.append(refused.value.smtp_code)
    return codes.count(535)


def test_a_login_lockout_is_exact_when_both_workers_count_at_once(node: Node) -> None:
    """PLATFORM submission.auth-lockout: failed logins on both workers at the same time lock
    the account at the 10th in all, and not at the 9th."""
    for user, per_worker, locked in (("frank", (5, 5), True), ("gina", (4, 5), False)):
        address = f"{user}@example.test"
        sessions = one_on_each(node, node.session)
        try:
            steps = zip(sessions, per_worker, strict=True)
            counted = at_once(*(partial(failures, s, address, n) for s, n in steps))
        finally:
            for s in sessions:
                s.close()
        assert counted == list(per_worker), user  # each failure answered 535 (none locked yet)
        for index in (0, 1):  # the right password, on each worker
            with only(node, index):
                if locked:
                    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                        node.smtp(address).quit()
                    assert refused.value.smtp_code == 454, (user, index, refused.value)
                else:
                    node.smtp(address).quit()


def test_mail_accepted_by_either_worker_is_delivered_once(node: Node) -> None:
    qids = []
    for index in (0, 1, 1, 0):
        with only(node, index), node.smtp("bob@example.test") as s:
            s.mail("bob@example.test")
            s.rcpt("bob@example.test")
            code, text = s.data(f"Subject: via worker {index}\r\n\r\nhello\r\n".encode())
            assert code == 250
            qids.append(text.decode().split()[-1])
    new = node.data / "mail"
    _wait(lambda: len(list(new.rglob("new/*"))) + len(list(new.rglob("cur/*"))) >= 4)
    _wait(lambda: not list((node.data / "spool").glob("*.json")))
    messages = [p.read_bytes() for p in new.rglob("*") if p.parent.name in ("new", "cur")]
    subjects = sorted(re.search(rb"Subject: (.*)\r\n", m).group(1) for m in messages)  # type: ignore[union-attr]
    assert subjects == [b"via worker 0"] * 2 + [b"via worker 1"] * 2
    queued = node.lines("queued")
    assert {ln.split("[")[1][:2] for ln in queued if any(q in ln for q in qids)} == {"w0", "w1"}


def _worker_of(node: Node, event: str, qid: str) -> list[str]:
    """The workers ("w0", "w1") that logged ``event`` for ``qid``, once per line."""
    return [ln.split("[")[1][:2] for ln in node.lines(event) if f"qid={qid} " in ln]


def _subject(path: Path) -> bytes:
    m = re.search(rb"\r\nSubject: (.*)\r\n", path.read_bytes())
    assert m is not None
    return m.group(1)


def _send(node: Node, subject: str, rcpts: list[str]) -> str:
    with node.smtp("bob@example.test") as s:
        s.mail("bob@example.test")
        for rcpt in rcpts:
            s.rcpt(rcpt)
        code, text = s.data(f"Subject: {subject}\r\n\r\nhello\r\n".encode())
    assert code == 250, text
    return text.decode().split()[-1]


def test_each_worker_delivers_what_it_took_once_and_a_killed_ones_mail_is_not_lost(
    tmp_path: Path,
) -> None:
    """Each worker delivers the mail it accepted itself, both at once, each message once;
    mail a worker was delivering (its claim held) when it was killed is delivered by the
    queue runner after, once."""
    from fakes.internet import FakeInternet
    from fakes.mx import Policy, Rule

    with FakeInternet(providers=["gmail"]) as internet:
        gmail = internet.mx["gmail"]
        # A receiver that takes a long while: a delivery to it is under way until the kill.
        gmail.policy = Policy(rules=[Rule(stage="rcpt", recipient="slow@gmail.test", delay=60)])
        node = start_node(
            tmp_path,
            dns={"nameservers": [internet.nameserver]},
            relay={"port": internet.smtp_port, "source_addresses": ["127.0.1.0/24"]},
        )
        try:
            # Both workers take mail at once, from eight clients.
            with ThreadPoolExecutor(8) as pool:
                qids = list(
                    pool.map(lambda n: _send(node, f"n{n}", ["erin@example.test"]), range(40))
                )
            box = node.data / "mail"
            _wait(lambda: len(list(box.rglob("new/*"))) >= 40)
            _wait(lambda: not list((node.data / "spool").glob("*.json")))
            subjects = sorted(_subject(p) for p in box.rglob("new/*"))
            assert subjects == sorted(f"n{n}".encode() for n in range(40))  # none twice
            for qid in qids:  # delivered once, by the worker that took it
                assert _worker_of(node, "delivered", qid) == _worker_of(node, "queued", qid)
            assert {w for q in qids for w in _worker_of(node, "delivered", q)} == {"w0", "w1"}

            # Worker 1 takes a message, delivers its local copy, and is killed while its
            # relay attempt waits at the receiver: its claim goes with it.
            with only(node, 1):
                qid = _send(node, "killed", ["frank@example.test", "slow@gmail.test"])
            _wait(lambda: _worker_of(node, "delivered", qid) == ["w1"])
            _wait(lambda: any(a.stage == "mail" for a in gmail.attempts))  # at RCPT now
            eml = (node.data / "spool" / f"{qid}.eml").open("rb")
            with eml, pytest.raises(BlockingIOError):  # claimed: no one else may start it
                fcntl.flock(eml, fcntl.LOCK_EX | fcntl.LOCK_NB)
            gmail.policy = Policy.accept_all()
            os.kill(node.workers[1], signal.SIGKILL)
            _wait(lambda: [list(d.rcpt_tos) for d in gmail.deliveries] == [["slow@gmail.test"]])
            _wait(lambda: not (node.data / "spool" / f"{qid}.json").exists())
            assert _worker_of(node, "delivered", qid) == ["w1", "w0"]  # the remote copy
            assert [_subject(p) for p in box.rglob("new/*")].count(b"killed") == 1
        finally:
            node.proc.send_signal(signal.SIGTERM)
            node.proc.wait(30)


def test_under_a_spool_lease_each_worker_delivers_while_the_primary_holds_it(
    tmp_path: Path,
) -> None:
    """Nodes sharing Redis lease their spools: the primary keeps the lease and posts it for
    the other worker, which then delivers what it accepted itself."""
    from reference.state.server import RedisServer

    with RedisServer(tmp_path / "redis") as redis:
        node = start_node(tmp_path, state={"url": redis.url})
        try:
            _wait(lambda: bool(node.lines("lease.acquired")))
            with only(node, 1):
                qid = _send(node, "leased", ["erin@example.test"])
            _wait(lambda: _worker_of(node, "delivered", qid) == ["w1"])
        finally:
            node.proc.send_signal(signal.SIGTERM)
            node.proc.wait(30)


def test_a_worker_that_dies_is_started_again(node: Node) -> None:
    before = node.workers
    os.kill(before[1], signal.SIGKILL)
    started = len(node.lines("worker.started"))
    # Until the supervisor has logged the new worker, its pid sorts first: wait for the line.
    _wait(lambda: len(node.lines("worker.started")) > started and len(node.workers) == 2)
    assert node.workers[0] == before[0] and node.workers[1] != before[1]
    with node.smtp("bob@example.test") as s:
        assert s.noop()[0] == 250


def test_a_killed_supervisor_leaves_no_orphan(tmp_path: Path) -> None:
    """Killed outright, the supervisor takes its workers with it (nothing keeps the ports).
    (SIGTERM stopping every worker with status 0 is checked as the module's node stops.)"""
    n = start_node(tmp_path)
    pids = n.workers
    assert len(pids) == 2
    n.proc.kill()
    n.proc.wait(30)
    _wait(lambda: not [p for p in pids if _alive(p)])


def test_idle_hears_of_mail_another_worker_delivered(node: Node) -> None:
    """RFC 2177: new mail is reported during IDLE, though the worker that delivered it may
    be another (which rings this one; IDLE's own look every 5 s is the net)."""
    ctx = ssl.create_default_context(cafile=str(node.data / "tls/cert.pem"))
    with only(node, 1):  # the IDLE session on worker 1; delivery is either worker's
        raw = socket.create_connection(("127.0.0.1", node.ports["imaps"]), timeout=10)
        imap = ctx.wrap_socket(raw, server_hostname="mail.example.test").makefile("rwb")

        def command(line: bytes, until: bytes) -> bytes:
            imap.write(line + b"\r\n")
            imap.flush()
            out = b""
            while until not in out:
                out += imap.readline()
            return out

        imap.readline()  # greeting
        command(b"a LOGIN dave@example.test pw", b"a ")
        command(b"b SELECT INBOX", b"b OK")
        command(b"c IDLE", b"+ ")
    with node.smtp("bob@example.test") as s:
        s.sendmail("bob@example.test", ["dave@example.test"], b"Subject: ring\r\n\r\nhi\r\n")
    assert b"EXISTS" in imap.readline()
    imap.close()


def _scrape(node: Node) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics of the node (the primary serves it), parsed."""
    from prometheus_client.parser import text_string_to_metric_families

    ctx = ssl.create_default_context(cafile=str(node.data / "tls/cert.pem"))
    ctx.check_hostname = False  # the certificate names the mail host; this is loopback
    conn = http.client.HTTPSConnection("127.0.0.1", node.ports["web"], context=ctx, timeout=20)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_what_every_worker_did(node: Node) -> None:
    """/metrics is the node's: connections and sessions of both workers, summed."""
    sub = (("listener", "submission"),)
    before = _scrape(node)
    for index, connections in ((0, 2), (1, 3)):
        with only(node, index):
            for _ in range(connections):
                with node.smtp("dave@example.test") as s:
                    assert s.noop()[0] == 250
    with only(node, 1):  # a session opened on worker 1 (the primary, stopped, takes none)
        held = node.smtp("dave@example.test")
    try:
        assert held.noop()[0] == 250
        after = _scrape(node)  # from the primary, running again
    finally:
        held.quit()
    moved = after[("mailspec_connections_total", sub)] - before[("mailspec_connections_total", sub)]
    assert moved == 6
    # Each worker counts in memory and publishes when a scrape asks: exact right after.
    bye = (("class", "2xx"), ("code", "221"), ("enhanced", "2.0.0"), *sub)
    assert (
        after[("mailspec_smtp_replies_total", bye)]
        - before.get(("mailspec_smtp_replies_total", bye), 0)
        == 5
    )
    assert after[("mailspec_sessions", sub)] == 1  # worker 1's, seen from the primary
    assert after[("mailspec_queue_messages", (("lane", "regular"),))] >= 0  # once, the node's
