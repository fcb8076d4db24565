"""Fake MX behaviour as data: rules tried first-match-wins per SMTP stage, loadable from TOML.

A policy file (every key optional; ``Policy.from_toml`` reads it, ``to_toml`` writes it)::

    default = "accept"          # taken at default_stage when no rule matches there
    default_stage = "rcpt"      # connect | ehlo | mail | rcpt | data
    auth = { relay = "secret" } # credentials: AUTH is then required before MAIL (smarthost)
    auth_require_tls = true     # offer AUTH only after STARTTLS

    [[rules]]
    name = "bad neighbourhood"         # shown in the attempt record
    stage = "rcpt"                     # where the rule answers (default "rcpt")
    source = ["127.0.1.0/28", "127.0.1.200"]
    action = "gmail.reputation.5xx"    # a catalogue name, ...

    [[rules]]
    recipient = ["nobody@gmail.test", "unknown-*@", "@closed.test"]
    action = "550 5.1.1 No such user"  # ... a reply written out, ...

    [[rules]]
    recipient = ["greylisted.test"]
    action = "greylist:300"            # ... greylist[:SECONDS] (rcpt stage only), ...

    [[rules]]
    stage = "data"
    sender = ["flaky@*"]
    action = "hangup:512"              # ... hangup[:BYTES of DATA read first], or "accept"
    delay = 2.5                        # seconds of (real) latency before answering

    [[rules]]
    stage = "mail"
    tls = false                        # only sessions that did not STARTTLS
    action = "gmail.tls.5xx"

    [[rules]]
    stage = "mail"
    spf = ["fail", "softfail"]         # the MX's own SPF check of MAIL FROM (RFC 7208)
    action = "gmail.unauthenticated.5xx"

Conditions: ``source`` is a list of networks (a bare address is one host) holding the
client address. ``recipient`` (rcpt and data stages; at data any accepted recipient) and
``sender`` (mail, rcpt, data) are address patterns, case-insensitive: ``local@domain``
exact, ``@domain`` any local part, ``local@`` any domain, ``*`` and ``?`` globs in either
part, a pattern without ``@`` a domain, and ``<>`` the null reverse-path. ``spf`` (mail,
rcpt, data) lists SPF results (pass, fail, softfail, neutral, none, temperror, permerror)
of the MX's own check of MAIL FROM against the client address, where the MX has one (the
fake internet's MXs check against the fake DNS, as a receiver would). Every condition
given must hold; within a list one entry is enough.

Actions: ``accept``; a reply (4xx/5xx refuses, 421 also closes the connection, 2xx accepts
with that text at mail/rcpt/data); ``greylist`` refuses the first attempt of a triplet
(client address, sender, recipient) with 451 4.7.1 and every retry until the delay has
passed on the MX's clock, then accepts; ``hangup`` closes without a reply (at data after
reading that many bytes of the message; at connect before the greeting).
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import Literal, cast, get_args

from fakes.mx import catalogue
from fakes.mx.catalogue import Reply

__all__ = [
    "ACCEPT",
    "STAGES",
    "Accept",
    "Action",
    "Context",
    "Decision",
    "Greylist",
    "HangUp",
    "Policy",
    "Rule",
    "Stage",
    "match_address",
    "parse_action",
]

Stage = Literal["connect", "ehlo", "mail", "rcpt", "data"]
STAGES: tuple[Stage, ...] = get_args(Stage)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Accept:
    """Go on as a healthy MX would."""

    def __str__(self) -> str:
        return "accept"


@dataclass(frozen=True)
class Greylist:
    """Tempfail a (client address, sender, recipient) triplet until ``delay`` has passed."""

    delay: float = 300.0
    reply: Reply = field(default_factory=lambda: catalogue.reply("greylist.generic.4xx"))

    def __str__(self) -> str:
        short = f"{self.delay:g}"
        return f"greylist:{short if float(short) == self.delay else repr(self.delay)}"


@dataclass(frozen=True)
class HangUp:
    """Close the connection without a reply; at DATA after reading ``after`` bytes."""

    after: int = 0

    def __str__(self) -> str:
        return f"hangup:{self.after}" if self.after else "hangup"


Action = Accept | Reply | Greylist | HangUp
ACCEPT = Accept()


def parse_action(text: str) -> Action:
    """``accept``, ``greylist[:SECONDS]``, ``hangup[:BYTES]``, a catalogue name or a reply."""
    word, _, arg = text.strip().partition(":")
    try:
        if word == "accept" and not arg:
            return ACCEPT
        if word == "greylist":
            return Greylist(float(arg)) if arg else Greylist()
        if word == "hangup":
            return HangUp(int(arg)) if arg else HangUp()
    except ValueError:
        raise ValueError(f"bad action argument: {text!r}") from None
    if text.strip() in catalogue.ENTRIES:
        return catalogue.reply(text.strip())
    if text.strip()[:1].isdigit():
        return Reply.parse(text)
    raise ValueError(f"unknown action {text!r}: want accept, greylist[:S], hangup[:N], "
                     "a catalogue name or 'CODE X.Y.Z text'")  # fmt: skip


def _action_text(action: Action) -> str:
    if isinstance(action, Reply) and action.name:
        return action.name
    return str(action)


def match_address(pattern: str, address: str) -> bool:
    """Whether ``address`` ("" for the null path) matches ``pattern`` (see module doc)."""
    pattern = pattern.strip().lower()
    if not address or pattern == "<>":
        return not address and pattern == "<>"
    local_pat, at, domain_pat = pattern.rpartition("@")
    if not at:
        local_pat, domain_pat = "*", pattern
    local, _, domain = address.lower().rpartition("@")
    return fnmatchcase(local, local_pat or "*") and fnmatchcase(domain, domain_pat or "*")


@dataclass(frozen=True)
class Context:
    """What a rule can look at when a stage is reached."""

    source: str
    tls: bool = False
    helo: str = ""
    sender: str | None = None  # "" is the null reverse-path; None before MAIL
    recipients: tuple[str, ...] = ()  # at rcpt the one being tried; at data all accepted
    spf: str | None = None  # the MX's SPF result for MAIL FROM; None: not checked


def _strings(value: str | Iterable[str]) -> tuple[str, ...]:
    out = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(v, str) for v in out):
        raise TypeError("address patterns must be strings")
    return out


@dataclass(frozen=True, init=False)
class Rule:
    """One behaviour: at ``stage``, when every given condition holds, take ``action``."""

    stage: Stage
    action: Action
    source: tuple[Network, ...]
    recipient: tuple[str, ...]
    sender: tuple[str, ...]
    tls: bool | None
    delay: float
    name: str
    spf: tuple[str, ...]

    def __init__(
        self,
        stage: Stage = "rcpt",
        action: Action | str = ACCEPT,
        *,
        source: str | Network | Iterable[str | Network] = (),
        recipient: str | Iterable[str] = (),
        sender: str | Iterable[str] = (),
        tls: bool | None = None,
        delay: float = 0.0,
        name: str = "",
        spf: str | Iterable[str] = (),
    ) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; want one of {', '.join(STAGES)}")
        act = parse_action(action) if isinstance(action, str) else action
        sources = (source,) if isinstance(source, str | Network) else tuple(source)
        nets = tuple(ipaddress.ip_network(s, strict=False) for s in sources)
        recipients, senders = _strings(recipient), _strings(sender)
        if recipients and stage not in ("rcpt", "data"):
            raise ValueError(f"a recipient condition cannot be checked at {stage}")
        if senders and stage not in ("mail", "rcpt", "data"):
            raise ValueError(f"a sender condition cannot be checked at {stage}")
        spf_results = tuple(r.lower() for r in _strings(spf))
        if spf_results and stage not in ("mail", "rcpt", "data"):
            raise ValueError(f"an spf condition cannot be checked at {stage}")
        unknown = set(spf_results) - set(SPF_RESULTS)
        if unknown:
            raise ValueError(f"unknown SPF result {sorted(unknown)}: want {', '.join(SPF_RESULTS)}")
        if isinstance(act, Greylist) and stage != "rcpt":
            raise ValueError("greylisting happens at the rcpt stage")
        if isinstance(act, HangUp) and act.after and stage != "data":
            raise ValueError("hangup after N bytes is for the data stage")
        if tls is not None and not isinstance(tls, bool):
            raise TypeError("tls must be true or false")
        if not delay >= 0:
            raise ValueError("delay must be a number of seconds, not negative")
        for key, value in (
            ("stage", stage),
            ("action", act),
            ("source", nets),
            ("recipient", recipients),
            ("sender", senders),
            ("tls", tls),
            ("delay", float(delay)),
            ("name", name),
            ("spf", spf_results),
        ):
            object.__setattr__(self, key, value)

    def matches(self, stage: Stage, ctx: Context) -> bool:
        if stage != self.stage:
            return False
        if self.tls is not None and self.tls != ctx.tls:
            return False
        if self.source:
            addr = ipaddress.ip_address(ctx.source)
            if not any(addr in net for net in self.source):
                return False
        if self.sender and (
            ctx.sender is None or not any(match_address(p, ctx.sender) for p in self.sender)
        ):
            return False
        if self.spf and ctx.spf not in self.spf:
            return False
        return not self.recipient or any(
            match_address(p, r) for p in self.recipient for r in ctx.recipients
        )

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"stage": self.stage, "action": _action_text(self.action)}
        if self.name:
            out = {"name": self.name, **out}
        if self.source:
            out["source"] = [str(n) for n in self.source]
        if self.recipient:
            out["recipient"] = list(self.recipient)
        if self.sender:
            out["sender"] = list(self.sender)
        if self.tls is not None:
            out["tls"] = self.tls
        if self.spf:
            out["spf"] = list(self.spf)
        if self.delay:
            out["delay"] = self.delay
        return out


@dataclass(frozen=True)
class Decision:
    """What the MX does at a stage, and which rule said so (None: the default)."""

    action: Action
    delay: float = 0.0
    rule: str | None = None


_RULE_KEYS = {"name", "stage", "action", "source", "recipient", "sender", "tls", "delay", "spf"}
# RFC 7208 2.6: the results an spf condition may name.
SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
_POLICY_KEYS = {"default", "default_stage", "auth", "auth_require_tls", "rules"}


@dataclass(frozen=True, init=False)
class Policy:
    """Rules tried in order at each stage (first match wins), then the default."""

    rules: tuple[Rule, ...]
    default: Action
    default_stage: Stage
    auth: Mapping[str, str] = field(hash=False)
    auth_require_tls: bool

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        default: Action | str = ACCEPT,
        *,
        default_stage: Stage = "rcpt",
        auth: Mapping[str, str] | None = None,
        auth_require_tls: bool = True,
    ) -> None:
        # A default rule checks the same things a rule does (greylist at rcpt, ...).
        dflt = Rule(default_stage, default).action
        object.__setattr__(self, "rules", tuple(rules))
        object.__setattr__(self, "default", dflt)
        object.__setattr__(self, "default_stage", default_stage)
        object.__setattr__(self, "auth", MappingProxyType(dict(auth or {})))
        object.__setattr__(self, "auth_require_tls", auth_require_tls)

    @classmethod
    def accept_all(cls, auth: Mapping[str, str] | None = None) -> Policy:
        """Accept everything (a sink, or with ``auth`` a smarthost)."""
        return cls(auth=auth)

    def decide(self, stage: Stage, ctx: Context) -> Decision:
        for i, rule in enumerate(self.rules):
            if rule.matches(stage, ctx):
                return Decision(rule.action, rule.delay, rule.name or f"rule {i + 1}")
        return Decision(self.default if stage == self.default_stage else ACCEPT)

    @classmethod
    def from_toml(cls, text: str) -> Policy:
        """Read the format in this module's docstring; ValueError says what is wrong."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"policy is not valid TOML: {e}") from None
        _no_unknown_keys(doc, _POLICY_KEYS, "policy")
        rules = []
        for i, raw in enumerate(doc.get("rules", []), 1):
            if not isinstance(raw, dict):
                raise ValueError(f"rules[{i}] is not a table")
            _no_unknown_keys(raw, _RULE_KEYS, f"rules[{i}]")
            try:
                rules.append(
                    Rule(
                        cast(Stage, raw.get("stage", "rcpt")),
                        str(raw.get("action", "accept")),
                        source=raw.get("source", ()),
                        recipient=raw.get("recipient", ()),
                        sender=raw.get("sender", ()),
                        tls=raw.get("tls"),
                        delay=float(raw.get("delay", 0.0)),
                        name=str(raw.get("name", "")),
                        spf=raw.get("spf", ()),
                    )
                )
            except (ValueError, TypeError) as e:
                raise ValueError(f"rules[{i}]: {e}") from None
        auth = doc.get("auth")
        if auth is not None and not (
            isinstance(auth, dict) and all(isinstance(v, str) for v in auth.values())
        ):
            raise ValueError("auth must be a table of user = password strings")
        return cls(
            rules,
            str(doc.get("default", "accept")),
            default_stage=cast(Stage, doc.get("default_stage", "rcpt")),
            auth=auth,
            auth_require_tls=bool(doc.get("auth_require_tls", True)),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        return cls.from_toml(Path(path).read_text(encoding="utf-8"))

    def to_toml(self) -> str:
        """This policy in the TOML format that :meth:`from_toml` reads."""
        lines = [
            f"default = {_toml(_action_text(self.default))}",
            f"default_stage = {_toml(self.default_stage)}",
            f"auth_require_tls = {_toml(self.auth_require_tls)}",
        ]
        if self.auth:
            pairs = ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in self.auth.items())
            lines.append(f"auth = {{ {pairs} }}")
        for rule in self.rules:
            lines += ["", "[[rules]]"]
            lines += [f"{k} = {_toml(v)}" for k, v in rule.to_dict().items()]
        return "\n".join(lines) + "\n"


def _no_unknown_keys(table: Mapping[str, object], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _toml(value: object) -> str:
    """A TOML value for the few types a policy holds (JSON strings are TOML strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        # JSON escapes what TOML must escape, except DEL.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
