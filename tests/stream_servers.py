"""Test plumbing shared by the IMAP and POP3 server tests: TLS files, tracked listeners and
the raw line client they both extend."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

from reference import tls
from reference.clock import ManualClock
from reference.credentials import StaticAuthenticator
from reference.mailbox import MailStore, Quota

NO_QUOTA = Quota()
Handle = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Serve = Callable[[Handle, ssl.SSLContext | None], Awaitable[int]]


class Env:
    """A server under test: its store, its clock, the certificate to trust, its port."""

    def __init__(self, store: MailStore, clock: ManualClock, cafile: Path) -> None:
        self.store, self.clock, self.cafile = store, clock, cafile
        self.port = 0

    def client_context(self) -> ssl.SSLContext:
        return tls.client_context(self.cafile)


Start = Callable[..., Awaitable[Env]]


class LineClient:
    """A line-oriented test client that shows exactly what the server sends; every client
    opened is closed when its test's servers stop."""

    opened: ClassVar[list[LineClient]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        LineClient.opened.append(self)

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 5)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""


def make_certs(directory: Path) -> tuple[Path, Path]:
    tls.self_signed("localhost", directory / "cert.pem", directory / "key.pem")
    return directory / "cert.pem", directory / "key.pem"


@asynccontextmanager
async def stream_servers() -> AsyncIterator[Serve]:
    """``serve(handle, ssl)`` listens on 127.0.0.1:0 and returns the port; on exit every
    listener closes and every session is given time to see its client go."""
    servers: list[asyncio.Server] = []
    sessions: set[asyncio.Task[Any]] = set()

    async def serve(handle: Handle, context: ssl.SSLContext | None) -> int:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            sessions.add(task)
            await handle(reader, writer)

        server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=context)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    try:
        yield serve
    finally:
        for server in servers:
            server.close()
        if sessions:  # let every session see its client go and close its mailbox
            await asyncio.wait(sessions, timeout=5)


async def start_env(
    serve: Serve,
    tmp_path: Path,
    certs: tuple[Path, Path],
    server_class: Callable[..., Any],
    hostname: str,
    users: dict[str, str],
    *,
    implicit_tls: bool = False,
    quota: Quota = NO_QUOTA,
    **options: Any,
) -> Env:
    """An IMAP or POP3 server (``server_class``) on a fresh store, listening on loopback."""
    clock = ManualClock()
    env = Env(MailStore(tmp_path / "mail", clock=clock, quota=quota), clock, certs[0])
    context = tls.server_context(*certs)
    server = server_class(
        env.store,
        StaticAuthenticator(users),
        hostname=hostname,
        tls_context=context,
        clock=clock,
        **options,
    )

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.handle(r, w, tls=implicit_tls)

    env.port = await serve(handle, context if implicit_tls else None)
    return env


@asynccontextmanager
async def line_servers(
    tmp_path: Path,
    certs: tuple[Path, Path],
    server_class: Callable[..., Any],
    hostname: str,
    users: dict[str, str],
) -> AsyncIterator[Start]:
    """``await start(**options)`` runs a ``server_class`` (IMAP or POP3) on a fresh store,
    with the ``users``' accounts; at the end every client and server is closed."""
    async with stream_servers() as serve:
        yield functools.partial(start_env, serve, tmp_path, certs, server_class, hostname, users)
        for client in LineClient.opened:
            client.writer.close()
        LineClient.opened.clear()
