"""Pure parsers for the arguments of MAIL, RCPT and BDAT: paths and ESMTP parameters.

No I/O: text in, a value or a :class:`CommandError` carrying the reply out, so every rule
here is unit-tested and fuzzed without a socket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from reference.mail import replies
from reference.mail.replies import Reply
from reference.mail.xtext import is_xtext

__all__ = [
    "CommandError",
    "MailFrom",
    "RcptTo",
    "control_refusal",
    "has_control",
    "parse_bdat",
    "parse_mail",
    "parse_rcpt",
    "split_params",
    "vrfy_address",
]

# RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
# esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 beyond ASCII (RFC 6531 3.3).
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+")
# RFC 5322 3.2.3 atom, for ORCPT's addr-type (RFC 3461 4.2).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_BDAT = re.compile(r"([0-9]{1,20})(?: +(LAST))?", re.IGNORECASE)
_NOTIFY = ("SUCCESS", "FAILURE", "DELAY")
# RFC 5321 4.1.2 and RFC 5234 B.1: CTL is %x00-1F / %x7F. No path, domain, ESMTP value or
# string of a command takes one (a quoted string neither: qtextSMTP is %d32-33 / %d35-91 /
# %d93-126, quoted-pairSMTP %d92 %d32-126).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

ENVID_MAX = 100  # RFC 3461 4.4
ORCPT_MAX = 500  # RFC 3461 4.2


class CommandError(ValueError):
    """A command's argument is refused; ``reply`` says how on the wire."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def _syntax(detail: str) -> CommandError:
    return CommandError(replies.BAD_ARGUMENTS.format(detail=detail))


@dataclass(frozen=True)
class MailFrom:
    """MAIL FROM, parsed: the reverse-path and the parameters the platform implements."""

    address: str  # "" is the null reverse-path (RFC 5321 4.5.5)
    size: int | None = None  # RFC 1870
    body: str = "7BIT"  # RFC 6152: 7BIT or 8BITMIME
    smtputf8: bool = False  # RFC 6531
    ret: str | None = None  # RFC 3461 4.3: FULL or HDRS
    envid: str | None = None  # RFC 3461 4.4, as sent (xtext)
    auth: str | None = None  # RFC 4954 5, as sent (xtext or "<>")


