"""The Sieve interpreter: a compiled script and one message's values in, actions out.

No sockets, no files, no wall clock: the caller passes the envelope, the message, the spam
score and the time, and carries out the :class:`Result` (filing, redirects, the rejection
message, the vacation reply) itself.
"""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.message
import email.policy
import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from reference.sieve.grammar import Node, Script, as_list

__all__ = [
    "Context",
    "Filing",
    "Limits",
    "Reject",
    "Result",
    "SieveRuntimeError",
    "Vacation",
    "evaluate",
    "header_text",
    "parse_header",
]


class SieveRuntimeError(Exception):
    """The script failed while it ran: the caller keeps the message (RFC 5228 2.10.6)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits on one run (RFC 5228 10)."""

    max_steps: int = 10_000  # commands and tests evaluated: bounds the run time
    max_redirects: int = 4  # per message
    max_actions: int = 32  # fileinto/keep per message
    max_variable: int = 4096  # characters in one variable's value


@dataclass(frozen=True)
class Context:
    """What the script may look at, for one message and one recipient."""

    message: bytes
    envelope_from: str  # "" for the null sender
    envelope_to: str  # the recipient address as given at RCPT
    user: str = ""  # the account's own address
    now: float = 0.0  # the clock's time, for currentdate
    spam_score: float | None = None  # our own score (X-Spam-Score); None: not tested
    spam_threshold: float = 10.0  # the reject score: spamtest 10 and 100 % from here
    keep_folder: str = "INBOX"  # where keep files (the spam check may have said Junk)
    subaddress_delimiter: str = "+"  # addresses.delimiter; empty: no subaddresses
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Filing:
    """Store the message in ``folder`` with ``flags`` (keep, fileinto)."""

    folder: str
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reject:
    """RFC 5429: refuse the message; after acceptance a rejection message goes back."""

    reason: str
    extended: bool = False  # ereject


@dataclass(frozen=True)
class Vacation:
    """RFC 5230: an automatic reply, subject to RFC 3834 checks done by the caller."""

    reason: str
    subject: str = ""
    from_: str = ""
    addresses: tuple[str, ...] = ()
    seconds: int = 7 * 86400
    handle: str = ""
    mime: bool = False


@dataclass(frozen=True)
class Result:
    """What the run decided."""

    filings: tuple[Filing, ...] = ()
    redirects: tuple[str, ...] = ()
    reject: Reject | None = None
    vacation: Vacation | None = None
    discarded: bool = False  # an explicit discard and nothing filed: the user's own choice
    log: tuple[str, ...] = ()


# -- message views -----------------------------------------------------------------------


def parse_header(raw: bytes) -> email.message.Message:
    """The header fields of a message as text: raw UTF-8 (RFC 6532) read as UTF-8 (a bytes
    parser would keep it as undecodable octets)."""
    end = raw.find(b"\r\n\r\n")
    head = raw[: end + 2] if end >= 0 else raw
    return email.message_from_string(
        head.decode("utf-8", "replace") + "\r\n", policy=email.policy.compat32
    )


def _decode(value: str) -> str:
    """RFC 2047 encoded words decoded, folding removed (RFC 5228 5.7)."""
    value = re.sub(r"\r?\n[ \t]", " ", value)
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


header_text = _decode


