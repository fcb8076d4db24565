"""A clamd client speaking INSTREAM (TCP or Unix socket), with a timeout and a size cap."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from reference.values import SocketAddress

__all__ = ["ClamdClient", "ScanResult"]

_CHUNK = 64 * 1024


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

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.pair is None:
            assert self.address.path is not None
            return await asyncio.open_unix_connection(self.address.path)
        return await asyncio.open_connection(*self.address.pair)

    async def _exchange(self, command: bytes, payload: bytes | None = None) -> bytes:
        reader, writer = await self._open()
        try:
            writer.write(command)
            if payload is not None:
                for i in range(0, len(payload), _CHUNK):
                    chunk = payload[i : i + _CHUNK]
                    writer.write(struct.pack("!L", len(chunk)) + chunk)
                    await writer.drain()
                writer.write(struct.pack("!L", 0))
            await writer.drain()
            # z-commands answer one NUL-terminated line.
            return (await reader.readuntil(b"\0")).rstrip(b"\0")
        finally:
            writer.close()

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
            reply = await asyncio.wait_for(self._exchange(b"zINSTREAM\0", data), self.timeout)
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
