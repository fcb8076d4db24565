"""The IMAP command parser: one command's bytes (literals inline) in, a command value out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NoReturn

MAX_NUMBER = 2**32 - 1  # RFC 9051 9: number is an unsigned 32-bit integer
MAX_DEPTH = 20  # nesting of search keys: the parser recurses, hostile input must not
DEFAULT_MAX_LITERAL = 64 * 1024 * 1024

# RFC 9051 9 (formal syntax): character classes.
_CTL = set(range(0x00, 0x20)) | {0x7F}
ATOM_CHARS = frozenset(set(range(0x21, 0x7F)) - set(b'(){%*"\\]'))
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}
LIST_CHARS = ATOM_CHARS | set(b"%*]")
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
_DIGITS = frozenset(b"0123456789")
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_LITERAL_AT_END = re.compile(rb"\{([0-9]{1,20})(\+?)\}\r?\n\Z")


@dataclass(frozen=True)
class ParseError:
    """The command could not be parsed: answer ``<tag> BAD <reason>`` (``*`` without a tag)."""

    tag: str | None
    reason: str


@dataclass(frozen=True)
class SequenceSet:
    """``1:3,7,9:*``: ranges of numbers, ``None`` standing for ``*`` (the largest in use)."""

    ranges: tuple[tuple[int | None, int | None], ...]

    def contains(self, n: int, largest: int) -> bool:
        """Whether ``n`` is in the set when ``*`` means ``largest`` (RFC 9051 6.4.9: a range
        ``559:*`` includes the largest UID even when 559 is above it)."""
        for a, b in self.ranges:
            lo, hi = sorted((largest if a is None else a, largest if b is None else b))
            if lo <= n <= hi:
                return True
        return False

    def highest(self) -> int:
        """The largest explicit number (0 when the set only says ``*``)."""
        return max((x for r in self.ranges for x in r if x is not None), default=0)

    def __str__(self) -> str:
        def one(x: int | None) -> str:
            return "*" if x is None else str(x)

        return ",".join(one(a) if a == b else f"{one(a)}:{one(b)}" for a, b in self.ranges)


@dataclass(frozen=True)
class Section:
    """A ``BODY[...]`` section: ``""`` (whole message), HEADER, TEXT, HEADER.FIELDS[.NOT]."""

    text: str = ""
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.text.startswith("HEADER.FIELDS"):
            return f"{self.text} ({' '.join(self.fields)})"
        return self.text


@dataclass(frozen=True)
class FetchAtt:
    """One FETCH data item: FLAGS, UID, INTERNALDATE, RFC822[.SIZE|.HEADER|.TEXT] or BODY[]."""

    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None

    @property
    def sets_seen(self) -> bool:
        """RFC 3501 6.4.5: fetching body text without .PEEK sets \\Seen."""
        return (self.name == "BODY" and not self.peek) or self.name in ("RFC822", "RFC822.TEXT")

    def label(self) -> str:
        """The item's name in the FETCH response (``BODY.PEEK[x]`` answers as ``BODY[x]``)."""
        if self.section is None:
            return self.name
        origin = f"<{self.partial[0]}>" if self.partial is not None else ""
        return f"BODY[{self.section}]{origin}"


@dataclass(frozen=True)
class SearchKey:
    """A search criterion; ``AND``, ``OR`` and ``NOT`` combine ``keys``."""

    name: str
    value: SequenceSet | int | str | None = None
    keys: tuple[SearchKey, ...] = ()


@dataclass(frozen=True)
class Command:
    """A parsed command; the subclasses carry the arguments."""

    tag: str


@dataclass(frozen=True)
class Simple(Command):
    """A command without arguments: CAPABILITY, NOOP, LOGOUT, STARTTLS, CLOSE, UNSELECT..."""

    name: str


@dataclass(frozen=True)
class Login(Command):
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Authenticate(Command):
    mechanism: str
    initial: str | None = field(default=None, repr=False)  # RFC 4959 SASL-IR, base64 or "="


