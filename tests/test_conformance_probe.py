"""The probe of a described target's endpoints: one line for each that cannot be used."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from conformance.probe import probe, probe_endpoint
from conformance.target import Endpoint, Target, TLSSettings
from reference import tls

Handle = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def target(*urls: tuple[str, str], timeout: float = 5.0, cafile: Path | None = None) -> Target:
    return Target(
        name="t",
        kind="external",
        domain="example.test",
        endpoints={role: Endpoint.parse(role, url) for role, url in urls},
        tls=TLSSettings(cafile=cafile),
        timeout=timeout,
    )


@asynccontextmanager
async def serving(handle: Handle, ssl_context: object = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_context)  # type: ignore[arg-type]
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


def greets(line: bytes) -> Handle:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line)
        await writer.drain()
        await reader.read(100)  # until the probe hangs up
        writer.close()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    writer.close()


async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.mark.parametrize(
    ("role", "scheme", "greeting"),
    [
        ("smtp", "smtp", b"220-mx.example.test ESMTP\r\n"),
        ("imap", "imap", b"* OK [CAPABILITY IMAP4rev1] ready\r\n"),
        ("imap", "imap", b"* PREAUTH ready\r\n"),
        ("pop3", "pop3", b"+OK ready\r\n"),
    ],
)
async def test_a_greeting_endpoint_is_usable(role: str, scheme: str, greeting: bytes) -> None:
    async with serving(greets(greeting)) as port:
        t = target((role, f"{scheme}://127.0.0.1:{port}"))
        assert await probe_endpoint(t, t.endpoints[role]) is None


async def test_what_cannot_be_used_is_said_in_one_line() -> None:
    async with (
        serving(silent) as quiet,
        serving(hangs_up) as rude,
        serving(greets(b"* OK Dovecot ready.\r\n")) as imap_server,
        serving(greets(b"554 5.7.1 no service for you\r\n")) as refusing,
    ):
        t = target(timeout=0.3)
        cases = {
            f"smtp://127.0.0.1:{closed_port()}": "unreachable: connection refused",
            f"smtp://127.0.0.1:{quiet}": "connected, but no greeting within 0.3s",
            f"smtp://127.0.0.1:{rude}": "connected, but closed without a greeting",
            f"smtp://127.0.0.1:{imap_server}": (
                "greets with '* OK Dovecot ready.', not an SMTP greeting (220 expected)"
            ),
            f"smtp://127.0.0.1:{refusing}": "refuses the suite: '554 5.7.1 no service for you'",
        }
        for url, expected in cases.items():
            ep = Endpoint.parse("smtp", url)
            line = await probe_endpoint(t, ep)
            assert line is not None and line.startswith(f"smtp 127.0.0.1:{ep.port}"), line
            assert expected in line, line
            assert "\n" not in line


async def test_an_untrusted_certificate_is_named(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.self_signed("localhost", cert, key)
    server_ctx = tls.server_context(cert, key)
    async with serving(greets(b"220 ok\r\n"), server_ctx) as port:
        url = f"smtps://127.0.0.1:{port}"
        # Without the CA file: the line says why the handshake failed.
        t = target(("submissions", url))
        line = await probe_endpoint(t, t.endpoints["submissions"])
        assert line is not None and "TLS handshake failed" in line, line
        assert "certificate" in line
        # Trusted, and checked against the name in the certificate: usable.
        trusting = Target(
            name="t",
            kind="external",
            domain="example.test",
            endpoints=t.endpoints,
            tls=TLSSettings(cafile=cert, server_name="localhost"),
        )
        assert await probe_endpoint(trusting, trusting.endpoints["submissions"]) is None


def test_closed_ports_are_reported_at_once_in_file_order() -> None:
    ports = [closed_port() for _ in range(3)]
    t = target(
        ("submission", f"smtp://127.0.0.1:{ports[0]}"),
        ("smtp", f"smtp://127.0.0.1:{ports[1]}"),
        ("pop3", f"pop3://127.0.0.1:{ports[2]}"),
    )
    t0 = time.monotonic()
    lines = probe(t)
    assert time.monotonic() - t0 < 2.0
    assert lines == [
        f"submission 127.0.0.1:{ports[0]} unreachable: connection refused",
        f"smtp 127.0.0.1:{ports[1]} unreachable: connection refused",
        f"pop3 127.0.0.1:{ports[2]} unreachable: connection refused",
    ]
