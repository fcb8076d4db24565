"""`tox -e bench`: the reference's inbound throughput and latency, against bare aiosmtpd.

    python -m load.bench [--seconds 8] [--connections 16] [--rates 50,100,250]

In one run, with one client, side by side on this machine:

1. Throughput, closed loop (``--connections`` MTAs sending back to back, 10 messages per
   connection, from 127.0.3.x): messages per second accepted (250 received) and delivered
   (arrived in the Maildir) by
   - the reference (`mailspec serve`) with its full inbound chain: DNSBL lookup, SPF, DKIM
     verification (each message is signed, RSA-2048), DMARC, greylisting (through its state
     store, with no delay), virus scan by a real clamd, the spam checks, spool fsync,
     queue runner, local delivery into Maildir with its UID index;
   - bare aiosmtpd writing each message durably into a Maildir before its 250
     (``load/bare_maildir.py``): the ceiling of the Python stack;
   and their ratio.
2. Latency at fixed rates (open loop: a message every 1/rate seconds, whatever the replies):
   p50/p99 of the SMTP transaction and of accept-to-mailbox (the 250 to the file's rename
   into ``new/``), reference only (bare aiosmtpd delivers before its 250).

Prints a table and writes ``reports/bench.json`` (figures, parameters, the machine).
Loopback only; every phase is bounded in messages and time.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load.ledger import ctime_lag
from reference.testing import MAILSPEC, ClamdServer, write_config

ROOT = Path(__file__).resolve().parent.parent
SENDER_DOMAIN = "bench-sender.test"
DNSBL_ZONE = "zen.dnsbl.test"
RECIPIENTS = [f"user{i}@example.test" for i in range(10)]
PER_CONNECTION = 10
OPEN_LOOP_CONNECTIONS = 64
_QID_IN_RECEIVED = re.compile(rb"\(mailspec\)\s+with\s+\S+\s+id\s+(\w+)")
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
    """Files renamed into the recipients' ``new/``: key (queue id or name) -> ctime."""

    def __init__(self, dirs: list[Path], by_qid: bool, lag: float) -> None:
        self.dirs = dirs
        self.lag = lag  # see load.ledger.ctime_lag
        self.by_qid = by_qid
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
                    if self.by_qid:
                        with open(e.path, "rb") as f:
                            m = _QID_IN_RECEIVED.search(f.read(8192))
                        key = m.group(1).decode() if m else e.name
                    else:
                        key = e.name
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
        "delivered_per_s": round(arrived_in / span, 1),
        "backlog_at_end": len(keys) - arrived_in,
        "drain_s": round(drain, 2),
        "lost": sum(1 for k in keys if k not in arrivals.seen),
        "errors": len(phase.errors),
        "error_examples": sorted(set(phase.errors))[:3],
        "accept_p50_ms": _r(pct(accept_ms, 0.5)),
        "accept_p99_ms": _r(pct(accept_ms, 0.99)),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its descendants, in seconds.

    CPU per message is the figure that stays meaningful on a shared machine, where
    throughput depends on what else runs."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since the listing
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        todo.extend(children.get(p, []))
    return total


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


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
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "tmp_fs": fs,
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
    result: dict[str, Any] = {"machine": machine(), "parameters": vars(args).copy()}
    result["parameters"]["report"] = str(args.report)
    try:
        dns, line = _spawn(
            [*MAILSPEC, "fake-dns", "--listen", "127.0.0.1:0", "--zone", str(tmp / "bench.zone")],
            tmp / "dns.log",
            "listening",
        )
        procs.append(dns)
        nameserver = line.split("listening on ")[1].split()[0]
        clamd = ClamdServer(tmp / "clamd").start()
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
        ref_port = int(m.group(1))
        bare_dir = tmp / "bare"
        bare, line = _spawn(
            [sys.executable, "-m", "load.bare_maildir", "--listen", "127.0.0.1:0",
             "--maildir", str(bare_dir)],
            tmp / "bare.log",
            "listening",
        )  # fmt: skip
        procs.append(bare)
        bare_port = int(line.strip().rsplit(":", 1)[1])
        ref_dirs = [var / "mail" / "example.test" / r.split("@")[0] / "new" for r in RECIPIENTS]
        bare_dirs = [bare_dir / r / "new" for r in RECIPIENTS]

        # Warm up both (first connections, keys, caches, the greylist's first pass).
        for port in (ref_port, bare_port):
            await closed_loop(port, data, 2, 1.0)
        lag = ctime_lag(tmp / "ctime")
        result["machine"]["ctime_lag_ms"] = round(lag * 1000, 2)
        ref_arr, bare_arr = Arrivals(ref_dirs, True, lag), Arrivals(bare_dirs, False, lag)
        await asyncio.sleep(1.0)
        ref_arr.scan()
        bare_arr.scan()

        tp: dict[str, Any] = {}
        for name, port, arr, pid in (
            ("reference", ref_port, ref_arr, ref.pid),
            ("bare", bare_port, bare_arr, bare.pid),
        ):
            cpu0 = cpu_seconds(pid)
            phase = await closed_loop(port, data, args.connections, args.seconds)
            drain = await arr.wait_for([s.key for s in phase.sent], 120)
            tp[name] = throughput(phase, arr, drain)
            used = cpu_seconds(pid) - cpu0
            tp[name]["cpu_ms_per_msg"] = round(1000 * used / max(1, len(phase.sent)), 2)
            print(f"bench: {name}: {json.dumps(tp[name])}", flush=True)
        tp["ratio"] = {
            k: round(tp["reference"][k] / tp["bare"][k], 3) if tp["bare"][k] else None
            for k in ("accepted_per_s", "delivered_per_s")
        }
        result["throughput"] = tp

        rates = []
        for rate in args.rates:
            phase = await open_loop(ref_port, data, rate, args.rate_seconds)
            drain = await ref_arr.wait_for([s.key for s in phase.sent], 120)
            lat = [
                (ref_arr.seen[s.key] - s.t250) * 1000 for s in phase.sent if s.key in ref_arr.seen
            ]
            lat = [max(0.0, v) for v in lat]
            accept_ms = [(s.t250 - s.t0) * 1000 for s in phase.sent]
            span = phase.ended - phase.started
            row = {
                "rate": rate,
                "sent": len(phase.sent),
                "achieved_per_s": round(len(phase.sent) / span, 1),
                "errors": len(phase.errors),
                "error_examples": sorted(set(phase.errors))[:3],
                "late_p99_ms": _r(pct([v * 1000 for v in phase.late], 0.99)),
                "lost": sum(1 for s in phase.sent if s.key not in ref_arr.seen),
                "accept_p50_ms": _r(pct(accept_ms, 0.5)),
                "accept_p99_ms": _r(pct(accept_ms, 0.99)),
                "mailbox_p50_ms": _r(pct(lat, 0.5)),
                "mailbox_p99_ms": _r(pct(lat, 0.99)),
                "mailbox_mean_ms": _r(statistics.fmean(lat)) if lat else None,
                "drain_s": round(drain, 2),
            }
            rates.append(row)
            print(f"bench: {rate}/s: {json.dumps(row)}", flush=True)
        result["fixed_rates"] = rates
    finally:
        for p in reversed(procs):
            _stop(p)
        if clamd is not None:
            clamd.stop()
    return result


