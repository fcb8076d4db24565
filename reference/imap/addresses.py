"""RFC 5322 address lists as IMAP sees them (pure): groups, routes and comments kept.

ENVELOPE (RFC 3501 7.4.2) wants each address as ``(name adl mailbox host)``, a group as a
start ``(NIL NIL group NIL)`` and an end ``(NIL NIL NIL NIL)`` around its members, the
obsolete route (RFC 5322 4.4 obs-route) in ``adl``, and strings as sent (encoded words are
the client's to decode). The standard library's parsers do not fit: ``email.utils``
flattens groups and drops routes, ``email.headerregistry`` drops routes and comments, decodes
encoded words and raises on some broken input. So this is a small tokenizer and parser in
the manner of Dovecot's ``message-address.c``: it never raises, and it takes a lone comment
as the display name (``user@domain (Real Name)``), as Dovecot and most clients do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Address", "parse", "search_text"]

MAX_ADDRESSES = 1000  # hostile headers must not make huge envelopes

_SPECIALS = '()<>[]:;@\\,."'
_ATOM = re.compile(r"[^\s()<>\[\]:;@\\,.\"]+")


@dataclass(frozen=True)
class Address:
    """One ENVELOPE address; a group start has only ``mailbox`` (the group's name), a group
    end nothing at all."""

    name: str | None
    route: str | None
    mailbox: str | None
    host: str | None

    @property
    def group_start(self) -> bool:
        return self.host is None and self.mailbox is not None

    @property
    def group_end(self) -> bool:
        return self.host is None and self.mailbox is None


# A token: (kind, text), kind one of "atom", "quoted", "comment", "literal" or a special.
_Token = tuple[str, str]


def _tokens(value: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c.isspace():
            i += 1
        elif c == '"':
            i, text = _until(value, i + 1, '"')
            out.append(("quoted", text))
        elif c == "(":
            depth, j, chars = 1, i + 1, []
            while j < n and depth:
                if value[j] == "\\" and j + 1 < n:
                    chars.append(value[j + 1])
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(value[j], 0)
                if depth:
                    chars.append(value[j])
                j += 1
            out.append(("comment", "".join(chars)))
            i = j
        elif c == "[":
            i, text = _until(value, i + 1, "]")
            out.append(("literal", "[" + text + "]"))
        elif c in _SPECIALS:
            out.append((c, c))
            i += 1
        else:
            m = _ATOM.match(value, i)
            assert m is not None
            out.append(("atom", m.group()))
            i = m.end()
    return out


def _until(value: str, i: int, end: str) -> tuple[int, str]:
    """The text up to an unescaped ``end`` (or the end of ``value``), and where after it."""
    text: list[str] = []
    while i < len(value) and value[i] != end:
        if value[i] == "\\" and i + 1 < len(value):
            i += 1
        text.append(value[i])
        i += 1
    return i + 1, "".join(text)


class _Parser:
    def __init__(self, value: str) -> None:
        self.tokens = _tokens(value)
        self.pos = 0
        self.out: list[Address] = []
        self.comment: str | None = None  # the last comment an addr-spec carried

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def address_list(self) -> list[Address]:
        while self.pos < len(self.tokens) and len(self.out) < MAX_ADDRESSES:
            if self.peek() in (",", ";", ">", ")"):
                self.pos += 1
                continue
            self.address(in_group=False)
        return self.out

    def address(self, *, in_group: bool) -> None:
        start = self.pos
        phrase: list[_Token] = []
        while (kind := self.peek()) is not None and kind not in {":", "<", "@", ",", ";"}:
            phrase.append(self.tokens[self.pos])
            self.pos += 1
        kind = self.peek()
        if kind == ":" and not in_group:  # RFC 5322 3.4 group
            self.pos += 1
            self.out.append(Address(None, None, _phrase(phrase) or "", None))
            while (kind := self.peek()) is not None and kind != ";":
                if kind == ",":
                    self.pos += 1
                    continue
                before = self.pos
                self.address(in_group=True)
                if self.pos == before:
                    self.pos += 1
            self.pos += 1  # the ";"
            self.out.append(Address(None, None, None, None))
        elif kind == "<":
            self.pos += 1
            self.angle_addr(_phrase(phrase))
        else:
            self.pos = start
            self.addr_spec()

    def angle_addr(self, name: str | None) -> None:
        route: list[str] = []
        if self.peek() == "@":  # RFC 5322 4.4 obs-route: "@a,@b:" before the addr-spec
            while self.peek() in ("@", ","):
                self.pos += 1
                if self.tokens[self.pos - 1][0] == "@":
                    route.append("@" + self.domain(stop={",", ":", ">"}))
            if self.peek() == ":":
                self.pos += 1
        mailbox, host, _ = self.spec(stop={">"})
        if self.peek() == ">":
            self.pos += 1
        self.out.append(Address(name, ",".join(route) or None, mailbox, host))

    def addr_spec(self) -> None:
        mailbox, host, comment = self.spec(stop={",", ";"})
        if mailbox or host:
            self.out.append(Address(comment, None, mailbox, host))

    def spec(self, stop: set[str]) -> tuple[str, str, str | None]:
        """``local@domain`` up to a token in ``stop``: mailbox, host and the last comment."""
        local: list[str] = []
        self.comment = None
        while (kind := self.peek()) is not None and kind not in stop and kind != "@":
            token = self.tokens[self.pos]
            if kind == "comment":
                self.comment = token[1].strip() or self.comment
            elif kind in ("atom", "quoted", "."):
                local.append(token[1] if kind != "quoted" else _quote_local(token[1]))
            self.pos += 1
        host = ""
        if self.peek() == "@":
            self.pos += 1
            host = self.domain(stop=stop)
        # Whatever follows up to the next address is skipped; a comment there names it.
        while (kind := self.peek()) is not None and kind not in stop | {",", ";"}:
            if kind == "comment":
                self.comment = self.tokens[self.pos][1].strip() or self.comment
            self.pos += 1
        return "".join(local), host, self.comment

    def domain(self, stop: set[str]) -> str:
        parts: list[str] = []
        while (kind := self.peek()) is not None and kind not in stop | {"<", ";"}:
            if kind in ("atom", "literal", "."):
                parts.append(self.tokens[self.pos][1])
            elif kind == "comment":
                self.comment = self.tokens[self.pos][1].strip() or self.comment
            else:
                break
            self.pos += 1
        return "".join(parts)


def _quote_local(text: str) -> str:
    """A quoted local part stays quoted when it needs to be (RFC 5322 3.4.1)."""
    if _ATOM.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _phrase(tokens: list[_Token]) -> str | None:
    text = ""
    for kind, word in tokens:
        if kind == ".":
            text += "."  # obs-phrase: "John Q. Public"
        elif kind in ("atom", "quoted"):
            text += (" " if text else "") + word
    if not text:  # a lone comment names the address: "(Real Name) <user@domain>"
        comments = [t.strip() for kind, t in tokens if kind == "comment" and t.strip()]
        return comments[-1] if comments else None
    return text


def parse(value: str) -> list[Address]:
    """The addresses of a header value (From, To, Cc...), groups marked as in ENVELOPE."""
    return _Parser(value).address_list()


def search_text(value: str) -> list[str]:
    """What SEARCH FROM/TO/CC/BCC match besides the raw value: each address as
    ``name <mailbox@host>`` with its comments and spaces gone, and each group's name."""
    out: list[str] = []
    for a in parse(value):
        if a.group_start:
            out.append(a.mailbox or "")
        elif not a.group_end:
            spec = f"{a.mailbox}@{a.host}" if a.host else a.mailbox or ""
            out.append(f"{a.name} <{spec}>" if a.name else spec)
    return out
