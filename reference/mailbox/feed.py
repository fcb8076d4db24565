"""The store's change feed across processes and nodes: Redis pub/sub, so that a delivery on
any node wakes the IMAP IDLE sessions on every node at once (without it, another process's
change is seen only at the session's next poll)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import secrets
import threading
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import RedisError

from reference.log import event
from reference.mailbox.store import MailStore

log = logging.getLogger("mailspec.mailbox")

CHANNEL = "mailspec:mailbox-changes"
_QUEUE_BOUND = 10_000  # changes waiting to be published; past it they are dropped (polls see them)
_RETRY = 1.0  # seconds before reconnecting after Redis went away
_TIMEOUT = 2.0  # seconds for a connection or a publish: Redis hanging delays only the feed
_LOOK = 0.5  # seconds between looks at the stop flag while nothing comes


class ChangeFeed:
    """Publishes every change the ``store`` makes in this process (the mailbox's path under
    the store's root) and hands the changes other processes publish to the store's local
    listeners. Lost messages cost only latency: IDLE still polls.

    Both run in threads of their own, not on the event loop: on a node busy with SMTP and
    deliveries the loop is late by tens to hundreds of milliseconds at times, and each hop
    through it (the writer's change to the publisher, the subscriber to the listeners) was
    paid at both ends of every push. The store's listeners are thread-safe by design (they
    are called in the writer's thread)."""

    def __init__(self, url: str, store: MailStore) -> None:
        self._pub: Any = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT
        )
        self._sub: Any = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=_TIMEOUT
        )
        self.store = store
        self._origin = f"{os.getpid()}.{secrets.token_hex(4)}"
        self._queue: queue.Queue[str] = queue.Queue(_QUEUE_BOUND)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.store.publish = self._changed
        self._threads = [
            threading.Thread(target=self._publish, name="feed-publish", daemon=True),
            threading.Thread(target=self._listen, name="feed-listen", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _changed(self, path: Path) -> None:
        """In the writer's thread: hand the change to the publisher, never waiting."""
        try:
            rel = path.relative_to(self.store.root)
        except ValueError:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(str(rel))

    def _publish(self) -> None:
        while not self._stop.is_set():
            try:
                rel = self._queue.get(timeout=_LOOK)
            except queue.Empty:
                continue
            try:
                self._pub.publish(CHANNEL, f"{self._origin} {rel}")
            except (RedisError, OSError) as e:
                event(log, "feed.error", level=logging.WARNING, error=repr(e))

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with self._sub.pubsub(ignore_subscribe_messages=True) as pubsub:
                    pubsub.subscribe(CHANNEL)
                    while not self._stop.is_set():
                        message = pubsub.get_message(timeout=_LOOK)
                        if message is None:
                            continue
                        origin, _, rel = str(message.get("data", "")).partition(" ")
                        if origin != self._origin and rel:
                            # Listeners only: the writer elsewhere committed it already.
                            self.store.ring(self.store.root / rel)
            except (RedisError, OSError) as e:
                event(log, "feed.error", level=logging.WARNING, error=repr(e))
                self._stop.wait(_RETRY)

    async def close(self) -> None:
        self.store.publish = None
        self._stop.set()
        for t in self._threads:
            await asyncio.to_thread(t.join, _TIMEOUT + _LOOK)
        self._pub.close()
        self._sub.close()
