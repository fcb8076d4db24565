"""Test-only fault switches: bugs the mutation harness plants in the reference, one at a time.

Nothing in the configuration, the environment or the command line turns one on: only code
that imports this module and calls :func:`planted` (tests/test_mutation.py does; a test
checks nothing else in the repository calls it). Off, each costs one set look-up at the line
it guards.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

__all__ = ["FAULTS", "active", "planted"]

# name -> the bug it plants (the requirement it breaks is in tests/mutants.py)
FAULTS: Mapping[str, str] = {
    "mailbox.recent-for-all": "every session that selects a mailbox gets its messages as \\Recent",
    "mailbox.uidvalidity-from-clock": "a new mailbox index takes the clock's UIDVALIDITY, which "
    "a mailbox deleted and created again within a second repeats",
    "smtp.bdat-refused-chunk-unread": "a BDAT refused before its chunk is read leaves the "
    "chunk unread, so its octets are taken for commands",
    "smtp.ack-before-spool": "the 250 at the end of the data goes out before the message is "
    "written to the spool (half a second later), so a crash in between loses it",
    "smtp.auth-bad-base64-535": "an AUTH response that is not base64 is answered as failed "
    "credentials (535), not as a syntax error (501)",
}

_planted: set[str] = set()


def active(name: str) -> bool:
    """Whether the fault ``name`` is planted (never, outside the mutation harness)."""
    return name in _planted


@contextmanager
def planted(name: str) -> Iterator[None]:
    """Plant ``name`` for the duration of the block."""
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}")
    _planted.add(name)
    try:
        yield
    finally:
        _planted.discard(name)
