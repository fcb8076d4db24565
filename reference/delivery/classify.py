"""The relay's reply classifier: what a remote MX's refusal means, and what to do about it.

Learned from the texts large receivers send (Gmail, Microsoft, Yahoo, DNS blocklists as
Postfix renders them, greylisting daemons). Order matters: the first rule that matches
wins, and the strongest evidence (a blocklist named) comes first.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["Action", "Category", "Classified", "classify"]


class Category(enum.StrEnum):
    DELIVERED = "delivered"
    BLOCKLIST = "blocklist"  # the source IP is on a DNS blocklist
    REPUTATION = "reputation"  # the receiver's own judgement of the source IP
    RATE = "rate"  # too much, too fast
    GREYLIST = "greylist"  # retry later and it will pass
    SPAM = "spam"  # this message's content
    AUTH = "auth"  # SPF, DKIM or DMARC did not pass
    TLS = "tls"  # encryption required
    RECIPIENT = "recipient"  # no such mailbox
    CAPACITY = "capacity"  # mailbox or server full, message too big
    POLICY = "policy"  # the receiver's local policy
    SERVER = "server"  # the receiver's own trouble


class Action(enum.StrEnum):
    DELIVERED = "delivered"
    TEMPFAIL = "tempfail"  # back off and retry from the queue
    REPUTATION = "reputation"  # retry at once from another source address, then smarthost
    PERMANENT = "permanent"  # bounce with a DSN


@dataclass(frozen=True)
class Classified:
    action: Action
    category: Category


_I = re.IGNORECASE
_RULES: list[tuple[Category, re.Pattern[str]]] = [
    (
        Category.BLOCKLIST,
        re.compile(
            r"block ?list|black ?list|blocklisted|blacklisted|\bdnsbl\b|\brbl\b|spamhaus|"
            r"spamcop|barracuda|sorbs|uceprotect|blocked using|banned sending ip|"
            r"\[BL\d+\]|\(S3140\)|\(S3150\)",
            _I,
        ),
    ),
    (
        Category.REPUTATION,
        re.compile(
            r"reputation|\[TSS?\d+\]|from your ip address has been blocked|"
            r"ip (address )?(is|has been) (blocked|not authorized|banned)|poorly rated",
            _I,
        ),
    ),
    (
        Category.RATE,
        re.compile(
            r"rate limit|too (many|fast|quickly)|receiving mail too quickly|server busy|"
            r"unexpected volume|exceeded|throttl",
            _I,
        ),
    ),
    (Category.GREYLIST, re.compile(r"gr[ae]y ?list|^try again later\b|please retry later", _I)),
    (Category.AUTH, re.compile(r"dmarc|\bspf\b|\bdkim\b|unauthenticated|authenticat", _I)),
    (Category.TLS, re.compile(r"\btls\b|starttls|encrypt", _I)),
    (Category.SPAM, re.compile(r"spam|unsolicited|suspicious|virus|malware|phish", _I)),
    (
        Category.RECIPIENT,
        re.compile(
            r"no such (user|mailbox)|user unknown|unknown user|does not exist|not found|"
            r"mailbox unavailable|doesn't have an? \S+ account|invalid recipient",
            _I,
        ),
    ),
    (
        Category.CAPACITY,
        re.compile(r"insufficient|storage|quota|full|too big|too large|busy|not available", _I),
    ),
    (Category.POLICY, re.compile(r"policy|relay|denied|not accepted|refused", _I)),
]

# Enhanced codes that decide on their own (RFC 3463 subjects and details).
_ENHANCED: dict[str, Category] = {
    "1.1": Category.RECIPIENT,
    "1.10": Category.RECIPIENT,
    "2.1": Category.RECIPIENT,
    "2.2": Category.CAPACITY,
    "3.4": Category.CAPACITY,
    "3.1": Category.CAPACITY,
    "7.26": Category.AUTH,
}


def classify(code: int, enhanced: str, text: str) -> Classified:
    """What a reply means: ``classify(550, "5.7.1", "... blocked using zen.spamhaus.org")``."""
    if 200 <= code < 400:
        return Classified(Action.DELIVERED, Category.DELIVERED)
    category: Category | None = None
    for cat, pattern in _RULES:
        if pattern.search(text):
            category = cat
            break
    if category is None or category in (Category.POLICY, Category.SERVER):
        detail = enhanced.split(".", 1)[1] if enhanced.count(".") == 2 else ""
        category = _ENHANCED.get(detail, category)
    if category is None:
        category = Category.SERVER if code < 500 else Category.POLICY
    if category in (Category.BLOCKLIST, Category.REPUTATION):
        return Classified(Action.REPUTATION, category)
    return Classified(Action.TEMPFAIL if code < 500 else Action.PERMANENT, category)
