"""IDLE: deliveries of this process heard at once, other processes' by polling, DONE."""

from __future__ import annotations

import asyncio
import threading

from reference.mailbox import MailStore

from .support import ALICE, MSG, Start, logged_in, run


async def test_idle_hears_deliveries_of_this_process_at_once(start: Start) -> None:
    env, raw = await logged_in(start)
    await raw.command(b"SELECT INBOX")
    await raw.send(b"i IDLE\r\n")
    assert await raw.line() == b"+ idling\r\n"
    await run(lambda: env.store.deliver(ALICE, MSG))  # no clock advance: the hook rings
    assert await raw.line() == b"* 1 EXISTS\r\n"
    assert await raw.line() == b"* 1 RECENT\r\n"  # RFC 3501 7.3.2: with EXISTS
    await raw.send(b"DONE\r\n")
    assert await raw.line() == b"i OK IDLE terminated\r\n"


async def test_idle_polls_for_other_processes(start: Start) -> None:
    env, raw = await logged_in(start, idle_poll=5.0)
    await raw.command(b"SELECT INBOX")
    await raw.send(b"i IDLE\r\n")
    assert await raw.line() == b"+ idling\r\n"
    other = MailStore(env.store.root)  # another process: its hook is not ours
    await run(lambda: other.deliver(ALICE, MSG))
    line = b""
    for _ in range(100):
        env.clock.advance(5.0)
        try:
            line = await asyncio.wait_for(raw.reader.readline(), 0.05)
            break
        except TimeoutError:
            continue
    assert line == b"* 1 EXISTS\r\n"
    assert await raw.line() == b"* 1 RECENT\r\n"
    await raw.send(b"DONE\r\n")
    assert await raw.line() == b"i OK IDLE terminated\r\n"


async def test_idle_without_done_is_bad(start: Start) -> None:
    _, raw = await logged_in(start)
    await raw.send(b"i IDLE\r\n")
    assert await raw.line() == b"+ idling\r\n"
    await raw.send(b"NOPE\r\n")
    assert (await raw.line()).startswith(b"i BAD")


async def test_idle_hears_a_delivery_while_the_default_thread_pool_is_busy(start: Start) -> None:
    # On a busy node the default pool runs spool writes and deliveries, fsync after fsync;
    # IDLE's look for changes has threads of its own and does not queue behind them.
    env, raw = await logged_in(start)
    await raw.command(b"SELECT INBOX")
    await raw.send(b"i IDLE\r\n")
    assert await raw.line() == b"+ idling\r\n"
    loop = asyncio.get_running_loop()
    release = threading.Event()
    busy = [loop.run_in_executor(None, release.wait) for _ in range(40)]  # more than it has
    try:
        delivery = threading.Thread(target=env.store.deliver, args=(ALICE, MSG))
        delivery.start()
        assert await raw.line() == b"* 1 EXISTS\r\n"
        delivery.join()
    finally:
        release.set()
        await asyncio.gather(*busy)
    assert await raw.line() == b"* 1 RECENT\r\n"
    await raw.send(b"DONE\r\n")
    assert await raw.line() == b"i OK IDLE terminated\r\n"
