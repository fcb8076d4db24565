"""Spool leases in Redis: one process delivers a spool at a time, and the spool of a node
that stopped renewing its lease is taken over by another node.

Every node's spool is on storage all nodes reach, and is listed in Redis (``spools``).
Its lease is a Redis key with a time to live, holding the owner and a fencing token (a
counter raised at each grant): only the holder of that very token can renew or release
it, so a node that was paused past its lease, or restarted, cannot carry on under a lease
granted since to someone else. A node delivers its own spool only while it holds the
lease and renewed it less than ``ttl - every`` ago (it stops before anyone may take over).

Every ``every`` seconds each node renews its lease and tries to take the lease of every
other spool; it gets one when that spool's node has not renewed for ``ttl`` (a node paused
or cut off), or at once when the holder's process is gone: each process names its Redis
connections after its owner string, and a process that dies (kill -9 included) has its
connections closed by the kernel, so a lease whose holder has no connection left in
``CLIENT LIST`` is replaced at the next look instead of after ``ttl``. It then
moves the spool's messages into its own (:meth:`Spool.take_over`), releases that lease
and delivers them. The node that comes back finds them gone: it cannot deliver what was
taken over, and no message is in two spools. A delivery already under way on a node that
lost its lease (paused, not dead) may be repeated by the taker: into a mailbox that is
found by its delivery key (exactly once); to a remote MX it is sent twice (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import secrets
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reference.clock import RealClock
from reference.log import event
from reference.spool.queue import Spool

log = logging.getLogger("mailspec.spool")

# A dead node's mail waits for another node's next look (up to RENEW_EVERY after the kill:
# its connections are gone at once); a paused or cut-off node's, for its lease to lapse
# (LEASE_TTL) and the next look. A node stops delivering when it has not renewed for
# LEASE_TTL - RENEW_EVERY: an event loop stalled that long pauses its deliveries, one
# stalled past LEASE_TTL has its spool taken over (safe by the fencing token; a mailbox
# delivery under way then is found by its key, a relayed one is sent twice). A TTL of 1 s
# did that on a 2-core machine at a load average of 11 (25 remote copies in a 60 s run):
# the TTL stays long, and the looks are frequent (a few Redis calls a second per node).
LEASE_TTL = 3.0  # seconds a lease lives unrenewed
RENEW_EVERY = 0.25  # seconds between renewals (and looks at the other spools)
_NAME = "mailspec-lease:"  # the client name of a lease holder's connections, before its owner

# A lease lapses in Redis's real time, whatever clock the node runs on.
_REAL = RealClock()

# KEYS lease, fence; ARGV owner, ttl in ms, the holder to replace ("": none). The new
# fencing token, or 0 if the lease is held (by someone else than that holder).
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[3] then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return token
"""
# KEYS lease; ARGV owner:token, ttl in ms (0: release). 1 if it was ours.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


