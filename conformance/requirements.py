"""Requirements: the ``@requirement`` and ``@needs`` marks, capabilities and requirement ids."""

from __future__ import annotations

import enum
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

__all__ = [
    "CAPABILITIES",
    "FEATURES",
    "NOT_APPLICABLE",
    "NOT_CLAIMED",
    "Level",
    "Requirement",
    "assign_ids",
    "clause_key",
    "feature_of",
    "needs",
    "not_applicable",
    "requirement",
    "source_key",
]

# What a target may grant the suite; a test needing one the target lacks is not applicable.
CAPABILITIES: Mapping[str, str] = {
    "fake-dns": "the target's resolver uses the suite's fake DNS",
    "clock": "the suite can move the target's clock",
    "admin": "the suite can create domains and accounts",
    "proxy-protocol": "the suite may claim client addresses with the PROXY protocol",
    "restart": "the suite can restart the target abruptly (a `restart` command)",
    # Not a grant but part of the platform: every target described in TOML has it (one
    # that does not scan fails, or lists a known deviation); only the in-process reference
    # can lack it, on a machine without clamd.
    "antivirus": "the target scans mail with a virus scanner that knows the EICAR test file",
}

# Platform features a target claims (``features`` in its TOML): a PLATFORM requirement of a
# feature the target does not claim is reported "not claimed", apart from "not applicable"
# (the target cannot be checked) and from "fail" (it was, and fell short). RFC requirements
# never depend on a claim.
FEATURES: Mapping[str, str] = {
    "spam-filter": "inbound and outbound mail is scored for spam; spam is refused or filed",
    "virus-scan": "inbound and outbound mail is scanned; a virus is refused",
    "greylisting": "mail from an unknown client/sender/recipient triple is deferred once",
    "dnsbl": "clients listed in a DNS blocklist are refused or scored",
    "sender-authentication": "SPF, DKIM and DMARC are checked on inbound mail and enforced",
    "dmarc-reports": "DMARC aggregate reports are sent and received",
    "dkim-signing": "outbound mail is DKIM-signed for the sender's domain",
    "rate-limit": "submission is limited in recipients per user and time window",
    "relay-policy": "the relay's bulk lane, delay warnings, maximum age, reputation retries "
    "and smarthost fallback",
    "sender-ownership": "an authenticated user may send only as an address they own",
    "auth-throttling": "failed logins are slowed down, then locked out",
    "special-use": "IMAP mailboxes carry SPECIAL-USE attributes (Sent, Drafts, Junk, ...)",
    "helo-required": "mail without a HELO or EHLO first is refused",
    "sieve": "users' own Sieve filters and out-of-office replies, managed over ManageSieve",
    "addresses": "subaddresses (user+detail), catch-alls, aliases with several targets, "
    "alias domains, deleting accounts",
    "forwarding": "forwarding to addresses elsewhere, with SRS return paths and their bounces",
    "classes-of-service": "named bundles of quota, rate limits, largest message and "
    "permissions for domains and accounts (account > domain > default)",
    "access-lists": "administrators' access lists by client, HELO, sender and recipient: "
    "reject, accept (no greylisting), restrict to authenticated senders",
    "lists": "distribution lists: public and private, members here and elsewhere, list "
    "headers, bounces to the list, From rewritten for DMARC-strict posters",
    "archive": "archive-all accounts: mail to and from an account or domain copied into a "
    "read-only archive account",
}
# PLATFORM clause (or the clause a dotted one starts with) -> the feature that promises it.
_FEATURE_OF: Mapping[str, str] = {
    "inbound.spam": "spam-filter",
    "outbound.spam": "spam-filter",
    "inbound.virus": "virus-scan",
    "outbound.virus": "virus-scan",
    "inbound.greylist": "greylisting",
    "inbound.dnsbl": "dnsbl",
    "inbound.spf": "sender-authentication",
    "inbound.dkim": "sender-authentication",
    "inbound.dmarc": "sender-authentication",
    "dmarc.reports": "dmarc-reports",
    "dmarc.reports-received": "dmarc-reports",
    "dmarc.reports-loop": "dmarc-reports",
    "dmarc.reports-sent": "dmarc-reports",
    "outbound.dkim": "dkim-signing",
    "outbound.ratelimit": "rate-limit",
    "outbound.bulk-lane": "relay-policy",
    "outbound.delay-warning": "relay-policy",
    "outbound.max-age": "relay-policy",
    "outbound.reputation": "relay-policy",
    "outbound.smarthost": "relay-policy",
    "outbound.sender": "sender-ownership",
    "outbound.sender-header": "sender-ownership",
    "submission.auth-lockout": "auth-throttling",
    "submission.auth-slowdown": "auth-throttling",
    "mailbox.special-use": "special-use",
    "smtp.helo-required": "helo-required",
    "sieve": "sieve",
    "addresses": "addresses",
    "forwarding": "forwarding",
    "access": "access-lists",
    "cos": "classes-of-service",
    "lists": "lists",
    "archive": "archive",
}
assert set(_FEATURE_OF.values()) <= set(FEATURES)

