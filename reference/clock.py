"""The clock: the only place that reads the wall clock; everything else is handed a Clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What waits, expires or schedules asks this for the time."""

    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for durations."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait for ``seconds`` of this clock's time."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Wait until ``now()`` reaches ``when`` (at once if it has).

        Prefer this to ``sleep(when - now())`` when the deadline is absolute: a clock moved
        between reading ``now()`` and starting the wait cannot stretch it.
        """
        ...


class RealClock:
    """The wall clock, for production."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.time()))


class ManualClock:
    """A clock that moves only when a test calls :meth:`advance`.

    Sleepers wake when the clock passes their deadline, so a 24-hour retry story runs in
    milliseconds. Thread-safe: a test thread may advance a clock that servers running in
    their own event-loop threads sleep on.
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._start = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._start

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(0.0, seconds))

    async def sleep_until(self, when: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            due = when <= self._now
            if not due:
                heapq.heappush(self._sleepers, (when, next(self._seq), fut))
        if due:
            await asyncio.sleep(0)  # still a suspension point, as a zero real sleep is
            return
        await fut

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        due: list[asyncio.Future[None]] = []
        with self._lock:
            self._now += seconds
            while self._sleepers and self._sleepers[0][0] <= self._now:
                due.append(heapq.heappop(self._sleepers)[2])
        for fut in due:
            # A sleeper cancelled with its loop (a server stopped or crashed, then started
            # again on this clock) has no one to wake.
            if fut.done() or fut.get_loop().is_closed():
                continue
            # The sleeper's loop may run in another thread: wake it there.
            fut.get_loop().call_soon_threadsafe(_wake, fut)

    def set(self, when: float) -> None:
        """Jump to an absolute time (never backwards)."""
        self.advance(max(0.0, when - self._now))


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
