"""State stores (memory, SQLite, a real redis-server) agree, and count exactly under load."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reference.state import StateStore, StateUnavailable
from reference.state.memory import MemoryStore
from reference.state.redis import RedisStore
from reference.state.server import RedisServer
from reference.state.sqlite import SqliteStore

if TYPE_CHECKING:
    from conftest import Backend


Factory = Callable[[], StateStore]


@pytest.fixture
async def factory(backend: Backend) -> AsyncIterator[Factory]:
    made: list[StateStore] = []
    shared_memory = MemoryStore()

    def make() -> StateStore:
        store: StateStore
        if backend.name == "memory":
            store = shared_memory
        elif backend.name == "sqlite":
            store = SqliteStore(backend.path / "state.sqlite3")
        else:
            store = RedisStore(backend.redis_url, prefix=backend.prefix)
        made.append(store)
        return store

    yield make
    for s in made:
        await s.close()


async def test_values_expire_on_the_callers_clock(factory: Factory) -> None:
    store = factory()
    await store.put("k", "v", expires_at=1000.0)
    assert await store.get("k", now=999.0) == "v"
    assert await store.get("k", now=1000.0) is None
    assert await store.get("missing", now=0.0) is None
    await store.delete("k")
    assert await store.get("k", now=0.0) is None


async def test_put_if_absent_keeps_the_first_value(factory: Factory) -> None:
    store = factory()
    assert await store.put_if_absent("g", "first", expires_at=100.0, now=0.0) == "first"
    assert await store.put_if_absent("g", "second", expires_at=100.0, now=50.0) == "first"
    # Expired: the next one wins.
    assert await store.put_if_absent("g", "third", expires_at=300.0, now=100.0) == "third"


async def test_touch_renews_an_unexpired_value_in_one_step(factory: Factory) -> None:
    # Greylisting's trusted networks: read and renewed with one call (one hop, one round trip).
    store = factory()
    assert await store.touch("t", now=0.0, expires_at=100.0) is None  # absent: not created
    assert await store.get("t", now=0.0) is None
    await store.put("t", "1", expires_at=100.0)
    assert await store.touch("t", now=99.0, expires_at=200.0) == "1"
    assert await store.get("t", now=150.0) == "1"  # the new expiry holds
    assert await store.touch("t", now=200.0, expires_at=300.0) is None  # expired: stays so
    assert await store.get("t", now=250.0) is None


async def test_sliding_window_slides(factory: Factory) -> None:
    store = factory()
    for i in range(60):
        r = await store.window_add("alice", now=float(i), window=300.0, amount=1, limit=60)
        assert r.allowed and r.used == i + 1
    refused = await store.window_add("alice", now=100.0, window=300.0, amount=1, limit=60)
    assert not refused.allowed and refused.used == 60
    assert refused.retry_at == 300.0  # the first event (t=0) leaves the window then
    assert (await store.window_add("alice", now=300.0, window=300.0, amount=1, limit=60)).allowed
    assert not (await store.window_add("x", now=0.0, window=300.0, amount=61, limit=60)).allowed


async def test_concurrent_clients_count_exactly(factory: Factory) -> None:
    # Two clients (two connections, or two SQLite handles) race 100 requests for 60 slots.
    a, b = factory(), factory()

    async def one(i: int) -> bool:
        store = a if i % 2 else b
        r = await store.window_add("bob", now=10.0, window=300.0, amount=1, limit=60)
        return r.allowed

    results = await asyncio.gather(*(one(i) for i in range(100)))
    assert sum(results) == 60


async def test_a_cancelled_call_ends_cancelled(factory: Factory) -> None:
    # An SMTP session is cancelled when its client hangs up. A store call that returned as
    # if nothing happened (redis-py's writes on Python 3.11 did so for about one cancel in
    # three: CPython gh-86296) let the session carry on, reading an ended stream.
    store = factory()
    calls: list[Callable[[int], Awaitable[object]]] = [
        lambda i: store.get(f"c{i}", 10.0),
        lambda i: store.put(f"c{i}", "v", 20.0),
        lambda i: store.put_if_absent(f"c{i}", "v", 20.0, 10.0),
        lambda i: store.touch(f"c{i}", 10.0, 20.0),
        lambda i: store.window_add(f"c{i}", 10.0, 300.0, 1, 60),
        lambda i: store.delete(f"c{i}"),
    ]
    lost = 0
    for n in range(60):
        tasks = [asyncio.create_task(calls[i % len(calls)](i)) for i in range(30)]
        for _ in range(n % 6):  # cancel at different moments of the calls
            await asyncio.sleep(0)
        cancelled = {t for t in tasks[::3] if t.cancel()}
        results = await asyncio.gather(*tasks, return_exceptions=True)
        lost += sum(
            1
            for t, r in zip(tasks, results, strict=True)
            if t in cancelled and not isinstance(r, asyncio.CancelledError)
        )
    assert lost == 0


async def test_sqlite_statements_failing_in_the_stores_thread_raise_in_the_caller(
    tmp_path: Path,
) -> None:
    # The SQLite store runs its statements on a thread of its own: an error there is the
    # caller's, and the thread goes on serving the calls after it (until the store closes).
    store = SqliteStore(tmp_path / "state.sqlite3")
    try:
        async with asyncio.timeout(10):  # a thread that died with the error: never answered
            with pytest.raises(sqlite3.Error):
                await store.get(object(), now=0.0)  # type: ignore[arg-type]
            await store.put("k", "v", expires_at=10.0)
            assert await store.get("k", now=0.0) == "v"
    finally:
        await store.close()
    async with asyncio.timeout(10):  # a call after close is refused, not left waiting
        with pytest.raises(sqlite3.ProgrammingError):
            await store.get("k", now=0.0)


async def test_redis_killed_and_started_again_costs_no_call_after_it_is_back(
    tmp_path: Path,
) -> None:
    # Fault runs: Redis killed with SIGKILL, started again on its port and data. Calls while
    # it is away fail (the caller tempfails); the first calls after it is back succeed on
    # every connection the pool held, not once per stale connection.
    redis = RedisServer(tmp_path / "redis", persist=True).start()
    store = RedisStore(redis.url)
    try:
        await store.put("k", "v", expires_at=1e12)
        # Several connections in the pool, each left open when Redis dies.
        await asyncio.gather(*(store.get("k", now=0.0) for _ in range(8)))
        assert redis.proc is not None
        redis.proc.send_signal(signal.SIGKILL)
        redis.proc.wait()
        # Said as the state being away (the SMTP session answers 451 naming it), not as an
        # error of the code.
        with pytest.raises(StateUnavailable):
            await store.get("k", now=0.0)
        with pytest.raises(StateUnavailable):
            await store.window_add("w", now=0.0, window=300.0, amount=1, limit=60)
        redis.start()  # same port, same append-only file
        got = await asyncio.gather(*(store.get("k", now=0.0) for _ in range(8)))
        assert got == ["v"] * 8
    finally:
        await store.close()
        redis.stop()
