"""The IMAP command parser: one command's bytes (literals inline) in, a command value out."""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

T = TypeVar("T")

MAX_NUMBER = 2**32 - 1  # RFC 9051 9: number is an unsigned 32-bit integer
MAX_NUMBER64 = 2**63 - 1  # RFC 9051 9: number64 (mod-sequences, RFC 7162)
MAX_DEPTH = 20  # nesting of search keys: the parser recurses, hostile input must not
MAX_ITEMS = 1000  # items in one parenthesized list (fetch items, flags, ID fields...)
MAX_APPEND = 1000  # messages in one MULTIAPPEND (their octets are bounded by the reader)
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
_DATE_TIME = re.compile(
    r"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class ParseError:
    """The command could not be parsed: answer ``<tag> BAD <reason>`` (``*`` without a tag)."""

    tag: str | None
    reason: str


@dataclass(frozen=True)
class SequenceSet:
    """``1:3,7,9:*``: ranges of numbers, ``None`` standing for ``*`` (the largest in use);
    ``saved`` is RFC 5182's ``$``, the result of the last ``SEARCH RETURN (SAVE)``."""

    ranges: tuple[tuple[int | None, int | None], ...]
    saved: bool = False

    def contains(self, n: int, largest: int) -> bool:
        """Whether ``n`` is in the set when ``*`` means ``largest`` (RFC 9051 6.4.9: a range
        ``559:*`` includes the largest UID even when 559 is above it)."""
        for a, b in self.ranges:
            lo, hi = sorted((largest if a is None else a, largest if b is None else b))
            if lo <= n <= hi:
                return True
        return False

    def bounds(self, largest: int) -> list[tuple[int, int]]:
        """The ranges as ``(lo, hi)`` with ``*`` resolved."""
        out = []
        for a, b in self.ranges:
            lo, hi = sorted((largest if a is None else a, largest if b is None else b))
            out.append((lo, hi))
        return out

    def highest(self) -> int:
        """The largest explicit number (0 when the set only says ``*``)."""
        return max((x for r in self.ranges for x in r if x is not None), default=0)

    def __str__(self) -> str:
        if self.saved:
            return "$"

        def one(x: int | None) -> str:
            return "*" if x is None else str(x)

        return ",".join(one(a) if a == b else f"{one(a)}:{one(b)}" for a, b in self.ranges)


@dataclass(frozen=True)
class Section:
    """A ``BODY[...]`` section: part numbers, then ``""`` (all), HEADER, HEADER.FIELDS[.NOT]
    with ``fields``, TEXT or MIME (RFC 9051 6.4.5)."""

    text: str = ""
    fields: tuple[str, ...] = ()
    part: tuple[int, ...] = ()

    def __str__(self) -> str:
        spec = self.text
        if self.text.startswith("HEADER.FIELDS"):
            spec = f"{self.text} ({' '.join(self.fields)})"
        numbers = ".".join(str(n) for n in self.part)
        return f"{numbers}.{spec}" if numbers and spec else numbers or spec


@dataclass(frozen=True)
class FetchAtt:
    """One FETCH data item: FLAGS, UID, ENVELOPE, BODYSTRUCTURE, BODY[...], BINARY[...]..."""

    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None

    @property
    def sets_seen(self) -> bool:
        """RFC 3501 6.4.5: fetching body text without .PEEK sets \\Seen."""
        if self.name in ("BODY", "BINARY") and self.section is not None:
            return not self.peek
        return self.name in ("RFC822", "RFC822.TEXT")

    def label(self) -> str:
        """The item's name in the FETCH response (``BODY.PEEK[x]`` answers as ``BODY[x]``)."""
        if self.section is None:
            return self.name
        origin = f"<{self.partial[0]}>" if self.partial is not None else ""
        return f"{self.name}[{self.section}]{origin}"


@dataclass(frozen=True)
class SearchKey:
    """A search criterion; ``AND``, ``OR`` and ``NOT`` combine ``keys``. ``value`` is a
    sequence set, a number, a string, a date, or ``(field, string)`` for HEADER."""

    name: str
    value: SequenceSet | int | str | datetime.date | tuple[str, str] | None = None
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
class Enable(Command):
    """RFC 5161 ENABLE."""

    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class Id(Command):
    """RFC 2971 ID: field/value pairs, or None for NIL."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True)
class Qresync:
    """RFC 7162 3.2.5 SELECT (QRESYNC (uidvalidity modseq [known-uids [seq-match]]))."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True)
class Select(Command):
    mailbox: str
    readonly: bool = False  # EXAMINE
    condstore: bool = False
    qresync: Qresync | None = None


@dataclass(frozen=True)
class MailboxCommand(Command):
    """CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT (mailbox), GETQUOTA (root)."""

    name: str
    mailbox: str
    uses: tuple[str, ...] = ()  # RFC 6154 3: CREATE name (USE (\Drafts ...))


@dataclass(frozen=True)
class Rename(Command):
    old: str
    new: str


@dataclass(frozen=True)
class SetQuota(Command):
    """RFC 9208 SETQUOTA: parsed so it can be refused properly."""

    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ListMailboxes(Command):
    """LIST (RFC 9051 6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS) and LSUB."""

    reference: str
    patterns: tuple[str, ...]
    selection: tuple[str, ...] = ()
    returns: tuple[str, ...] = ()
    status: tuple[str, ...] = ()  # RETURN (STATUS (...))
    lsub: bool = False
    extended: bool = False  # selection or return options were given

    @property
    def pattern(self) -> str:
        return self.patterns[0]


@dataclass(frozen=True)
class Status(Command):
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Append(Command):
    mailbox: str
    flags: tuple[str, ...]
    date: float | None
    message: bytes = field(repr=False)
    binary: bool = False  # RFC 3516 literal8
    more: tuple[AppendMessage, ...] = ()  # RFC 3502 MULTIAPPEND: the messages after the first
    catenate: tuple[CatenatePart, ...] = ()  # RFC 4469: the first message's parts

    @property
    def messages(self) -> tuple[AppendMessage, ...]:
        """Every message of the command, the first one included."""
        first = AppendMessage(self.flags, self.date, self.message, self.binary, self.catenate)
        return (first, *self.more)


@dataclass(frozen=True)
class AppendMessage:
    """One message of an APPEND: its flags, date-time, octets and whether sent as literal8;
    or, with RFC 4469 CATENATE, the parts to join (``message`` then empty)."""

    flags: tuple[str, ...]
    date: float | None
    message: bytes = field(repr=False)
    binary: bool = False
    catenate: tuple[CatenatePart, ...] = ()


@dataclass(frozen=True)
class CatenatePart:
    """RFC 4469 5: ``TEXT literal`` (``text``) or ``URL "imap-url"`` (``url``)."""

    text: bytes = field(default=b"", repr=False)
    url: str | None = None


@dataclass(frozen=True)
class Fetch(Command):
    sequence: SequenceSet
    items: tuple[FetchAtt, ...]
    uid: bool = False
    changedsince: int | None = None  # RFC 7162 3.1.4
    vanished: bool = False  # RFC 7162 3.2.6


@dataclass(frozen=True)
class Store(Command):
    sequence: SequenceSet
    mode: str  # "+", "-" or "" (replace)
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchangedsince: int | None = None  # RFC 7162 3.1.3


@dataclass(frozen=True)
class Copy(Command):
    """COPY, or MOVE (RFC 6851) with ``move``."""

    sequence: SequenceSet
    mailbox: str
    uid: bool = False
    move: bool = False


@dataclass(frozen=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE (RFC 4315) with a sequence set of UIDs."""

    uids: SequenceSet | None = None


@dataclass(frozen=True)
class Search(Command):
    keys: tuple[SearchKey, ...]
    charset: str | None = None
    uid: bool = False
    returns: tuple[str, ...] | None = None  # RFC 4731 ESEARCH RETURN (...); None: plain
    partial: tuple[int, int] | None = None  # RFC 5267 4.4 / RFC 9394 RETURN (PARTIAL lo:hi)


@dataclass(frozen=True)
class Sort(Command):
    """RFC 5256 SORT (with RFC 5267 ESORT's RETURN options): ``criteria`` are
    ``(key, reverse)`` pairs, keys as in :data:`SORT_KEYS`."""

    criteria: tuple[tuple[str, bool], ...]
    charset: str
    keys: tuple[SearchKey, ...]
    uid: bool = False
    returns: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None


@dataclass(frozen=True)
class Thread(Command):
    """RFC 5256 THREAD with an algorithm of :data:`THREAD_ALGORITHMS`."""

    algorithm: str
    charset: str
    keys: tuple[SearchKey, ...]
    uid: bool = False


@dataclass(frozen=True)
class NotifyGroup:
    """One RFC 5465 event group: which mailboxes (``SELECTED``, ``SELECTED-DELAYED``,
    ``INBOXES``, ``PERSONAL``, ``SUBSCRIBED``, ``SUBTREE`` or ``MAILBOXES`` with ``names``)
    and which events (none: ``()``)."""

    filter: str
    names: tuple[str, ...] = ()
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notify(Command):
    """RFC 5465 NOTIFY SET [STATUS] groups, or NOTIFY NONE (no groups, ``none``)."""

    groups: tuple[NotifyGroup, ...] = ()
    status: bool = False
    none: bool = False


@dataclass(frozen=True)
class Compress(Command):
    """RFC 4978 COMPRESS with its mechanism (only DEFLATE exists)."""

    mechanism: str


@dataclass(frozen=True)
class CancelUpdate(Command):
    """RFC 5267 4.3 CANCELUPDATE: the tags of the SEARCH/SORT RETURN (UPDATE) to stop."""

    tags: tuple[str, ...]


SIMPLE_COMMANDS = frozenset(
    {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CLOSE", "UNSELECT", "CHECK", "IDLE"}
    | {"NAMESPACE"}
)
MAILBOX_COMMANDS = frozenset(
    {"CREATE", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE", "GETQUOTAROOT", "GETQUOTA"}
)
_FLAG_KEYS = frozenset(
    {"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN", "NEW", "OLD", "RECENT"}
    | {"UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN", "UNRECENT"}
)
_STRING_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_PLAIN_ATTS = frozenset(
    {"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"}
    | {"ENVELOPE", "BODYSTRUCTURE", "BODY", "MODSEQ"}
)
STATUS_ITEMS = frozenset(
    {"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT"}
    | {"HIGHESTMODSEQ"}
)
SEARCH_RETURNS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT", "PARTIAL"})
SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
THREAD_ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES"})
NOTIFY_FILTERS = frozenset(
    {"SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE"} | {"MAILBOXES"}
)
# RFC 5258 3: options a server does not know are a BAD; RFC 6154 adds SPECIAL-USE to both,
# RFC 5819 STATUS to the return options.
LIST_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "STATUS", "SPECIAL-USE"})
_UID_COMMANDS = frozenset({"FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE", "SORT", "THREAD"})


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


def command_name(data: bytes) -> str:
    """The command word after the tag (``UID FETCH`` as ``FETCH``), upper case, or ``""``."""
    m = re.match(rb"[^ ]+ (?:UID )?([A-Za-z]+)", data)
    return m.group(1).decode("ascii").upper() if m else ""


def parse_command(data: bytes, *, max_literal: int = DEFAULT_MAX_LITERAL) -> Command | ParseError:
    """Parse one complete command (ending in CRLF, literals inline); never raises.

    Pure: no sockets, no store. The server frames a command with :func:`literal_suffix` (read
    a line; while it ends in ``{n}`` or ``{n+}``, read n bytes and the next line) and hands
    the whole buffer here; a :class:`ParseError` carries the tag, when one was readable.
    Mailbox names come back as the client wrote them (UTF-8, or modified UTF-7 for an
    IMAP4rev1 client: decoding that is the session's business).
    """
    r = _Reader(data, max_literal)
    tag = tag_of(data)
    if tag is None:
        return ParseError(None, "Missing or invalid tag")
    r.pos = len(tag) + 1
    try:
        command = r.command(tag)
        r.end()
    except _Fail as e:
        return ParseError(tag, e.reason)
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps far from it
        return ParseError(tag, "Command too deeply nested")
    return command


def parse_date(text: str) -> datetime.date | None:
    """RFC 9051 date-text ``1-Feb-2026``; None when it is not one."""
    m = re.fullmatch(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})", text)
    if m is None or m.group(2).upper() not in MONTHS:
        return None
    try:
        return datetime.date(int(m.group(3)), MONTHS.index(m.group(2).upper()) + 1, int(m.group(1)))
    except ValueError:
        return None


def parse_date_time(text: str) -> float | None:
    """RFC 9051 date-time ``" 1-Feb-2026 10:00:00 +0100"`` (no quotes) -> epoch seconds."""
    m = _DATE_TIME.fullmatch(text)
    if m is None or m.group(2).upper() not in MONTHS:
        return None
    day, year = int(m.group(1).strip() or "0"), int(m.group(3))
    hour, minute, second = int(m.group(4)), int(m.group(5)), int(m.group(6))
    try:
        datetime.datetime(year, MONTHS.index(m.group(2).upper()) + 1, day, hour, minute, second)
    except ValueError:
        return None
    if int(m.group(9)) > 59:
        return None
    offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60 * (1 if m.group(7) == "+" else -1)
    month = MONTHS.index(m.group(2).upper()) + 1
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset)


class _Fail(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Reader:
    def __init__(self, buf: bytes, max_literal: int) -> None:
        self.buf = buf
        self.pos = 0
        self.max_literal = max_literal

    # -- commands ---------------------------------------------------------------------------

    def command(self, tag: str) -> Command:
        name = self.keyword()
        if name == "UID":
            self.sp()
            name = self.keyword()
            if name not in _UID_COMMANDS:
                self.fail(f"UID {name} is not supported")
            return self.uid_command(tag, name, uid=True)
        if name in SIMPLE_COMMANDS or name == "EXPUNGE":
            return Expunge(tag) if name == "EXPUNGE" else Simple(tag, name)
        if name in _UID_COMMANDS:
            return self.uid_command(tag, name, uid=False)
        if name == "LOGIN":
            return Login(tag, self.sp_astring_utf8(), self.sp_astring_utf8())
        if name == "AUTHENTICATE":
            self.sp()
            mechanism = self.atom().upper()
            initial = None
            if self.peek() == 0x20:
                self.sp()
                initial = self.take(_BASE64).decode("ascii")
                if not initial:
                    self.fail("Expected base64 initial response")
            return Authenticate(tag, mechanism, initial)
        if name == "ENABLE":
            caps: list[str] = []
            while self.peek() == 0x20 and len(caps) < MAX_ITEMS:
                self.sp()
                caps.append(self.atom().upper())
            if not caps:
                self.fail("Expected capability")
            return Enable(tag, tuple(caps))
        if name == "ID":
            return Id(tag, self.id_params())
        if name in ("SELECT", "EXAMINE"):
            return self.select(tag, readonly=name == "EXAMINE")
        if name in MAILBOX_COMMANDS:
            mailbox = self.sp_mailbox()
            uses: list[str] = []
            if name == "CREATE" and self.peek() == 0x20:  # RFC 4466 create-params
                self.sp()
                self.expect(ord("("), "(")
                if self.keyword() != "USE":  # RFC 6154 6
                    self.fail("Unknown CREATE parameter")
                self.sp()
                uses = self.flag_list()
                self.expect(ord(")"), ")")
            return MailboxCommand(tag, name, mailbox, tuple(uses))
        if name == "RENAME":
            return Rename(tag, self.sp_mailbox(), self.sp_mailbox())
        if name == "SETQUOTA":
            return self.setquota(tag)
        if name in ("LIST", "LSUB"):
            return self.list_command(tag, lsub=name == "LSUB")
        if name == "STATUS":
            mailbox = self.sp_mailbox()
            self.sp()
            items = self.paren_list(lambda: self.keyword())
            for item in items:
                if item not in STATUS_ITEMS:
                    self.fail(f"Unknown status item {item}")
            return Status(tag, mailbox, tuple(items))
        if name == "APPEND":
            return self.append(tag)
        if name == "COMPRESS":
            self.sp()
            return Compress(tag, self.keyword())
        if name == "NOTIFY":
            return self.notify(tag)
        if name == "CANCELUPDATE":  # RFC 5267 4.3
            tags: list[str] = []
            while self.peek() == 0x20 and len(tags) < MAX_ITEMS:
                self.sp()
                tags.append(self.utf8(self.string()))
            if not tags:
                self.fail("Expected tag")
            return CancelUpdate(tag, tuple(tags))
        self.fail("Unknown command")

    def uid_command(self, tag: str, name: str, *, uid: bool) -> Command:
        if name == "SEARCH":
            return self.search(tag, uid)
        if name == "SORT":
            return self.sort(tag, uid)
        if name == "THREAD":
            self.sp()
            algorithm = self.keyword()
            if algorithm not in THREAD_ALGORITHMS:
                self.fail(f"Unknown threading algorithm {algorithm}")
            charset, keys = self.charset_and_keys()
            return Thread(tag, algorithm, charset, keys, uid)
        if name == "EXPUNGE":  # only as UID EXPUNGE here
            self.sp()
            return Expunge(tag, self.sequence_set())
        self.sp()
        sequence = self.sequence_set()
        self.sp()
        if name == "FETCH":
            items = self.fetch_atts()
            changedsince, vanished = None, False
            if self.peek() == 0x20:
                self.sp()
                for modifier in self.paren_list(self.fetch_modifier):
                    if isinstance(modifier, int):
                        changedsince = modifier
                    else:
                        vanished = True
                if vanished and (not uid or changedsince is None):
                    self.fail("VANISHED needs UID FETCH with CHANGEDSINCE")  # RFC 7162 3.2.6
            return Fetch(tag, sequence, items, uid, changedsince, vanished)
        if name == "STORE":
            unchangedsince = None
            if self.peek() == ord("("):
                self.pos += 1
                if self.keyword() != "UNCHANGEDSINCE":
                    self.fail("Expected UNCHANGEDSINCE")
                self.sp()
                unchangedsince = self.number64()
                self.expect(ord(")"), ")")
                self.sp()
            mode = ""
            if self.peek() in (ord("+"), ord("-")):
                mode = chr(self.buf[self.pos])
                self.pos += 1
            item = self.keyword()
            if item not in ("FLAGS", "FLAGS.SILENT"):
                self.fail("Expected FLAGS or FLAGS.SILENT")
            self.sp()
            if self.peek() == ord("("):
                flags = self.flag_list()
            else:
                flags = [self.flag()]
                while self.peek() == 0x20:
                    self.pos += 1
                    flags.append(self.flag())
            return Store(
                tag, sequence, mode, tuple(flags), item.endswith(".SILENT"), uid, unchangedsince
            )
        mailbox = self.mailbox()
        return Copy(tag, sequence, mailbox, uid, move=name == "MOVE")

    def fetch_modifier(self) -> int | str:
        name = self.keyword()
        if name == "CHANGEDSINCE":
            self.sp()
            return self.number64()
        if name == "VANISHED":
            return name
        self.fail(f"Unknown fetch modifier {name}")

    def select(self, tag: str, *, readonly: bool) -> Select:
        mailbox = self.sp_mailbox()
        condstore, qresync = False, None
        if self.peek() == 0x20:
            self.sp()
            self.expect(ord("("), "(")
            while True:
                param = self.keyword()
                if param == "CONDSTORE":
                    condstore = True
                elif param == "QRESYNC":
                    self.sp()
                    qresync = self.qresync()
                else:
                    self.fail(f"Unknown select parameter {param}")
                if self.peek() != 0x20:
                    break
                self.pos += 1
            self.expect(ord(")"), ")")
        return Select(tag, mailbox, readonly, condstore, qresync)

    def qresync(self) -> Qresync:
        self.expect(ord("("), "(")
        uidvalidity = self.number(nonzero=True)
        self.sp()
        modseq = self.number64(nonzero=True)
        known = match = None
        if self.peek() == 0x20:
            self.sp()
            if self.peek() != ord("("):
                known = self.sequence_set()
                if self.peek() == 0x20:
                    self.sp()
            if self.peek() == ord("("):
                self.pos += 1
                seqs = self.sequence_set()
                self.sp()
                uids = self.sequence_set()
                self.expect(ord(")"), ")")
                match = (seqs, uids)
        self.expect(ord(")"), ")")
        return Qresync(uidvalidity, modseq, known, match)

    def setquota(self, tag: str) -> SetQuota:
        root = self.utf8(self.sp_astring())
        self.sp()
        self.expect(ord("("), "(")
        limits: list[tuple[str, int]] = []
        while self.peek() != ord(")") and len(limits) < MAX_ITEMS:
            if limits:
                self.sp()
            resource = self.keyword()
            self.sp()
            limits.append((resource, self.number64()))
        self.expect(ord(")"), ")")
        return SetQuota(tag, root, tuple(limits))

    def list_command(self, tag: str, *, lsub: bool) -> ListMailboxes:
        self.sp()
        selection: list[str] = []
        extended = False
        if self.peek() == ord("(") and not lsub:  # RFC 5258 list-select-opts
            selection = self.paren_list(self.keyword, empty=True)
            extended = True
            for option in selection:
                if option not in LIST_SELECT_OPTIONS:  # RFC 5258 3
                    self.fail(f"Unknown LIST selection option {option}")
            if "RECURSIVEMATCH" in selection and not {"SUBSCRIBED", "SPECIAL-USE"} & set(selection):
                self.fail("RECURSIVEMATCH needs another selection option")  # RFC 5258 3
            self.sp()
        reference = self.mailbox()
        self.sp()
        if self.peek() == ord("(") and not lsub:
            patterns = self.paren_list(self.list_mailbox)
            extended = True
        else:
            patterns = [self.list_mailbox()]
        returns: list[str] = []
        status: tuple[str, ...] = ()
        if self.peek() == 0x20 and not lsub:
            self.sp()
            if self.keyword() != "RETURN":
                self.fail("Expected RETURN")
            self.sp()
            self.expect(ord("("), "(")
            while self.peek() != ord(")") and len(returns) < MAX_ITEMS:
                if returns:
                    self.sp()
                option = self.keyword()
                if option not in LIST_RETURN_OPTIONS:  # RFC 5258 3
                    self.fail(f"Unknown LIST return option {option}")
                returns.append(option)
                if option == "STATUS":  # RFC 5819
                    self.sp()
                    items = self.paren_list(self.keyword)
                    for item in items:
                        if item not in STATUS_ITEMS:
                            self.fail(f"Unknown status item {item}")
                    status = tuple(items)
            self.expect(ord(")"), ")")
            extended = True
        return ListMailboxes(
            tag,
            reference,
            tuple(patterns),
            tuple(selection),
            tuple(returns),
            status,
            lsub,
            extended,
        )

    def append(self, tag: str) -> Append:
        mailbox = self.sp_mailbox()
        self.sp()
        first = self.append_message()
        more: list[AppendMessage] = []
        while self.peek() == 0x20 and len(more) < MAX_APPEND:  # RFC 3502 MULTIAPPEND
            self.sp()
            more.append(self.append_message())
        return Append(
            tag,
            mailbox,
            first.flags,
            first.date,
            first.message,
            first.binary,
            tuple(more),
            first.catenate,
        )

    def append_message(self) -> AppendMessage:
        flags: list[str] = []
        date = None
        if self.peek() == ord("("):
            flags = self.flag_list()
            self.sp()
        if self.peek() == ord('"'):
            text = self.quoted().decode("ascii", "replace")
            date = parse_date_time(text)
            if date is None:
                self.fail("Invalid date-time")
            self.sp()
        if self.peek() not in (ord("~"), ord("{")):
            start = self.pos
            if self.take(_NAME_CHARS).upper() != b"CATENATE" or self.peek() != 0x20:
                self.pos = start
                self.fail("Expected message literal")
            self.sp()
            parts = self.paren_list(self.catenate_part)  # RFC 4469 5
            return AppendMessage(tuple(flags), date, b"", catenate=tuple(parts))
        binary, message = self.literal_or_literal8()
        return AppendMessage(tuple(flags), date, message, binary)

    def notify(self, tag: str) -> Notify:
        """RFC 5465 3: NOTIFY NONE / NOTIFY SET [STATUS] event-group *(SP event-group)."""
        self.sp()
        what = self.keyword()
        if what == "NONE":
            return Notify(tag, none=True)
        if what != "SET":
            self.fail("Expected SET or NONE")
        self.sp()
        status = False
        if self.peek() != ord("("):
            if self.keyword() != "STATUS":
                self.fail("Expected STATUS or (")
            status = True
            self.sp()
        groups = [self.notify_group()]
        while self.peek() == 0x20 and len(groups) < MAX_ITEMS:
            self.sp()
            groups.append(self.notify_group())
        return Notify(tag, tuple(groups), status)

    def notify_group(self) -> NotifyGroup:
        self.expect(ord("("), "(")
        kind = self.keyword()
        if kind not in NOTIFY_FILTERS:
            self.fail(f"Unknown mailbox filter {kind}")
        names: list[str] = []
        if kind in ("SUBTREE", "MAILBOXES"):
            self.sp()
            names = self.paren_list(self.mailbox) if self.peek() == ord("(") else [self.mailbox()]
        self.sp()
        events: list[str] = []
        if self.peek() == ord("("):
            events = self.paren_list(self.notify_event)
        elif self.keyword() != "NONE":
            self.fail("Expected events or NONE")
        self.expect(ord(")"), ")")
        return NotifyGroup(kind, tuple(names), tuple(events))

    def notify_event(self) -> str:
        event = self.keyword()
        if event == "MESSAGENEW" and self.peek() == 0x20 and self.buf[self.pos + 1] == ord("("):
            self.sp()
            self.paren_list(self.fetch_att)  # RFC 5465 5.2: FETCH items for new messages
            return "MESSAGENEW-FETCH"
        return event

    def literal_or_literal8(self) -> tuple[bool, bytes]:
        binary = self.peek() == ord("~")  # RFC 3516 literal8
        if binary:
            self.pos += 1
        if self.peek() != ord("{"):
            self.fail("Expected message literal")
        return binary, self.literal(allow_nul=binary)

    def catenate_part(self) -> CatenatePart:
        kind = self.keyword()
        self.sp()
        if kind == "TEXT":
            return CatenatePart(text=self.literal_or_literal8()[1])
        if kind == "URL":
            return CatenatePart(url=self.utf8(self.astring()))
        self.fail("Expected TEXT or URL")

    def id_params(self) -> tuple[tuple[str, str | None], ...] | None:
        self.sp()
        if self.peek() != ord("("):
            if self.keyword() != "NIL":
                self.fail("Expected ( or NIL")
            return None
        self.pos += 1
        params: list[tuple[str, str | None]] = []
        while self.peek() != ord(")"):
            if params:
                self.sp()
            if len(params) >= 30:  # RFC 2971 3.3: at most 30 field-value pairs
                self.fail("Too many ID fields")
            key = self.utf8(self.string())
            self.sp()
            params.append((key, self.nstring()))
        self.pos += 1
        return tuple(params)

    # -- pieces -----------------------------------------------------------------------------

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

    def paren_list(self, item: Callable[[], T], *, empty: bool = False) -> list[T]:
        self.expect(ord("("), "(")
        out: list[T] = []
        if self.peek() == ord(")") and empty:
            self.pos += 1
            return out
        out.append(item())
        while self.peek() == 0x20:
            if len(out) >= MAX_ITEMS:
                self.fail("Too many items")
            self.pos += 1
            out.append(item())
        self.expect(ord(")"), ")")
        return out

    def number(self, *, nonzero: bool = False) -> int:
        digits = self.take(_DIGITS)
        if not digits or len(digits) > 10 or int(digits) > MAX_NUMBER:
            self.fail("Expected number")
        if nonzero and digits[:1] == b"0":
            self.fail("Expected non-zero number")
        return int(digits)

    def number64(self, *, nonzero: bool = False) -> int:
        digits = self.take(_DIGITS)
        if not digits or len(digits) > 19 or int(digits) > MAX_NUMBER64:
            self.fail("Expected number")
        if nonzero and int(digits) == 0:
            self.fail("Expected non-zero number")
        return int(digits)

    def string(self) -> bytes:
        if self.peek() == ord('"'):
            return self.quoted()
        if self.peek() == ord("{"):
            return self.literal()
        self.fail("Expected string")

    def nstring(self) -> str | None:
        if self.peek() in (ord("N"), ord("n")):
            if self.keyword() != "NIL":
                self.fail("Expected string or NIL")
            return None
        return self.utf8(self.string())

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

    def literal(self, *, allow_nul: bool = False) -> bytes:
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
        if not allow_nul and b"\0" in data:  # RFC 9051 9: literal is CHAR8, no NUL
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

    def sp_astring(self) -> bytes:
        self.sp()
        return self.astring()

    def sp_astring_utf8(self) -> str:
        return self.utf8(self.sp_astring())

    def mailbox(self) -> str:
        return self.utf8(self.astring())

    def sp_mailbox(self) -> str:
        self.sp()
        return self.mailbox()

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

    def flag(self) -> str:
        if self.peek() == ord("\\"):
            self.pos += 1
            return "\\" + self.atom()
        return self.atom()

    def flag_list(self) -> list[str]:
        return self.paren_list(self.flag, empty=True)

    def sequence_set(self) -> SequenceSet:
        if self.peek() == ord("$"):  # RFC 5182 / RFC 9051 6.4.4.1: the saved result
            self.pos += 1
            return SequenceSet((), saved=True)
        ranges: list[tuple[int | None, int | None]] = []
        while True:
            if len(ranges) >= 10_000:
                self.fail("Sequence set too long")
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
        return tuple(self.paren_list(self.fetch_att))

    def fetch_att(self) -> FetchAtt:
        name = self.take(_NAME_CHARS).decode("ascii").upper()
        if name in _PLAIN_ATTS and not (name == "BODY" and self.peek() == ord("[")):
            return FetchAtt(name)
        if name not in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"):
            self.fail(f"Unsupported fetch item {name or '?'}")
        if self.peek() != ord("["):
            self.fail(f"Expected [ after {name}")
        binary = name.startswith("BINARY")
        section = self.section(binary=binary)
        partial = None
        if self.peek() == ord("<") and name != "BINARY.SIZE":
            self.pos += 1
            origin = self.number()
            self.expect(ord("."), ".")
            partial = (origin, self.number(nonzero=True))
            self.expect(ord(">"), ">")
        base = name.removesuffix(".PEEK")
        return FetchAtt(base, section, name.endswith(".PEEK"), partial)

    def section(self, *, binary: bool = False) -> Section:
        self.pos += 1
        part: list[int] = []
        while self.peek() in _DIGITS:
            if len(part) >= MAX_DEPTH:
                self.fail("Section too deep")
            part.append(self.number(nonzero=True))
            if self.peek() != ord("."):
                break
            self.pos += 1
            if self.peek() not in _DIGITS:
                break
        text = self.take(_NAME_CHARS).decode("ascii").upper()
        fields: tuple[str, ...] = ()
        if binary and text:
            self.fail("BINARY takes part numbers only")  # RFC 3516 section-binary
        if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            self.sp()
            names = self.paren_list(self.astring)
            fields = tuple(n.decode("ascii", "replace").upper() for n in names)
        elif text not in ("", "HEADER", "TEXT", "MIME") or (text == "MIME" and not part):
            self.fail(f"Unsupported section {text}")
        if part and self.buf[self.pos - 1 : self.pos] == b"." and not text:
            self.fail("Expected section text after .")
        self.expect(ord("]"), "]")
        return Section(text, fields, tuple(part))

    def search(self, tag: str, uid: bool) -> Search:
        self.sp()
        returns, partial = self.search_returns()
        start = self.pos
        charset = None
        if self.take(_NAME_CHARS).upper() == b"CHARSET" and self.peek() == 0x20:
            self.pos += 1
            charset = self.utf8(self.astring()).upper()
            self.sp()
        else:
            self.pos = start
        return Search(tag, self.search_keys(), charset, uid, returns, partial)

    def sort(self, tag: str, uid: bool) -> Sort:
        self.sp()
        returns, partial = self.search_returns()
        criteria: list[tuple[str, bool]] = []
        reverse = False
        for key in self.paren_list(self.keyword):
            if key == "REVERSE" and not reverse:
                reverse = True
                continue
            if key not in SORT_KEYS:
                self.fail(f"Unknown sort key {key}")
            criteria.append((key, reverse))
            reverse = False
        if reverse:
            self.fail("REVERSE must precede a sort key")
        charset, keys = self.charset_and_keys()
        return Sort(tag, tuple(criteria), charset, keys, uid, returns, partial)

    def charset_and_keys(self) -> tuple[str, tuple[SearchKey, ...]]:
        """SORT and THREAD: a mandatory charset, then search keys (RFC 5256 3)."""
        self.sp()
        charset = self.utf8(self.astring()).upper()
        self.sp()
        return charset, self.search_keys()

    def search_returns(self) -> tuple[tuple[str, ...] | None, tuple[int, int] | None]:
        """``RETURN (...) SP`` if there: the options, and PARTIAL's range (RFC 5267 4.4, RFC
        9394 3: ``lo:hi`` of 1-based positions, negative ones counting from the end)."""
        start = self.pos
        if not (self.take(_NAME_CHARS).upper() == b"RETURN" and self.peek() == 0x20):
            self.pos = start
            return None, None
        self.pos += 1
        options: list[str] = []
        partial = None
        self.expect(ord("("), "(")
        while self.peek() != ord(")") and len(options) < MAX_ITEMS:
            if options:
                self.sp()
            option = self.keyword()
            if option not in SEARCH_RETURNS:
                self.fail(f"Unknown search return option {option}")
            if option == "PARTIAL":
                self.sp()
                partial = self.partial_range()
            options.append(option)
        self.expect(ord(")"), ")")
        self.sp()
        return tuple(options), partial

    def partial_range(self) -> tuple[int, int]:
        def position() -> int:
            negative = self.peek() == ord("-")
            if negative:
                self.pos += 1
            n = self.number(nonzero=True)
            return -n if negative else n

        first = position()
        self.expect(ord(":"), ":")
        last = position()
        if (first < 0) != (last < 0):
            self.fail("A partial range is both positive or both negative")  # RFC 9394 3
        return (
            (min(first, last), max(first, last))
            if first > 0
            else (max(first, last), min(first, last))
        )

    def search_keys(self) -> tuple[SearchKey, ...]:
        keys = [self.search_key(0)]
        while self.peek() == 0x20:
            if len(keys) >= MAX_ITEMS:
                self.fail("Too many search keys")
            self.pos += 1
            keys.append(self.search_key(0))
        return tuple(keys)

    def search_key(self, depth: int) -> SearchKey:
        if depth > MAX_DEPTH:
            self.fail("Search too deeply nested")
        c = self.peek()
        if c == ord("("):
            self.pos += 1
            keys = [self.search_key(depth + 1)]
            while self.peek() == 0x20:
                if len(keys) >= MAX_ITEMS:
                    self.fail("Too many search keys")
                self.pos += 1
                keys.append(self.search_key(depth + 1))
            self.expect(ord(")"), ")")
            return SearchKey("AND", keys=tuple(keys))
        if c in (ord("*"), ord("$")) or c in _DIGITS:
            return SearchKey("SEQ", self.sequence_set())
        name = self.keyword()
        if name in _FLAG_KEYS:
            return SearchKey(name)
        if name == "MODSEQ":  # RFC 7162 3.1.5
            self.sp()
            if self.peek() == ord('"'):
                self.quoted()  # entry name: flags are not told apart here
                self.sp()
                if self.keyword() not in ("PRIV", "SHARED", "ALL"):
                    self.fail("Expected entry type")
                self.sp()
            return SearchKey(name, self.number64())
        self.sp()
        if name == "UID":
            return SearchKey(name, self.sequence_set())
        if name in ("LARGER", "SMALLER"):
            return SearchKey(name, self.number64())
        if name in ("KEYWORD", "UNKEYWORD"):
            return SearchKey(name, self.atom())
        if name in _STRING_KEYS:
            return SearchKey(name, self.utf8(self.astring()))
        if name == "HEADER":
            header = self.utf8(self.astring())
            self.sp()
            return SearchKey(name, (header, self.utf8(self.astring())))
        if name in DATE_KEYS:
            quoted = self.peek() == ord('"')
            text = self.quoted() if quoted else self.take(ATOM_CHARS)
            date = parse_date(text.decode("ascii", "replace"))
            if date is None:
                self.fail("Invalid date")
            return SearchKey(name, date)
        if name == "NOT":
            return SearchKey(name, keys=(self.search_key(depth + 1),))
        if name == "OR":
            first = self.search_key(depth + 1)
            self.sp()
            return SearchKey(name, keys=(first, self.search_key(depth + 1)))
        self.fail(f"Unsupported search key {name}")