@dataclass(frozen=True)
class RcptTo:
    """RCPT TO, parsed: the forward-path and its DSN parameters."""

    address: str
    notify: str | None = None  # RFC 3461 4.1: "NEVER" or e.g. "SUCCESS,FAILURE"
    orcpt: str | None = None  # RFC 3461 4.2, as sent: addr-type ";" xtext


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (NUL, another CTL, or DEL)."""
    return _CONTROL.search(text) is not None


def control_refusal(verb: str, arg: str | None) -> Reply | None:
    """The reply to a command whose argument carries a control character, or None.

    A control character in the path of MAIL or RCPT makes the mailbox name unacceptable
    (553, with the enhanced code of the sender's or the recipient's address); anywhere else
    it is a syntax error in the arguments (501).
    """
    found = _CONTROL.search(arg or "")
    if found is None or arg is None:
        return None
    verb = verb.upper()
    if verb in ("MAIL", "RCPT"):
        _, colon, path = arg.partition(":")
        start = len(arg) - len(path)
        if colon and start <= found.start() < start + _path_length(path):
            return replies.CONTROL_IN_SENDER if verb == "MAIL" else replies.CONTROL_IN_RECIPIENT
    return replies.CONTROL_IN_ARGUMENT


def _path_length(text: str) -> int:
    """How much of ``text`` is the path: up to the first space outside a quoted string."""
    lead = len(text) - len(text.lstrip(" "))
    quoted = escaped = False
    for i in range(lead, len(text)):
        c = text[i]
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == " " and not quoted:
            return i
    return len(text)


def split_params(text: str) -> dict[str, str | None]:
    """``"SIZE=10 SMTPUTF8"`` -> ``{"SIZE": "10", "SMTPUTF8": None}`` (keywords upper case).

    Raises :class:`CommandError` (501) on a malformed or repeated parameter.
    """
    params: dict[str, str | None] = {}
    for item in text.split():
        keyword, eq, value = item.partition("=")
        if not _KEYWORD.fullmatch(keyword) or (eq and not _VALUE.fullmatch(value)):
            raise _syntax(f"Syntax error in parameter {item!r}")
        key = keyword.upper()
        if key in params:
            raise _syntax(f"Duplicate parameter {key}")
        params[key] = value if eq else None
    return params


# The path almost every client sends: <dot-atom@host.name>, ASCII, then the end or a space.
# Taken without the email package's parser (a tenth of the cost of MAIL and RCPT); the
# parser gives the same answer for it (tests/test_smtp_commands.py checks that).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*)>")


def _plain_path(text: str) -> tuple[str, str] | None:
    """``(address, rest)`` as :func:`_path` finds them, for a plain path; else None."""
    m = _PLAIN_PATH.match(text)
    if m is None:
        return None
    after = text[m.end() :]
    rest = after.lstrip(" ")
    if after and (after == rest or rest[:1] in ("(", "\t")):
        return None  # glued to the path, or a comment or tab the parser takes as CFWS
    return m.group(1), rest


def _path(text: str, *, sender: bool) -> tuple[str, str]:
    """The address in ``<...>`` (source route dropped, RFC 5321 C) and the text after it."""
    text = text.strip()
    plain = _plain_path(text)
    return plain if plain is not None else _parsed_path(text, sender=sender)


def _parsed_path(text: str, *, sender: bool) -> tuple[str, str]:
    """:func:`_path` by the email package's address parser (``text`` stripped)."""
    # Built only when a path is refused: this runs for every MAIL and RCPT.
    bad = replies.BAD_SENDER_SYNTAX if sender else replies.BAD_RECIPIENT_SYNTAX
    if not text:
        raise _syntax(f"Syntax: {'MAIL FROM:<address>' if sender else 'RCPT TO:<address>'}")
    if text.startswith("<>"):
        if not sender or (text[2:3] and not text[2].isspace()):
            raise CommandError(bad)
        return "", text[2:]
    addr: Any
    try:
        # RFC 5321 4.1.2 paths are in angle brackets; a bare address is taken too, as
        # most servers do. A source route (<@a,@b:user@d>) parses as obs-route and is
        # dropped: RFC 5321 C / 3.6.1, servers SHOULD ignore the route.
        if text.startswith("<"):
            addr, rest = get_angle_addr(text)
        else:
            addr, rest = get_addr_spec(text)
        address = str(addr.addr_spec)
    except (HeaderParseError, IndexError, AttributeError, ValueError):
        raise CommandError(bad) from None
    # A space can only be inside a quoted local part ("a b"@example.test).
    if (
        not address
        or any(c in address for c in "<>\t\r\n")
        or (" " in address and not address.startswith('"'))
    ):
        raise CommandError(bad)
    head = text[: len(text) - len(rest)]
    if text.startswith("<") and not head.rstrip().endswith(">"):
        raise CommandError(bad)  # no closing bracket
    if rest and head == head.rstrip():  # parameters must be apart from the path
        raise CommandError(bad)
    return address, rest


def _keyword_arg(arg: str | None, keyword: str) -> str:
    if arg is None or arg[: len(keyword)].upper() != keyword:
        usage = "MAIL FROM:<address>" if keyword == "FROM:" else "RCPT TO:<address>"
        raise _syntax(f"Syntax: {usage} [parameters]")
    return arg[len(keyword) :]


def _needs_smtputf8(address: str) -> CommandError:
    # RFC 6531 3.4: a non-ASCII address is only for a transaction that said SMTPUTF8.
    return CommandError(replies.NEEDS_SMTPUTF8.format(address=repr(address)))


def _unknown(key: str) -> CommandError:
    # RFC 5321 4.1.1.11: an unrecognised MAIL or RCPT parameter gets 555.
    return CommandError(replies.UNSUPPORTED_PARAMETER.format(key=key))


