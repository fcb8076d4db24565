"""`mailspec cluster`: several reference nodes on one machine, sharing storage and Redis.

Each node is its own `mailspec serve` process with its own listen ports and its own spool
(``server.spool_dir``); all nodes share ``data_dir`` (the directory database, the Maildir
storage, DKIM keys and the certificate) and one Redis for filter state (greylists, rate
limits). ``--redis auto`` starts a throwaway redis-server; ``--directory mariadb-auto`` a
throwaway MariaDB for the directory (default: the config's ``directory.url``, else the
SQLite file in data_dir); ``--fake-internet`` starts the fake DNS and the fake providers'
MXs in this process and points every node at them.

The launcher supervises: a node that dies (a crash, or SIGKILL in a fault run) is started
again after ``--restart-delay`` on the same spool and the same ports. Meanwhile its mail
does not wait for it: each node leases its spool in Redis, and when a node stops renewing
its lease (1 s), another node moves that spool's messages into its own and delivers them
(reference/spool/lease.py); the node that comes back finds them gone. SIGTERM or SIGINT
stops every node (each finishes its deliveries or leaves them spooled), then the fakes and
Redis.

Everything the load runs need (pids, endpoints, paths) is kept in a JSON state file,
rewritten atomically at every change (``--state``, default ``data_dir/cluster.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference import config as config_mod
from reference import tls
from reference.clock import RealClock
from reference.config import LISTENERS, ROLES, Config
from reference.credentials import TemporarilyUnavailable

__all__ = ["Cluster", "Node", "register"]

MAX_NODES = 16
_START_TIMEOUT = 60.0  # a node on a busy 2-core machine, several starting at once
_STOP_TIMEOUT = 20.0
_FAILED_STARTS = 3  # a node that cannot start this many times in a row is left down
_ENDPOINT = re.compile(r"^\s+(\w+)\s+(\w+://(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d+))\s*$")

# A supervisor of real processes: its deadlines are real time.
_REAL = RealClock()


@dataclass
class Node:
    """One `mailspec serve` process of the cluster."""

    name: str
    config: Path
    spool: Path
    log: Path
    roles: list[str]
    ports: dict[str, int] = field(default_factory=dict)  # 0: a free port at first start
    endpoints: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0
    failed_starts: int = 0
    down_since: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "up": self.running and self.ready.is_set(),
            "roles": self.roles,
            "config": str(self.config),
            "spool": str(self.spool),
            "log": str(self.log),
            "endpoints": self.endpoints,
            "restarts": self.restarts,
        }


class Cluster:
    """Starts, supervises and stops the nodes, Redis and (optionally) the fake internet."""

    def __init__(
        self,
        cfg: Config,
        *,
        nodes: int = 3,
        redis: str = "auto",
        directory: str = "",
        fake_internet: bool = False,
        host: str = "127.0.0.1",
        base_port: int = 0,
        roles: list[list[str]] | None = None,
        restart_delay: float | None = 1.0,
        state_file: Path | None = None,
        out: Any = None,
    ) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"--nodes: 1 to {MAX_NODES}")
        self.base = cfg
        self.data = cfg.data_path.resolve()
        self.count = nodes
        self.redis_arg = redis
        self.directory_arg = directory  # "", "mariadb-auto" or a URL
        self.fake_internet = fake_internet
        self.host = host
        self.base_port = base_port
        self.roles = roles or []
        self.restart_delay = restart_delay
        self.state_file = state_file or self.data / "cluster.json"
        self.out = out or sys.stdout
        self.nodes: list[Node] = []
        self.redis_url = ""
        self._redis: Any = None
        self.directory_url = ""  # what the nodes' directory.url says ("": SQLite in data_dir)
        self._mariadb: Any = None
        self._internet: Any = None
        self._deliveries: Path | None = None
        self._lock = threading.Lock()
        self._stopping = False

    # -- start ---------------------------------------------------------------------------

    def start(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        if not self.base.tls.cert:
            # Made once here: nodes starting together would each write their own.
            tls.self_signed(
                self.base.server.hostname,
                self.data / "tls" / "cert.pem",
                self.data / "tls" / "key.pem",
            )
        if self.redis_arg == "auto":
            from reference.state.server import RedisServer

            self._redis = RedisServer(self.data / "redis").start()
            self.redis_url = self._redis.url
        else:
            self.redis_url = self.redis_arg
        if self.directory_arg == "mariadb-auto":
            from reference.directory.server import MariaDBServer

            self._mariadb = MariaDBServer(self.data / "mariadb").start()
            self.directory_url = self._mariadb.url
        else:
            self.directory_url = self.directory_arg or self.base.directory.url
        self._make_dkim_keys()
        if self.fake_internet:
            self._start_fakes()
        for i in range(self.count):
            name = f"node{i + 1}"
            home = self.data / "nodes" / name
            home.mkdir(parents=True, exist_ok=True)
            roles = self.roles[i] if i < len(self.roles) else ["all"]
            ports = {
                ln: (self.base_port + 10 * i + k if self.base_port else 0)
                for k, ln in enumerate(LISTENERS)
            }
            node = Node(
                name, home / "mailspec.toml", home / "spool", home / "node.log", roles, ports
            )
            self._write_config(node)
            self.nodes.append(node)
        for node in self.nodes:  # all at once: they start in parallel
            self._spawn(node)
        for node in self.nodes:
            self._await_ready(node)
            # Keep the ports a node got: after a restart, clients find it where it was.
            node.ports.update(_ports(node.endpoints))
            self._write_config(node)
        self._save()

    def _make_dkim_keys(self) -> None:
        """Make missing DKIM keys of every domain now, once: nodes that each made them on
        first use, at the same moment, would race on the same files (and sign with keys
        that differ from the published ones)."""
        from reference.app import directory_path
        from reference.auth.keys import KeyStore
        from reference.directory import Directory

        auth = self.base.auth
        target: Path | str = self.directory_url or directory_path(self.base)
        if not auth.sign or (isinstance(target, Path) and not target.exists()):
            return

        # Opened here first: on a new database server, its tables are made once, before
        # the nodes start.
        directory = Directory(target)
        try:
            domains = directory.domains()
        finally:
            directory.close()
        keys = KeyStore(self.data / "dkim")
        for domain in domains:
            keys.generate(domain, auth.selector, tuple(auth.sign_algorithms))

    def _start_fakes(self) -> None:
        from fakes.internet import FakeInternet

        self._internet = FakeInternet().start()
        self._deliveries = self.data / "fakes" / "deliveries"
        self._deliveries.mkdir(parents=True, exist_ok=True)
        for mx in self._internet.mx.values():
            mx.on_delivery = _recorder(self._deliveries)

    def _node_config(self, node: Node) -> Config:
        d = config_mod.as_dict(self.base)
        d["server"]["data_dir"] = str(self.data)
        d["server"]["spool_dir"] = str(node.spool)
        d["server"]["roles"] = node.roles
        if self.base.server.workers == 0:
            # "One per core" on one machine means the machine's cores shared by its nodes.
            d["server"]["workers"] = max(1, (os.cpu_count() or 1) // self.count)
        for ln in LISTENERS:
            d["listen"][ln] = _hostport(self.host, node.ports.get(ln, 0))
        d["state"]["url"] = self.redis_url
        d["directory"]["url"] = self.directory_url
        if self._internet is not None:
            d["dns"]["nameservers"] = [self._internet.nameserver]
            d["relay"]["port"] = self._internet.smtp_port
        return config_mod.from_dict(d)

    def _write_config(self, node: Node) -> None:
        text = config_mod.render(self._node_config(node), with_docs=False)
        tmp = node.config.with_name(node.config.name + ".tmp")
        tmp.write_text(f"# {node.name} of a `mailspec cluster`; rewritten at each start\n{text}")
        tmp.replace(node.config)

    def _spawn(self, node: Node) -> None:
        node.ready.clear()
        node.endpoints = {}
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        log = node.log.open("a")
        try:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "reference.cli", "serve", "--config", str(node.config)],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
            )
        finally:
            log.close()
        threading.Thread(target=self._read, args=(node, node.proc), daemon=True).start()

    def _read(self, node: Node, proc: subprocess.Popen[str]) -> None:
        """Copy the node's output to its log; learn its endpoints; mark it ready."""
        assert proc.stdout is not None
        with node.log.open("a") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                m = _ENDPOINT.match(line)
                if m and m.group(1) in LISTENERS:
                    node.endpoints[m.group(1)] = m.group(2)
                if line.startswith("Stop with"):
                    node.ready.set()

    def _await_ready(self, node: Node) -> None:
        deadline = _REAL.monotonic() + _START_TIMEOUT
        while not node.ready.wait(0.05):
            if not node.running or _REAL.monotonic() > deadline:
                if node.proc is not None and node.running:
                    node.proc.kill()
                raise RuntimeError(f"{node.name} did not start: {_tail(node.log)}")

    # -- supervise -------------------------------------------------------------------------

    def supervise(self, stop: threading.Event) -> int:
        """Restart dead nodes until ``stop`` is set; 1 if a node was left down."""
        restart_at: dict[str, float] = {}
        left_down: set[str] = set()  # not restarted (--no-restart), or failing to start
        last_clear = _REAL.monotonic()
        while not stop.wait(0.05):
            for node in self.nodes:
                if node.name in left_down:
                    continue
                if node.running or node.name in restart_at:
                    if node.running and node.down_since is not None and node.ready.is_set():
                        took = _REAL.monotonic() - node.down_since
                        node.down_since = None
                        node.failed_starts = 0
                        self._say(f"{node.name} up again (pid {node.pid}) after {took:.1f}s")
                        self._save()
                    continue
                rc = node.proc.returncode if node.proc is not None else None
                node.down_since = node.down_since or _REAL.monotonic()
                if not node.ready.is_set() and node.restarts:
                    node.failed_starts += 1
                why = f"signal {-rc}" if rc is not None and rc < 0 else f"exit {rc}"
                self._say(f"{node.name} (pid {node.pid}) died: {why}")
                self._save()
                if self.restart_delay is None:
                    left_down.add(node.name)
                    continue
                if node.failed_starts >= _FAILED_STARTS:
                    # The others keep serving (there is no master); the exit code says it.
                    self._say(f"{node.name} cannot start, left down: {_tail(node.log)}")
                    left_down.add(node.name)
                    continue
                # A node that failed to start waits longer each time.
                delay = self.restart_delay * (1 + 2 * node.failed_starts)
                restart_at[node.name] = _REAL.monotonic() + delay
            for name, when in list(restart_at.items()):
                if _REAL.monotonic() >= when:
                    node = next(n for n in self.nodes if n.name == name)
                    del restart_at[name]
                    node.restarts += 1
                    self._say(f"{name}: restarting on {node.spool} (same ports)")
                    self._write_config(node)
                    self._spawn(node)
            if self._internet is not None and _REAL.monotonic() - last_clear > 30:
                # The recorder has written every delivery to disk; keep memory bounded.
                self._internet.clear()
                last_clear = _REAL.monotonic()
        return 1 if left_down and self.restart_delay is not None else 0

    # -- stop ------------------------------------------------------------------------------

    def stop(self) -> int:
        """SIGTERM every node and wait; then the fakes and Redis. The worst exit code."""
        self._stopping = True
        worst = 0
        running = [n for n in self.nodes if n.running]
        for node in running:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)
        for node in running:
            assert node.proc is not None
            try:
                rc = node.proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                rc = node.proc.wait()
                self._say(f"{node.name} did not stop in {_STOP_TIMEOUT:g}s: killed")
            worst = worst or (rc if rc > 0 else 1 if rc else 0)
        if self._internet is not None:
            self._internet.stop()
            self._internet = None
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        if self._mariadb is not None:
            self._mariadb.stop()
            self._mariadb = None
        if self.nodes:
            self._save(stopped=True)
        return worst

    # -- state -----------------------------------------------------------------------------

    def state(self, *, stopped: bool = False) -> dict[str, Any]:
        fakes: dict[str, Any] | None = None
        if self._internet is not None:
            fakes = {
                "nameserver": self._internet.nameserver,
                "smtp_port": self._internet.smtp_port,
                "providers": {
                    name: {"domain": p.domain, "address": p.address}
                    for name, p in self._internet.providers.items()
                },
                "deliveries": str(self._deliveries),
            }
        return {
            "pid": os.getpid(),
            "running": not stopped,
            "data_dir": str(self.data),
            "mail_dir": str(self.data / "mail"),
            "cafile": str(
                Path(self.base.tls.cert) if self.base.tls.cert else self.data / "tls" / "cert.pem"
            ),
            "redis": self.redis_url,
            "directory": self.directory_url or str(self.data / "directory.sqlite3"),
            "nodes": [n.state() for n in self.nodes],
            "fakes": fakes,
        }

    def _save(self, *, stopped: bool = False) -> None:
        with self._lock:
            tmp = self.state_file.with_name(self.state_file.name + ".tmp")
            tmp.write_text(json.dumps(self.state(stopped=stopped), indent=2) + "\n")
            tmp.replace(self.state_file)

    def _say(self, text: str) -> None:
        print(f"mailspec cluster: {text}", file=self.out, flush=True)

    def describe(self) -> str:
        lines = [
            f"mailspec cluster: {len(self.nodes)} nodes, data in {self.data}",
            f"  redis        {self.redis_url}{' (started here)' if self._redis else ''}",
            f"  directory    {self.directory_url or 'SQLite in data_dir'}"
            f"{' (started here)' if self._mariadb else ''}",
        ]
        for node in self.nodes:
            roles = ",".join(node.roles)
            lines.append(f"  {node.name} pid {node.pid}, roles {roles}, spool {node.spool}")
            lines += [f"    {name:<12} {url}" for name, url in node.endpoints.items()]
        if self._internet is not None:
            lines.append(
                f"  fake DNS     {self._internet.nameserver}; fake MXs on port "
                f"{self._internet.smtp_port}, deliveries in {self._deliveries}"
            )
            for name, p in self._internet.providers.items():
                lines.append(f"    {name:<10} {p.domain:<16} {p.address}")
        lines.append(f"  certificate  {self.state()['cafile']}")
        lines.append(f"  state        {self.state_file}")
        return "\n".join(lines)


