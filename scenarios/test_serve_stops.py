"""A node stops on SIGTERM after clients hung up in the middle of their sessions, as a load
run's clients do when it ends: exit 0 and its `stopped` line, within the cluster's bound."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.dns import FakeDNS
from reference.directory import Directory
from reference.state.server import RedisServer
from reference.testing import MAILSPEC, write_config

STOP_BOUND = 20.0  # what `mailspec cluster` waits before it kills a node
SESSIONS = 300  # before the fix, the node froze after a few dozen at most


class Node:
    """`mailspec serve` with its output in a file (a pipe nobody reads would fill up)."""

    def __init__(self, data: Path, config: Path, log: Path) -> None:
        self.log = log
        self.out = log.open("w")
        self.proc = subprocess.Popen(
            [*MAILSPEC, "serve", "--config", str(config), "--data-dir", str(data)],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        deadline = time.monotonic() + 60
        while "Stop with" not in (text := log.read_text()):
            assert self.proc.poll() is None and time.monotonic() < deadline, text[-3000:]
            time.sleep(0.05)
        m = re.search(r"^\s+mx\s+smtp://127\.0\.0\.1:(\d+)$", text, re.M)
        assert m, text
        self.mx = int(m.group(1))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    data = tmp_path / "var"
    directory = Directory(data / "directory.sqlite3")
    try:
        directory.add_domain("example.test")
        for i in range(10):
            directory.add_user(f"user{i}@example.test", "pw")
    finally:
        directory.close()
    with RedisServer(tmp_path / "redis") as redis, FakeDNS() as dns:
        config = write_config(
            tmp_path / "mailspec.toml",
            server={"log_level": "info"},
            dns={"nameservers": [dns.nameserver]},
            # Greylisting and rate limits on Redis, as in a cluster; the clients name
            # remote MTAs through PROXY lines, as the load run's do.
            state={"url": redis.url},
            greylist={"delay": "0s", "bypass_networks": ["::1/128"]},
            listen={"mx_proxy_from": ["127.0.0.1/32"]},
        )
        n = Node(data, config, tmp_path / "node.log")
        try:
            yield n
        finally:
            n.close()


async def hang_up_after_rcpt(port: int, sessions: int) -> int:
    """Sessions, one after the other, that send RCPT and hang up within a few milliseconds,
    without waiting for its reply; how many did (fewer if the node stopped answering)."""
    done = 0
    for k in range(sessions):
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        except TimeoutError:
            break
        try:
            w.write(f"PROXY TCP4 198.51.100.{k % 250 + 1} 127.0.0.1 {1024 + k} {port}\r\n".encode())
            for line in (b"", b"EHLO mta.remote.test", b"MAIL FROM:<mta@remote.test>"):
                if line:
                    w.write(line + b"\r\n")
                while (reply := await asyncio.wait_for(r.readline(), 10))[3:4] == b"-":
                    pass
                assert reply[:1] == b"2", reply
            w.write(b"RCPT TO:<user%d@example.test>\r\n" % (k % 10))
            await w.drain()
            # Hang up before the reply comes, at a moment that varies: while the checks run.
            await asyncio.sleep(random.uniform(0, 0.004))
            done += 1
        except TimeoutError:
            break
        finally:
            w.close()
    return done


def test_sigterm_after_clients_hung_up_mid_session_stops_the_node(node: Node) -> None:
    # A session whose client hung up while it waited on Redis at RCPT lost the cancel that
    # ends it (redis-py on Python 3.11) and then read the end of its stream forever without
    # yielding: the node served nobody and never handled SIGTERM ("node1 did not stop in
    # 20s: killed" at the end of `tox -e load`).
    hung_up = asyncio.run(hang_up_after_rcpt(node.mx, SESSIONS))
    try:
        with socket.create_connection(("127.0.0.1", node.mx), timeout=5) as s:
            assert s.makefile("rb").readline().startswith(b"220 ")
    except TimeoutError:
        pytest.fail(f"the node no longer greets a client (after {hung_up} hang-ups)")
    assert hung_up == SESSIONS
    t0 = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    try:
        rc = node.proc.wait(STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no exit {STOP_BOUND:g}s after SIGTERM: {node.log.read_text()[-2000:]}")
    assert rc == 0
    assert "event=stopped" in node.log.read_text()
    assert time.monotonic() - t0 < STOP_BOUND
