"""The in-process state store: for unit tests and a single process that shares nothing."""

from __future__ import annotations

from reference.state import WindowResult


class MemoryStore:
    """Dicts; asyncio runs one coroutine at a time, so each method is atomic."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float]] = {}
        self._windows: dict[str, list[tuple[float, int]]] = {}

    async def get(self, key: str, now: float) -> str | None:
        found = self._values.get(key)
        if found is None or found[1] <= now:
            return None
        return found[0]

    async def put(self, key: str, value: str, expires_at: float) -> None:
        self._values[key] = (value, expires_at)

    async def put_if_absent(self, key: str, value: str, expires_at: float, now: float) -> str:
        current = await self.get(key, now)
        if current is not None:
            return current
        self._values[key] = (value, expires_at)
        return value

    async def touch(self, key: str, now: float, expires_at: float) -> str | None:
        current = await self.get(key, now)
        if current is not None:
            self._values[key] = (current, expires_at)
        return current

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)
        self._windows.pop(key, None)

    async def window_add(
        self, key: str, now: float, window: float, amount: int, limit: int
    ) -> WindowResult:
        events = [e for e in self._windows.get(key, []) if e[0] > now - window]
        used = sum(a for _, a in events)
        if used + amount <= limit:
            events.append((now, amount))
            self._windows[key] = events
            return WindowResult(True, used + amount, now)
        self._windows[key] = events
        return WindowResult(False, used, retry_at(events, used, amount, limit, window, now))

    async def close(self) -> None:
        self._values.clear()
        self._windows.clear()


def retry_at(
    events: list[tuple[float, int]],
    used: int,
    amount: int,
    limit: int,
    window: float,
    now: float,
) -> float:
    """When enough of the oldest events leave the window for ``amount`` to fit."""
    if amount > limit:
        return float("inf")
    excess = used + amount - limit
    for when, a in sorted(events):
        excess -= a
        if excess <= 0:
            return when + window
    return now
