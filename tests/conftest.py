"""Fixtures several test files share: an SMTP listener with a raw line client, a TLS
certificate (the IMAP and POP3 servers' line clients are in ``stream_servers``), a fake DNS
server, a real redis-server, and the state backends a store test runs on. (The IMAP tests
add their own in ``imap/conftest.py``.) Also the options and end-of-run summary of the unit
tests (the mutation harness's catch rate)."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from stream_servers import make_certs

from fakes.dns import FakeDNS
from reference import tls
from reference.clock import ManualClock
from reference.credentials import StaticAuthenticator
from reference.directory.server import MariaDBServer
from reference.policy import Policy
from reference.smtp.server import Listener
from reference.spool import Spool
from reference.state.server import RedisServer

SMTP_HOST = "mx.example.test"
SMTP_ACCOUNTS = {"alice@example.test": "pw"}


class SmtpClient:
    """A raw SMTP client that shows exactly what the server sends: one whole reply (all of
    its lines) per command."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self, wait: float = 5) -> str:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), wait)
            assert line.endswith(b"\r\n"), line
            lines.append(line.decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return "".join(lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_line(self, line: str) -> None:
        await self.send(line.encode() + b"\r\n")

    async def cmd(self, line: str) -> str:
        await self.send_line(line)
        return await self.reply()

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""


@dataclass
class SmtpEnv:
    """A running SMTP listener with a real spool on a manual clock; ``client_tls`` is the
    client side's context (it trusts the listener's self-signed certificate)."""

    listener: Listener
    spool: Spool
    clock: ManualClock
    port: int
    client_tls: ssl.SSLContext

    async def open(self) -> SmtpClient:
        """A connection, the greeting not yet read (TLS at once on an implicit-TLS port)."""
        implicit = self.listener.implicit_tls
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            self.port,
            ssl=self.client_tls if implicit else None,
            server_hostname=SMTP_HOST if implicit else None,
        )
        return SmtpClient(reader, writer)

    async def connect(self, ehlo: str | None = "client.example.test") -> SmtpClient:
        """A connection past the greeting and, unless ``ehlo`` is None, EHLO."""
        client = await self.open()
        assert (await client.reply()).startswith(f"220 {SMTP_HOST} ")
        if ehlo:
            assert (await client.cmd(f"EHLO {ehlo}")).startswith("250-")
        return client


StartSmtp = Callable[..., Awaitable[SmtpEnv]]


@pytest.fixture
async def smtp_listener(tmp_path: Path) -> AsyncIterator[StartSmtp]:
    """``await smtp_listener(role, tls_mode=..., **listener_options)``: a Listener on a free
    loopback port ("mx" or "submission"; tls_mode "none", "starttls" or "implicit") with
    no checks but those given as ``policy``, alice's account, 10 kB messages, 100
    recipients and a 300 s idle timeout. Every session and server is closed at the end."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.self_signed(SMTP_HOST, cert, key)
    started: list[tuple[Listener, asyncio.Server]] = []

    async def start(role: str = "mx", *, tls_mode: str = "none", **options: Any) -> SmtpEnv:
        clock = options.pop("clock", None) or ManualClock()
        spool = Spool(tmp_path / f"spool{len(started)}", clock)
        settings: dict[str, Any] = {
            "hostname": SMTP_HOST,
            "policy": Policy([]),
            "spool": spool,
            "clock": clock,
            "auth": StaticAuthenticator(SMTP_ACCOUNTS),
            "tls_context": None if tls_mode == "none" else tls.server_context(cert, key),
            "implicit_tls": tls_mode == "implicit",
            "max_message_size": 10_000,
            "max_recipients": 100,
            "timeout": 300,
        }
        listener = Listener(role, **(settings | options))
        server = await listener.start("127.0.0.1", 0)
        started.append((listener, server))
        port = server.sockets[0].getsockname()[1]
        return SmtpEnv(listener, spool, clock, port, ssl.create_default_context(cafile=cert))

    yield start
    for listener, server in started:
        for session in list(listener.sessions):
            session.close()
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for "localhost" and its key, one per test module."""
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def dns_server() -> Iterator[FakeDNS]:
    """A fake DNS server on a free loopback port; ``dns_server.resolver()`` asks it."""
    with FakeDNS() as server:
        yield server


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on loopback, one per test module."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """A real mariadbd on loopback (Debian's mariadb-server), one per test run: each test
    that uses it has a database of its own."""
    with MariaDBServer(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


# An empty PostgreSQL database to run the directory's tests on as well (not in CI: checked by
# hand against Debian's PostgreSQL 15), e.g. postgresql://postgres@127.0.0.1:5432/tests.
POSTGRESQL_ENV = "MAILSPEC_TEST_POSTGRESQL"
DIRECTORY_BACKENDS = [
    "sqlite",
    pytest.param("mariadb", marks=pytest.mark.mariadb),
    *(
        [pytest.param("postgresql", marks=pytest.mark.postgresql)]
        if os.environ.get(POSTGRESQL_ENV)
        else []
    ),
]


@pytest.fixture(params=DIRECTORY_BACKENDS)
def directory_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """Where a test's directory lives: an SQLite file, or the run's MariaDB (emptied before
    each test: its tables are made once, which is most of the time a new database takes);
    each test that takes it runs on both (and on PostgreSQL with MAILSPEC_TEST_POSTGRESQL)."""
    if request.param == "sqlite":
        yield tmp_path / "dir.sqlite3"
    elif request.param == "postgresql":
        url = os.environ[POSTGRESQL_ENV]
        _empty_postgresql(url)
        yield url
    else:
        server: MariaDBServer = request.getfixturevalue("mariadb_server")
        server.empty_database("tests", keep=("directory_schema",))
        yield server.url_of("tests")


def _empty_postgresql(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db:
        names = [
            r[0]
            for r in db.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name <> 'directory_schema'"
            )
        ]
        if names:
            db.execute(f"TRUNCATE {', '.join(names)} CASCADE")


@dataclass(frozen=True)
class Backend:
    """Where a state store keeps its data: in-process ("memory"), SQLite under ``path``, or
    the module's redis-server under a key prefix of the test's own."""

    name: str
    path: Path
    redis_url: str
    prefix: str


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer) -> Backend:
    """Each test that takes it runs once per state backend."""
    return Backend(request.param, tmp_path, redis_server.url, f"t{id(request)}:")


ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mutants",
        default="default",
        help="mutants the mutation harness plants: default, all, or flaw names separated by "
        "commas (tests/mutants.py)",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    harness = sys.modules.get("test_mutation")
    results: dict[str, dict[str, Any]] = getattr(harness, "RESULTS", {})
    if not results:
        return
    from mutants import MUTANTS, MUTATION_REPORT

    path = ROOT / MUTATION_REPORT
    # Merged with earlier runs: a default run plants a few mutants, and keeps what a full
    # run found for the others.
    kept: dict[str, Any] = {}
    if path.exists():
        kept = {m["flaw"]: m for m in json.loads(path.read_text()).get("mutants", [])}
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    kept.update({flaw: {**r, "at": now} for flaw, r in results.items()})
    known = {m.flaw for m in MUTANTS}
    mutants = [kept[m.flaw] for m in MUTANTS if m.flaw in kept and m.flaw in known]
    caught = sum(m["caught"] for m in mutants)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"catalogue": len(MUTANTS), "caught": caught, "planted": len(mutants),
             "mutants": mutants},
            indent=2,
        )
        + "\n"
    )  # fmt: skip
    tr = terminalreporter
    tr.section("mutation harness")
    this = sum(r["caught"] for r in results.values())
    tr.write_line(f"this run: {this}/{len(results)} mutants caught")
    for r in results.values():
        if not r["caught"]:
            tr.write_line(f"  missed {r['flaw']}: {r['source']} {r['title']} ({r['status']})")
    tr.write_line(
        f"catch rate: {caught}/{len(mutants)} mutants caught "
        f"({len(MUTANTS)} in the catalogue; {path.relative_to(ROOT)})"
    )
