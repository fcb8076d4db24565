"""The state store on Redis, for several nodes that must agree (greylists, rate limits)."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reference.state import StateUnavailable, WindowResult

# Atomic sliding window: a sorted set of "id:amount" members scored by the caller's clock.
# KEYS[1] the window; ARGV now, window, amount, limit, member. Returns {allowed, used,
# retry_at*1000}. Expiry uses Redis's own clock only to collect garbage, generously.
_WINDOW_LUA = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local members = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #members, 2 do
  local a = tonumber(string.match(members[i], ':(%d+)$'))
  used = used + a
end
if used + amount <= limit then
  redis.call('ZADD', key, now, ARGV[5] .. ':' .. ARGV[3])
  redis.call('EXPIRE', key, math.ceil(window) + 3600)
  return {1, used + amount, tostring(now)}
end
if amount > limit then
  return {0, used, 'inf'}
end
local excess = used + amount - limit
for i = 1, #members, 2 do
  local a = tonumber(string.match(members[i], ':(%d+)$'))
  excess = excess - a
  if excess <= 0 then
    return {0, used, tostring(tonumber(members[i + 1]) + window)}
  end
end
return {0, used, tostring(now)}
"""

# Values carry their expiry on the caller's clock: "expires_at|value".
_PUT_IF_ABSENT_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local exp = tonumber(string.sub(cur, 1, sep - 1))
  if exp > tonumber(ARGV[2]) then
    return string.sub(cur, sep + 1)
  end
end
redis.call('SET', KEYS[1], ARGV[3] .. '|' .. ARGV[1], 'EX', tonumber(ARGV[4]))
return ARGV[1]
"""

# The value, its expiry moved (ARGV now, expires_at, ttl), if unexpired; nil otherwise.
_TOUCH_LUA = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  return false
end
local sep = string.find(cur, '|', 1, true)
if tonumber(string.sub(cur, 1, sep - 1)) <= tonumber(ARGV[1]) then
  return false
end
local value = string.sub(cur, sep + 1)
redis.call('SET', KEYS[1], ARGV[2] .. '|' .. value, 'EX', tonumber(ARGV[3]))
return value
"""

_GC_SLACK = 86400  # seconds of real time a value outlives its clock expiry, at most

_T = TypeVar("_T")


async def _call(aw: Awaitable[_T]) -> _T:
    """``await aw`` (a redis-py call), raising the caller's cancellation if redis-py lost it.

    redis-py 8 writes each command through ``asyncio.wait_for``, and on Python 3.11 that
    returns the result instead of raising when a cancel lands as the write completes
    (CPython gh-86296, fixed in 3.12): a third or more of the cancels in tests/test_state.py.
    An SMTP session is cancelled when its client hangs up; one that waited here at RCPT
    (greylist, rate limit) carried on instead. A lost cancel still shows in ``cancelling()``.
    """
    task = asyncio.current_task()
    requested = task.cancelling() if task is not None else 0
    try:
        result = await aw
    except (RedisConnectionError, RedisTimeoutError) as e:
        # Redis away (a fault, a restart): a state of the platform, not an error of the code.
        raise StateUnavailable(f"redis: {e}") from e
    if task is not None and task.cancelling() > requested:
        raise asyncio.CancelledError
    return result


class RedisStore:
    """One Redis (``redis://host:port/db``) shared by every node; keys under ``prefix``."""

    def __init__(self, url: str, prefix: str = "mailspec:") -> None:
        # A connection left in the pool when Redis restarted fails at its next use: retry
        # on a new one, or each stale connection costs one client a tempfail (seen 8 s
        # after a restart in a fault run). A repeated rate-window entry whose first reply
        # was lost only counts stricter.
        self._redis: Any = aioredis.from_url(
            url, decode_responses=True, retry_on_error=[RedisConnectionError]
        )
        self._prefix = prefix
        self._window = self._redis.register_script(_WINDOW_LUA)
        self._put_nx = self._redis.register_script(_PUT_IF_ABSENT_LUA)
        self._touch = self._redis.register_script(_TOUCH_LUA)

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str, now: float) -> str | None:
        raw = await _call(self._redis.get(self._k(key)))
        if raw is None:
            return None
        exp, _, value = str(raw).partition("|")
        return value if float(exp) > now else None

    async def put(self, key: str, value: str, expires_at: float) -> None:
        await _call(self._redis.set(self._k(key), f"{expires_at!r}|{value}", ex=_GC_SLACK * 40))

    async def put_if_absent(self, key: str, value: str, expires_at: float, now: float) -> str:
        ttl = max(1, math.ceil(expires_at - now)) + _GC_SLACK
        result = await _call(
            self._put_nx(keys=[self._k(key)], args=[value, repr(now), repr(expires_at), ttl])
        )
        return str(result)

    async def touch(self, key: str, now: float, expires_at: float) -> str | None:
        # The same garbage-collection TTL as ``put``'s: a touched value is a put one.
        args: list[str | int] = [repr(now), repr(expires_at), _GC_SLACK * 40]
        result = await _call(self._touch(keys=[self._k(key)], args=args))
        return None if result is None else str(result)

    async def delete(self, key: str) -> None:
        await _call(self._redis.delete(self._k(key), self._k(key) + ":w"))

    async def window_add(
        self, key: str, now: float, window: float, amount: int, limit: int
    ) -> WindowResult:
        allowed, used, retry = await _call(
            self._window(
                keys=[self._k(key) + ":w"],
                args=[repr(now), repr(window), amount, limit, secrets.token_hex(8)],
            )
        )
        return WindowResult(bool(int(allowed)), int(used), float(retry))

    async def close(self) -> None:
        await self._redis.aclose()
