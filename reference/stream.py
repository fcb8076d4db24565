"""Bounded, timed line I/O over asyncio streams, for the line-based servers (IMAP, POP3)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import zlib
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
        self.client = str(peer[0]) if isinstance(peer, tuple) else ""  # the IP address
        # RFC 4978 COMPRESS=DEFLATE, once started: raw deflate both ways (no zlib header).
        self._inflate: zlib._Decompress | None = None
        self._deflate: zlib._Compress | None = None
        self._plain = bytearray()  # inflated octets not yet read

    @property
    def compressed(self) -> bool:
        return self._deflate is not None

    def start_deflate(self) -> None:
        """From now on read and write raw deflate (RFC 4978 / RFC 1951); each write is
        flushed whole (Z_SYNC_FLUSH), so a reply is never held back in the compressor."""
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)

    async def _fill(self, seconds: float) -> None:
        """More inflated octets: at most 64 kB per step, so a small compressed input cannot
        balloon past the bounds the line and literal limits set."""
        inflate = self._inflate
        assert inflate is not None
        data = inflate.unconsumed_tail
        if not data:
            try:
                data = await self._timed(self._reader.read(65536), seconds)
            except (ConnectionError, ssl.SSLError) as e:
                raise Closed from e
            if not data:
                raise Closed
        try:
            self._plain += inflate.decompress(data, 65536)
        except zlib.error as e:
            raise Closed from e

    async def readline(self, limit: int, seconds: float) -> bytes:
        """One line with its LF; :class:`LineTooLong` past ``limit`` bytes."""
        if self._inflate is not None:
            while (end := self._plain.find(b"\n")) < 0:
                if len(self._plain) > limit:
                    raise LineTooLong
                await self._fill(seconds)
            if end + 1 > limit:
                raise LineTooLong
            line = bytes(self._plain[: end + 1])
            del self._plain[: end + 1]
            return line
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
        if self._inflate is not None:
            while len(self._plain) < n:
                await self._fill(seconds)
            data = bytes(self._plain[:n])
            del self._plain[:n]
            return data
        try:
            return await self._timed(self._reader.readexactly(n), seconds)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as e:
            raise Closed from e

    async def write(self, data: bytes, seconds: float) -> None:
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
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
