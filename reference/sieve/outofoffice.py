"""The out-of-office form, for users who do not write Sieve: its settings become a
generated vacation script (RFC 5230), and are read back from it."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

from reference.sieve.store import ReplyLog, ScriptStore

__all__ = ["SCRIPT_NAME", "OutOfOffice", "current", "read", "render", "switch_off", "switch_on"]

SCRIPT_NAME = "out-of-office"
_MARK = "# mailspec out-of-office: "
_PREVIOUS = "# previous active script: "


@dataclass(frozen=True)
class OutOfOffice:
    """What the form asks: the reply, when it applies, how often one sender hears it."""

    subject: str
    text: str
    start: str = ""  # YYYY-MM-DD (UTC), first day of absence; empty: from now
    end: str = ""  # YYYY-MM-DD (UTC), last day; empty: until cleared
    days: int = 7  # RFC 5230 4.1: days between two replies to one sender
    from_: str = ""  # the reply's From; empty: the account's address
    addresses: tuple[str, ...] = field(default_factory=tuple)  # the user's other addresses

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value:
                try:
                    dt.date.fromisoformat(value)
                except ValueError:
                    raise ValueError(f"--{name}: expected YYYY-MM-DD, got {value!r}") from None
        if self.start and self.end and self.end < self.start:
            raise ValueError("--end is before --start")
        if not 1 <= self.days <= 30:
            raise ValueError("--days: between 1 and 30")
        if not self.text.strip():
            raise ValueError("--text: the reply needs a text")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _multiline(text: str) -> str:
    """RFC 5228 2.4.2: a multi-line string; a line starting with a dot gets another."""
    lines = text.replace("\r\n", "\n").split("\n")
    body = "\r\n".join("." + line if line.startswith(".") else line for line in lines)
    return f"text:\r\n{body}\r\n.\r\n"


def render(ooo: OutOfOffice, *, previous: str | None = None) -> str:
    """The vacation script for ``ooo``; ``previous``: the script it takes over from."""
    settings = json.dumps(asdict(ooo), ensure_ascii=False)
    tests = []
    if ooo.start:
        tests.append(f'currentdate :value "ge" "date" {_quote(ooo.start)}')
    if ooo.end:
        tests.append(f'currentdate :value "le" "date" {_quote(ooo.end)}')
    tags = [f":days {ooo.days}", f":subject {_quote(ooo.subject)}"]
    if ooo.from_:
        tags.append(f":from {_quote(ooo.from_)}")
    if ooo.addresses:
        tags.append(":addresses [" + ", ".join(_quote(a) for a in ooo.addresses) + "]")
    action = f"vacation {' '.join(tags)} {_multiline(ooo.text)};\r\n"
    lines = [_MARK + settings]
    if previous:
        lines.append(_PREVIOUS + previous)
    lines.append('require ["vacation", "date", "relational"];')
    head = "\r\n".join(lines) + "\r\n"
    if not tests:
        return head + action
    return head + f"if allof ({', '.join(tests)}) {{\r\n{action}}}\r\n"


def read(script: str) -> tuple[OutOfOffice, str | None] | None:
    """The settings a generated script was made from, and the script it took over from."""
    settings: OutOfOffice | None = None
    previous = None
    for line in script.splitlines():
        if line.startswith(_MARK):
            raw = json.loads(line[len(_MARK) :])
            raw["addresses"] = tuple(raw.get("addresses", ()))
            settings = OutOfOffice(**raw)
        elif line.startswith(_PREVIOUS):
            previous = line[len(_PREVIOUS) :].strip() or None
    return None if settings is None else (settings, previous)


def _resume_paused(scripts: ScriptStore, account: str) -> str | None:
    """A form set by an older version was the active script, naming the one it paused:
    make that one active again (returned)."""
    if scripts.active_name(account) != SCRIPT_NAME:
        return None
    found = read(scripts.get(account, SCRIPT_NAME) or "")
    previous = found[1] if found else None
    restore = previous if previous and scripts.get(account, previous) is not None else ""
    scripts.activate(account, restore)
    return restore or None


def switch_on(
    scripts: ScriptStore, replies: ReplyLog, account: str, ooo: OutOfOffice
) -> str | None:
    """Turn the out-of-office on (or change it); the account's own active script, which
    keeps applying beside it (None: none).

    The form's script is kept beside the user's own, not instead of it: both apply at
    delivery (the user's script files the message, the form replies).
    """
    _resume_paused(scripts, account)
    scripts.put(account, SCRIPT_NAME, render(ooo))
    replies.forget(account)  # a new notice: every sender may hear it once
    active = scripts.active_name(account)
    return active if active and active != SCRIPT_NAME else None


def switch_off(scripts: ScriptStore, account: str) -> str | None:
    """Turn it off: None if it was not set, else the script made active again ("" if
    none: only forms set by an older version paused one)."""
    if read(scripts.get(account, SCRIPT_NAME) or "") is None:
        return None
    resumed = _resume_paused(scripts, account)
    scripts.delete(account, SCRIPT_NAME)
    return resumed or ""


def current(scripts: ScriptStore, account: str) -> OutOfOffice | None:
    """The form's settings while it is on; None when it is off."""
    found = read(scripts.get(account, SCRIPT_NAME) or "")
    return None if found is None else found[0]