def _recorder(directory: Path) -> Any:
    """Write each fake-MX delivery as NAME-ID.json (envelope, arrival time, Message-ID)."""

    def record(delivery: Any) -> None:
        head = delivery.data.split(b"\r\n\r\n", 1)[0]
        m = re.search(rb"(?im)^message-id:\s*(\S+)", head)
        meta = {
            "mx": delivery.mx,
            "source": delivery.source,
            "mail_from": delivery.mail_from,
            "rcpt_tos": list(delivery.rcpt_tos),
            "time": delivery.time,
            "queue_id": delivery.queue_id,
            "size": len(delivery.data),
            "message_id": m.group(1).decode("ascii", "replace") if m else "",
        }
        name = f"{delivery.mx}-{delivery.queue_id}"
        tmp = directory / f".{name}.tmp"
        tmp.write_text(json.dumps(meta))
        tmp.replace(directory / f"{name}.json")

    return record


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ports(endpoints: dict[str, str]) -> dict[str, int]:
    return {name: int(url.rsplit(":", 1)[1]) for name, url in endpoints.items()}


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- the command line


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``cluster`` subcommand to the ``mailspec`` command line."""
    p = sub.add_parser(
        "cluster",
        parents=parents,
        help="run several reference nodes sharing storage and Redis (load and fault runs)",
        # The module text, read as help: without the reST backticks.
        description=__doc__.split("\n\n", 1)[1].replace("`", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nodes", type=int, default=3, help=f"how many nodes (1-{MAX_NODES}; 3)")
    p.add_argument(
        "--redis",
        default="auto",
        metavar="URL|auto",
        help="redis:// URL shared by the nodes, or auto to start a redis-server (default)",
    )
    p.add_argument(
        "--directory",
        default="",
        metavar="URL|mariadb-auto",
        help="the directory's database shared by the nodes: a mysql:// or postgresql:// URL, "
        "or mariadb-auto to start a MariaDB (default: the config's directory.url)",
    )
    p.add_argument(
        "--fake-internet",
        action="store_true",
        help="start the fake DNS and fake provider MXs (gmail.test, …) and use them",
    )
    p.add_argument("--host", default="127.0.0.1", help="address every node listens on (127.0.0.1)")
    p.add_argument(
        "--base-port",
        type=int,
        default=0,
        metavar="PORT",
        help="node N (0-based) listens on PORT+10N+k, k the listener's index "
        f"({', '.join(LISTENERS)}); default: free ports, kept across restarts",
    )
    p.add_argument(
        "--roles",
        action="append",
        default=[],
        metavar="ROLE,…",
        help=f"roles of the next node ({', '.join(ROLES)}); repeat once per node; default all",
    )
    p.add_argument(
        "--restart-delay",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="restart a node that died after this long, on its spool and ports (1)",
    )
    p.add_argument("--no-restart", action="store_true", help="leave dead nodes down")
    p.add_argument("--state", type=Path, metavar="FILE", help="default data_dir/cluster.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config, data_dir=args.data_dir)
    roles = [[r.strip() for r in spec.split(",") if r.strip()] for spec in args.roles]
    for spec in roles:
        bad = [r for r in spec if r not in ROLES]
        if bad or not spec:
            print(f"mailspec cluster: --roles: one or more of {', '.join(ROLES)}", file=sys.stderr)
            return 2
    if args.redis != "auto" and not re.match(r"^rediss?://", args.redis):
        print("mailspec cluster: --redis: a redis:// URL or auto", file=sys.stderr)
        return 2
    if args.directory not in ("", "mariadb-auto") and "://" not in args.directory:
        print("mailspec cluster: --directory: a database URL or mariadb-auto", file=sys.stderr)
        return 2
    if args.base_port and not 1024 <= args.base_port <= 65535 - 10 * args.nodes:
        print("mailspec cluster: --base-port out of range", file=sys.stderr)
        return 2
    stop = threading.Event()
    # Handlers first: a SIGTERM that arrives while the nodes start must stop them all.
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    cluster = Cluster(
        cfg,
        nodes=args.nodes,
        redis=args.redis,
        directory=args.directory,
        fake_internet=args.fake_internet,
        host=args.host,
        base_port=args.base_port,
        roles=roles,
        restart_delay=None if args.no_restart else max(0.0, args.restart_delay),
        state_file=args.state,
    )
    rc = 0
    try:
        try:
            cluster.start()
        except (RuntimeError, OSError, ValueError, TemporarilyUnavailable) as e:
            print(f"mailspec cluster: {e}", file=sys.stderr)
            return 1
        print(cluster.describe())
        print("Stop with Ctrl-C or SIGTERM.", flush=True)
        rc = cluster.supervise(stop)
    finally:
        worst = cluster.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if rc == 0 and worst:
        print(f"mailspec cluster: a node stopped with exit code {worst}", file=sys.stderr)
    return rc or (1 if worst else 0)