# The prefix of a skip reason that means "not claimed": the target does not claim the feature.
NOT_CLAIMED = "not claimed: "

# The prefix of a skip reason that means "not applicable"; the report keys on it, so a skip
# for any other reason can never be mistaken for one.
NOT_APPLICABLE = "not applicable: "

PLATFORM = "PLATFORM"
_SOURCE = re.compile(r"^(RFC[1-9][0-9]*|PLATFORM)$")
_CLAUSE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Level(enum.StrEnum):
    """RFC 2119 requirement levels; platform policies use the same words."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"


@dataclass(frozen=True)
class Requirement:
    """One promise: an RFC clause or a platform policy. Several tests may check it."""

    source: str
    clause: str
    level: Level
    title: str

    def __post_init__(self) -> None:
        if not _SOURCE.match(self.source):
            raise ValueError(f"requirement source {self.source!r}: expected RFCnnnn or PLATFORM")
        if not _CLAUSE.match(self.clause):
            raise ValueError(
                f"requirement clause {self.clause!r}: expected a section such as 4.5.2 "
                "or a policy id such as outbound.ratelimit"
            )
        if not self.title.strip():
            raise ValueError("requirement title is empty")

    @property
    def base_id(self) -> str:
        """``RFC5321-4.5.2``: the id unless another requirement shares source and clause."""
        return f"{self.source}-{self.clause}"

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two marks the same requirement (the level must then agree too)."""
        return (self.source, self.clause, _normalise_title(self.title))

    @classmethod
    def from_mark(cls, mark: pytest.Mark) -> Requirement:
        """Read a ``requirement`` mark, whether made by :func:`requirement` or by hand."""
        args = list(mark.args)
        kwargs = dict(mark.kwargs)
        names = ("source", "clause", "level", "title")
        values: dict[str, Any] = dict(zip(names, args, strict=False))
        for name in names[len(args) :]:
            if name not in kwargs:
                raise ValueError(f"requirement mark without {name}: {mark}")
            values[name] = kwargs.pop(name)
        kwargs.pop("needs", None)
        if kwargs or len(args) > len(names):
            raise ValueError(f"requirement mark with unexpected arguments: {mark}")
        return cls(
            source=str(values["source"]),
            clause=str(values["clause"]),
            level=_level(values["level"]),
            title=" ".join(str(values["title"]).split()),
        )


def _level(value: object) -> Level:
    try:
        return Level(str(value).upper())
    except ValueError:
        raise ValueError(f"requirement level {value!r}: expected MUST, SHOULD or MAY") from None


def _normalise_title(title: str) -> str:
    return " ".join(title.split()).casefold()


def _check_capabilities(names: Iterable[str]) -> tuple[str, ...]:
    out = tuple(names)
    for name in out:
        if name not in CAPABILITIES:
            known = ", ".join(sorted(CAPABILITIES))
            raise ValueError(f"unknown capability {name!r} (known: {known})")
    return out


