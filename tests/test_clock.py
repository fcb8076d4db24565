"""The manual clock wakes sleepers when advanced, from any thread."""

from __future__ import annotations

import asyncio
import threading

from reference.clock import ManualClock, RealClock


async def test_manual_clock_wakes_sleepers_in_order() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("day", 86400)), asyncio.create_task(sleeper("min", 60))]
    await asyncio.sleep(0)
    clock.advance(59)
    await asyncio.sleep(0.01)
    assert woke == []
    clock.advance(1)
    await asyncio.sleep(0.01)
    assert woke == ["min"]
    clock.advance(86400)
    await asyncio.gather(*tasks)
    assert woke == ["min", "day"]


async def test_advance_from_another_thread() -> None:
    clock = ManualClock()
    t0 = clock.now()
    task = asyncio.create_task(clock.sleep(300))
    await asyncio.sleep(0)
    th = threading.Thread(target=clock.advance, args=(300,))
    th.start()
    th.join()
    await asyncio.wait_for(task, 1)
    assert clock.now() == t0 + 300


async def test_real_clock_moves() -> None:
    c = RealClock()
    a = c.monotonic()
    await c.sleep(0.01)
    assert c.monotonic() > a
    assert c.now() > 1_700_000_000


async def test_sleep_until_an_absolute_deadline() -> None:
    clock = ManualClock()
    deadline = clock.now() + 60
    clock.advance(60)  # moved before the sleeper even starts: it must not wait another 60 s
    await asyncio.wait_for(clock.sleep_until(deadline), 1)
    task = asyncio.create_task(clock.sleep_until(clock.now() + 30))
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(30)
    await asyncio.wait_for(task, 1)
    await asyncio.wait_for(RealClock().sleep_until(RealClock().now() - 1), 1)


def test_a_sleeper_whose_loop_is_gone_is_skipped() -> None:
    # A server crashed and started again on the same clock (the restart capability) leaves
    # sleepers of its closed loop behind: advancing must not try to wake them there.
    clock = ManualClock()
    loop = asyncio.new_event_loop()
    task = loop.create_task(clock.sleep(10))
    loop.run_until_complete(asyncio.sleep(0))
    task.cancel()
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    loop.close()
    clock.advance(20)
