"""The ManageSieve command parser (RFC 5804 4): bytes in, a command value or an error out.

A command is a line of atoms, quoted strings and literals (``{n+}`` CRLF and n octets);
the server reads the literals' octets into the same buffer before parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Command", "ParseError", "literal_size", "parse_command", "quoted", "string"]

_LITERAL_END = re.compile(rb"\{([0-9]{1,10})\+?\}\r?\n?$")
_ATOM = re.compile(rb"[A-Za-z0-9_.-]+")
_LITERAL = re.compile(rb"\{([0-9]{1,10})\+?\}\r\n")


@dataclass(frozen=True)
class Command:
    verb: str  # upper case
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParseError:
    reason: str


def literal_size(line: bytes) -> int | None:
    """The size of the literal a line announces at its end (its octets follow), or None."""
    m = _LITERAL_END.search(line.rstrip(b"\r\n") + b"\r\n")
    return int(m.group(1)) if m else None


def parse_command(data: bytes) -> Command | ParseError:
    """One complete command, its literals' octets included."""
    pos = 0
    tokens: list[str] = []
    verb = ""
    end = len(data)
    while pos < end:
        c = data[pos : pos + 1]
        if c == b" ":
            pos += 1
        elif c in (b"\r", b"\n"):
            if data[pos:] not in (b"\r\n", b"\n"):
                return ParseError("unexpected line break")
            break
        elif c == b'"':
            out = bytearray()
            pos += 1
            while True:
                if pos >= end or data[pos : pos + 1] in (b"\r", b"\n"):
                    return ParseError("unterminated quoted string")
                ch = data[pos : pos + 1]
                if ch == b"\\":
                    nxt = data[pos + 1 : pos + 2]
                    if nxt not in (b"\\", b'"'):
                        return ParseError("bad escape in quoted string")
                    out += nxt
                    pos += 2
                    continue
                if ch == b'"':
                    pos += 1
                    break
                out += ch
                pos += 1
            text = _text(bytes(out))
            if text is None:
                return ParseError("string is not UTF-8")
            tokens.append(text)
        elif c == b"{":
            m = _LITERAL.match(data, pos)
            if not m:
                return ParseError("bad literal")
            size = int(m.group(1))
            start = m.end()
            if start + size > end:
                return ParseError("literal shorter than announced")
            text = _text(data[start : start + size])
            if text is None:
                return ParseError("string is not UTF-8")
            tokens.append(text)
            pos = start + size
        else:
            m = _ATOM.match(data, pos)
            if not m:
                return ParseError("unexpected character")
            word = m.group().decode("ascii")
            if not verb and not tokens:
                verb = word.upper()
            else:
                tokens.append(word)  # a number (HAVESPACE's size)
            pos = m.end()
    if not verb:
        return ParseError("empty command")
    return Command(verb, tuple(tokens))


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def quoted(text: str) -> bytes:
    """A quoted string (RFC 5804 4)."""
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'


def string(text: str) -> bytes:
    """A quoted string where one can carry ``text``, else a literal."""
    raw = text.encode("utf-8")
    if len(raw) > 1000 or any(c in text for c in "\r\n\0"):
        return b"{%d}\r\n" % len(raw) + raw
    return quoted(text)
