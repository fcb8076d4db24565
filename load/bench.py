"""`tox -e bench`: the reference's inbound chain against Postfix → Dovecot and bare aiosmtpd.

    python -m load.bench [--quick] [--rounds 3] [--seconds 8] [--connections 16]
                         [--rates 50,100,250,400] [--workers 0] [--no-peers]

In one run, with one client, side by side on this machine (loopback only):

1. Throughput, closed loop (``--connections`` MTAs sending back to back, 10 messages per
   connection, from 127.0.3.x, each message 1 KB and DKIM-signed with RSA-2048), in
   ``--rounds`` rounds, the systems taking turns within each round (their order rotating):
   - the reference (`mailspec serve`, ``server.workers`` = ``--workers``, 0 = one per core)
     with its full inbound chain: DNSBL lookup, SPF, DKIM verification, DMARC, greylisting
     (through its state store, with no delay), virus scan by a real clamd, the spam checks,
     spool fsync, queue runner, local delivery into Maildir with its UID index;
   - Debian's Postfix handing each message to Debian's Dovecot over LMTP, which writes it
     into Maildir: no filters at all. Installed and started as private instances on
     loopback by the peers env's own ``conformance/peers/stack.sh`` (root and apt-get;
     skipped when they cannot be had, unless MAILSPEC_PEERS_REQUIRED=1), with the bench's
     mailboxes and one setting more: no reverse DNS look-up of clients (the reference asks
     the fake DNS; Postfix would ask the system resolver);
   - bare aiosmtpd writing each message durably into a Maildir before its 250
     (``load/bare_maildir.py``): the ceiling of the Python stack.
   Per system: messages accepted per second (250 received), delivered per second end to end
   (accepted ÷ (phase + the drain until every accepted message is in its mailbox)), the SMTP
   transaction's p50/p99, CPU milliseconds per message of all the system's processes (user +
   system, the drain included: the figure that holds on a shared machine; its kernel share
   beside it) and the peak RSS of all its processes together (sampled every 0.2 s). The
   reference's processes are `mailspec serve`'s and clamd's; Postfix → Dovecot's are both
   masters and their children.
   Ratios reference ÷ Postfix → Dovecot and reference ÷ bare, from the medians of the rounds.
2. Latency at fixed rates (open loop: a message every 1/rate seconds, whatever the replies),
   reference and Postfix → Dovecot in turn: p50/p99 of the SMTP transaction and of
   accept-to-mailbox (the 250 to the file's rename into ``new/``). Bare aiosmtpd delivers
   before its 250: it has no accept-to-mailbox.

``--quick`` (about three minutes): 4 s phases, 4 s per rate (50, 100, 250 and 400 msg/s
by default). Prints a table and writes ``reports/bench.json`` (figures of every round,
parameters, the machine, its load average before and after). Every phase is bounded in
messages and time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load.ledger import ctime_lag
from reference.testing import MAILSPEC, ClamdServer, write_config

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "conformance" / "peers" / "stack.sh"
SENDER_DOMAIN = "bench-sender.test"
DNSBL_ZONE = "zen.dnsbl.test"
RECIPIENTS = [f"user{i}@example.test" for i in range(10)]
PER_CONNECTION = 10
OPEN_LOOP_CONNECTIONS = 64
_QID_IN_RECEIVED = re.compile(rb"\(mailspec\)\s+with\s+\S+\s+id\s+(\w+)")
_QID_IN_POSTFIX = re.compile(rb"\(Postfix\)\s+with\s+\S+\s+id\s+(\w+)")
_BARE_NAME = re.compile(r"delivered as (\S+)")


# -- the message: one DKIM-signed template, matched on arrival by the queue id


def signed_template(key_pem: bytes, size: int) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from reference.auth.dkim import sign
    from reference.auth.keys import SigningKey

    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    head = (
        f"From: Bench <news@{SENDER_DOMAIN}>\r\nTo: <user0@example.test>\r\n"
        f"Subject: benchmark\r\nDate: Thu, 26 Nov 2026 00:00:00 +0000\r\n"
        f"Message-ID: <bench@{SENDER_DOMAIN}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    line = "The quick brown fox jumps over the lazy dog, again and again.\r\n"
    msg = (head + line * max(1, (size - len(head)) // len(line))).encode()
    sig = sign(msg, [SigningKey(SENDER_DOMAIN, "bench", "rsa-sha256", key)], now=time.time())
    return sig + msg


def zone(public_b64: str) -> str:
    txt = f"v=DKIM1; k=rsa; p={public_b64}"
    parts = " ".join(f'"{txt[i : i + 250]}"' for i in range(0, len(txt), 250))
    return "\n".join(
        [
            "$TTL 300",
            f'{SENDER_DOMAIN}. IN TXT "v=spf1 ip4:127.0.3.0/24 -all"',
            f'_dmarc.{SENDER_DOMAIN}. IN TXT "v=DMARC1; p=reject"',
            f"bench._domainkey.{SENDER_DOMAIN}. IN TXT {parts}",
            f"{DNSBL_ZONE}. IN SOA ns.{DNSBL_ZONE}. hostmaster.{DNSBL_ZONE}. 1 3600 600 86400 300",
            # The senders' HELO name and their reverse zone exist as zones, as on the
            # Internet: their negative answers carry a TTL and are cached like any other
            # (outside any zone the fake DNS answers with a negative TTL of 0).
            "bench.test. IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300",
            "3.0.127.in-addr.arpa. IN SOA ns.bench.test. h.bench.test. 1 3600 600 86400 300",
            "",
        ]
    )


# -- processes


def _spawn(cmd: list[str], log: Path, ready: str, timeout: float = 60.0) -> tuple[Any, str]:
    """Start a server; wait for the line containing ``ready``; return what it printed."""
    out = log.open("w")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=out, text=True, stdin=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if ready in line:
            # Keep draining its output, or a chatty server blocks on a full pipe.
            def drain() -> None:
                assert proc.stdout is not None
                for rest in proc.stdout:
                    out.write(rest)

            threading.Thread(target=drain, daemon=True).start()
            return proc, "".join(lines)
    proc.kill()
    raise RuntimeError(f"{cmd[3:5]} did not start: {''.join(lines)}{log.read_text()[-1500:]}")


def _stop(proc: Any) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the client


@dataclass
class Sent:
    t0: float  # wall clock before MAIL FROM
    t250: float  # wall clock at the 250
    key: str  # queue id (reference) or file name (bare)


@dataclass
class Phase:
    sent: list[Sent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    late: list[float] = field(default_factory=list)  # open loop: start behind schedule, s
    started: float = 0.0
    ended: float = 0.0


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w, self.count = reader, writer, 0

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = await asyncio.wait_for(self.r.readline(), 30)
            if not line:
                raise ConnectionError("closed")
            lines.append(line.decode("ascii", "replace").rstrip())
            if line[3:4] != b"-":
                return int(lines[-1][:3]), lines[-1]

    async def cmd(self, text: bytes, want: int) -> str:
        self.w.write(text)
        code, last = await self.reply()
        if code != want:
            raise ConnectionError(f"{text[:12]!r}: {last}")
        return last

    def close(self) -> None:
        self.w.close()


_source = 0


async def connect(port: int) -> Conn:
    global _source
    _source = _source % 250 + 1
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.3.{_source}", 0))
    c = Conn(r, w)
    code, last = await c.reply()
    if code != 220:
        raise ConnectionError(last)
    await c.cmd(b"EHLO mta.bench.test\r\n", 250)
    return c


async def send(c: Conn, n: int, data: bytes) -> Sent:
    rcpt = RECIPIENTS[n % len(RECIPIENTS)]
    t0 = time.time()
    await c.cmd(f"MAIL FROM:<news@{SENDER_DOMAIN}>\r\n".encode(), 250)
    await c.cmd(f"RCPT TO:<{rcpt}>\r\n".encode(), 250)
    await c.cmd(b"DATA\r\n", 354)
    last = await c.cmd(data + b".\r\n", 250)
    t250 = time.time()
    c.count += 1
    m = _BARE_NAME.search(last)
    return Sent(t0, t250, m.group(1) if m else last.split()[-1])


async def closed_loop(port: int, data: bytes, connections: int, seconds: float) -> Phase:
    phase = Phase(started=time.time())
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def mta() -> None:
        c: Conn | None = None
        while time.monotonic() < stop_at:
            try:
                if c is None or c.count >= PER_CONNECTION:
                    if c is not None:
                        c.close()
                    c = await connect(port)
                phase.sent.append(await send(c, next(counter), data))
            except (TimeoutError, OSError, ConnectionError) as e:
                phase.errors.append(repr(e))
                if c is not None:
                    c.close()
                c = None
                await asyncio.sleep(0.05)
        if c is not None:
            c.close()

    await asyncio.gather(*(mta() for _ in range(connections)))
    phase.ended = time.time()
    return phase


async def open_loop(port: int, data: bytes, rate: float, seconds: float) -> Phase:
    """A message every 1/rate seconds, on at most OPEN_LOOP_CONNECTIONS connections (as an
    MTA's connection pool): past the server's capacity, sends start late (``late``)."""
    phase = Phase(started=time.time())
    idle: list[Conn] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    slots = asyncio.Semaphore(OPEN_LOOP_CONNECTIONS)

    async def one(n: int) -> None:
        async with slots:
            phase.late.append(max(0.0, loop.time() - (t0 + n / rate)))
            c = idle.pop() if idle else None
            try:
                if c is None:
                    c = await connect(port)
                phase.sent.append(await send(c, n, data))
            except (TimeoutError, OSError, ConnectionError) as e:
                phase.errors.append(repr(e))
                if c is not None:
                    c.close()
                return
            if c.count >= PER_CONNECTION:
                c.close()
            else:
                idle.append(c)

    tasks = []
    for n in range(int(rate * seconds)):
        delay = t0 + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    for c in idle:
        c.close()
    phase.ended = time.time()
    return phase


# -- arrivals


class Arrivals:
    """Files renamed into the recipients' ``new/``: key -> ctime. The key is what the 250
    named: found in the file by ``pattern`` (a queue id in a Received field), or, without a
    pattern, the file's own name."""

    def __init__(self, dirs: list[Path], pattern: re.Pattern[bytes] | None, lag: float) -> None:
        self.dirs = dirs
        self.lag = lag  # see load.ledger.ctime_lag
        self.pattern = pattern
        self.seen: dict[str, float] = {}
        self._names: set[str] = set()

    def scan(self) -> None:
        for d in self.dirs:
            try:
                with os.scandir(d) as it:
                    fresh = [e for e in it if e.name not in self._names]
            except FileNotFoundError:
                continue
            for e in fresh:
                self._names.add(e.name)
                try:
                    when = e.stat().st_ctime + self.lag
                    key = e.name
                    if self.pattern is not None:
                        with open(e.path, "rb") as f:
                            m = self.pattern.search(f.read(8192))
                        key = m.group(1).decode() if m else e.name
                except FileNotFoundError:
                    continue
                self.seen[key] = when

    async def wait_for(self, keys: list[str], limit: float) -> float:
        """Scan until every key arrived (for at most ``limit`` seconds); how long it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            self.scan()
            if all(k in self.seen for k in keys):
                break
            await asyncio.sleep(0.01)
        return time.monotonic() - t0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def throughput(phase: Phase, arrivals: Arrivals, drain: float) -> dict[str, Any]:
    span = phase.ended - phase.started
    keys = [s.key for s in phase.sent]
    arrived_in = sum(1 for k in keys if k in arrivals.seen and arrivals.seen[k] <= phase.ended)
    accept_ms = [(s.t250 - s.t0) * 1000 for s in phase.sent]
    return {
        "seconds": round(span, 2),
        "accepted": len(phase.sent),
        "accepted_per_s": round(len(phase.sent) / span, 1),
        # End to end: everything accepted, over the time until the last of it arrived.
        "delivered_per_s": round(len(phase.sent) / (span + drain), 1),
        "delivered_in_phase_per_s": round(arrived_in / span, 1),
        "backlog_at_end": len(keys) - arrived_in,
        "drain_s": round(drain, 2),
        "lost": sum(1 for k in keys if k not in arrivals.seen),
        "errors": len(phase.errors),
        "error_examples": sorted(set(phase.errors))[:3],
        "accept_p50_ms": _r(pct(accept_ms, 0.5)),
        "accept_p99_ms": _r(pct(accept_ms, 0.99)),
    }


# -- what a system's processes use


def tree(roots: list[int]) -> list[int]:
    """The processes ``roots`` and all their descendants (children of any of their threads)."""
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in children.read_text().split())
            except OSError:
                continue  # gone since the listing
    return found


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []  # gone since the listing


def cpu_seconds(roots: list[int], *, kernel_only: bool = False) -> float:
    """CPU time (user + system) of processes and all their descendants, in seconds, with
    that of children they have reaped (Postfix's smtpd and Dovecot's lmtp come and go);
    ``kernel_only``: the system time alone (fsync, sockets, the futexes of thread hops).

    CPU per message is the figure that stays meaningful on a shared machine, where
    throughput depends on what else runs."""
    tick = os.sysconf("SC_CLK_TCK")
    # utime stime cutime cstime; the kernel's share: stime cstime.
    columns = (12, 14) if kernel_only else (11, 12, 13, 14)
    total = 0
    for pid in tree(roots):
        fields = _stat(pid)
        if fields:
            total += sum(int(fields[i]) for i in columns)
    return total / tick


def memory(roots: list[int]) -> tuple[int, int]:
    """Resident memory of processes and all their descendants, together, in bytes: the sum
    of their RSS, and of their PSS (shared pages divided among the processes sharing them:
    forty Postfix and Dovecot processes map the same libraries, which an RSS sum counts
    forty times)."""
    page = os.sysconf("SC_PAGE_SIZE")
    rss = pss = 0
    for pid in tree(roots):
        fields = _stat(pid)
        if not fields:
            continue
        rss += int(fields[21]) * page
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                pss += 1024 * next(int(ln.split()[1]) for ln in f if ln.startswith(b"Pss:"))
        except (OSError, StopIteration):
            pss += int(fields[21]) * page  # not ours to read: its RSS, an upper bound
    return rss, pss


class PeakMemory:
    """Samples a system's memory every 0.2 s while it works; keeps the peaks."""

    def __init__(self, roots: list[int]) -> None:
        self.roots, self.rss, self.pss = roots, 0, 0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        rss, pss = memory(self.roots)
        self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    async def _sample(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.2)

    def __enter__(self) -> PeakMemory:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.sample()


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


# -- the systems


@dataclass
class System:
    name: str  # its key in the report
    label: str  # its row in the table
    port: int
    arrivals: Arrivals
    parts: dict[str, int]  # the processes whose trees are the system, by name
    rounds: list[dict[str, Any]] = field(default_factory=list)
    peak: PeakMemory = field(init=False)

    def __post_init__(self) -> None:
        self.peak = PeakMemory(self.roots)

    @property
    def roots(self) -> list[int]:
        return list(self.parts.values())

    def watch(self) -> PeakMemory:
        """Peaks over every phase of this system."""
        return self.peak


@dataclass
class PostfixDovecot:
    """Postfix → Dovecot LMTP → Maildir, started by conformance/peers/stack.sh."""

    workdir: Path
    port: int = 0
    name: str = ""
    instance: Path = Path()

    def start(self) -> bool:
        """Start the stack; False when the packages cannot be had here (stack.sh's status 3)."""
        env = dict(
            os.environ,
            MAILSPEC_STACK_USERS=" ".join(r.split("@")[0] for r in RECIPIENTS),
            # The client's 127.0.3.x have no PTR record: Postfix would ask the system
            # resolver about each (the reference asks the fake DNS, which answers at once).
            MAILSPEC_STACK_MAIN_CF="smtpd_peername_lookup = no",
            PYTHON=sys.executable,
        )
        log = self.workdir / "stack.log"
        with log.open("w") as out:
            status = subprocess.run(
                ["bash", str(STACK), "start", str(self.workdir / "stack")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, timeout=600,
            ).returncode  # fmt: skip
        if status == 3 and os.environ.get("MAILSPEC_PEERS_REQUIRED") != "1":
            print(f"bench: Postfix → Dovecot skipped: {log.read_text().strip()}", flush=True)
            return False
        if status != 0:
            raise RuntimeError(f"stack.sh start failed: {log.read_text()[-1500:]}")
        target = tomllib.loads((self.workdir / "stack" / "target.toml").read_text())
        self.port = int(target["endpoints"]["smtp"].rsplit(":", 1)[1])
        self.name = target["name"]
        self.instance = Path((self.workdir / "stack" / "instance").read_text().strip())
        return True

    def parts(self) -> dict[str, int]:
        return {
            name: int(Path(p).read_text().split()[0])
            for name, p in (
                ("postfix", self.instance / "spool" / "pid" / "master.pid"),
                ("dovecot", self.instance / "dovecot" / "run" / "master.pid"),
            )
        }

    def dirs(self) -> list[Path]:
        home = self.instance / "dovecot" / "home"
        return [home / r / "Maildir" / "new" for r in RECIPIENTS]

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(STACK), "stop", str(self.workdir / "stack")],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
        )  # fmt: skip


