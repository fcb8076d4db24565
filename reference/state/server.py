"""A throwaway redis-server on a loopback port: `mailspec cluster --redis auto`, the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from reference.clock import RealClock

__all__ = ["RedisServer"]

# Starting and stopping a process takes real time: these deadlines use the real clock.
_REAL = RealClock()


class RedisServer:
    """A throwaway redis-server on 127.0.0.1, for tests and load runs: no persistence, or
    with ``persist`` an append-only file fsynced at every write (a fault run kills it and
    starts it again on the same ``port`` and data: counters and leases survive, as they do
    where providers run Redis with persistence)."""

    def __init__(self, workdir: Path, *, port: int = 0, persist: bool = False) -> None:
        self.workdir = workdir
        self.port = port
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: run .ci/services.sh (Debian: apt-get install "
                "redis-server)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        fixed = self.port
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else []
        for _ in range(1 if fixed else 5):
            if not fixed:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    self.port = s.getsockname()[1]
            self.proc = subprocess.Popen(
                [
                    binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    *(persistence or ["--appendonly", "no"]),
                    "--dir",
                    str(self.workdir),
                    "--daemonize",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = _REAL.monotonic() + 5
            while _REAL.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                        c.sendall(b"PING\r\n")
                        if c.recv(16).startswith(b"+PONG"):
                            return self
                except OSError:
                    time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