def requirement(
    source: str,
    clause: str,
    level: str | Level,
    title: str,
    *,
    needs: Iterable[str] = (),
) -> pytest.MarkDecorator:
    """Mark a test (or class, or module via ``pytestmark``) as checking one requirement.

    ``@requirement("RFC5321", "4.5.2", "MUST", "dot-stuffing is removed")``;
    ``needs=("clock",)`` declares capabilities the test cannot run without. Arguments are
    checked here, at import, so a typo fails collection instead of a report row.
    """
    req = Requirement(source, clause, _level(level), " ".join(title.split()))
    caps = _check_capabilities(needs)
    return pytest.mark.requirement(req.source, req.clause, req.level.value, req.title, needs=caps)


def needs(*capabilities: str) -> pytest.MarkDecorator:
    """Declare capabilities a test needs: ``@needs("fake-dns", "admin")``."""
    return pytest.mark.needs(*_check_capabilities(capabilities))


def not_applicable(reason: str) -> NoReturn:
    """Stop the current test as not applicable to this target (never a pass)."""
    pytest.skip(NOT_APPLICABLE + reason)


def feature_of(source: str, clause: str) -> str | None:
    """The platform feature a requirement belongs to; None for RFCs and unconditional policies
    (no open relay, no STARTTLS injection, bare CR/LF: every mail system owes those)."""
    if source != PLATFORM:
        return None
    parts = clause.split(".")
    for n in range(len(parts), 0, -1):
        feature = _FEATURE_OF.get(".".join(parts[:n]))
        if feature is not None:
            return feature
    return None


def needed_capabilities(marks: Iterable[pytest.Mark]) -> frozenset[str]:
    """The capabilities that ``requirement(needs=...)`` and ``needs`` marks ask for."""
    out: set[str] = set()
    for mark in marks:
        if mark.name == "needs":
            out.update(_check_capabilities(str(a) for a in mark.args))
        elif mark.name == "requirement":
            wanted = mark.kwargs.get("needs", ())
            # A hand-made mark may say needs="clock": one name, not five letters.
            names = (wanted,) if isinstance(wanted, str) else wanted
            out.update(_check_capabilities(str(a) for a in names))
    return frozenset(out)


def assign_ids(requirements: Iterable[Requirement]) -> dict[tuple[str, str, str], str]:
    """Give each distinct requirement a stable, unique id, keyed by :attr:`Requirement.key`.

    A requirement alone at its source and clause is ``RFC5321-4.5.2``. When several share
    them, each gets a suffix made from its own title (``RFC5321-4.1.4-3f9a1c``): unlike a
    counter, it does not change when another requirement is added or when a run selects
    fewer tests from the same group.
    """
    groups: dict[tuple[str, str], set[tuple[str, str, str]]] = defaultdict(set)
    for req in requirements:
        groups[(req.source, req.clause)].add(req.key)
    ids: dict[tuple[str, str, str], str] = {}
    for (source, clause), keys in groups.items():
        if len(keys) == 1:
            ids[next(iter(keys))] = f"{source}-{clause}"
            continue
        digests = {key: hashlib.sha256(key[2].encode()).hexdigest() for key in keys}
        width = 6
        # Lengthen the suffix until the group's titles stop colliding (in practice never).
        while len({d[:width] for d in digests.values()}) < len(keys):
            width += 2
        for key, digest in digests.items():
            ids[key] = f"{source}-{clause}-{digest[:width]}"
    return ids


def source_key(source: str) -> tuple[int, int, str]:
    """Order sources: RFCs by number, then platform policies."""
    if source.startswith("RFC") and source[3:].isdigit():
        return (0, int(source[3:]), source)
    return (1, 0, source)


def clause_key(clause: str) -> tuple[tuple[int, int, str], ...]:
    """Order clauses numerically part by part: 4.1.1.10 after 4.1.1.9; names alphabetically."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.casefold())
        for part in re.split(r"[.]", clause)
    )
