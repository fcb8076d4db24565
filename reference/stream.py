"""Bounded, timed line I/O over asyncio streams, for the line-based servers (IMAP, POP3)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable
from typing import TypeVar

from reference.clock import Clock

T = TypeVar("T")


class Closed(Exception):
    """The peer closed the connection (or it broke)."""


class LineTooLong(Exception):
    """A line exceeded its bound; the stream cannot be resynchronised."""


class Stream:
    """A client connection: every read and write is bounded and has a deadline on ``clock``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, clock: Clock
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._clock = clock
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def readline(self, limit: int, seconds: float) -> bytes:
        """One line with its LF; :class:`LineTooLong` past ``limit`` bytes."""
        try:
            line = await self._timed(self._reader.readuntil(b"\n"), seconds)
        except asyncio.LimitOverrunError:
            raise LineTooLong from None
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as e:
            raise Closed from e
        if len(line) > limit:
            raise LineTooLong
        return line

    async def readexactly(self, n: int, seconds: float) -> bytes:
        try:
            return await self._timed(self._reader.readexactly(n), seconds)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as e:
            raise Closed from e

    async def write(self, data: bytes, seconds: float) -> None:
        try:
            self._writer.write(data)
            await self._timed(self._writer.drain(), seconds)
        except (ConnectionError, ssl.SSLError) as e:
            raise Closed from e

    async def start_tls(self, context: ssl.SSLContext, seconds: float, reply: bytes) -> int:
        """Send ``reply`` (the go-ahead) and upgrade to TLS; returns how many plaintext bytes
        were discarded.

        RFC 9051 6.2.1 / RFC 2595 / RFC 8314: anything the client pipelined after STARTTLS
        arrived before the go-ahead, so it is unprotected and must not be read as if it came
        over TLS (the command-injection attack, CVE-2011-0411 and kin). Reading is paused and
        the buffer cleared *before* the go-ahead is written: what arrives after it (the TLS
        ClientHello) stays in the socket for the handshake, and cannot be mistaken for
        injected plaintext, however fast the client answers.
        """
        transport = self._writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()
        buffer: bytearray = self._reader._buffer  # type: ignore[attr-defined]
        discarded = len(buffer)
        buffer.clear()
        try:
            self._writer.write(reply)
            # StreamWriter.start_tls drains first; loop.start_tls resumes reading under TLS.
            await self._timed(self._writer.start_tls(context), seconds)
        except (ConnectionError, ssl.SSLError, OSError) as e:
            raise Closed from e
        return discarded

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError, OSError):
            await self._timed(self._writer.wait_closed(), 5.0)

    async def _timed(self, aw: Awaitable[T], seconds: float) -> T:
        """``await aw`` for at most ``seconds`` of the injected clock (TimeoutError after)."""
        task = asyncio.ensure_future(aw)
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            done, _ = await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()
        if task not in done:
            raise TimeoutError
        return task.result()


def log_event(logger: logging.Logger, event: str, **fields: object) -> None:
    """One structured log line: ``event key=value ...`` (values with spaces JSON-quoted)."""
    parts = [event]
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' "=\\') or not text.isprintable():
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    logger.info(" ".join(parts))