class Board:
    """Until when the node's lease holder may deliver its spool, posted where every worker
    process of the node reads it without a system call: 8 bytes of a file they all map.
    The time is the monotonic clock's, the same in every process of the machine; 0: not
    held."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)

    @property
    def until(self) -> float:
        until: float = struct.unpack_from("d", self._map)[0]
        return until

    def post(self, until: float) -> None:
        struct.pack_into("d", self._map, 0, until)


class SpoolLease:
    """The lease of ``spool`` in the Redis at ``url``; :meth:`run` keeps it and takes over
    the spools of other nodes whose leases lapsed.

    With ``board`` (a node of several worker processes), the process that runs :meth:`run`
    posts there until when it holds the lease, and the others' :attr:`held` reads it: each
    worker delivers the mail it accepted while the node holds its spool's lease."""

    def __init__(
        self,
        url: str,
        spool: Spool,
        *,
        ttl: float = LEASE_TTL,
        every: float = RENEW_EVERY,
        prefix: str = "mailspec:",
        board: Path | None = None,
    ) -> None:
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        self._redis: Any = aioredis.from_url(
            url, decode_responses=True, client_name=_NAME + self.owner.replace(" ", "_")
        )
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self.spool = spool
        self.ttl = ttl
        self.every = every
        self._prefix = prefix
        self.token = 0  # the fencing token of our lease; 0: not held
        self._renewed = 0.0
        self.acquired = asyncio.Event()
        self._stopping = False
        self._board = Board(board) if board is not None else None
        self._keeping = False  # this process runs run(): it keeps the lease

    @property
    def held(self) -> bool:
        """Whether this process may deliver its spool now."""
        if not self._keeping and self._board is not None:
            return _REAL.monotonic() < self._board.until  # another worker keeps it
        return bool(self.token) and _REAL.monotonic() - self._renewed < self.ttl - self.every

    def _renewed_at(self, when: float) -> None:
        self._renewed = when
        if self._board is not None:
            self._board.post(when + self.ttl - self.every if self.token else 0.0)

    def _keys(self, root: Path) -> list[str]:
        base = f"{self._prefix}spool:{root}"
        return [f"{base}:lease", f"{base}:fence"]

    async def _grant(self, root: Path) -> int:
        """A new lease of ``root``: if it is free, or if its holder's process has no
        connection to Redis left."""
        keys = self._keys(root)
        token = int(await self._acquire(keys=keys, args=[self.owner, self._ms, ""]))
        if token:
            return token
        held = await self._redis.get(keys[0])
        # Listed after reading the holder: it connected before it was granted the lease,
        # so a holder still alive is in the list (one that connected later is not missed).
        if held is None or held.rpartition(":")[0].replace(" ", "_") in await self._alive():
            return 0
        # Its holder is dead: replace exactly that lease (not one granted meanwhile).
        return int(await self._acquire(keys=keys, args=[self.owner, self._ms, held]))

    async def _alive(self) -> set[str]:
        """The owners of the lease holders connected to Redis now."""
        clients = await self._redis.client_list()
        return {
            c["name"][len(_NAME) :] for c in clients if str(c.get("name", "")).startswith(_NAME)
        }

    async def _keep(self, root: Path, token: int, ms: int) -> bool:
        value = f"{self.owner}:{token}"
        return bool(int(await self._renew(keys=self._keys(root)[:1], args=[value, ms])))

    @property
    def _ms(self) -> int:
        return int(self.ttl * 1000)

    async def run(self, taken: Callable[[list[str]], None]) -> None:
        """Keep the lease and take over lapsed spools until :meth:`stop` (or cancelled);
        ``taken`` hears the queue ids moved into this spool."""
        self._keeping = True
        while not self._stopping:
            try:
                # Every time: a Redis restarted without its data has forgotten the spools.
                await self._redis.sadd(f"{self._prefix}spools", str(self.spool.root))
                await self._tick(taken)
            except (RedisError, OSError) as e:
                # Redis away: the lease lapses here as it does in Redis, and delivery waits.
                event(log, "lease.error", level=logging.WARNING, error=repr(e))
            await _REAL.sleep(self.every)

    async def _tick(self, taken: Callable[[list[str]], None]) -> None:
        started = _REAL.monotonic()
        own = self.spool.root
        if not self.token:
            # A node restarted after kill -9 replaces its dead predecessor's lease at once.
            self.token = await self._grant(own)
            if self.token:
                self._renewed_at(started)
                # Messages may have been taken from it while it was not ours.
                await asyncio.to_thread(self.spool.recount)
                self.acquired.set()
                event(log, "lease.acquired", spool=str(own), token=self.token)
        elif await self._keep(own, self.token, self._ms):
            self._renewed_at(started)
        else:
            event(log, "lease.lost", level=logging.WARNING, spool=str(own), token=self.token)
            self.token = 0
            self._renewed_at(0.0)
            self.acquired.clear()
        if not self.held:
            return
        for root in sorted(await self._redis.smembers(f"{self._prefix}spools")):
            other = Path(root)
            if other == own:
                continue
            token = await self._grant(other)
            if not token:
                continue  # its node is alive (or another node is taking it over)
            try:
                moved = await asyncio.to_thread(self.spool.take_over, other)
            finally:
                await self._keep(other, token, 0)
            if moved:
                event(log, "spool.taken-over", spool=str(other), token=token, count=len(moved))
                taken(moved)

    def stop(self) -> None:
        """End :meth:`run` at its next look. A cancel alone may be lost: redis-py on Python
        3.11 can return a command's result instead of raising a cancel that lands as the
        command completes (see reference/state/redis.py), and with several commands at
        each look four times a second a node's stop then waited for ever."""
        self._stopping = True

    async def close(self) -> None:
        """Release the lease (another node may take the spool at once) and disconnect."""
        try:
            if self.token:
                await self._keep(self.spool.root, self.token, 0)
        except (RedisError, OSError):
            pass
        finally:
            self.token = 0
            self._renewed_at(0.0)
            await self._redis.aclose()
