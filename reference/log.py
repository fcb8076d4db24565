"""Structured logging: one line per event, key=value, carrying the queue id where there is one."""

from __future__ import annotations

import logging
import re
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_.:@/+<>=-]+")
# What must never reach a log raw: C0 controls and DEL (a NUL makes grep take the file for
# binary, an ESC drives the reader's terminal, CR and LF forge or split lines), C1 controls
# (CSI is an escape to some terminals), the Unicode line and paragraph separators, and the
# lone surrogates that surrogateescape makes of undecodable octets (unencodable as UTF-8).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    r"""``text`` with every control character written as a visible escape (``\x00``, ``\n``).

    Backslashes are left alone: a log line is for people and grep, not for parsing back.
    """
    return _UNSAFE.sub(_escape_char, text)


def _fmt(value: Any) -> str:
    s = str(value)
    if s and _BARE.fullmatch(s):
        return s
    return '"' + escape(s.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event=name k=v …``; values with spaces, quotes or control characters are quoted,
    with the controls escaped."""
    if not logger.isEnabledFor(level):
        return
    parts = [f"event={name}"] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    logger.log(level, " ".join(parts))


class EscapingFormatter(logging.Formatter):
    """Writes each record as one line with its control characters escaped.

    Whatever a peer sent (a NUL in a HELO name, an ESC in an address, a CRLF in a header
    value) may reach a message through any logger, ours or a library's; escaping the final
    text here covers them all. A traceback becomes part of its event's one line too, so
    that no line of the log is ever not an event.
    """

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def name_worker(index: int) -> None:
    """One of several worker processes of a node: its lines say which (``mailspec[w1]``)."""
    tagged = EscapingFormatter(FORMAT.replace("%(name)s", f"%(name)s[w{index}]"))
    for handler in logging.getLogger().handlers:
        handler.setFormatter(tagged)


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # aiosmtpd (under the fake MXs) logs every command at INFO; keep its chatter at WARNING.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
