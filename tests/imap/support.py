"""What the IMAP tests share besides fixtures: the account, a message, and a raw client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from stream_servers import Env, LineClient, Start

ALICE, PASSWORD = "alice@example.org", "correct horse"
MSG = b"From: bob@example.net\r\nSubject: Hello\r\n\r\nHi Alice.\r\n"


class Raw(LineClient):
    """An IMAP client that shows exactly what the server sends."""

    @classmethod
    async def connect(cls, env: Env) -> Raw:
        raw = cls(*await asyncio.open_connection("127.0.0.1", env.port))
        assert (await raw.line()).startswith(b"* OK ")
        return raw

    async def command(self, text: bytes, tag: bytes = b"t") -> list[bytes]:
        """Send ``tag text``; every line up to and including the tagged reply."""
        await self.send(tag + b" " + text + b"\r\n")
        return await self.until(tag)

    async def until(self, tag: bytes) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            line = await self.line()
            assert line, f"connection closed after {lines}"
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    async def starttls(self, env: Env) -> None:
        assert (await self.command(b"STARTTLS", b"s"))[-1].startswith(b"s OK")
        await self.writer.start_tls(env.client_context(), server_hostname="localhost")

    async def login(self, env: Env) -> None:
        await self.starttls(env)
        assert (await self.command(b'LOGIN alice@example.org "correct horse"'))[-1].startswith(
            b"t OK"
        )


async def logged_in(start: Start, **options: Any) -> tuple[Env, Raw]:
    """A server allowing plaintext LOGIN (no STARTTLS round trip) and a client logged in."""
    env = await start(allow_plaintext=True, **options)
    raw = await Raw.connect(env)
    assert (await raw.command(b'LOGIN alice@example.org "correct horse"'))[-1].startswith(b"t OK")
    return env, raw


def run(fn: Callable[[], Any]) -> Awaitable[Any]:
    """Run a blocking client (imapclient, imaplib, the store) off the event loop."""
    return asyncio.to_thread(fn)
