"""The directory as the mail path reads it: answers kept until the database changes.

One message asks the directory the same few questions again and again (is the domain ours,
where does the address go, its class of service, quota, spam settings, access rules): at
RCPT in several checks, at DATA, and again at delivery; about fifty SQL statements a
message. :class:`CachedDirectory` keeps each answer until anything in the directory
changes: SQLite's ``PRAGMA data_version`` on a connection of its own changes with every
commit of any other connection, in this process or another (the CLI, the admin API, the
node's other workers). Any change empties the whole cache, so an answer is never older than
the last commit seen before it was given.

Reading that version costs about 4 us (a read transaction's locks), more than the rest of a
kept answer, and a message asks some forty questions. On an event loop's thread it is read
once a turn of the loop: everything a turn handles (a line from a client, a thread's result,
a timer) reached the loop before the turn began, so a commit that came before it is seen;
a commit through the directory's own connection is seen at once (its change count moves).
In other threads it is read at every question.

A directory that is not an SQLite file is asked every time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from reference.directory.access import ACCESS_KINDS, GLOBAL, AccessRule
from reference.directory.directory import Directory
from reference.directory.schema import DirectoryError
from reference.directory.spam import SpamSettings

__all__ = ["CachedDirectory"]

T = TypeVar("T")
P = ParamSpec("P")
# Answers kept at most (a cache is emptied when full): a node's busy addresses, bounded.
MAX_ANSWERS = 50_000
_MISSING = object()


def _kept(
    method: Callable[Concatenate[Directory, P], T],
) -> Callable[Concatenate[CachedDirectory, P], T]:
    """``method`` answered from the cache, keyed by its name and arguments."""
    name = method.__name__

    def kept(self: CachedDirectory, /, *args: P.args, **kwargs: P.kwargs) -> T:
        key = (name, args, tuple(sorted(kwargs.items()))) if kwargs else (name, args)
        version, found = self._find(key)
        if found is not _MISSING:
            return found  # type: ignore[no-any-return]
        return self._keep(key, version, method(self, *args, **kwargs))

    kept.__name__, kept.__doc__ = name, method.__doc__
    return kept


class CachedDirectory(Directory):
    """A :class:`Directory` whose read methods on the mail path answer from memory until
    the database changes. Every value returned is immutable, or a fresh copy."""

    def __init__(self, path: Path | str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._answers: dict[Hashable, Any] = {}
        self._seen_version: int | None = None
        # (loop, data version read in its current turn, own connection's change count then)
        self._turn: tuple[asyncio.AbstractEventLoop, int, int] | None = None
        self._cache_lock = threading.Lock()
        self._watch: sqlite3.Connection | None = None
        if isinstance(path, Path):
            self._watch = sqlite3.connect(
                str(path), timeout=30.0, isolation_level=None, check_same_thread=False
            )

    def _data_version(self, watch: sqlite3.Connection) -> int:
        """The database's data version: once a turn of the running loop (see the module's
        text), read again when the directory's own connection has written meanwhile."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a worker thread, or no loop at all
            return int(watch.execute("PRAGMA data_version").fetchone()[0])
        own = self._own_changes()
        turn = self._turn
        if turn is not None and turn[0] is loop and turn[2] == own:
            return turn[1]
        version = int(watch.execute("PRAGMA data_version").fetchone()[0])
        if turn is None or turn[0] is not loop:
            loop.call_soon(self._end_turn, loop)
        self._turn = (loop, version, own)
        return version

    def _end_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        turn = self._turn
        if turn is not None and turn[0] is loop:
            self._turn = None

    def _own_changes(self) -> int:
        """Rows written through the directory's own connection so far (-1: none open)."""
        conn = self._db._conn  # the driver's sqlite3 connection (the watch is SQLite only)
        return -1 if conn is None else int(conn.total_changes)

    def _find(self, key: Hashable) -> tuple[int | None, Any]:
        """(the data version, the kept answer to ``key`` or _MISSING)."""
        watch = self._watch
        if watch is None:
            return None, _MISSING
        with self._cache_lock:
            version = self._data_version(watch)
            if version != self._seen_version or len(self._answers) >= MAX_ANSWERS:
                self._answers.clear()
                self._seen_version = version
            return version, self._answers.get(key, _MISSING)

    def _keep(self, key: Hashable, version: int | None, value: T) -> T:
        """``value``, kept as the answer to ``key`` if nothing changed since ``version`` was
        read (before it was asked): an answer read before a commit never outlives it."""
        if version is not None:
            with self._cache_lock:
                if self._seen_version == version:
                    self._answers[key] = value
        return value

    def _answer(self, key: Hashable, ask: Callable[[], T]) -> T:
        """The kept answer to ``key``, or ``ask()``'s (kept while nothing changed)."""
        version, found = self._find(key)
        if found is not _MISSING:
            return found  # type: ignore[no-any-return]
        return self._keep(key, version, ask())

    def close(self) -> None:
        with self._cache_lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            self._answers.clear()
        super().close()

    # -- what the mail path asks (arguments hashable, answers immutable) ------------------

    is_local_domain = _kept(Directory.is_local_domain)
    lookup = _kept(Directory.lookup)
    expand = _kept(Directory.expand)
    resolve = _kept(Directory.resolve)
    canonical_address = _kept(Directory.canonical_address)
    mailing_list = _kept(Directory.mailing_list)
    list_role = _kept(Directory.list_role)
    effective_cos = _kept(Directory.effective_cos)
    quota = _kept(Directory.quota)
    archive_of = _kept(Directory.archive_of)
    is_bulk_sender = _kept(Directory.is_bulk_sender)

    # -- and those whose arguments or answers are lists or dicts ------------------------------

    def sender_listed(self, address: str, senders: list[str]) -> tuple[str, str] | None:
        return self._answer(
            ("sender_listed", address, tuple(senders)),
            lambda: super(CachedDirectory, self).sender_listed(address, senders),
        )

    def spam_settings(self, *scopes: str) -> dict[str, SpamSettings]:
        return dict(
            self._answer(
                ("spam_settings", scopes),
                lambda: super(CachedDirectory, self).spam_settings(*scopes),
            )
        )

    def access_decisions(self, scopes: tuple[str, ...], values: dict[str, str]) -> list[AccessRule]:
        return list(
            self._answer(
                ("access_decisions", scopes, tuple(sorted(values.items()))),
                lambda: self._decisions(scopes, values),
            )
        )

    def _decisions(self, scopes: tuple[str, ...], values: dict[str, str]) -> list[AccessRule]:
        """The closest rule of each scope and kind, each kept by its own value: a client,
        sender or recipient not seen before is asked about alone (its closest rules do not
        depend on the other values), not with the whole transaction again; and only for
        the kinds a scope has rules of (most have few, or none)."""
        asked = Directory.access_decisions
        rules: list[AccessRule] = []
        for scope in dict.fromkeys(scopes):
            kinds = self._answer(("access_kinds", scope), lambda: self._kinds(scope))  # noqa: B023
            for kind, value in values.items():
                if value and kind in kinds:
                    rules += self._answer(
                        ("access_decision", scope, kind, value),
                        lambda: asked(self, (scope,), {kind: value}),  # noqa: B023 (called at once)
                    )
        # In the order AccessRules.access_decisions gives: a domain's before the platform's.
        return sorted(rules, key=lambda r: (r.scope == GLOBAL, r.kind))

    def _kinds(self, scope: str) -> frozenset[str]:
        """The kinds ``scope`` has rules of."""
        try:
            return frozenset(r.kind for r in Directory.access_rules(self, scope))
        except DirectoryError:  # not a domain's name: no rules can be kept for it, ask all
            return frozenset(ACCESS_KINDS)