def parse_mail(arg: str | None, *, extended: bool = True) -> MailFrom:
    """``FROM:<a@b> SIZE=10 ...`` as given after ``MAIL``; raise :class:`CommandError`."""
    refusal = control_refusal("MAIL", arg)
    if refusal is not None:
        raise CommandError(refusal)
    address, rest = _path(_keyword_arg(arg, "FROM:"), sender=True)
    params = split_params(rest)
    if params and not extended:
        raise _syntax("Parameters need EHLO")
    size: int | None = None
    body = "7BIT"
    smtputf8 = False
    ret = envid = auth = None
    for key, value in params.items():
        if key == "SIZE":
            if value is None or not value.isdigit() or not value.isascii():
                raise _syntax("SIZE takes a number of octets")
            size = int(value)
        elif key == "BODY":
            # RFC 6152: 7BIT or 8BITMIME (BINARYMIME, RFC 3030, is not offered).
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                raise _syntax("BODY takes 7BIT or 8BITMIME")
            body = value.upper()
        elif key == "SMTPUTF8":
            if value is not None:
                raise _syntax("SMTPUTF8 takes no value")
            smtputf8 = True
        elif key == "RET":
            if value is None or value.upper() not in ("FULL", "HDRS"):
                raise _syntax("RET takes FULL or HDRS")
            ret = value.upper()
        elif key == "ENVID":
            if value is None or not is_xtext(value) or len(value) > ENVID_MAX:
                raise _syntax(f"ENVID takes up to {ENVID_MAX} characters of xtext")
            envid = value
        elif key == "AUTH":
            # RFC 4954 5: AUTH=<> or an xtext-encoded mailbox.
            if value is None or (value != "<>" and not is_xtext(value)):
                raise _syntax("AUTH takes <> or an xtext mailbox")
            auth = value
        else:
            raise _unknown(key)
    if not smtputf8 and not address.isascii():
        raise _needs_smtputf8(address)
    return MailFrom(address, size, body, smtputf8, ret, envid, auth)


def parse_rcpt(arg: str | None, *, extended: bool = True, smtputf8: bool = False) -> RcptTo:
    """``TO:<a@b> NOTIFY=... ORCPT=...`` as given after ``RCPT``."""
    refusal = control_refusal("RCPT", arg)
    if refusal is not None:
        raise CommandError(refusal)
    address, rest = _path(_keyword_arg(arg, "TO:"), sender=False)
    params = split_params(rest)
    if params and not extended:
        raise _syntax("Parameters need EHLO")
    notify = orcpt = None
    for key, value in params.items():
        if key == "NOTIFY":
            notify = _notify(value)
        elif key == "ORCPT":
            orcpt = _orcpt(value)
        else:
            raise _unknown(key)
    if not smtputf8 and not address.isascii():
        raise _needs_smtputf8(address)
    return RcptTo(address, notify, orcpt)


def _notify(value: str | None) -> str:
    # RFC 3461 4.1: "NEVER", or a comma list of SUCCESS, FAILURE, DELAY.
    items = [v.upper() for v in (value or "").split(",")]
    if items == ["NEVER"]:
        return "NEVER"
    if not items or any(v not in _NOTIFY for v in items) or len(set(items)) != len(items):
        raise _syntax("NOTIFY takes NEVER or a list of SUCCESS, FAILURE, DELAY")
    return ",".join(items)


def _orcpt(value: str | None) -> str:
    # RFC 3461 4.2: orcpt-parameter = "ORCPT=" original-recipient-address, that is
    # addr-type ";" xtext.
    addr_type, sep, xtext = (value or "").partition(";")
    if (
        not sep
        or not _ATOM.fullmatch(addr_type)
        or not xtext
        or not is_xtext(xtext)
        or len(value or "") > ORCPT_MAX
    ):
        raise _syntax("ORCPT takes addr-type;xtext")
    return f"{addr_type};{xtext}"


def parse_bdat(arg: str | None) -> tuple[int, bool]:
    """RFC 3030 2: ``BDAT chunk-size [LAST]`` -> (size, last)."""
    m = _BDAT.fullmatch((arg or "").strip())
    if m is None:
        raise _syntax("Syntax: BDAT chunk-size [LAST]")
    return int(m.group(1)), m.group(2) is not None


def vrfy_address(arg: str) -> str | None:
    """The address a VRFY argument names (a path or a bare addr-spec), or None."""
    try:
        if arg.lstrip().startswith("<"):
            return str(get_angle_addr(arg)[0].addr_spec)
        return str(get_addr_spec(arg)[0].addr_spec)
    except HeaderParseError:
        return None
