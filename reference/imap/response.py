"""Rendering of IMAP response pieces: strings, lists, flag lists, dates, FETCH data (pure).

:func:`render` turns plain Python into IMAP data: ``None`` is NIL, ``int`` a number, ``str``
and ``bytes`` a quoted string or a literal, :class:`Atom` an atom, lists and tuples a
parenthesized list. ENVELOPE, BODYSTRUCTURE, ID, ESEARCH and STATUS all go through it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from reference.imap import mime
from reference.imap.parser import ASTRING_CHARS, ATOM_CHARS, FetchAtt

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_QUOTABLE = frozenset(range(0x20, 0x7F))
MAX_QUOTED = 1024  # longer strings go as literals, which clients read without scanning


class Atom(str):
    """A value rendered as is: an atom, a flag, a number that is not an ``int``."""

    __slots__ = ()


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(data), data)


def literal8(data: bytes) -> bytes:
    """RFC 3516: ``~{n}`` for content that may hold NUL."""
    return b"~{%d}\r\n%s" % (len(data), data)


def string(value: str | bytes) -> bytes:
    """A quoted string when that can carry the value, else a literal (RFC 9051 4.3)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= MAX_QUOTED and all(c in _QUOTABLE for c in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def nstring(value: str | bytes | None) -> bytes:
    return b"NIL" if value is None else string(value)


def astring(value: str) -> bytes:
    """An atom when the value is one (and not NIL), else a string."""
    data = value.encode("utf-8")
    if data and data.upper() != b"NIL" and all(c in ASTRING_CHARS for c in data):
        return data
    return string(data)


def is_atom(value: str) -> bool:
    data = value.encode("utf-8", "replace")
    return bool(data) and data.upper() != b"NIL" and all(c in ATOM_CHARS for c in data)


def render(value: Any) -> bytes:
    """IMAP data for ``value`` (see the module's docstring)."""
    if value is None:
        return b"NIL"
    if isinstance(value, Atom):
        return value.encode("utf-8")
    if isinstance(value, bool):
        raise TypeError("no IMAP rendering for a bool")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, str | bytes):
        return string(value)
    if isinstance(value, mime.Unspaced):
        return b"(" + b"".join(render(v) for v in value) + b")"
    if isinstance(value, list | tuple):
        return b"(" + b" ".join(render(v) for v in value) + b")"
    raise TypeError(f"no IMAP rendering for {type(value).__name__}")


_FLAG_LISTS: dict[frozenset[str], bytes] = {}


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Work)``. A FETCH of every message shows few distinct sets of flags (the
    store shares one frozenset per set): each is rendered once, not once per message."""
    if not isinstance(flags, frozenset):
        return _flag_list(flags)
    found = _FLAG_LISTS.get(flags)
    if found is None:
        found = _flag_list(flags)
        if len(_FLAG_LISTS) < 4096:
            _FLAG_LISTS[flags] = found
    return found


def _flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(sorted(flags)).encode("ascii") + b")"


def internaldate(when: float) -> bytes:
    """RFC 9051 9 date-time: ``"01-Jan-2026 00:00:00 +0000"`` (UTC)."""
    t = time.gmtime(when)
    text = f"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} "
    return f'"{text}{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"'.encode("ascii")


def sequence_set(numbers: Iterable[int]) -> str:
    """``1:3,7`` for 1 2 3 7 (UIDPLUS, ESEARCH ALL, VANISHED): sorted, runs collapsed."""
    return ordered_set(sorted(set(numbers)))


def ordered_set(numbers: Iterable[int]) -> str:
    """A sequence set keeping the order given (RFC 5267 ESORT ALL: ``5,3:4,2,1``): only
    ascending runs collapse."""
    out: list[str] = []
    run: list[int] = []
    for n in numbers:
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}:{run[-1]}")
        run = [n]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}:{run[-1]}")
    return ",".join(out)


def body_part(att: FetchAtt, data: bytes) -> bytes:
    """The bytes a BODY[...] / RFC822.* item returns from the message ``data``."""
    if att.name == "RFC822":
        return data
    if att.name == "RFC822.HEADER":
        return mime.split(data)[0]
    if att.name == "RFC822.TEXT":
        return mime.split(data)[1]
    assert att.section is not None
    s = att.section
    part = mime.section(data, s.part, s.text, s.fields)
    return partial(att, part)


def partial(att: FetchAtt, part: bytes) -> bytes:
    if att.partial is not None:  # RFC 9051 6.4.5: <origin.octets>
        origin, octets = att.partial
        part = part[origin : origin + octets]
    return part