# -- the run


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs, best = "", ""
    tmp = os.path.realpath(tempfile.gettempdir())
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, point, kind, *_ = line.split()
            if tmp.startswith(point) and len(point) > len(best):
                best, fs = point, kind
    except (OSError, ValueError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "tmp_fs": fs,
    }


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


async def closed_round(s: System, data: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """One closed-loop phase against one system, its drain, CPU and memory."""
    cpu0 = {part: cpu_seconds([pid]) for part, pid in s.parts.items()}
    sys0 = cpu_seconds(list(s.parts.values()), kernel_only=True)
    with s.watch():
        phase = await closed_loop(s.port, data, args.connections, args.seconds)
        drain = await s.arrivals.wait_for([k.key for k in phase.sent], args.drain_limit)
    row = throughput(phase, s.arrivals, drain)
    n = max(1, len(phase.sent))
    used = {part: cpu_seconds([pid]) - cpu0[part] for part, pid in s.parts.items()}
    kernel = cpu_seconds(list(s.parts.values()), kernel_only=True) - sys0
    row["cpu_ms_per_msg"] = round(1000 * sum(used.values()) / n, 2)
    row["kernel_ms_per_msg"] = round(1000 * kernel / n, 2)
    row["cpu_ms_per_msg_by_part"] = {part: round(1000 * t / n, 2) for part, t in used.items()}
    return row


async def fixed_rate(
    s: System, data: bytes, rate: float, args: argparse.Namespace
) -> dict[str, Any]:
    with s.watch():
        phase = await open_loop(s.port, data, rate, args.rate_seconds)
        drain = await s.arrivals.wait_for([k.key for k in phase.sent], args.drain_limit)
    seen = s.arrivals.seen
    lat = [max(0.0, (seen[k.key] - k.t250) * 1000) for k in phase.sent if k.key in seen]
    accept_ms = [(k.t250 - k.t0) * 1000 for k in phase.sent]
    span = phase.ended - phase.started
    return {
        "system": s.name,
        "rate": rate,
        "sent": len(phase.sent),
        "achieved_per_s": round(len(phase.sent) / span, 1),
        "errors": len(phase.errors),
        "error_examples": sorted(set(phase.errors))[:3],
        "late_p99_ms": _r(pct([v * 1000 for v in phase.late], 0.99)),
        "lost": sum(1 for k in phase.sent if k.key not in seen),
        "accept_p50_ms": _r(pct(accept_ms, 0.5)),
        "accept_p99_ms": _r(pct(accept_ms, 0.99)),
        "mailbox_p50_ms": _r(pct(lat, 0.5)),
        "mailbox_p99_ms": _r(pct(lat, 0.99)),
        "mailbox_mean_ms": _r(statistics.fmean(lat)) if lat else None,
        "drain_s": round(drain, 2),
    }


def summary(s: System) -> dict[str, Any]:
    """The median of the rounds, per figure; errors and losses summed."""
    out: dict[str, Any] = {"label": s.label, "rounds": s.rounds}
    for k in ("accepted_per_s", "delivered_per_s", "accept_p50_ms", "accept_p99_ms",
              "cpu_ms_per_msg", "kernel_ms_per_msg", "drain_s"):  # fmt: skip
        values = [r[k] for r in s.rounds if r[k] is not None]
        out[k] = round(statistics.median(values), 2) if values else None
    out["cpu_ms_per_msg_by_part"] = {
        part: round(statistics.median(r["cpu_ms_per_msg_by_part"][part] for r in s.rounds), 2)
        for part in s.parts
    }
    out["accepted"] = sum(r["accepted"] for r in s.rounds)
    out["lost"] = sum(r["lost"] for r in s.rounds)
    out["errors"] = sum(r["errors"] for r in s.rounds)
    out["rss_peak_mb"] = round(s.peak.rss / 2**20, 1)
    out["pss_peak_mb"] = round(s.peak.pss / 2**20, 1)
    return out


def ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    return {
        k: round(a[k] / b[k], 3) if a.get(k) and b.get(k) else None
        for k in (
            "accepted_per_s",
            "delivered_per_s",
            "cpu_ms_per_msg",
            "rss_peak_mb",
            "pss_peak_mb",
        )
    }


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from reference.directory import Directory

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp / "bench.zone").write_text(zone(base64.b64encode(spki).decode()))
    data = signed_template(pem, args.size)
    procs: list[Any] = []
    clamd = None
    peers = PostfixDovecot(tmp)
    peers_up = False
    result: dict[str, Any] = {"machine": machine(), "parameters": vars(args).copy()}
    result["parameters"]["report"] = str(args.report)
    result["parameters"]["message_bytes"] = len(data)
    try:
        dns, line = _spawn(
            [*MAILSPEC, "fake-dns", "--listen", "127.0.0.1:0", "--zone", str(tmp / "bench.zone")],
            tmp / "dns.log",
            "listening",
        )
        procs.append(dns)
        nameserver = line.split("listening on ")[1].split()[0]
        clamd = ClamdServer(tmp / "clamd").start()
        assert clamd.proc is not None
        var = tmp / "var"
        directory = Directory(var / "directory.sqlite3")
        directory.add_domain("example.test")
        for r in RECIPIENTS:
            directory.add_user(r, "bench-pw")
        directory.close()
        config = write_config(
            tmp / "bench.toml",
            server={"log_level": "warning", "data_dir": str(var), "workers": args.workers},
            dns={"nameservers": [nameserver]},
            greylist={"delay": "0s", "bypass_networks": ["127.0.0.1/32"]},
            dnsbl={"zones": [DNSBL_ZONE]},
            antivirus={"clamd": clamd.address},
        )
        ref, printed = _spawn(
            [*MAILSPEC, "serve", "--config", str(config)], tmp / "reference.log", "Stop with"
        )
        procs.append(ref)
        m = re.search(r"\bmx\s+smtp://[\d.]+:(\d+)", printed)
        assert m is not None, printed
        w = re.search(r"workers\s+(\d+)", printed)
        workers = int(w.group(1)) if w else 1
        result["parameters"]["reference_workers"] = workers
        bare_dir = tmp / "bare"
        bare, line = _spawn(
            [sys.executable, "-m", "load.bare_maildir", "--listen", "127.0.0.1:0",
             "--maildir", str(bare_dir)],
            tmp / "bare.log",
            "listening",
        )  # fmt: skip
        procs.append(bare)
        if args.peers:
            peers_up = peers.start()
        lag = ctime_lag(tmp / "ctime")
        result["machine"]["ctime_lag_ms"] = round(lag * 1000, 2)
        systems = [
            System(
                "reference",
                f"reference (full chain, {workers} workers)",
                int(m.group(1)),
                Arrivals(
                    [var / "mail" / "example.test" / r.split("@")[0] / "new" for r in RECIPIENTS],
                    _QID_IN_RECEIVED,
                    lag,
                ),
                {"mailspec serve": ref.pid, "clamd": clamd.proc.pid},
            )
        ]
        if peers_up:
            result["parameters"]["postfix_dovecot"] = peers.name
            systems.append(
                System(
                    "postfix_dovecot",
                    peers.name.replace("postfix-", "Postfix ").replace("+dovecot-", " → Dovecot "),
                    peers.port,
                    Arrivals(peers.dirs(), _QID_IN_POSTFIX, lag),
                    peers.parts(),
                )
            )
        systems.append(
            System(
                "bare",
                "bare aiosmtpd + Maildir",
                int(line.strip().rsplit(":", 1)[1]),
                Arrivals([bare_dir / r / "new" for r in RECIPIENTS], None, lag),
                {"bare_maildir": bare.pid},
            )
        )

        # Warm up each (first connections, keys, caches, the greylist's first pass).
        for s in systems:
            await closed_loop(s.port, data, 2, 1.0)
        await asyncio.sleep(1.0)
        for s in systems:
            s.arrivals.scan()

        result["load_before"] = load_average()
        for n in range(args.rounds):
            for s in systems[n % len(systems) :] + systems[: n % len(systems)]:
                row = await closed_round(s, data, args)
                s.rounds.append(row)
                print(f"bench: round {n + 1}: {s.name}: {json.dumps(row)}", flush=True)
        tp: dict[str, Any] = {s.name: summary(s) for s in systems}
        if "postfix_dovecot" in tp:
            tp["ratio_postfix_dovecot"] = ratios(tp["reference"], tp["postfix_dovecot"])
        tp["ratio_bare"] = ratios(tp["reference"], tp["bare"])
        result["throughput"] = tp

        rates = []
        for rate in args.rates:
            for s in systems:
                if s.name == "bare":
                    continue  # it delivers before its 250
                row = await fixed_rate(s, data, rate, args)
                rates.append(row)
                print(f"bench: {s.name} at {rate:g}/s: {json.dumps(row)}", flush=True)
        result["fixed_rates"] = rates
        for s in systems:  # the peaks of the fixed rates too
            tp[s.name].update(summary(s))
        if "postfix_dovecot" in tp:
            tp["ratio_postfix_dovecot"] = ratios(tp["reference"], tp["postfix_dovecot"])
        tp["ratio_bare"] = ratios(tp["reference"], tp["bare"])
        result["load_after"] = load_average()
    finally:
        for p in reversed(procs):
            _stop(p)
        if clamd is not None:
            clamd.stop()
        if peers_up:
            peers.stop()
    return result


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:g} ms"


