"""`mailspec cluster`: nodes that share the directory and the mailboxes, and a supervisor
that brings a killed node back on its own spool, so nothing it accepted is lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from reference.clock import RealClock
from reference.mailbox import MailStore
from reference.spool import Spool
from reference.testing import MAILSPEC, mailspec


class Cluster:
    def __init__(self, data: Path, *args: str) -> None:
        self.data = data
        self.log = data.parent / "cluster.log"
        self.out = self.log.open("w")
        self.proc = subprocess.Popen(
            [*MAILSPEC, "cluster", "--data-dir", str(data), *args],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.wait(lambda: "Stop with" in self.log.read_text(), 90, "start")

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"cluster: no {what}: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.data / "cluster.json").read_text())  # type: ignore[no-any-return]

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.state["nodes"] if n["name"] == name)

    def port(self, name: str, listener: str) -> int:
        return int(self.node(name)["endpoints"][listener].rsplit(":", 1)[1])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self.out.close()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "var"
    mailspec("domain", "add", "example.test", data_dir=data)
    mailspec("user", "add", "alice@example.test", "--password", "alice-pw", data_dir=data)
    return data


@pytest.fixture
def cluster(data: Path) -> Iterator[Cluster]:
    c = Cluster(data, "--nodes", "2", "--fake-internet", "--restart-delay", "2")
    yield c
    c.stop()


def send(port: int, subject: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "bob@remote.test", "alice@example.test", subject
    msg.set_content("hello")
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        s.send_message(msg)
    finally:
        s.close()


def subjects(data: Path) -> list[str]:
    store = MailStore(data / "mail")
    with store.open("alice@example.test") as box:
        out = []
        for m in box.messages():
            for line in box.read(m.uid).split(b"\r\n"):
                if line.startswith(b"Subject: "):
                    out.append(line[9:].decode())
        return out


def wait_for(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_nodes_share_directory_and_mailboxes_and_keep_their_own_spools(
    cluster: Cluster, data: Path
) -> None:
    printed = cluster.log.read_text()
    state = cluster.state
    assert [n["name"] for n in state["nodes"]] == ["node1", "node2"]
    for node in state["nodes"]:
        assert node["up"] and node["pid"]
        assert set(node["endpoints"]) >= {"mx", "submission", "imap", "pop3"}
        for url in node["endpoints"].values():
            assert url in printed  # every node's endpoints are printed
    assert state["redis"].startswith("redis://127.0.0.1:")
    spools = {n["spool"] for n in state["nodes"]}
    assert len(spools) == 2
    assert state["fakes"]["providers"]["gmail"]["domain"] == "gmail.test"
    # Mail taken by either node lands in the one mailbox store.
    send(cluster.port("node1", "mx"), "via node1")
    send(cluster.port("node2", "mx"), "via node2")
    wait_for(lambda: sorted(subjects(data)) == ["via node1", "via node2"])
    # Each node's queue commands read its own spool.
    config = Path(cluster.node("node2")["config"])
    out = mailspec("queue", "list", data_dir=data, config=config)
    assert "0 message(s) queued" in out


def test_a_killed_node_comes_back_on_its_spool_and_ports(cluster: Cluster, data: Path) -> None:
    before = cluster.node("node2")
    os.kill(before["pid"], signal.SIGKILL)
    cluster.wait(lambda: not cluster.node("node2")["up"], 10, "death noticed")
    # What the node had accepted when it died (written as its listener does: the 250
    # goes out once the spool holds the message).
    spool = Spool(Path(before["spool"]), RealClock())
    msg = b"From: <bob@remote.test>\r\nTo: <alice@example.test>\r\nSubject: spooled\r\n\r\nhi\r\n"
    asyncio.run(spool.enqueue("bob@remote.test", ["alice@example.test"], msg))
    cluster.wait(lambda: cluster.node("node2")["up"], 60, "restart")
    after = cluster.node("node2")
    assert after["pid"] != before["pid"] and after["restarts"] == 1
    assert after["endpoints"] == before["endpoints"]  # clients find it where it was
    wait_for(lambda: "spooled" in subjects(data))
    # The spool entry goes just after the mailbox write: on a busy machine, a moment later.
    wait_for(lambda: spool.entries() == [])
    send(cluster.port("node2", "mx"), "after restart")
    wait_for(lambda: "after restart" in subjects(data))
    assert "node2 (pid" in cluster.log.read_text() and "up again" in cluster.log.read_text()


def test_sigterm_stops_every_node(data: Path) -> None:
    c = Cluster(
        data, "--nodes", "2", "--fake-internet", "--roles", "mx", "--roles", "imap,submission"
    )
    state = c.state
    # Every node also opens its web listener (its health and metrics), whatever its roles.
    assert set(state["nodes"][0]["endpoints"]) == {"mx", "web"}
    # The imap role brings ManageSieve along: a user's mailbox settings.
    assert set(state["nodes"][1]["endpoints"]) == {
        "submission",
        "submissions",
        "imap",
        "imaps",
        "managesieve",
        "web",
    }
    pids = [n["pid"] for n in state["nodes"]]
    assert c.stop() == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert c.state["running"] is False


@pytest.mark.mariadb
def test_nodes_share_a_mariadb_directory(tmp_path: Path) -> None:
    """`--directory mariadb-auto`: one MariaDB for every node, started and stopped with them."""
    data = tmp_path / "var"
    c = Cluster(data, "--nodes", "2", "--directory", "mariadb-auto")
    try:
        url = c.state["directory"]
        assert url.startswith("mysql://root@127.0.0.1:") and "SQLite" not in c.log.read_text()
        config = Path(c.node("node1")["config"])
        # An account made through one node's config is one every node knows at once.
        mailspec("domain", "add", "example.test", data_dir=data, config=config)
        mailspec(
            "user", "add", "alice@example.test", "--password", "pw", data_dir=data, config=config
        )
        assert not (data / "directory.sqlite3").exists()
        send(c.port("node1", "mx"), "via node1")
        send(c.port("node2", "mx"), "via node2")
        wait_for(lambda: sorted(subjects(data)) == ["via node1", "via node2"])
        pid = int((data / "mariadb" / "mariadbd.pid").read_text())
    finally:
        assert c.stop() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped with the nodes
