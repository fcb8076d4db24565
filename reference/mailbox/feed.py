"""The store's change feed across processes and nodes: Redis pub/sub, so that a delivery on
any node wakes the IMAP IDLE sessions on every node at once (without it, another process's
change is seen only at the session's next poll)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reference.clock import RealClock
from reference.log import event
from reference.mailbox.store import MailStore

log = logging.getLogger("mailspec.mailbox")

CHANNEL = "mailspec:mailbox-changes"
_QUEUE_BOUND = 10_000  # changes waiting to be published; past it they are dropped (polls see them)
_RETRY = 1.0  # seconds before reconnecting after Redis went away

_REAL = RealClock()


class ChangeFeed:
    """Publishes every change the ``store`` makes in this process (the mailbox's path under
    the store's root) and hands the changes other processes publish to the store's local
    listeners. Lost messages cost only latency: IDLE still polls."""

    def __init__(self, url: str, store: MailStore) -> None:
        self._redis: Any = aioredis.from_url(url, decode_responses=True)
        self.store = store
        self._origin = f"{os.getpid()}.{secrets.token_hex(4)}"
        self._queue: asyncio.Queue[str] = asyncio.Queue(_QUEUE_BOUND)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.store.publish = self._changed
        self._tasks = [
            asyncio.create_task(self._publish(), name="feed-publish"),
            asyncio.create_task(self._listen(), name="feed-listen"),
        ]

    def _changed(self, path: Path) -> None:
        """In the writer's thread: queue the change for the event loop to publish."""
        try:
            rel = path.relative_to(self.store.root)
        except ValueError:
            return
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone at shutdown
                self._loop.call_soon_threadsafe(self._put, str(rel))

    def _put(self, rel: str) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(rel)

    async def _publish(self) -> None:
        while True:
            rel = await self._queue.get()
            try:
                await self._redis.publish(CHANNEL, f"{self._origin} {rel}")
            except (RedisError, OSError) as e:
                event(log, "feed.error", level=logging.WARNING, error=repr(e))

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        origin, _, rel = str(message.get("data", "")).partition(" ")
                        if origin != self._origin and rel:
                            # Listeners only: the writer elsewhere committed it already.
                            self.store.ring(self.store.root / rel)
            except (RedisError, OSError) as e:
                event(log, "feed.error", level=logging.WARNING, error=repr(e))
                await _REAL.sleep(_RETRY)

    async def close(self) -> None:
        self.store.publish = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()
