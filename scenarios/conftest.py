"""Scenario fixtures: a real `mailspec serve` process with CLI-made accounts, and TLS clients."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MAILSPEC = [sys.executable, "-m", "reference.cli"]
LISTENERS = ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")


def mailspec(*args: str, data_dir: Path, config: Path | None = None) -> str:
    """Run a mailspec command like a user would; fail the test with its stderr if it fails."""
    cmd = [*MAILSPEC, *args, "--data-dir", str(data_dir)]
    if config:
        cmd += ["--config", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(args)} failed: {done.stderr}"
    return done.stdout


@dataclass
class Served:
    """A running `mailspec serve` process and what it printed."""

    proc: subprocess.Popen[str]
    data_dir: Path
    config: Path
    ports: dict[str, int] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    startup_seconds: float = 0.0

    @property
    def cafile(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def write_config(path: Path, hostname: str = "mail.example.test") -> Path:
    lines = ["[server]", f'hostname = "{hostname}"', 'log_level = "info"', "[listen]"]
    lines += [f'{name} = "127.0.0.1:0"' for name in LISTENERS]
    path.write_text("\n".join(lines) + "\n")
    return path


def serve(data_dir: Path, config: Path, timeout: float = 20.0) -> Served:
    """Start `mailspec serve` and read the endpoint lines it prints."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [*MAILSPEC, "serve", "--config", str(config), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    served = Served(proc, data_dir, config)
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"mailspec serve exited early: {''.join(served.output)}{err}")
        served.output.append(line)
        m = re.match(r"\s+(\w+)\s+\w+://[\d.]+:(\d+)", line)
        if m and m.group(1) in LISTENERS:
            served.ports[m.group(1)] = int(m.group(2))
        if line.startswith("Stop with"):
            break
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("mailspec serve did not start in time")
    served.startup_seconds = time.monotonic() - t0
    return served


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def served(tmp_path: Path, data_dir: Path) -> Iterator[Served]:
    config = write_config(tmp_path / "mailspec.toml")
    mailspec("domain", "add", "example.test", data_dir=data_dir)
    mailspec("user", "add", "alice@example.test", "--password", "alice-pw", data_dir=data_dir)
    mailspec("user", "add", "bob@example.test", "--password", "bob-pw", data_dir=data_dir)
    s = serve(data_dir, config)
    yield s
    s.stop()