def table(result: dict[str, Any]) -> str:
    m, tp = result["machine"], result["throughput"]
    ref, bare, ratio = tp["reference"], tp["bare"], tp["ratio"]
    p = result["parameters"]
    out = [
        f"mailspec bench: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"{m['system']}, {m['tmp_fs']}",
        f"throughput, closed loop: {p['connections']} connections x {p['seconds']:g}s, "
        f"{PER_CONNECTION} msg/connection, {p['size']} B messages",
        f"  {'':<34} {'accepted/s':>10} {'delivered/s':>11} {'SMTP p50':>9} {'SMTP p99':>9}"
        f" {'CPU/msg':>9}",
    ]
    for name, row in (
        ("reference (full inbound chain)", ref),
        ("bare aiosmtpd + Maildir (ceiling)", bare),
    ):
        out.append(
            f"  {name:<34} {row['accepted_per_s']:>10} {row['delivered_per_s']:>11} "
            f"{row['accept_p50_ms']:>6} ms {row['accept_p99_ms']:>6} ms"
            f" {row.get('cpu_ms_per_msg', '-'):>6} ms"
        )
    out.append(
        f"  {'ratio reference / bare':<34} {ratio['accepted_per_s']:>10} "
        f"{ratio['delivered_per_s']:>11}"
    )
    out.append(
        f"latency at fixed rates (reference), {p['rate_seconds']:g}s each, at most "
        f"{OPEN_LOOP_CONNECTIONS} connections:"
    )
    out.append(
        f"  {'rate':>8} {'achieved':>9} {'SMTP p50':>9} {'SMTP p99':>9} "
        f"{'mailbox p50':>12} {'mailbox p99':>12} {'lost':>5}"
    )
    for row in result["fixed_rates"]:
        over = row["achieved_per_s"] < 0.95 * row["rate"]
        out.append(
            f"  {row['rate']:>6g}/s {row['achieved_per_s']:>7}/s {row['accept_p50_ms']:>6} ms "
            f"{row['accept_p99_ms']:>6} ms {row['mailbox_p50_ms']:>9} ms "
            f"{row['mailbox_p99_ms']:>9} ms {row['lost']:>5}"
            + (f"  overloaded: sends up to {row['late_p99_ms'] / 1000:.1f}s late" if over else "")
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m load.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="closed-loop phase length")
    ap.add_argument("--connections", type=int, default=16, help="concurrent MTAs (max 200)")
    ap.add_argument("--rates", default="50,100,250", help="fixed rates, msg/s (max 2000)")
    ap.add_argument("--rate-seconds", type=float, default=6.0, help="length of each rate")
    ap.add_argument("--size", type=int, default=4096, help="message size, bytes")
    ap.add_argument(
        "--workers", type=int, default=0, help="the reference's server.workers (0: one per core)"
    )
    ap.add_argument("--report", type=Path, default=ROOT / "reports" / "bench.json")
    args = ap.parse_args(argv)
    args.rates = [float(r) for r in str(args.rates).split(",") if r.strip()]
    if not 1 <= args.connections <= 200 or not 0 < args.seconds <= 120:
        print("bench: 1-200 connections, up to 120 s", file=sys.stderr)
        return 2
    if any(not 0 < r <= 2000 for r in args.rates) or not 0 < args.rate_seconds <= 60:
        print("bench: rates up to 2000 msg/s, up to 60 s each", file=sys.stderr)
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
    lost = result["throughput"]["reference"]["lost"] + sum(r["lost"] for r in result["fixed_rates"])
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
