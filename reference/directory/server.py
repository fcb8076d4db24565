"""A throwaway MariaDB on loopback: `mailspec cluster --directory mariadb-auto`, the tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from reference.clock import RealClock

__all__ = ["MariaDBNotFound", "MariaDBServer"]

# Starting and stopping a process takes real time: these deadlines use the real clock.
_REAL = RealClock()
# Debian keeps the server in /usr/sbin, not on an ordinary user's PATH.
_SBIN = ("/usr/sbin", "/usr/local/sbin")
PACKAGE = "Debian: apt-get install mariadb-server, or run .ci/services.sh"
DATABASE = "mailspec"
# Binary collation: keys compare as on SQLite (the directory lower-cases what it writes).
_CHARSET = "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"


class MariaDBNotFound(RuntimeError):
    """No mariadbd (or mariadb-install-db) to run; the message says what to install."""


def _which(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN])
    found = shutil.which(name, path=path)
    if found is None:
        raise MariaDBNotFound(f"{name} is not installed ({PACKAGE})")
    return found


class MariaDBServer:
    """A private mariadbd on 127.0.0.1 with its own data directory under ``workdir``.

    No passwords (``--skip-grant-tables``): it listens on loopback only and lives as long
    as a test or a load run. :meth:`kill` and :meth:`start` again (same port, same data)
    are what a fault run does to it.
    """

    def __init__(self, workdir: Path, port: int = 0) -> None:
        self.workdir = workdir.absolute()
        self.port = port  # 0: a free one at the first start, kept for restarts
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_of(DATABASE)

    def url_of(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> MariaDBServer:
        server = _which("mariadbd")
        data = self.workdir / "data"
        if not (data / "mysql").is_dir():
            self._install(data)
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        log = self.workdir / "mariadbd.log"
        args = [
            server,
            "--no-defaults",  # first: not the machine's /etc/mysql settings
            f"--datadir={data}",
            f"--socket={self.workdir / 'mariadbd.sock'}",
            f"--pid-file={self.workdir / 'mariadbd.pid'}",
            f"--log-error={log}",
            "--bind-address=127.0.0.1",
            f"--port={self.port}",
            "--skip-grant-tables",
            "--skip-name-resolve",
            "--skip-log-bin",
            # Small and quick to start; a crash of the process (not of the machine) loses
            # nothing written at a commit, which is all a fault run does to it.
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=500",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")  # CI runs as root; mariadbd refuses it otherwise
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = _REAL.monotonic() + timeout
        while _REAL.monotonic() < deadline and self.proc.poll() is None:
            if self._sql(f"CREATE DATABASE IF NOT EXISTS {DATABASE} {_CHARSET}"):
                return self
            time.sleep(0.05)
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        self.stop()
        raise RuntimeError(f"mariadbd did not start on port {self.port}: {tail}")

    def _install(self, data: Path) -> None:
        data.mkdir(parents=True, exist_ok=True)
        args = [
            _which("mariadb-install-db"),
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {(done.stderr or done.stdout)[-800:]}")

    def empty_database(self, name: str, *, keep: tuple[str, ...] = ()) -> None:
        """Delete every row of every table of ``name`` but ``keep``'s (made if missing)."""
        import pymysql

        self._sql(f"CREATE DATABASE IF NOT EXISTS {name} {_CHARSET}")
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", database=name)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SHOW TABLES")
                names = [r[0] for r in cursor.fetchall() if r[0] not in keep]
                cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
                for table in names:
                    cursor.execute(f"DELETE FROM `{table}`")
            conn.commit()
        finally:
            conn.close()

    def _sql(self, statement: str) -> bool:
        """Run one statement as root; False if the server does not answer."""
        import pymysql

        try:
            conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1)
        except pymysql.err.OperationalError:
            return False
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
        finally:
            conn.close()
        return True

    def kill(self) -> None:
        """SIGKILL, as a crash: what a fault run does (the data directory stays)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> MariaDBServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
