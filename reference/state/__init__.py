"""Shared state for policy: keys with expiry and sliding windows, per node or across nodes.

Greylists, rate-limit windows and auth-failure counters live here, never only in one
process's memory: the default store is SQLite under ``data_dir`` (shared by the worker
processes of a node), and Redis when several nodes must agree. Every time is passed in
from the injected clock, so expiry follows a manual clock in tests; the stores use their
own expiry (Redis TTLs, SQLite sweeps) only to collect garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from reference.credentials import TemporarilyUnavailable

__all__ = ["StateStore", "StateUnavailable", "WindowResult"]


class StateUnavailable(TemporarilyUnavailable):
    """The shared state (Redis) cannot be reached now: the caller answers "try later"."""


@dataclass(frozen=True)
class WindowResult:
    """The answer of a sliding-window check."""

    allowed: bool
    used: int  # the amount counted in the window, including this one when allowed
    retry_at: float  # when enough of the window will have slid for the amount to fit


class StateStore(Protocol):
    """What checks need from shared state; every method is atomic across processes."""

    async def get(self, key: str, now: float) -> str | None:
        """The value of ``key`` unless absent or expired at ``now``."""
        ...

    async def put(self, key: str, value: str, expires_at: float) -> None:
        """Set ``key`` until ``expires_at``."""
        ...

    async def put_if_absent(self, key: str, value: str, expires_at: float, now: float) -> str:
        """Set ``key`` unless it holds an unexpired value; return the value it now holds."""
        ...

    async def touch(self, key: str, now: float, expires_at: float) -> str | None:
        """The value of ``key`` with its expiry moved to ``expires_at``, unless absent or
        expired at ``now`` (then None, and nothing changes): a get and a put in one step."""
        ...

    async def delete(self, key: str) -> None: ...

    async def window_add(
        self, key: str, now: float, window: float, amount: int, limit: int
    ) -> WindowResult:
        """Count ``amount`` in the sliding window ``(now - window, now]`` if it fits ``limit``."""
        ...

    async def close(self) -> None: ...
