"""/metrics when a node runs several worker processes: each worker counts into its own files
(prometheus_client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR under data_dir) and a scrape
in any worker shows the node's sums; a worker that ends leaves its counts, not its sessions.

A worker counts in memory and publishes to its files when a scrape in another worker asks
(a FIFO per worker, answered from a thread of its own), on a timer and at its end: these
tests scrape at once after the counting, and a missing publish shows as a missing count."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from reference.config import load
from reference.metrics import GATHER_WAIT, MULTIPROC_ENV, prepare_workers, worker_exited
from reference.workers import run_dir

# A worker: counts what the node's code would count for N messages, keeps one session open,
# then renders /metrics into a file each time it is asked.
WORKER = """
import sys
from reference.metrics import Metrics
m = Metrics()
mx = m.listener("mx")
for _ in range(int(sys.argv[1])):
    mx.connected()
    mx.reply("250 2.0.0 Ok: queued as X")
    m.refused("greylist", "rcpt", "greylisted")
    m.checked("spf", "mail", 0.002)
    m.delivery("local", "delivered", 0.3)
mx.session_opened()
print("ready", flush=True)
for line in sys.stdin:
    with open(line.strip(), "wb") as f:
        f.write(m.render())
    print("rendered", flush=True)
"""


MX = (("listener", "mx"),)


class Worker:
    def __init__(self, env: dict[str, str], messages: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(messages)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"

    def scrape(self, where: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{where}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "rendered\n"
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(where.read_text())
            for s in family.samples
        }

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0


@contextlib.contextmanager
def two_workers(folder: Path, first: int, second: int) -> Iterator[tuple[Worker, Worker]]:
    """Two workers counting into ``folder`` (prepared), each for so many messages."""
    env = {**os.environ, **prepare_workers(folder)}
    started: list[Worker] = []
    try:
        started.append(Worker(env, first))
        started.append(Worker(env, second))
        yield started[0], started[1]
    finally:
        for w in started:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()


def test_two_workers_add_up(tmp_path: Path) -> None:
    cfg = load(None, data_dir=str(tmp_path / "var"))
    folder = run_dir(cfg) / "metrics"  # where the supervisor keeps them
    assert folder.is_relative_to(cfg.data_path)
    (folder / "stale").mkdir(parents=True)  # a previous run's files: wiped
    with two_workers(folder, 3, 5) as (one, two):
        assert not (folder / "stale").exists()
        seen = one.scrape(tmp_path / "one.txt")
        mx = (("listener", "mx"),)
        assert seen[("mailspec_connections_total", mx)] == 8
        assert seen[("mailspec_sessions", mx)] == 2
        queued = (("class", "2xx"), ("code", "250"), ("enhanced", "2.0.0"), ("listener", "mx"))
        assert seen[("mailspec_smtp_replies_total", queued)] == 8
        refusal = (("check", "greylist"), ("reason", "greylisted"), ("stage", "rcpt"))
        assert seen[("mailspec_refusals_total", refusal)] == 8
        spf = (("check", "spf"), ("stage", "mail"))
        assert seen[("mailspec_check_duration_seconds_count", spf)] == 8
        assert seen[("mailspec_accept_to_mailbox_seconds_count", ())] == 8
        assert seen[("mailspec_queue_messages", (("lane", "regular"),))] == 0  # once, not twice
        assert two.scrape(tmp_path / "two.txt") == seen  # any worker answers the same

        pid = two.proc.pid
        two.stop()
        worker_exited(folder, pid)
        after = one.scrape(tmp_path / "after.txt")
        assert after[("mailspec_connections_total", mx)] == 8  # its counts stay
        assert after[("mailspec_sessions", mx)] == 1  # its session does not


def test_a_worker_that_ended_has_published_all_it_counted(tmp_path: Path) -> None:
    """Its last counts are written as it exits, though nobody scraped in between."""
    folder = tmp_path / "metrics"
    with two_workers(folder, 2, 4) as (one, two):
        pid = two.proc.pid
        two.stop()
        worker_exited(folder, pid)
        assert not (folder / f"publish-{pid}").exists()  # no scrape asks it any more
        seen = one.scrape(tmp_path / "one.txt")
        assert seen[("mailspec_connections_total", (("listener", "mx"),))] == 6


def test_a_worker_killed_outright_does_not_hold_up_a_scrape(tmp_path: Path) -> None:
    """SIGKILL: what it published stays, and a scrape does not wait for its answer."""
    folder = tmp_path / "metrics"
    with two_workers(folder, 2, 4) as (one, two):
        assert one.scrape(tmp_path / "first.txt")[("mailspec_connections_total", MX)] == 6
        two.proc.send_signal(signal.SIGKILL)
        two.proc.wait()
        start = time.monotonic()
        seen = one.scrape(tmp_path / "after.txt")  # its FIFO is still there: nobody reads it
        assert time.monotonic() - start < GATHER_WAIT / 2
        assert seen[("mailspec_connections_total", MX)] == 6


def test_the_folder_must_be_set_before_the_library_is_imported(tmp_path: Path) -> None:
    late = (
        "import os, prometheus_client\n"
        f"os.environ[{MULTIPROC_ENV!r}] = {str(tmp_path)!r}\n"
        "from reference.metrics import Metrics\n"
        "Metrics()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    r = subprocess.run([sys.executable, "-c", late], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "must be in the environment the process starts with" in r.stderr