@dataclass(frozen=True)
class Select(Command):
    mailbox: str
    readonly: bool = False  # EXAMINE


@dataclass(frozen=True)
class Fetch(Command):
    sequence: SequenceSet
    items: tuple[FetchAtt, ...]
    uid: bool = False


@dataclass(frozen=True)
class Search(Command):
    keys: tuple[SearchKey, ...]
    charset: str | None = None
    uid: bool = False


@dataclass(frozen=True)
class ListMailboxes(Command):
    reference: str
    pattern: str


SIMPLE_COMMANDS = frozenset(
    {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CLOSE", "UNSELECT", "CHECK"}
)
_FLAG_KEYS = frozenset(
    {"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN"}
    | {"UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN"}
)
_ARG_KEYS = frozenset({"UID", "LARGER", "SMALLER", "KEYWORD", "UNKEYWORD", "NOT", "OR"})
_MACROS = {"FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE")}
_PLAIN_ATTS = frozenset(
    {"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"}
)


def literal_suffix(line: bytes) -> tuple[int, bool] | None:
    """``(size, non_synchronizing)`` when ``line`` ends with a literal's ``{n}``/``{n+}``."""
    m = _LITERAL_AT_END.search(line)
    return None if m is None else (int(m.group(1)), m.group(2) == b"+")


def tag_of(data: bytes) -> str | None:
    """The command's tag, if it starts with a valid one (for BAD replies to broken input)."""
    n = 0
    while n < len(data) and data[n] in TAG_CHARS:
        n += 1
    return data[:n].decode("ascii") if n and data[n : n + 1] == b" " else None


def parse_command(data: bytes, *, max_literal: int = DEFAULT_MAX_LITERAL) -> Command | ParseError:
    """Parse one complete command (ending in CRLF, literals inline); never raises.

    Pure: no sockets, no store. The server frames a command with :func:`literal_suffix` (read
    a line; while it ends in ``{n}`` or ``{n+}``, read n bytes and the next line) and hands
    the whole buffer here; a :class:`ParseError` carries the tag, when one was readable.
    """
    r = _Reader(data, max_literal)
    tag = tag_of(data)
    if tag is None:
        return ParseError(None, "Missing or invalid tag")
    r.pos = len(tag) + 1
    try:
        name = r.keyword()
        uid = name == "UID"
        if uid:
            r.sp()
            name = r.keyword()
            if name not in ("FETCH", "SEARCH"):
                r.fail(f"UID {name} is not supported")
        if name in SIMPLE_COMMANDS:
            command: Command = Simple(tag, name)
        elif name == "LOGIN":
            command = Login(tag, r.sp_astring_utf8(), r.sp_astring_utf8())
        elif name == "AUTHENTICATE":
            r.sp()
            mechanism = r.atom().upper()
            initial = None
            if r.peek() == 0x20:
                r.sp()
                initial = r.take(_BASE64).decode("ascii")
                if not initial:
                    r.fail("Expected base64 initial response")
            command = Authenticate(tag, mechanism, initial)
        elif name in ("SELECT", "EXAMINE"):
            command = Select(tag, r.sp_mailbox(), readonly=name == "EXAMINE")
        elif name == "FETCH":
            r.sp()
            sequence = r.sequence_set()
            r.sp()
            command = Fetch(tag, sequence, r.fetch_atts(), uid=uid)
        elif name == "SEARCH":
            command = r.search(tag, uid)
        elif name == "LIST":
            reference = r.sp_mailbox()
            r.sp()
            command = ListMailboxes(tag, reference, r.list_mailbox())
        else:
            r.fail("Unknown command")
        r.end()
    except _Fail as e:
        return ParseError(tag, e.reason)
    return command