def table(result: dict[str, Any]) -> str:
    m, tp, p = result["machine"], result["throughput"], result["parameters"]
    names = [n for n in ("reference", "postfix_dovecot", "bare") if n in tp]
    out = [
        f"mailspec bench: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, "
        f"Python {m['python']}, {m['system']}, {m['tmp_fs']}; load average "
        f"{' '.join(map(str, result['load_before']))} before, "
        f"{' '.join(map(str, result['load_after']))} after",
        f"throughput, closed loop: {p['connections']} connections x {p['seconds']:g}s, "
        f"{PER_CONNECTION} msg/connection, {p['message_bytes']} B DKIM-signed messages; "
        f"median of {p['rounds']} rounds",
        f"  {'':<36} {'accepted/s':>10} {'delivered/s':>11} {'SMTP p50':>9} {'SMTP p99':>9}"
        f" {'CPU/msg':>9} {'RSS sum':>9} {'PSS sum':>9}",
    ]
    for n in names:
        row = tp[n]
        out.append(
            f"  {row['label']:<36} {row['accepted_per_s']:>10} {row['delivered_per_s']:>11} "
            f"{_ms(row['accept_p50_ms']):>9} {_ms(row['accept_p99_ms']):>9}"
            f" {_ms(row['cpu_ms_per_msg']):>9} {row['rss_peak_mb']:>6} MB"
            f" {row['pss_peak_mb']:>6} MB"
        )
    for key, label in (("ratio_postfix_dovecot", "Postfix → Dovecot"), ("ratio_bare", "bare")):
        if key in tp:
            r = tp[key]
            out.append(
                f"  {'ratio reference / ' + label:<36} {r['accepted_per_s']:>10} "
                f"{r['delivered_per_s']:>11} {'':>9} {'':>9} {r['cpu_ms_per_msg']:>9}"
                f" {r['rss_peak_mb']:>9} {r['pss_peak_mb']:>9}"
            )
    out.append("  delivered/s: end to end, accepted / (phase + drain until all are in mailboxes)")
    out.append("  RSS sum, PSS sum: peak memory of all the system's processes together")
    split = "; ".join(
        ", ".join(f"{part} {ms:g} ms" for part, ms in tp[n]["cpu_ms_per_msg_by_part"].items())
        for n in names
        if len(tp[n]["cpu_ms_per_msg_by_part"]) > 1
    )
    out.append(f"  CPU/msg by part: {split}")
    kernel = ", ".join(f"{n} {tp[n]['kernel_ms_per_msg']:g} ms" for n in names)
    out.append(f"  of CPU/msg, in the kernel (system time): {kernel}")
    out.append("  rounds (accepted/s, delivered/s, CPU ms/msg):")
    for n in names:
        rounds = ", ".join(
            f"{r['accepted_per_s']}/{r['delivered_per_s']}/{r['cpu_ms_per_msg']}"
            for r in tp[n]["rounds"]
        )
        out.append(f"    {n:<16} {rounds}")
    if result["fixed_rates"]:
        out.append(
            f"latency at fixed rates, {p['rate_seconds']:g}s each, at most "
            f"{OPEN_LOOP_CONNECTIONS} connections:"
        )
        out.append(
            f"  {'':<16} {'rate':>6} {'achieved':>9} {'SMTP p50':>9} {'SMTP p99':>9} "
            f"{'mailbox p50':>12} {'mailbox p99':>12} {'lost':>5}"
        )
    for row in result["fixed_rates"]:
        over = row["achieved_per_s"] < 0.95 * row["rate"]
        out.append(
            f"  {row['system']:<16} {row['rate']:>4g}/s {row['achieved_per_s']:>7}/s "
            f"{_ms(row['accept_p50_ms']):>9} {_ms(row['accept_p99_ms']):>9} "
            f"{_ms(row['mailbox_p50_ms']):>12} {_ms(row['mailbox_p99_ms']):>12} {row['lost']:>5}"
            + (f"  overloaded: sends up to {row['late_p99_ms'] / 1000:.1f}s late" if over else "")
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m load.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 s phases and 4 s per rate")
    ap.add_argument("--rounds", type=int, default=3, help="closed-loop rounds per system")
    ap.add_argument("--seconds", type=float, default=None, help="closed-loop phase (8 s)")
    ap.add_argument("--connections", type=int, default=16, help="concurrent MTAs (max 200)")
    ap.add_argument("--rates", default="50,100,250,400", help="fixed rates, msg/s (max 2000)")
    ap.add_argument("--rate-seconds", type=float, default=None, help="each rate's length (6 s)")
    ap.add_argument("--size", type=int, default=1024, help="message size, bytes")
    ap.add_argument(
        "--workers", type=int, default=0, help="the reference's server.workers (0: one per core)"
    )
    ap.add_argument(
        "--no-peers", dest="peers", action="store_false", help="leave out Postfix → Dovecot"
    )
    ap.add_argument("--report", type=Path, default=ROOT / "reports" / "bench.json")
    args = ap.parse_args(argv)
    args.seconds = args.seconds or (4.0 if args.quick else 8.0)
    args.rate_seconds = args.rate_seconds or (4.0 if args.quick else 6.0)
    args.drain_limit = 60.0 if args.quick else 120.0
    args.rates = [float(r) for r in str(args.rates).split(",") if r.strip()]
    if not 1 <= args.connections <= 200 or not 0 < args.seconds <= 120:
        print("bench: 1-200 connections, up to 120 s", file=sys.stderr)
        return 2
    if any(not 0 < r <= 2000 for r in args.rates) or not 0 < args.rate_seconds <= 60:
        print("bench: rates up to 2000 msg/s, up to 60 s each", file=sys.stderr)
        return 2
    if not 1 <= args.rounds <= 10:
        print("bench: 1-10 rounds", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="mailspec-bench-"))
    try:
        result = asyncio.run(bench(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = table(result)
    print(text)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    result["table"] = text.splitlines()
    args.report.write_text(json.dumps(result, indent=2) + "\n")
    print(f"bench: written to {args.report}")
    tp = result["throughput"]
    lost = sum(tp[n]["lost"] for n in ("reference", "postfix_dovecot", "bare") if n in tp)
    return 1 if lost + sum(r["lost"] for r in result["fixed_rates"]) else 0


if __name__ == "__main__":
    sys.exit(main())
