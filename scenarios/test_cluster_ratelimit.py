"""Two nodes sharing one redis-server: a user's rate limit holds across the cluster."""

from __future__ import annotations

import smtplib
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.clock import ManualClock
from reference.state.server import RedisServer
from reference.testing import ReferenceServer


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[ReferenceServer]]:
    clock = ManualClock()
    with RedisServer(tmp_path / "redis") as redis:
        servers = [
            ReferenceServer(
                tmp_path / f"node{i}", clock=clock, overrides={"state.url": redis.url}
            ).start()
            for i in range(2)
        ]
        try:
            for s in servers:
                s.add_domain("example.test")
                s.add_user("alice@example.test", "alice-pw")
            yield servers
        finally:
            for s in servers:
                s.stop()


def session(node: ReferenceServer) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", node.port("submission"), timeout=10)
    s.starttls(context=ssl.create_default_context(cafile=str(node.cafile)))
    s.login("alice@example.test", "alice-pw")
    s.mail("alice@example.test")
    return s


def test_rate_limit_holds_across_two_nodes(nodes: list[ReferenceServer]) -> None:
    sessions = [session(nodes[i % 2]) for i in range(4)]
    codes: list[list[int]] = [[] for _ in sessions]

    def run(i: int) -> None:
        codes[i] = [sessions[i].rcpt(f"r{i}-{n}@remote.example")[0] for n in range(25)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    flat = [c for c in codes for c in c]
    for s in sessions:
        s.close()
    assert len(flat) == 100
    assert flat.count(250) == 60
    per_node = [sum(c.count(250) for c in codes[i::2]) for i in range(2)]
    assert all(n > 0 for n in per_node), per_node  # both nodes took part
