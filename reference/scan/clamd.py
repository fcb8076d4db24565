"""A clamd client speaking INSTREAM (TCP or Unix socket), with a timeout and a size cap.

Scans go through clamd sessions (IDSESSION) kept open between messages: a new connection
per message cost more than the scan of a small one, on both sides.
"""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import dataclass

from reference.clock import RealClock
from reference.values import SocketAddress

__all__ = ["ClamdClient", "ScanResult"]

_CHUNK = 64 * 1024
_IDLE_POOL = 8  # sessions kept open between scans
# clamd closes a session idle for IdleTimeout (30 s by default): we let go well before.
_IDLE_SECONDS = 10.0
# Idleness of a connection to a real clamd is real time, whatever clock the server runs on.
_REAL = RealClock()
_REQUEST_ID = re.compile(rb"^\d+: ")


@dataclass
class _Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: float  # _REAL.monotonic() of the last reply


@dataclass(frozen=True)
class ScanResult:
    """``clean``, ``infected`` (with the signature name) or ``error`` (with the reason)."""

    status: str
    name: str = ""

    @property
    def infected(self) -> bool:
        return self.status == "infected"


class ClamdClient:
    """``ClamdClient("127.0.0.1:3310")`` or ``ClamdClient("/run/clamav/clamd.ctl")``; the
    server passes the address the config parsed (``antivirus.clamd``)."""

    def __init__(
        self, address: SocketAddress | str, *, timeout: float = 30.0, max_size: int = 25 << 20
    ):
        self.address = address if isinstance(address, SocketAddress) else SocketAddress(address)
        self.timeout = timeout
        self.max_size = max_size
        self._idle: list[_Session] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the idle ones belong to

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.pair is None:
            assert self.address.path is not None
            return await asyncio.open_unix_connection(self.address.path)
        return await asyncio.open_connection(*self.address.pair)

    async def _exchange(self, command: bytes) -> bytes:
        """One command on a connection of its own (PING: is clamd there right now?)."""
        reader, writer = await self._open()
        try:
            writer.write(command)
            await writer.drain()
            # z-commands answer one NUL-terminated line.
            return (await reader.readuntil(b"\0")).rstrip(b"\0")
        finally:
            writer.close()

    def close(self) -> None:
        """Close the sessions kept open between scans."""
        for session in self._idle:
            session.writer.close()
        self._idle.clear()

    async def _session_exchange(self, payload: bytes) -> bytes:
        """zINSTREAM in a session: an idle one if there is one (once more on a fresh one if
        clamd had closed it meanwhile), a new one otherwise."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._idle, self._loop = [], loop  # streams cannot move between event loops
        now = _REAL.monotonic()
        while self._idle:
            session = self._idle.pop()
            if now - session.used < _IDLE_SECONDS:
                try:
                    return await self._instream(session, payload)
                except (OSError, asyncio.IncompleteReadError):
                    pass  # closed by clamd since: a new session below
            else:
                session.writer.close()
        reader, writer = await self._open()
        writer.write(b"zIDSESSION\0")
        return await self._instream(_Session(reader, writer, now), payload)

    async def _instream(self, session: _Session, payload: bytes) -> bytes:
        ok = False
        try:
            w = session.writer
            # Command, chunks and the closing zero length in one write (one send for an
            # ordinary message); a large one is drained chunk by chunk.
            out = [b"zINSTREAM\0"]
            for i in range(0, len(payload), _CHUNK):
                chunk = payload[i : i + _CHUNK]
                out += (struct.pack("!L", len(chunk)), chunk)
                if i + _CHUNK < len(payload):
                    w.write(b"".join(out))
                    out.clear()
                    await w.drain()
            out.append(struct.pack("!L", 0))
            w.write(b"".join(out))
            await w.drain()
            # In a session each reply is "<request id>: <reply>", NUL-terminated.
            reply = _REQUEST_ID.sub(b"", (await session.reader.readuntil(b"\0")).rstrip(b"\0"))
            # After an error clamd may end the session: only a verdict leaves it reusable.
            ok = reply.endswith((b": OK", b" FOUND"))
            return reply
        finally:
            if ok and len(self._idle) < _IDLE_POOL:
                session.used = _REAL.monotonic()
                self._idle.append(session)
            else:
                session.writer.close()  # also when cancelled (timeout): its state is unknown

    async def ping(self) -> bool:
        try:
            return await asyncio.wait_for(self._exchange(b"zPING\0"), self.timeout) == b"PONG"
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False

    async def scan(self, data: bytes) -> ScanResult:
        """Scan ``data``; never raises: trouble is an ``error`` result."""
        if len(data) > self.max_size:
            # clamd would stop at StreamMaxLength and say "size limit exceeded": decide here.
            return ScanResult("error", f"larger than the scan limit of {self.max_size} bytes")
        try:
            async with asyncio.timeout(self.timeout):  # no task of its own, unlike wait_for
                reply = await self._session_exchange(data)
        except TimeoutError:
            return ScanResult("error", f"clamd did not answer within {self.timeout:g} s")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            return ScanResult("error", f"clamd unreachable at {self.address}: {e}")
        text = reply.decode("utf-8", "replace")
        # "stream: OK", "stream: Eicar-Signature FOUND", "INSTREAM size limit exceeded. ERROR"
        if text.endswith(" FOUND"):
            name = text.removeprefix("stream:").strip().removesuffix(" FOUND").strip()
            return ScanResult("infected", name)
        if text.endswith(": OK"):
            return ScanResult("clean")
        return ScanResult("error", text)
