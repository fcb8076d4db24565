"""A short, bounded locust smoke run against a `mailspec serve` node: no failure, nothing lost."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gevent
from locust.env import Environment  # patches the standard library with gevent: keep first

from load import locustfile
from reference.mailbox import MailStore
from reference.testing import MAILSPEC, mailspec, serve_process, write_config


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def delivered_ids(store: MailStore, users: list[str]) -> set[str]:
    ids: set[str] = set()
    for user in users:
        with store.open(user) as box:
            for m in box.messages():
                for line in box.read(m.uid).split(b"\r\n"):
                    if line.lower().startswith(b"message-id:"):
                        ids.add(line.split(b":", 1)[1].strip().decode())
                        break
    return ids


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=5, help="concurrent locust users (max 50)")
    ap.add_argument("--seconds", type=float, default=8.0, help="run time (max 60)")
    args = ap.parse_args(argv)
    users, seconds = min(args.users, 50), min(args.seconds, 60.0)

    with tempfile.TemporaryDirectory(prefix="mailspec-load-") as tmp:
        data = Path(tmp) / "var"
        # An empty fake DNS: the node never asks the system resolver (loopback only).
        dns_port = free_port()
        dns = subprocess.Popen(
            [*MAILSPEC, "fake-dns", "--listen", f"127.0.0.1:{dns_port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert dns.stdout is not None
        if "listening" not in dns.stdout.readline():  # ready before the node asks it
            raise SystemExit("load smoke: the fake DNS did not start")
        config = write_config(
            Path(tmp) / "mailspec.toml",
            server={"log_level": "warning"},
            dns={"nameservers": [f"127.0.0.1:{dns_port}"]},
        )
        mailspec("domain", "add", "example.test", data_dir=data)
        rcpts = [f"user{i}@example.test" for i in range(5)]
        for r in rcpts:
            mailspec("user", "add", r, "--password", "pw", data_dir=data)
        node = serve_process(data, config)
        try:
            locustfile.InboundMta.recipients = rcpts
            env = Environment(
                user_classes=[locustfile.InboundMta], host=f"smtp://127.0.0.1:{node.ports['mx']}"
            )
            runner = env.create_local_runner()
            runner.start(users, spawn_rate=users)
            gevent.spawn_later(seconds, runner.quit)
            runner.greenlet.join()
            stats = env.stats.total
            accepted = set(locustfile.ACCEPTED)
            store = MailStore(data / "mail")
            deadline = time.monotonic() + 15
            missing = accepted - delivered_ids(store, rcpts)
            while missing and time.monotonic() < deadline:
                time.sleep(0.2)
                missing = accepted - delivered_ids(store, rcpts)
        finally:
            rc = node.stop()
            dns.terminate()
            dns.wait(10)
    rate = stats.num_requests / seconds
    p50, p99 = (stats.get_response_time_percentile(q) for q in (0.5, 0.99))
    print(
        f"load smoke: {users} users, {seconds:.0f}s: {stats.num_requests} sent ({rate:.0f}/s), "
        f"{stats.num_failures} failed, p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"{len(missing)} lost, server exit {rc}"
    )
    ok = stats.num_requests > 0 and stats.num_failures == 0 and not missing and rc == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