class _View:
    """The message parsed once per run."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        self.head = parse_header(raw)

    def headers(self, name: str) -> list[str]:
        return [_decode(str(v)) for v in self.head.get_all(name, [])]

    def addresses(self, name: str) -> list[str]:
        return [a for _, a in email.utils.getaddresses(self.headers(name)) if a]

    def body(self, transform: str, types: Sequence[str]) -> list[str]:
        if transform == ":raw":
            sep = self.raw.find(b"\r\n\r\n")
            start = sep + 4 if sep >= 0 else len(self.raw)
            return [self.raw[start:].decode("utf-8", "replace")]
        wanted = tuple(t.lower() for t in types) if transform == ":content" else ("text",)
        out = []
        for part in self.msg.walk():
            if part.is_multipart() and transform != ":content":
                continue
            ctype = part.get_content_type()
            if not any(t == "" or ctype == t or ctype.split("/")[0] == t for t in wanted):
                continue
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    text = payload.decode(charset, "replace")
                except LookupError:
                    text = payload.decode("utf-8", "replace")
                if ctype == "text/html" and transform == ":text":
                    text = re.sub(r"<[^>]*>", " ", text)  # RFC 5173 5.2: markup stripped
                out.append(text)
        return out


# -- comparators and match types -----------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}")


def _numeric(s: str) -> float:
    """RFC 4790 9.1: the leading digits; a string without them is positive infinity."""
    m = re.match(r"[0-9]+", s)
    return float(m.group()) if m else float("inf")


def _cmp(comparator: str, a: str, b: str) -> int:
    """-1, 0 or 1: ``a`` against ``b`` under ``comparator``."""
    x: float | str
    y: float | str
    if comparator == "i;ascii-numeric":
        x, y = _numeric(a), _numeric(b)
    elif comparator == "i;octet":
        x, y = a, b
    else:  # i;ascii-casemap, the default (RFC 5228 2.7.3)
        x, y = _casemap(a), _casemap(b)
    return (x > y) - (x < y)  # type: ignore[operator]


def _casemap(s: str) -> str:
    return s.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _relation(rel: str, c: int) -> bool:
    return {
        "gt": c > 0,
        "ge": c >= 0,
        "lt": c < 0,
        "le": c <= 0,
        "eq": c == 0,
        "ne": c != 0,
    }.get(rel, False)


def _glob(key: str, casemap: bool) -> re.Pattern[str]:
    """RFC 5228 2.7.1: ``*`` and ``?`` wildcards, ``\\`` escapes; each wildcard a group."""
    out = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key):
            out.append(re.escape(key[i + 1]))
            i += 2
            continue
        out.append("(.*?)" if c == "*" else "(.)" if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if casemap else 0))


# -- the run --------------------------------------------------------------------------------


class _Stop(Exception):
    pass


class _Run:
    def __init__(self, script: Script, ctx: Context) -> None:
        self.script = script
        self.ctx = ctx
        self.view = _View(ctx.message)
        self.steps = 0
        self.variables: dict[str, str] = {}
        self.matches: list[str] = []
        self.flags: list[str] = []
        self.filings: list[Filing] = []
        self.redirects: list[str] = []
        self.reject: Reject | None = None
        self.vacation: Vacation | None = None
        self.implicit_keep = True
        self.explicit_keep = False
        self.discarded = False
        self.log: list[str] = []

    # strings and variables (RFC 5229 3)
    def s(self, value: str) -> str:
        if "variables" not in self.script.requires or "${" not in value:
            return value

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.isdigit():
                n = int(name)
                return self.matches[n] if n < len(self.matches) else ""
            return self.variables.get(name.lower(), "")

        return _VAR.sub(sub, value)

    def strings(self, values: Iterable[str]) -> list[str]:
        return [self.s(v) for v in values]

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.ctx.limits.max_steps:
            raise SieveRuntimeError(f"script ran past {self.ctx.limits.max_steps} steps")

    # commands
    def block(self, nodes: Sequence[Node]) -> None:
        last: bool | None = None  # the outcome of the if/elsif chain so far
        for node in nodes:
            self.step()
            if node.name == "if":
                last = self.test(node.tests[0])
                if last:
                    self.block(node.block)
            elif node.name == "elsif":
                if last is False:
                    last = self.test(node.tests[0])
                    if last:
                        self.block(node.block)
            elif node.name == "else":
                if last is False:
                    self.block(node.block)
                last = None
            else:
                last = None
                self.action(node)

    def action(self, node: Node) -> None:
        name = node.name
        if name == "require":
            return
        if name == "stop":
            raise _Stop
        if name == "keep":
            self.file(self.ctx.keep_folder, node)
            self.explicit_keep = True
            self.implicit_keep = False
        elif name == "fileinto":
            self.file(self.s(node.text("mailbox")), node)
            if not node.args.get("copy"):
                self.implicit_keep = False
        elif name == "discard":
            self.implicit_keep = False
            self.discarded = True
        elif name == "redirect":
            address = self.s(node.text("address")).strip()
            if "@" not in address or any(c in address for c in " <>\r\n"):
                raise SieveRuntimeError(f"redirect to an invalid address: {address!r}")
            if address.lower() not in (a.lower() for a in self.redirects):
                if len(self.redirects) >= self.ctx.limits.max_redirects:
                    raise SieveRuntimeError(
                        f"more than {self.ctx.limits.max_redirects} redirects for one message"
                    )
                self.redirects.append(address)
            if not node.args.get("copy"):
                self.implicit_keep = False
        elif name in ("reject", "ereject"):
            if self.reject is not None:
                raise SieveRuntimeError("reject used twice")  # RFC 5429 2.1
            self.reject = Reject(self.s(node.text("text")), extended=name == "ereject")
            self.implicit_keep = False
        elif name == "vacation":
            self.vacation_action(node)
        elif name == "set":
            self.set(node)
        elif name in ("setflag", "addflag", "removeflag"):
            self.flag_action(node)
        else:
            raise SieveRuntimeError(f"unsupported command {name}")

    def file(self, folder: str, node: Node) -> None:
        if not folder:
            raise SieveRuntimeError("fileinto an empty folder name")
        flags = (
            self.flag_list(self.strings(node.extra_strings("flags")))
            if node.args.get("flags")
            else list(self.flags)
        )
        filing = Filing(folder, tuple(flags))
        # RFC 5228 4.1: filing into the same folder twice stores it once.
        if all(f.folder != folder for f in self.filings):
            if len(self.filings) >= self.ctx.limits.max_actions:
                raise SieveRuntimeError(f"more than {self.ctx.limits.max_actions} fileinto")
            self.filings.append(filing)

    def vacation_action(self, node: Node) -> None:
        if self.vacation is not None:
            raise SieveRuntimeError("vacation used twice")  # RFC 5230 4
        days = node.extras.get("days")
        # RFC 5230 4.1: at least one day; we keep to at most 30 (sites may set limits).
        n = days if isinstance(days, int) else 7
        self.vacation = Vacation(
            reason=self.s(node.text("reason")),
            subject=self.s(str(node.extras.get("subject") or "")),
            from_=self.s(str(node.extras.get("from") or "")),
            addresses=tuple(self.strings(node.extra_strings("addresses"))),
            seconds=max(1, min(30, n)) * 86400,
            handle=self.s(str(node.extras.get("handle") or "")),
            mime=bool(node.args.get("mime")),
        )

    def set(self, node: Node) -> None:
        name = self.s(node.text("name")).lower()
        value = self.s(node.text("value"))
        # RFC 5229 4.1: modifiers apply from the highest precedence down: case (40), first
        # letter (30), :quotewildcard (20), :length (10).
        case = node.args.get("case")
        if case == ":lower":
            value = value.lower()
        elif case == ":upper":
            value = value.upper()
        first = node.args.get("first-case")
        if first == ":lowerfirst":
            value = value[:1].lower() + value[1:]
        elif first == ":upperfirst":
            value = value[:1].upper() + value[1:]
        if node.args.get("quotewildcard"):
            value = re.sub(r"([*?\\])", r"\\\1", value)
        if node.args.get("length"):
            value = str(len(value))
        self.variables[name] = value[: self.ctx.limits.max_variable]

    @staticmethod
    def flag_list(values: Iterable[str]) -> list[str]:
        """RFC 5232 3: space-separated flags, each once (case-insensitively)."""
        out: list[str] = []
        for value in values:
            for flag in value.split():
                if flag.lower() not in (f.lower() for f in out):
                    out.append(flag)
        return out

    def flag_action(self, node: Node) -> None:
        var = node.args.get("variable-name")
        given = self.flag_list(self.strings(node.strings("list-of-flags")))
        current = self.flag_list([self.variables.get(str(var).lower(), "")]) if var else self.flags
        lowered = {f.lower() for f in given}
        if node.name == "setflag":
            new = given
        elif node.name == "addflag":
            new = self.flag_list([*current, *given])
        else:
            new = [f for f in current if f.lower() not in lowered]
        if var:
            self.variables[str(var).lower()] = " ".join(new)
        else:
            self.flags = new

    # tests
    def test(self, node: Node) -> bool:
        self.step()
        name = node.name
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self.test(node.tests[0])
        if name == "allof":
            return all(self.test(t) for t in node.tests)
        if name == "anyof":
            return any(self.test(t) for t in node.tests)
        if name == "exists":
            return all(
                self.view.head.get(h) is not None
                for h in self.strings(node.strings("header-names"))
            )
        if name == "size":
            size = len(self.ctx.message)
            limit = node.args.get("limit")
            n = limit if isinstance(limit, int) else 0
            return size > n if node.args.get("comparator") == ":over" else size < n
        if name == "header":
            values = [
                v for h in self.strings(node.strings("header-names")) for v in self.view.headers(h)
            ]
            return self.match(node, values)
        if name in ("address", "envelope"):
            return self.match(node, self.address_values(node))
        if name == "body":
            transform = str(node.args.get("body-transform") or ":text")
            types = node.extra_strings("body-transform") if transform == ":content" else ()
            return self.match(node, self.view.body(transform, self.strings(types)))
        if name == "string":
            return self.match(node, self.strings(node.strings("source")))
        if name == "hasflag":
            var = node.args.get("variable-list")
            if var:
                values = self.flag_list(self.variables.get(v.lower(), "") for v in as_list(var))
            else:
                values = list(self.flags)
            return self.match(node, values, key_name="list-of-flags")
        if name == "spamtest":
            return self.match(
                node, [self.spam_value(bool(node.args.get("percent")))], key_name="value"
            )
        if name in ("date", "currentdate"):
            return self.match(node, self.date_values(node))
        raise SieveRuntimeError(f"unsupported test {name}")

    def address_values(self, node: Node) -> list[str]:
        part = str(node.args.get("address-part") or ":all")
        addresses: list[str] = []
        for h in self.strings(node.strings("header-list")):
            if node.name == "envelope":
                which = h.lower()
                if which == "from":
                    addresses.append(self.ctx.envelope_from)
                elif which == "to":
                    addresses.append(self.ctx.envelope_to)
                else:
                    raise SieveRuntimeError(f"envelope part {h!r} is not known")
            else:
                addresses.extend(self.view.addresses(h))
        out = []
        for address in addresses:
            value = self.address_part(address, part)
            if value is not None:
                out.append(value)
        return out

    def address_part(self, address: str, part: str) -> str | None:
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        if part == ":localpart":
            return local
        if part == ":domain":
            return domain
        if part in (":user", ":detail"):
            # RFC 5233 4: the part before the first delimiter, and the rest; no delimiter:
            # :detail does not match at all.
            delimiter = self.ctx.subaddress_delimiter
            user, sep, detail = local.partition(delimiter) if delimiter else (local, "", "")
            if part == ":user":
                return user
            return detail if sep else None
        return address

    def spam_value(self, percent: bool) -> str:
        """RFC 5235: 0 when not tested; 1 (clean) to 10 or 0 to 100 % against the reject
        score."""
        score = self.ctx.spam_score
        if score is None:
            return "0"
        share = min(max(score, 0.0), self.ctx.spam_threshold) / max(self.ctx.spam_threshold, 0.1)
        if percent:
            return str(round(share * 100))
        return str(1 + round(share * 9))

    def date_values(self, node: Node) -> list[str]:
        zone = node.extras.get("zone")
        tz: dt.tzinfo | None = _zone(str(zone)) if zone else dt.UTC
        if node.name == "currentdate":
            when = dt.datetime.fromtimestamp(self.ctx.now, tz)
        else:
            values = self.view.headers(self.s(node.text("header-name")))
            if not values:
                return []
            try:
                parsed = email.utils.parsedate_to_datetime(values[0].strip())
            except (TypeError, ValueError, IndexError):
                return []  # RFC 5260 4: an unparsable date does not match
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            when = parsed if node.args.get("zone") == ":originalzone" else parsed.astimezone(tz)
        part = self.s(node.text("date-part")).lower()
        return [_date_part(when, part)]

    def match(self, node: Node, values: list[str], *, key_name: str = "key-list") -> bool:
        keys = self.strings(node.strings(key_name))
        mtype = str(node.args.get("match-type") or ":is")
        comparator = str(node.extras.get("comparator") or "i;ascii-casemap")
        if mtype == ":count":
            # RFC 5231 4.2: the number of values, compared numerically.
            count = str(
                len([v for v in values if v != ""]) if node.name == "string" else len(values)
            )
            rel = str(node.extras.get("match-type"))
            return any(_relation(rel, _cmp("i;ascii-numeric", count, k)) for k in keys)
        for value in values:
            for key in keys:
                self.step()
                if mtype == ":is":
                    if _cmp(comparator, value, key) == 0:
                        return True
                elif mtype == ":contains":
                    if comparator == "i;ascii-numeric":
                        raise SieveRuntimeError(":contains with i;ascii-numeric")
                    hay, needle = (
                        (value, key)
                        if comparator == "i;octet"
                        else (_casemap(value), _casemap(key))
                    )
                    if needle in hay:
                        return True
                elif mtype == ":matches":
                    m = _glob(key, comparator != "i;octet").fullmatch(value)
                    if m:
                        if "variables" in self.script.requires:
                            self.matches = [m.group(0), *m.groups()][:10]
                        return True
                elif mtype == ":value":
                    rel = str(node.extras.get("match-type"))
                    if _relation(rel, _cmp(comparator, value, key)):
                        return True
        return False


def _zone(text: str) -> dt.tzinfo:
    m = re.fullmatch(r"([+-])([0-9]{2})([0-9]{2})", text.strip())
    if not m:
        raise SieveRuntimeError(f"bad :zone {text!r}")
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return dt.timezone(dt.timedelta(minutes=minutes if m.group(1) == "+" else -minutes))


def _date_part(when: dt.datetime, part: str) -> str:
    """RFC 5260 4.2: one date part as a string."""
    offset = when.utcoffset() or dt.timedelta()
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    zone = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    parts = {
        "year": f"{when.year:04d}",
        "month": f"{when.month:02d}",
        "day": f"{when.day:02d}",
        "date": when.strftime("%Y-%m-%d"),
        "julian": str(int(when.timestamp() // 86400 + 40587)),  # Modified Julian Day
        "hour": f"{when.hour:02d}",
        "minute": f"{when.minute:02d}",
        "second": f"{when.second:02d}",
        "time": when.strftime("%H:%M:%S"),
        "iso8601": when.isoformat(),
        "std11": email.utils.format_datetime(when),
        "zone": zone,
        "weekday": str((when.weekday() + 1) % 7),  # 0 is Sunday
    }
    if part not in parts:
        raise SieveRuntimeError(f"unknown date part {part!r}")
    return parts[part]


def evaluate(script: Script, ctx: Context) -> Result:
    """Run ``script`` on one message; :class:`SieveRuntimeError` if it fails."""
    run = _Run(script, ctx)
    try:
        run.block(script.commands)
    except _Stop:
        pass
    except RecursionError:
        raise SieveRuntimeError("script nested too deeply") from None
    if run.reject is not None and (run.explicit_keep or run.filings or run.redirects):
        # RFC 5429 2.1/2.2: reject cannot be combined with keeping or passing the message on.
        raise SieveRuntimeError("reject with keep, fileinto or redirect")
    if run.reject is not None and run.vacation is not None:
        raise SieveRuntimeError("reject with vacation")  # RFC 5429 2.1
    filings = list(run.filings)
    if run.implicit_keep and all(f.folder != ctx.keep_folder for f in filings):
        # RFC 5228 2.10.2: implicit keep, with the flags set so far (RFC 5232 3).
        filings.append(Filing(ctx.keep_folder, tuple(run.flags)))
    return Result(
        filings=tuple(filings),
        redirects=tuple(run.redirects),
        reject=run.reject,
        vacation=run.vacation,
        discarded=run.discarded and not filings and not run.redirects,
        log=tuple(run.log),
    )
