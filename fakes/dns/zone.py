"""Records as plain data: an RFC 1035 master-file parser and renderer, pure (no sockets)."""

from __future__ import annotations

import ipaddress
import re
import struct
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, CAA, CNAME, MX, NS, PTR, SOA, SRV, TLSA, TXT, A, DNSLabel
from dnslib.buffer import BufferError as DNSBufferError
from dnslib.dns import DNSError
from dnslib.label import DNSBuffer, DNSLabelError

# Why not dnslib's ZoneParser: it raises assorted exceptions without a line number, refuses
# TXT strings over 255 bytes, ignores $ORIGIN for SRV targets, accepts "1.2.3" as an A
# record (the error comes later, when packing) and knows neither "IN 300 A" order nor
# escapes. This parser validates every field and names the line of every error.

SUPPORTED = ("A", "AAAA", "CAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TLSA", "TXT")
DEFAULT_TTL = 300
MAX_TTL = 2**31 - 1  # RFC 2181 8
_TTL = re.compile(r"(?:\d+|(?:\d+[smhdw])+)", re.IGNORECASE)
_TTL_PART = re.compile(r"(\d+)([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CAA_TAG = re.compile(r"[A-Za-z0-9]{1,255}")


class ZoneError(ValueError):
    """A master-file error, naming the line it was found on."""

    def __init__(self, line: int, message: str, source: str | None = None) -> None:
        where = f"{source}: line {line}" if source else f"line {line}"
        super().__init__(f"{where}: {message}")
        self.line, self.message, self.source = line, message, source


@dataclass(frozen=True)
class Record:
    """One resource record; ``name`` is lowercase with no trailing dot ("" is the root)."""

    name: str
    rtype: str
    ttl: int
    rdata: Any = field(compare=False)  # a dnslib RD, built only by parse_rdata / txt_record
    wire: bytes = field(init=False, repr=False)  # equality and de-duplication go by wire form

    def __post_init__(self) -> None:
        buf = DNSBuffer()
        try:
            self.rdata.pack(buf)
        except (DNSError, DNSLabelError, DNSBufferError, struct.error) as exc:
            raise ValueError(f"{self.rtype} record cannot be encoded: {exc}") from None
        if len(buf.data) > 65535:
            raise ValueError(f"{self.rtype} record too long ({len(buf.data)} bytes)")
        object.__setattr__(self, "wire", bytes(buf.data))

    def text(self) -> str:
        """The record as one master-file line (absolute names)."""
        return f"{self.name}. {self.ttl} IN {self.rtype} {render_rdata(self.rtype, self.rdata)}"


# -- tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    text: str  # escapes left as written: names and character-strings decode them differently
    quoted: bool


@dataclass
class _Entry:
    line: int
    indented: bool  # starts with a blank: the owner is the previous record's
    tokens: list[_Token] = field(default_factory=list)


def _tokenize(text: str) -> list[_Entry]:
    """Split master-file text into entries: parentheses join lines, ';' starts a comment."""
    entries: list[_Entry] = []
    line, depth, paren_line, i, n = 1, 0, 0, 0, len(text)
    entry = _Entry(1, text[:1] in (" ", "\t"))
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            if depth == 0:
                entries.append(entry)
                entry = _Entry(line, text[i : i + 1] in (" ", "\t"))
        elif c in " \t\r":
            i += 1
        elif c == ";":
            while i < n and text[i] != "\n":
                i += 1
        elif c == "(":
            if depth == 0:
                paren_line = line
            depth, i = depth + 1, i + 1
        elif c == ")":
            if depth == 0:
                raise ZoneError(line, "')' without '('")
            depth, i = depth - 1, i + 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\n":
                    raise ZoneError(line, "unterminated quoted string")
                j = _skip_escape(text, j, line)
            if j >= n:
                raise ZoneError(line, "unterminated quoted string")
            entry.tokens.append(_Token(text[i + 1 : j], True))
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n;()"':
                j = _skip_escape(text, j, line)
            entry.tokens.append(_Token(text[i:j], False))
            i = j
    if depth:
        raise ZoneError(paren_line, "'(' never closed")
    entries.append(entry)
    return [e for e in entries if e.tokens]


def _skip_escape(text: str, j: int, line: int) -> int:
    """Step over one character, or over a backslash and the character it escapes."""
    if text[j] != "\\":
        return j + 1
    if j + 1 >= len(text) or text[j + 1] == "\n":
        raise ZoneError(line, "backslash at the end of a line")
    return j + 2


def _unescape(text: str) -> bytes:
    r"""Decode a character-string: \DDD is a byte, \X is X, other text is UTF-8."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
        elif text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
            value = int(text[i + 1 : i + 4])
            if value > 255:
                raise ValueError(f"escape \\{text[i + 1 : i + 4]} is over 255")
            out.append(value)
            i += 4
        elif i + 1 < len(text):
            out += text[i + 1].encode("utf-8")
            i += 2
        else:
            raise ValueError("dangling backslash")
    return bytes(out)


def _escape(data: bytes) -> str:
    """Render a character-string so that _unescape gives the same bytes back."""
    parts = []
    for b in data:
        if b in (0x22, 0x5C):
            parts.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            parts.append(chr(b))
        else:
            parts.append(f"\\{b:03d}")
    return '"' + "".join(parts) + '"'


# -- fields -------------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """Check an absolute name and return it lowercase without the trailing dot."""
    name = name.lower().removesuffix(".")
    if not name:
        return ""
    if len(name) > 253:
        raise ValueError(f"name longer than 253 characters: {name[:40]}...")
    for label in name.split("."):
        if not label:
            raise ValueError(f"empty label in name {name!r}")
        if len(label) > 63:
            raise ValueError(f"label longer than 63 characters in {name!r}")
        if not all(33 <= ord(c) < 127 for c in label):
            raise ValueError(f"name {name!r} must be printable ASCII (use the xn-- form)")
    return name


def _name(token: _Token | str, origin: str) -> str:
    text = token if isinstance(token, str) else token.text
    if isinstance(token, _Token) and token.quoted:
        raise ValueError(f"a name cannot be quoted: {text!r}")
    if "\\" in text:
        raise ValueError(f"escapes in names are not supported: {text!r}")
    if text == "@":
        return origin
    if text.endswith(".") or not origin:
        return normalize_name(text if text != "." else "")
    return normalize_name(f"{text}.{origin}")


def label(name: str) -> Any:
    """The dnslib label for a normalized name (bypasses dnslib's IDNA codec)."""
    return DNSLabel(tuple(part.encode("ascii") for part in name.split(".")) if name else ())


def _int(token: _Token, what: str, maximum: int) -> int:
    if token.quoted or not token.text.isdigit() or not token.text.isascii():
        raise ValueError(f"{what} must be a number, not {token.text!r}")
    value = int(token.text)
    if value > maximum:
        raise ValueError(f"{what} {value} is over {maximum}")
    return value


def parse_ttl(text: str) -> int:
    """A TTL in seconds, or with BIND units ("1h30m")."""
    if not text.isascii() or not _TTL.fullmatch(text):
        raise ValueError(f"bad TTL {text!r}")
    if text.isdigit():
        value = int(text)
    else:
        value = sum(int(n) * _UNITS[u.lower()] for n, u in _TTL_PART.findall(text))
    if value > MAX_TTL:
        raise ValueError(f"TTL {value} is over {MAX_TTL}")
    return value


def split_txt(value: bytes) -> list[bytes]:
    """Split a long TXT value into 255-byte character-strings (RFC 7208 3.3)."""
    return [value[i : i + 255] for i in range(0, len(value), 255)] or [b""]


def txt_record(name: str, strings: Sequence[bytes], ttl: int = DEFAULT_TTL) -> Record:
    """A TXT record from raw character-strings; strings over 255 bytes are split."""
    parts = [chunk for s in strings for chunk in split_txt(s)]
    return Record(normalize_name(name), "TXT", ttl, TXT(parts))


# -- rdata --------------------------------------------------------------------------------


def _expect(tokens: Sequence[_Token], count: int, rtype: str, shape: str) -> None:
    if len(tokens) != count:
        raise ValueError(f"{rtype} needs {shape}, got {len(tokens)} field(s)")


def _rdata(rtype: str, t: Sequence[_Token], origin: str) -> Any:
    if rtype == "TXT":
        if not t:
            raise ValueError("TXT needs at least one string")
        return TXT([chunk for tok in t for chunk in split_txt(_unescape(tok.text))])
    if rtype == "TLSA":
        if len(t) < 4:
            raise ValueError("TLSA needs usage selector matching-type hex-data")
        data = bytes.fromhex("".join(tok.text for tok in t[3:]))
        if not data:
            raise ValueError("TLSA data is empty")
        usage, selector, mtype = (
            _int(t[i], w, 255) for i, w in enumerate(("usage", "selector", "type"))
        )
        return TLSA(usage, selector, mtype, data)
    if rtype == "A":
        _expect(t, 1, rtype, "an IPv4 address")
        return A(str(ipaddress.IPv4Address(t[0].text)))
    if rtype == "AAAA":
        _expect(t, 1, rtype, "an IPv6 address")
        return AAAA(list(ipaddress.IPv6Address(t[0].text).packed))
    if rtype == "MX":
        _expect(t, 2, rtype, "preference and exchange")
        return MX(label(_name(t[1], origin)), _int(t[0], "preference", 65535))
    if rtype in ("CNAME", "NS", "PTR"):
        _expect(t, 1, rtype, "one name")
        return {"CNAME": CNAME, "NS": NS, "PTR": PTR}[rtype](label(_name(t[0], origin)))
    if rtype == "SRV":
        _expect(t, 4, rtype, "priority weight port target")
        prio, weight, port = (
            _int(t[i], w, 65535) for i, w in enumerate(("priority", "weight", "port"))
        )
        return SRV(prio, weight, port, label(_name(t[3], origin)))
    if rtype == "SOA":
        _expect(t, 7, rtype, "mname rname serial refresh retry expire minimum")
        serial = _int(t[2], "serial", 2**32 - 1)
        times = [serial] + [parse_ttl(tok.text) for tok in t[3:]]
        return SOA(label(_name(t[0], origin)), label(_name(t[1], origin)), times)
    if rtype == "CAA":
        _expect(t, 3, rtype, "flags tag value")
        if not _CAA_TAG.fullmatch(t[1].text) or not t[1].text.isascii():
            raise ValueError(f"bad CAA tag {t[1].text!r}")
        return CAA(_int(t[0], "flags", 255), t[1].text, _unescape(t[2].text).decode("utf-8"))
    raise ValueError(f"unsupported record type {rtype!r} (supported: {', '.join(SUPPORTED)})")


def parse_rdata(rtype: str, text: str, origin: str = "") -> Any:
    """The dnslib RD for master-file rdata text; relative names are relative to ``origin``."""
    rtype = rtype.upper()
    try:
        tokens = [tok for entry in _tokenize(text) for tok in entry.tokens]
    except ZoneError as exc:
        raise ValueError(exc.message) from None
    return _rdata(rtype, tokens, normalize_name(origin))


def render_rdata(rtype: str, rd: Any) -> str:
    """Master-file text for an RD, parseable back by parse_rdata."""
    if rtype == "TXT":
        return " ".join(_escape(s) for s in rd.data)
    if rtype == "CAA":
        return f"{rd.flags} {rd.tag} {_escape(rd.value.encode('utf-8'))}"
    if rtype == "TLSA":
        return f"{rd.cert_usage} {rd.selector} {rd.matching_type} {rd.cert_data.hex()}"
    return str(rd.toZone())  # names come out absolute, with the trailing dot


# -- zones --------------------------------------------------------------------------------


def parse_zone(text: str, origin: str | None = None, ttl: int = DEFAULT_TTL) -> list[Record]:
    """Parse master-file text (RFC 1035 5.1; $TTL from RFC 2308).

    Supported: $ORIGIN, $TTL, @, relative names, blank owner (repeat the previous one),
    TTL and class in either order, parentheses, comments, quoted strings with \\X and \\DDD
    escapes. Not supported ($INCLUDE, $GENERATE, classes other than IN, other types) is a
    ZoneError naming the line. Without an origin, relative names are relative to the root.
    """
    state = _State(normalize_name(origin or ""), None, ttl)
    # Zones written inside Python code are indented as a whole; dedent so that leading
    # blanks keep their meaning ("same owner"). A real file has owners in column 0: no change.
    records: list[Record] = []
    for entry in _tokenize(textwrap.dedent(text)):
        try:
            record = _entry(entry, state)
        except ValueError as exc:
            raise ZoneError(entry.line, str(exc)) from None
        if record is not None:
            records.append(record)
    return records


@dataclass
class _State:
    origin: str
    owner: str | None
    ttl: int


def _entry(entry: _Entry, state: _State) -> Record | None:
    """Apply a directive to the state, or return the record an entry describes."""
    tokens = entry.tokens
    first = tokens[0].text.upper()
    if first.startswith("$") and not entry.indented and not tokens[0].quoted:
        if first not in ("$ORIGIN", "$TTL"):
            raise ValueError(f"{tokens[0].text} is not supported")
        if len(tokens) != 2:
            raise ValueError(f"{first} needs one argument")
        if first == "$TTL":
            state.ttl = parse_ttl(tokens[1].text)
        else:
            state.origin = _name(tokens[1], state.origin)
        return None
    if not entry.indented:
        state.owner, tokens = _name(tokens[0], state.origin), tokens[1:]
    if state.owner is None:
        raise ValueError("the first record has no owner name")
    ttl, rtype = state.ttl, None
    for i, tok in enumerate(tokens[:3]):  # [TTL] [class] type, or [class] [TTL] type
        word = tok.text.upper()
        if tok.quoted:
            break
        if _TTL.fullmatch(tok.text) and tok.text.isascii():
            ttl = parse_ttl(tok.text)
        elif word in ("CH", "HS", "CS"):
            raise ValueError(f"class {word} is not supported, only IN")
        elif word != "IN":
            rtype, tokens = word, tokens[i + 1 :]
            break
    if rtype is None:
        raise ValueError("no record type")
    try:
        return Record(state.owner, rtype, ttl, _rdata(rtype, tokens, state.origin))
    except ValueError as exc:
        raise ValueError(f"{rtype} {state.owner or '.'}: {exc}") from None


def render_zone(records: Iterable[Record]) -> str:
    """Master-file text for records, one absolute line each."""
    return "".join(r.text() + "\n" for r in records)
