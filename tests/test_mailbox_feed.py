"""The store's change feed: a delivery by one node (a store of its own over the same Maildir
tree) reaches the IDLE listeners of another node through Redis pub/sub, at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reference.clock import ManualClock
from reference.mailbox import MailStore
from reference.mailbox.feed import ChangeFeed
from reference.state.server import RedisServer

ALICE = "alice@example.org"
MSG = b"Subject: hi\r\n\r\nhello\r\n"
BOUND = 5.0  # seconds; it takes milliseconds (the IDLE poll alone would take 5 s)


async def test_a_delivery_on_one_node_wakes_the_listeners_of_another(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    node1 = MailStore(tmp_path / "mail", clock=ManualClock())
    node2 = MailStore(tmp_path / "mail", clock=ManualClock())
    with node2.open(ALICE) as inbox:
        path = inbox.path
    woken: asyncio.Queue[Path] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    unwatch = node2.watch(path, lambda p: loop.call_soon_threadsafe(woken.put_nowait, p))
    feeds = [ChangeFeed(redis_server.url, node1), ChangeFeed(redis_server.url, node2)]
    for feed in feeds:
        feed.start()
    try:
        for _ in range(50):  # until both are subscribed: a message before that is not heard
            await asyncio.to_thread(node1.deliver, ALICE, MSG)
            try:
                assert await asyncio.wait_for(woken.get(), 0.1) == path
                break
            except TimeoutError:
                continue
        while not woken.empty():
            woken.get_nowait()
        await asyncio.to_thread(node1.deliver, ALICE, MSG)
        assert await asyncio.wait_for(woken.get(), BOUND) == path
        # Its own changes reach a node's listeners once (directly, not again from Redis).
        await asyncio.to_thread(node2.deliver, ALICE, MSG)
        assert await asyncio.wait_for(woken.get(), BOUND) == path
        await asyncio.sleep(0.2)
        assert woken.empty()
    finally:
        unwatch()
        for feed in feeds:
            await feed.close()
