"""Killed five times while mail streams in, a node still files every acknowledged message
exactly once: none lost (the spool is fsynced before the 250), none twice (a delivery
repeated after the crash finds its key in the mailbox index)."""

from __future__ import annotations

import random
import signal
import smtplib
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from fakes.dns import FakeDNS
from reference.directory import Directory
from reference.testing import ServedProcess, serve_process, write_config

KILLS = 5
SENDERS = 4  # concurrent client connections, each streaming messages one after the other
USERS = 4
BETWEEN_KILLS = 40  # messages acknowledged after each start before the next kill
DRAIN = 30.0  # seconds for the last start to empty its spool (a few hundred ms, normally)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Stream:
    """Threads that send numbered messages to the MX port, reconnecting while the node is
    down; ``acked`` holds the numbers of those that got their 250."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acked: list[str] = []
        self.sent: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, args=(i,)) for i in range(SENDERS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)

    def _send(self, sender: int) -> None:
        n = 0
        while not self.stopping.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                    s.ehlo("mta.remote.test")
                    while not self.stopping.is_set():
                        n += 1
                        seq = f"{sender}-{n}"
                        rcpt = f"user{n % USERS}@example.test"
                        data = (
                            f"From: a@remote.test\r\nTo: {rcpt}\r\nSubject: {seq}\r\n"
                            f"X-Seq: {seq}\r\n\r\nmessage {seq}\r\n"
                        )
                        with self._lock:
                            self.sent.append(seq)
                        s.sendmail("a@remote.test", [rcpt], data)  # raises unless 250
                        with self._lock:
                            self.acked.append(seq)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)  # the node is down (or going): try again


def filed(data_dir: Path) -> Counter[str]:
    """How many times each X-Seq is in the users' mailboxes (every folder)."""
    seen: Counter[str] = Counter()
    for path in (data_dir / "mail" / "example.test").glob("user*/**/*"):
        if path.is_file() and path.parent.name in ("new", "cur"):
            for line in path.read_bytes().split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
                if line.startswith(b"X-Seq: "):
                    seen[line[7:].decode()] += 1
    return seen


def test_every_acknowledged_message_is_filed_once_across_five_sigkills(tmp_path: Path) -> None:
    started = time.monotonic()
    data = tmp_path / "var"
    directory = Directory(data / "directory.sqlite3")
    try:
        directory.add_domain("example.test")
        for i in range(USERS):
            directory.add_user(f"user{i}@example.test", "pw")
    finally:
        directory.close()
    port = free_port()
    rng = random.Random(19)
    with FakeDNS() as dns:
        config = write_config(
            tmp_path / "mailspec.toml",
            server={"log_level": "error"},  # nobody reads the node's pipes
            dns={"nameservers": [dns.nameserver]},
            greylist={"delay": "0s"},
            listen={"mx": f"127.0.0.1:{port}"},
        )
        node: ServedProcess = serve_process(data, config)
        stream = Stream(port)
        stream.start()
        try:
            for _ in range(KILLS):
                target = len(stream.acked) + BETWEEN_KILLS
                deadline = time.monotonic() + 20
                while len(stream.acked) < target:
                    assert time.monotonic() < deadline, "the stream stalled"
                    time.sleep(0.01)
                time.sleep(rng.uniform(0, 0.05))  # somewhere in the middle of deliveries
                node.proc.send_signal(signal.SIGKILL)
                node.proc.wait()
                node = serve_process(data, config)
            target = len(stream.acked) + BETWEEN_KILLS
            deadline = time.monotonic() + 20
            while len(stream.acked) < target:
                assert time.monotonic() < deadline, "the stream stalled after the last start"
                time.sleep(0.01)
        finally:
            stream.stop()
        try:
            deadline = time.monotonic() + DRAIN
            while any((data / "spool").glob("*.json")):
                assert time.monotonic() < deadline, "the spool did not drain"
                time.sleep(0.05)
        finally:
            assert node.stop() == 0
    seen = filed(data)
    acked = Counter(stream.acked)
    lost = [seq for seq in acked if seq not in seen]
    doubled = {seq: n for seq, n in seen.items() if n > 1}
    assert len(acked) >= (KILLS + 1) * BETWEEN_KILLS and max(acked.values()) == 1
    assert (lost, doubled) == ([], {}), f"{len(lost)} lost, {len(doubled)} filed twice"
    # The stream's unacknowledged messages may or may not be filed, but never more than once.
    assert set(seen) <= set(stream.sent)
    # About 15 s on a quiet 2-core machine (most of it five starts of the node); bounded so a
    # node that stops delivering fails here instead of hanging the run.
    assert time.monotonic() - started < 120
