"""Rendering of IMAP response pieces: strings, flag lists, dates, FETCH data (pure)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from reference.imap.parser import ASTRING_CHARS, FetchAtt
from reference.mailbox import message

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_QUOTABLE = frozenset(range(0x20, 0x7F))


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(data), data)


def string(value: str | bytes) -> bytes:
    """A quoted string when that can carry the value, else a literal (RFC 9051 4.3)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if all(c in _QUOTABLE for c in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def astring(value: str) -> bytes:
    """An atom when the value is one (and not NIL), else a string."""
    data = value.encode("utf-8")
    if data and data.upper() != b"NIL" and all(c in ASTRING_CHARS for c in data):
        return data
    return string(data)


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(sorted(flags)).encode("ascii") + b")"


def internaldate(when: float) -> bytes:
    """RFC 9051 9 date-time: ``"01-Jan-2026 00:00:00 +0000"`` (UTC)."""
    t = time.gmtime(when)
    text = f"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} "
    return f'"{text}{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"'.encode("ascii")


def body_part(att: FetchAtt, data: bytes) -> bytes:
    """The bytes a BODY[...] / RFC822.* item returns from the message ``data``."""
    if att.name == "RFC822":
        return data
    if att.name == "RFC822.HEADER":
        return message.split(data)[0]
    if att.name == "RFC822.TEXT":
        return message.split(data)[1]
    assert att.section is not None
    kind = att.section.text
    if kind == "":
        part = data
    elif kind == "HEADER":
        part = message.split(data)[0]
    elif kind == "TEXT":
        part = message.split(data)[1]
    else:
        header = message.split(data)[0]
        part = message.header_fields(header, att.section.fields, exclude=kind.endswith(".NOT"))
    if att.partial is not None:  # RFC 3501 6.4.5: <origin.octets>
        origin, octets = att.partial
        part = part[origin : origin + octets]
    return part
