"""IDLE (RFC 2177): changes reported as they happen, until the client says DONE."""

from __future__ import annotations

import asyncio
from typing import Any

from reference.imap.core import SessionCore
from reference.imap.parser import Simple


class IdleCommand(SessionCore):
    async def idle(self, command: Simple) -> None:
        """RFC 2177 / RFC 9051 6.3.13: report changes as they happen until DONE."""
        await self.send(b"+ idling")
        view = self.view
        reader = asyncio.ensure_future(
            self.stream.readline(self.server.max_line, self.server.idle_timeout)
        )
        try:
            while True:
                waits: set[asyncio.Future[Any]] = {reader}
                if view is not None:
                    view.changed.clear()
                    await self.refresh()
                    waits.add(asyncio.ensure_future(view.changed.wait()))
                await self.report_news()
                await self.flush()
                if view is not None or self.watch is not None:
                    # Deliveries by other processes (and NOTIFY's other mailboxes) do not
                    # ring the bell: look now and then.
                    waits.add(asyncio.ensure_future(self.server.clock.sleep(self.server.idle_poll)))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits - {reader}:
                        w.cancel()
                if reader.done():
                    break
            line = reader.result()
        finally:
            if not reader.done():
                reader.cancel()
        if line.rstrip(b"\r\n").upper() == b"DONE":
            await self.ok(command, "IDLE terminated")
        else:
            await self.bad(command.tag, "Expected DONE")
