"""Run the load users against a fresh `mailspec cluster` (one node or several), loopback only.

    python -m load.run --nodes 3 --time 60 --kill-node node2 --kill-after 20
    python -m load.run --nodes 3 --time 60 --kill-redis --kill-after 20 --redis-down 5

Starts `mailspec cluster --redis auto --fake-internet` on a temporary data directory (its
own redis-server, fake DNS and fake MXs), makes the accounts, runs ``load/locustfile.py``
headless with locust's CSV and HTML reports, and stops the cluster. The exit code is the
locust run's: non-zero when a threshold failed (see the locustfile), or the cluster's.
Every loop is bounded: users and seconds are capped, and each step has a timeout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from load.redis_fault import RedisFault
from load.stack import Accounts, Stack
from reference.state.server import RedisServer
from reference.testing import MAILSPEC, write_config

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MAX_USERS = 400
MAX_SECONDS = 1800
PASSWORD = "load-pw"
# Issue 19: a delivery on any node wakes IDLE everywhere, accept-to-IMAP p99 under 200 ms.
MULTI_NODE_IMAP_P99_MS = 200.0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m load.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1, help="reference nodes (1)")
    ap.add_argument("--time", type=float, default=20.0, help="seconds of load (20)")
    ap.add_argument("--inbound-users", type=int, default=8)
    ap.add_argument("--inbound-rate", type=float, default=5.0, help="msg/s per inbound user")
    ap.add_argument("--bulk-users", type=int, default=2)
    ap.add_argument("--submit-rate", type=float, default=2.0, help="msg/s per bulk user")
    ap.add_argument("--limited-users", type=int, default=2, help="accounts at the limit")
    ap.add_argument("--limited-sessions", type=int, default=6, help="their concurrent sessions")
    ap.add_argument("--limited-rate", type=float, default=4.0)
    ap.add_argument("--limit", default="60/5m", help="their recipients limit (ratelimit.*)")
    ap.add_argument("--imap-readers", type=int, default=2)
    ap.add_argument("--recipients", type=int, default=10, help="local mailboxes")
    ap.add_argument("--kill-node", default="", help="SIGKILL this node mid-run (node2)")
    ap.add_argument("--kill-after", type=float, default=5.0)
    ap.add_argument(
        "--kill-redis",
        action="store_true",
        help="SIGKILL the cluster's redis-server mid-run (at --kill-after) and start it again "
        "on the same port and data (append-only file) after --redis-down seconds",
    )
    ap.add_argument("--redis-down", type=float, default=3.0)
    ap.add_argument("--max-p99-ms", type=float, default=1000.0)
    ap.add_argument(
        "--max-imap-p99-ms",
        type=float,
        default=None,
        help="accept-to-IMAP (IDLE) p99 gate (default 200 with several nodes, where IDLE "
        "hears of other nodes' deliveries through Redis; 0: not gated)",
    )
    ap.add_argument(
        "--max-takeover-ms",
        type=float,
        default=0.0,
        help="accept-to-delivery bound for the mail a killed node held (0: the run's p99 "
        "plus twice the lease renewal interval)",
    )
    ap.add_argument(
        "--busy-load",
        type=float,
        default=0.0,
        help="above this 1-minute load average per core, latency and limit-reached gates "
        "are reported, not judged (0: always judged)",
    )
    ap.add_argument("--drain-timeout", type=float, default=30.0)
    ap.add_argument("--clamd", action="store_true", help="scan every message with a real clamd")
    ap.add_argument(
        "--directory",
        choices=("sqlite", "mariadb-auto"),
        default="sqlite",
        help="the directory: the SQLite file in data_dir, or a MariaDB started for the run "
        "and shared by the nodes (`mailspec cluster --directory`)",
    )
    ap.add_argument(
        "--bind-sources",
        action="store_true",
        help="inbound MTAs bind to 127.0.3.x instead of naming 198.51.100.x through the "
        "PROXY protocol (listen.mx_proxy_from)",
    )
    ap.add_argument(
        "--report",
        type=Path,
        default=ROOT / "reports" / "load",
        help="directory for locust's CSV/HTML and the summary JSON",
    )
    ap.add_argument("--name", default="", help="report file prefix (default from the options)")
    ap.add_argument("--data-dir", type=Path, help="keep the cluster's data here (default: temp)")
    ap.add_argument("--quiet", action="store_true", help="only locust's summary and ours")
    ap.add_argument(
        "--serve",
        action="store_true",
        help="start the cluster and the accounts, print the locust command, and wait for "
        "Ctrl-C (run locust by hand, web UI included)",
    )
    return ap


def base_config(path: Path, args: argparse.Namespace, clamd: str = "") -> Path:
    sections: dict[str, Any] = {
        "server": {"log_level": "warning"},
        # The load clients come from 127.0.3.x: greylisted like any MTA, but with no delay
        # (the first attempt passes and whitelists the /24), so the check and its shared
        # state run on every recipient without refusing the load.
        "greylist": {"delay": "0s", "bypass_networks": ["127.0.0.1/32", "::1/128"]},
        "ratelimit": {
            "recipients": args.limit,
            "overrides": ["bulk.example.test: recipients=1000000/5m"],
        },
    }
    if not args.bind_sources:
        # The load client speaks for its MTAs the way a load balancer does.
        sections["listen"] = {"mx_proxy_from": ["127.0.0.1/32"]}
    if clamd:
        sections["antivirus"] = {"clamd": clamd}
    return write_config(path, **sections)


def provision(directory_at: Path | str, args: argparse.Namespace) -> Accounts:
    """The accounts, straight into the shared directory (no CLI process per account)."""
    from reference.directory import Directory

    directory = Directory(directory_at)
    try:
        for domain in ("example.test", "bulk.example.test"):
            directory.add_domain(domain)
        recipients = [f"user{i}@example.test" for i in range(args.recipients)]
        bulk = [f"bulk{i}@bulk.example.test" for i in range(max(1, args.bulk_users))]
        limited = [f"limited{i}@example.test" for i in range(args.limited_users)]
        for address in recipients + bulk + limited:
            directory.add_user(address, PASSWORD)
    finally:
        directory.close()
    return Accounts(recipients, bulk, limited, PASSWORD, args.limit, [])


class ClusterProcess:
    """`mailspec cluster` as a child process, stopped with SIGTERM."""

    def __init__(
        self,
        data: Path,
        config: Path,
        nodes: int,
        log: Path,
        directory: str = "",
        redis: str = "auto",
    ) -> None:
        self.state = data / "cluster.json"
        self.log = log
        cmd = [
            *MAILSPEC,
            "cluster",
            "--nodes",
            str(nodes),
            "--redis",
            redis,
            "--fake-internet",
            "--config",
            str(config),
            "--data-dir",
            str(data),
            "--state",
            str(self.state),
            *(["--directory", directory] if directory else []),
        ]
        self.out = log.open("w")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )

    def wait_ready(self, timeout: float = 120.0) -> Stack:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailspec cluster exited: {self.log.read_text()[-2000:]}")
            if "Stop with" in self.log.read_text():
                return Stack.load(self.state)
            time.sleep(0.1)
        raise RuntimeError(f"mailspec cluster did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.out.close()
        return rc


def run(args: argparse.Namespace) -> int:
    users = args.inbound_users + args.bulk_users + args.imap_readers
    users += args.limited_sessions if args.limited_users else 0
    if not 1 <= users <= MAX_USERS or not 1 <= args.time <= MAX_SECONDS:
        print(f"load: 1-{MAX_USERS} users, 1-{MAX_SECONDS} seconds", file=sys.stderr)
        return 2
    name = args.name or f"{args.nodes}node" + (f"-kill-{args.kill_node}" if args.kill_node else "")
    name += "-kill-redis" if args.kill_redis and not args.name else ""
    args.report.mkdir(parents=True, exist_ok=True)
    tmp = None
    if args.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="mailspec-load-"))
        data = tmp / "var"
    else:
        data = args.data_dir
    data.mkdir(parents=True, exist_ok=True)
    clamd = None
    mariadb = None
    cluster = None
    redis: RedisServer | None = None
    fault: RedisFault | None = None
    try:
        if args.kill_redis:  # ours, to kill and restart; the nodes are told its URL
            redis = RedisServer(data.parent / "redis", persist=True).start()
        if args.clamd:
            from reference.testing import ClamdServer

            clamd = ClamdServer(data.parent / "clamd").start()
        config = base_config(data.parent / "load.toml", args, clamd.address if clamd else "")
        directory: Path | str = data / "directory.sqlite3"
        if args.directory == "mariadb-auto":
            # Started here, not by the cluster: the accounts (and so the domains' DKIM keys)
            # must be in it before the nodes start.
            from reference.directory.server import MariaDBServer

            mariadb = MariaDBServer(data.parent / "mariadb").start()
            directory = mariadb.url
        accounts = provision(directory, args)
        t0 = time.monotonic()
        cluster = ClusterProcess(
            data,
            config,
            args.nodes,
            data.parent / "cluster.log",
            directory if isinstance(directory, str) else "",
            redis.url if redis else "auto",
        )
        stack = cluster.wait_ready()
        if not args.quiet:
            print(
                f"load: cluster of {args.nodes} up in {time.monotonic() - t0:.1f}s "
                f"(log {cluster.log})",
                flush=True,
            )
        accounts.remote = [d for n, d in sorted(stack.providers.items()) if n != "smarthost"]
        accounts.save(stack.path.with_name("load-accounts.json"))
        cmd = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "-u", str(users), "-r", str(users), "-t", f"{args.time:g}s", "--stop-timeout", "5",
            "--stack", str(stack.path), "--only-summary",
            "--csv", str(args.report / name), "--html", str(args.report / f"{name}.html"),
            "--summary", str(args.report / f"{name}.json"),
            "--inbound-users", str(args.inbound_users),
            "--inbound-rate", str(args.inbound_rate),
            "--bulk-users", str(args.bulk_users), "--submit-rate", str(args.submit_rate),
            "--limited-sessions", str(args.limited_sessions if args.limited_users else 0),
            "--limited-rate", str(args.limited_rate), "--imap-readers", str(args.imap_readers),
            "--max-p99-ms", str(args.max_p99_ms), "--drain-timeout", str(args.drain_timeout),
            "--busy-load", str(args.busy_load),
        ]  # fmt: skip
        imap_p99 = args.max_imap_p99_ms
        if imap_p99 is None:  # (with Redis killed, IDLE polls meanwhile: not gated)
            imap_p99 = MULTI_NODE_IMAP_P99_MS if args.nodes > 1 and not args.kill_redis else 0.0
        cmd += ["--max-imap-p99-ms", str(imap_p99)]
        if redis is not None:
            report = stack.path.with_name("redis-fault.json")
            fault = RedisFault(redis, stack, args.kill_after, args.redis_down, report)
            cmd += ["--redis-fault", str(report)]
        if args.kill_node:
            cmd += ["--kill-node", args.kill_node, "--kill-after", str(args.kill_after)]
            cmd += ["--max-takeover-ms", str(args.max_takeover_ms)]
        if not args.bind_sources:
            cmd += ["--proxy"]
        if args.quiet:
            cmd += ["--loglevel", "WARNING"]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        if args.serve:
            return serve(cmd, stack)
        timeout = args.time + args.drain_timeout + 90
        if fault is not None:
            fault.start()  # its clock starts with locust's (within a second or so)
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout)
            rc = done.returncode
        except subprocess.TimeoutExpired:
            print(f"load: locust did not finish in {timeout:.0f}s", file=sys.stderr)
            rc = 1
    finally:
        if fault is not None:
            fault.stop()
        crc = cluster.stop() if cluster is not None else 0
        if redis is not None:
            redis.stop()
        if crc and cluster is not None:
            # Say why before the temporary directory (and the log with it) goes away.
            tail = cluster.log.read_text(errors="replace").splitlines()[-40:]
            print(
                f"load: mailspec cluster stopped with exit code {crc}; its log ends:",
                *tail,
                sep="\n",
                file=sys.stderr,
            )
        if clamd is not None:
            clamd.stop()
        if mariadb is not None:
            mariadb.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc or (1 if crc else 0)


def serve(cmd: list[str], stack: Stack) -> int:
    """Keep the cluster up for a locust run by hand; Ctrl-C or SIGTERM ends it."""
    by_hand = [c for c in cmd if c != "--headless"]
    by_hand[:3] = ["locust"]
    print(f"load: cluster up, state in {stack.path}; in another shell, from {ROOT}:")
    print("  " + " ".join(by_hand))
    print("Stop with Ctrl-C or SIGTERM.", flush=True)
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        signal.sigwait(stop)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
