"""The POP3 command parser (RFC 1939, RFC 2449, RFC 2595): one line in, a command value out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LINE = 255  # RFC 2449 4: a command line is at most 255 octets, CRLF included
MAX_ARG = 40  # RFC 1939 3: arguments up to 40 characters (PASS excepted, see below)

_NUMBER = re.compile(r"[0-9]{1,10}")
# RFC 1939 3: "Keywords and arguments consist of printable ASCII characters" (UTF-8 beyond
# ASCII with RFC 6856): no NUL, no other control character, no DEL, in any command.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NO_ARGS = frozenset({"STAT", "RSET", "NOOP", "QUIT", "CAPA", "STLS"})
_OPTIONAL_MSG = frozenset({"LIST", "UIDL"})
_MSG = frozenset({"RETR", "DELE"})


@dataclass(frozen=True)
class Command:
    """A POP3 command; which fields are set depends on the verb."""

    verb: str
    arg: str | None = field(default=None, repr=False)  # USER name, PASS secret
    msg: int | None = None  # LIST, UIDL, RETR, DELE, TOP
    lines: int | None = None  # TOP
    initial: str | None = field(default=None, repr=False)  # AUTH initial response (RFC 5034)


@dataclass(frozen=True)
class ParseError:
    """Answer ``-ERR <reason>``."""

    reason: str


def parse_command(line: bytes) -> Command | ParseError:
    """Parse one command line (CRLF optional); never raises."""
    if len(line) > MAX_LINE:
        return ParseError("Line too long")
    body = line[:-2] if line.endswith(b"\r\n") else line.rstrip(b"\n")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return ParseError("Invalid UTF-8")
    if _CONTROL.search(text):
        return ParseError("Invalid characters: control character in command")
    verb, _, rest = text.partition(" ")
    verb = verb.upper()
    if verb == "PASS":
        # RFC 1939 7: PASS has one argument, so a server may take spaces as part of it.
        return Command(verb, arg=rest) if rest else ParseError("Missing password")
    if verb == "AUTH":
        # RFC 5034 4: AUTH mechanism [initial-response]; a bare AUTH lists mechanisms.
        words = rest.split(" ") if rest else []
        if len(words) > 2 or any(not w for w in words) or (words and len(words[0]) > MAX_ARG):
            return ParseError("Expected a mechanism and an optional initial response")
        if not words:
            return Command(verb)
        return Command(verb, arg=words[0].upper(), initial=words[1] if len(words) > 1 else None)
    args = rest.split(" ") if rest else []
    if any(not a or len(a) > MAX_ARG for a in args):
        return ParseError("Invalid arguments")
    if verb in _NO_ARGS:
        return Command(verb) if not args else ParseError("No arguments expected")
    if verb == "USER":
        return Command(verb, arg=args[0]) if len(args) == 1 else ParseError("Expected a name")
    if verb in _OPTIONAL_MSG and not args:
        return Command(verb)
    if verb in _OPTIONAL_MSG | _MSG:
        n = _msg_number(args, 1)
        return Command(verb, msg=n) if n is not None else ParseError("Invalid message number")
    if verb == "TOP":
        n = _msg_number(args, 2)
        if n is None or not _NUMBER.fullmatch(args[1]):
            return ParseError("Expected message number and line count")
        return Command(verb, msg=n, lines=int(args[1]))
    return ParseError("Unknown command")


def _msg_number(args: list[str], count: int) -> int | None:
    if len(args) != count or not _NUMBER.fullmatch(args[0]) or int(args[0]) == 0:
        return None
    return int(args[0])


def dot_stuff(data: bytes) -> bytes:
    """A multi-line response body: lines starting with "." doubled, ending in CRLF
    (RFC 1939 3); the caller adds the terminating ``.CRLF``."""
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", data)