class _Fail(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Reader:
    def __init__(self, buf: bytes, max_literal: int) -> None:
        self.buf = buf
        self.pos = 0
        self.max_literal = max_literal

    def fail(self, reason: str) -> NoReturn:
        raise _Fail(reason)

    def peek(self) -> int:
        return self.buf[self.pos] if self.pos < len(self.buf) else -1

    def take(self, chars: frozenset[int]) -> bytes:
        start = self.pos
        while self.pos < len(self.buf) and self.buf[self.pos] in chars:
            self.pos += 1
        return self.buf[start : self.pos]

    def expect(self, char: int, what: str) -> None:
        if self.peek() != char:
            self.fail(f"Expected {what}")
        self.pos += 1

    def sp(self) -> None:
        self.expect(0x20, "space")

    def end(self) -> None:
        if self.buf[self.pos :] not in (b"\r\n", b"\n"):
            self.fail("Unexpected extra arguments" if self.peek() == 0x20 else "Expected CRLF")

    def atom(self) -> str:
        atom = self.take(ATOM_CHARS)
        if not atom:
            self.fail("Expected atom")
        return atom.decode("ascii")

    def keyword(self) -> str:
        return self.atom().upper()

    def number(self, *, nonzero: bool = False) -> int:
        digits = self.take(_DIGITS)
        if not digits or len(digits) > 10 or int(digits) > MAX_NUMBER:
            self.fail("Expected number")
        if nonzero and digits[:1] == b"0":
            self.fail("Expected non-zero number")
        return int(digits)

    def string(self) -> bytes:
        if self.peek() == ord('"'):
            return self.quoted()
        if self.peek() == ord("{"):
            return self.literal()
        self.fail("Expected string")

    def quoted(self) -> bytes:
        self.pos += 1
        out = bytearray()
        while True:
            c = self.peek()
            if c == ord('"'):
                self.pos += 1
                return bytes(out)
            if c == ord("\\"):
                self.pos += 1
                c = self.peek()
                if c not in (ord('"'), ord("\\")):
                    self.fail("Invalid escape in quoted string")
            elif c in (-1, 0x00, 0x0A, 0x0D):
                self.fail("Unterminated quoted string")
            out.append(c)
            self.pos += 1

    def literal(self) -> bytes:
        self.pos += 1
        digits = self.take(_DIGITS)
        if not digits:
            self.fail("Expected literal size")
        size = int(digits[:20]) if len(digits) <= 20 else MAX_NUMBER + 1
        if self.peek() == ord("+"):  # RFC 7888 non-synchronizing literal
            self.pos += 1
        self.expect(ord("}"), "}")
        if self.peek() == 0x0D:
            self.pos += 1
        self.expect(0x0A, "CRLF after literal size")
        if size > self.max_literal:
            self.fail("Literal too large")
        data = self.buf[self.pos : self.pos + size]
        if len(data) != size:
            self.fail("Truncated literal")
        if b"\0" in data:  # RFC 9051 9: literal is CHAR8, no NUL
            self.fail("NUL in literal")
        self.pos += size
        return data

    def astring(self) -> bytes:
        if self.peek() in (ord('"'), ord("{")):
            return self.string()
        atom = self.take(ASTRING_CHARS)
        if not atom:
            self.fail("Expected astring")
        return atom

    def sp_astring_utf8(self) -> str:
        self.sp()
        return self.utf8(self.astring())

    def sp_mailbox(self) -> str:
        self.sp()
        return self.utf8(self.astring())

    def list_mailbox(self) -> str:
        if self.peek() in (ord('"'), ord("{")):
            return self.utf8(self.string())
        pattern = self.take(LIST_CHARS)
        if not pattern:
            self.fail("Expected mailbox pattern")
        return pattern.decode("ascii")

    def utf8(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.fail("Invalid UTF-8")

    def sequence_set(self) -> SequenceSet:
        ranges: list[tuple[int | None, int | None]] = []
        while True:
            a = self.seq_number()
            b = a
            if self.peek() == ord(":"):
                self.pos += 1
                b = self.seq_number()
            ranges.append((a, b))
            if self.peek() != ord(","):
                return SequenceSet(tuple(ranges))
            self.pos += 1

    def seq_number(self) -> int | None:
        if self.peek() == ord("*"):
            self.pos += 1
            return None
        return self.number(nonzero=True)

    def fetch_atts(self) -> tuple[FetchAtt, ...]:
        if self.peek() != ord("("):
            start = self.pos
            name = self.take(_NAME_CHARS).decode("ascii").upper()
            if name in _MACROS:
                return tuple(FetchAtt(n) for n in _MACROS[name])
            self.pos = start
            return (self.fetch_att(),)
        self.pos += 1
        atts = [self.fetch_att()]
        while self.peek() == 0x20:
            self.pos += 1
            atts.append(self.fetch_att())
        self.expect(ord(")"), ")")
        return tuple(atts)

    def fetch_att(self) -> FetchAtt:
        name = self.take(_NAME_CHARS).decode("ascii").upper()
        if name in _PLAIN_ATTS:
            return FetchAtt(name)
        if name not in ("BODY", "BODY.PEEK") or self.peek() != ord("["):
            self.fail(f"Unsupported fetch item {name or '?'}")
        section = self.section()
        partial = None
        if self.peek() == ord("<"):
            self.pos += 1
            origin = self.number()
            self.expect(ord("."), ".")
            partial = (origin, self.number(nonzero=True))
            self.expect(ord(">"), ">")
        return FetchAtt("BODY", section, name == "BODY.PEEK", partial)

    def section(self) -> Section:
        self.pos += 1
        text = self.take(_NAME_CHARS).decode("ascii").upper()
        fields: tuple[str, ...] = ()
        if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            self.sp()
            self.expect(ord("("), "(")
            names = [self.astring()]
            while self.peek() == 0x20:
                self.pos += 1
                names.append(self.astring())
            self.expect(ord(")"), ")")
            fields = tuple(n.decode("ascii", "replace").upper() for n in names)
        elif text not in ("", "HEADER", "TEXT"):
            self.fail(f"Unsupported section {text}")
        self.expect(ord("]"), "]")
        return Section(text, fields)

    def search(self, tag: str, uid: bool) -> Search:
        self.sp()
        charset = None
        start = self.pos
        if self.take(_NAME_CHARS).upper() == b"CHARSET" and self.peek() == 0x20:
            self.pos += 1
            charset = self.utf8(self.astring()).upper()
            self.sp()
        else:
            self.pos = start
        keys = [self.search_key(0)]
        while self.peek() == 0x20:
            self.pos += 1
            keys.append(self.search_key(0))
        return Search(tag, tuple(keys), charset, uid)

    def search_key(self, depth: int) -> SearchKey:
        if depth > MAX_DEPTH:
            self.fail("Search too deeply nested")
        c = self.peek()
        if c == ord("("):
            self.pos += 1
            keys = [self.search_key(depth + 1)]
            while self.peek() == 0x20:
                self.pos += 1
                keys.append(self.search_key(depth + 1))
            self.expect(ord(")"), ")")
            return SearchKey("AND", keys=tuple(keys))
        if c == ord("*") or c in _DIGITS:
            return SearchKey("SEQ", self.sequence_set())
        name = self.keyword()
        if name in _FLAG_KEYS:
            return SearchKey(name)
        if name not in _ARG_KEYS:
            self.fail(f"Unsupported search key {name}")
        self.sp()
        if name == "UID":
            return SearchKey(name, self.sequence_set())
        if name in ("LARGER", "SMALLER"):
            return SearchKey(name, self.number())
        if name in ("KEYWORD", "UNKEYWORD"):
            return SearchKey(name, self.atom())
        if name == "NOT":
            return SearchKey(name, keys=(self.search_key(depth + 1),))
        first = self.search_key(depth + 1)  # OR
        self.sp()
        return SearchKey(name, keys=(first, self.search_key(depth + 1)))
