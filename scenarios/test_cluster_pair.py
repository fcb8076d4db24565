"""Two nodes sharing storage and Redis: when one is killed with mail in its spool, the other
takes that spool over within a few seconds and delivers it, once, and the node that comes
back does not deliver it again; a delivery on one node wakes IDLE on the other at once."""

from __future__ import annotations

import json
import signal
import smtplib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from imapclient import IMAPClient

from fakes.internet import FakeInternet
from fakes.mx import Policy, Rule
from reference import tls
from reference.directory import Directory
from reference.spool.lease import LEASE_TTL, RENEW_EVERY
from reference.state.server import RedisServer
from reference.testing import ServedProcess, serve_process, write_config
from scenarios.test_queue_cli import submit

# A killed node's connections to Redis close with it: the other node's next look (0.25 s)
# replaces its lease, without waiting for the lease to lapse (3 s); room for a busy machine.
TAKEOVER_BOUND = LEASE_TTL - RENEW_EVERY - 0.5
IDLE_POLL = 5.0  # seconds between an IDLE session's looks for other processes' changes


class Pair:
    """node1 and node2: one data directory, a spool each, one Redis, the fake internet."""

    def __init__(self, tmp: Path, internet: FakeInternet, redis_url: str) -> None:
        self.data = tmp / "var"
        directory = Directory(self.data / "directory.sqlite3")
        try:
            directory.add_domain("example.test")
            directory.add_user("alice@example.test", "alice-pw")
        finally:
            directory.close()
        self.configs = {
            name: write_config(
                tmp / f"{name}.toml",
                server={"spool_dir": str(self.spool(name)), "log_level": "error"},
                dns={"nameservers": [internet.nameserver], "timeout": "2s"},
                relay={"port": internet.smtp_port, "source_addresses": ["127.0.1.0/24"]},
                state={"url": redis_url},
            )
            for name in ("node1", "node2")
        }
        # Made here, as `mailspec cluster` does: nodes starting together would each make one.
        tls.self_signed(
            "mail.example.test", self.data / "tls" / "cert.pem", self.data / "tls" / "key.pem"
        )
        with ThreadPoolExecutor(2) as pool:  # they start in parallel
            started = pool.map(
                lambda n: (n, serve_process(self.data, self.configs[n])), self.configs
            )
            self.nodes = dict(started)

    def spool(self, name: str) -> Path:
        return self.data / "nodes" / name / "spool"

    def queued(self, name: str) -> list[str]:
        return sorted(p.stem for p in self.spool(name).glob("*.json"))

    def restart(self, name: str) -> ServedProcess:
        self.nodes[name] = serve_process(self.data, self.configs[name])
        return self.nodes[name]

    def submit(self, name: str, rcpt: str, subject: str) -> None:
        submit(self.nodes[name], rcpt, subject)

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc.poll() is None:
                node.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pair, FakeInternet]]:
    """One pair for the module's tests (starting nodes is most of their time)."""
    tmp = tmp_path_factory.mktemp("pair")
    with FakeInternet() as internet, RedisServer(tmp / "redis") as redis:
        p = Pair(tmp, internet, redis.url)
        try:
            yield p, internet
        finally:
            p.stop()


def wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, what
        time.sleep(0.02)
    return time.monotonic() - t0


def test_a_delivery_on_one_node_wakes_idle_on_the_other(pair: tuple[Pair, FakeInternet]) -> None:
    nodes, _ = pair
    node2 = nodes.nodes["node2"]
    with IMAPClient("127.0.0.1", port=node2.ports["imap"], ssl=False, timeout=10) as c:
        c.starttls(ssl_context=node2.tls_context())
        c.login("alice@example.test", "alice-pw")
        c.select_folder("INBOX", readonly=True)
        c.idle()
        try:
            t0 = time.monotonic()
            with smtplib.SMTP("127.0.0.1", nodes.nodes["node1"].ports["mx"], timeout=10) as s:
                s.sendmail("a@remote.test", ["alice@example.test"], b"Subject: push\r\n\r\nx\r\n")
            said = []
            while time.monotonic() - t0 < IDLE_POLL and not said:
                said = [r for r in c.idle_check(timeout=0.2) if b"EXISTS" in r]
            took = time.monotonic() - t0
        finally:
            c.idle_done()
    # Without the feed, node2 hears of node1's delivery at its next poll (5 s).
    assert said and took < IDLE_POLL / 2, took


def test_a_killed_nodes_spool_is_taken_over_and_delivered_once(
    pair: tuple[Pair, FakeInternet],
) -> None:
    nodes, internet = pair
    gmail = internet.mx["gmail"]
    gmail.policy = Policy(rules=[Rule(stage="rcpt", action="451 4.3.0 Try again later")])
    nodes.submit("node1", "frank@gmail.test", "taken over")
    wait(lambda: len(gmail.attempts) >= 1, 20, "node1 never tried the MX")
    wait(lambda: bool(nodes.queued("node1")), 5, "not deferred in node1's spool")
    (qid,) = nodes.queued("node1")
    gmail.policy = Policy.accept_all()
    nodes.nodes["node1"].proc.send_signal(signal.SIGKILL)
    nodes.nodes["node1"].proc.wait()
    # Taken over: moved out of node1's spool (and on to node2's, or already delivered).
    wait(lambda: nodes.queued("node1") == [], TAKEOVER_BOUND, "node2 did not take it over soon")
    wait(lambda: bool(gmail.deliveries), 20, "node2 did not deliver it")
    wait(lambda: nodes.queued("node1") == nodes.queued("node2") == [], 5, "still spooled")
    (delivery,) = gmail.deliveries
    assert list(delivery.rcpt_tos) == ["frank@gmail.test"] and b"taken over" in delivery.data
    # node1 comes back on its (now empty) spool and takes new mail as before.
    nodes.restart("node1")
    gmail.policy = Policy(rules=[Rule(stage="rcpt", action="451 4.3.0 Try again later")])
    nodes.submit("node1", "grace@gmail.test", "after the return")
    wait(lambda: len(nodes.queued("node1")) == 1, 20, "node1 does not take mail again")
    time.sleep(LEASE_TTL + 1)  # alive: its lease is renewed, node2 leaves its spool alone
    assert len(nodes.queued("node1")) == 1 and nodes.queued("node2") == []
    assert len(gmail.deliveries) == 1
    assert (
        json.loads((nodes.spool("node1") / f"{nodes.queued('node1')[0]}.json").read_text())[
            "recipients"
        ][0]["address"]
        == "grace@gmail.test"
    )
    assert qid not in nodes.queued("node1")
    # Paused (its connections open): its spool is left alone until its lease lapses.
    node1 = nodes.nodes["node1"].proc
    node1.send_signal(signal.SIGSTOP)
    try:
        time.sleep(LEASE_TTL - RENEW_EVERY - 0.5)
        assert len(nodes.queued("node1")) == 1 and nodes.queued("node2") == []
    finally:
        node1.send_signal(signal.SIGCONT)
