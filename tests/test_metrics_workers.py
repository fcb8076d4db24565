"""/metrics when a node runs several worker processes: each worker counts into its own files
(prometheus_client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR under data_dir) and a scrape
in any worker shows the node's sums; a worker that ends leaves its counts, not its sessions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from reference.config import load
from reference.metrics import MULTIPROC_ENV, prepare_workers, worker_exited
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


def test_two_workers_add_up(tmp_path: Path) -> None:
    cfg = load(None, data_dir=str(tmp_path / "var"))
    folder = run_dir(cfg) / "metrics"  # where the supervisor keeps them
    assert folder.is_relative_to(cfg.data_path)
    (folder / "stale").mkdir(parents=True)  # a previous run's files: wiped
    env = {**os.environ, **prepare_workers(folder)}
    assert not (folder / "stale").exists()
    one, two = Worker(env, 3), Worker(env, 5)
    try:
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
    finally:
        for w in (one, two):
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()


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
