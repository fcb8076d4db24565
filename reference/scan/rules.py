"""The spam rule table: what each rule looks for in a parsed message, and its weight."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from reference.auth.psl import PublicSuffixList, default_list
from reference.scan.analysis import Parsed, zip_names
from reference.scan.links import ascii_host, ip_host, is_domain, lookalike_of, registered_domain

__all__ = [
    "DANGEROUS",
    "GTUBE",
    "GTUBE_JUNK",
    "RULES",
    "Hit",
    "Rule",
    "Score",
    "Test",
    "phishing",
    "with_weights",
]

# The Generic Test for Unsolicited Bulk Email: every filter treats it as certain spam.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# Rspamd's "add header" variant: scores exactly the junk threshold (the policy sets the
# weight), so the Junk filing can be tested end to end. It only ever adds score; the
# "no action" variant, which would let anyone bypass the filter, is not honoured.
GTUBE_JUNK = "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """A rule that fired: its name, its weight and, for the log, what made it fire."""

    rule: str
    weight: float
    detail: str = ""


@dataclass(frozen=True)
class Score:
    """The rules that fired; the score is their sum."""

    hits: tuple[Hit, ...] = ()

    @property
    def total(self) -> float:
        return round(sum(h.weight for h in self.hits), 2)

    def plus(self, hits: Iterable[Hit]) -> Score:
        return Score(self.hits + tuple(hits))

    @property
    def rules(self) -> list[str]:
        return [h.rule for h in self.hits]

    def summary(self) -> str:
        """``GTUBE=1000,MISSING_DATE=1`` (heaviest first), for log lines."""
        ordered = sorted(self.hits, key=lambda h: -h.weight)
        return ",".join(f"{h.rule}={h.weight:g}" for h in ordered)


# -- the rule table ----------------------------------------------------------------------------

Test = Callable[[Parsed], str | None]


@dataclass(frozen=True)
class Rule:
    """One rule: ``test`` returns None when it does not fire, else a detail for the log."""

    name: str
    weight: float
    description: str
    test: Test = field(repr=False, compare=False)


_WORD = re.compile(r"\w")


def _phrases(pattern: str) -> Test:
    """A rule that fires on the first phrase of ``pattern`` (lower case) in subject or body.

    The pattern runs on the lower-cased text without IGNORECASE, and its leading word
    boundary is checked by hand: an alternation that starts with ``\\b`` defeats the regex
    engine's first-character scan, which makes the search about three times slower.
    """
    assert pattern == pattern.lower(), "phrase patterns are matched on lower-cased text"
    bounded = pattern.startswith(r"\b")
    rx = re.compile(pattern[2:] if bounded else pattern)

    def test(p: Parsed) -> str | None:
        text, pos = p.phrase_text, 0
        while (m := rx.search(text, pos)) is not None:
            start = m.start()
            if not (bounded and start and _WORD.match(text, start - 1)):
                original = p.subject + "\n" + p.body
                # lower() keeps the length of nearly all text: then show it as written
                shown = original if len(original) == len(text) else text
                return shown[start : m.end()][:60]
            pos = start + 1
        return None

    return test


def _contains(needle: str) -> Test:
    return lambda p: needle[:8] if needle in p.body or needle in p.subject else None


def _subject_caps(p: Parsed) -> str | None:
    letters = [c for c in p.subject if c.isalpha()]
    if len(letters) >= 8 and all(c.isupper() for c in letters):
        return p.subject[:60]
    return None


def _exclaims(p: Parsed) -> str | None:
    if p.subject.count("!") >= 3:
        return "subject"
    if "!!!" in p.body or p.body.count("!") >= 15:
        return "body"
    return None


_DOMAIN_LIKE = re.compile(r"(?:[\w-]{1,63}\.)+[\w-]{2,63}")


def _display_spoof(p: Parsed) -> str | None:
    """From: "service@bank.example" <x@other.test>: the name claims another domain."""
    if not p.from_name or "@" not in p.from_addr:
        return None
    psl = default_list()
    real = registered_domain(ascii_host(p.from_addr.rpartition("@")[2].rstrip(".")), psl)
    for m in _DOMAIN_LIKE.finditer(p.from_name.lower()):
        claimed = m.group(0)
        if is_domain(claimed, psl) and registered_domain(ascii_host(claimed), psl) != real:
            return f"{claimed} vs {real}"
    return None


def _html_little_text(p: Parsed) -> str | None:
    if p.has_html and not p.has_plain and len(p.html_text.split()) < 25:
        return f"{len(p.html_text.split())} words"
    return None


DANGEROUS = frozenset(
    [".exe", ".scr", ".pif", ".com", ".bat", ".cmd", ".js", ".jse", ".vbs", ".vbe", ".wsf",
     ".wsh", ".hta", ".jar", ".msi", ".lnk", ".ps1", ".cpl", ".reg", ".iso", ".img", ".vhd"]
)  # fmt: skip


def _dangerous(name: str) -> bool:
    name = name.lower().strip().rstrip(".")
    return any(name.endswith(ext) for ext in DANGEROUS)


def _executable_attachment(p: Parsed) -> str | None:
    for a in p.attachments:
        if _dangerous(a.filename):
            return a.filename[:80]
        if a.data.startswith(b"PK\x03\x04"):
            for inner in zip_names(a.data):
                if _dangerous(inner):
                    return f"{a.filename[:60]}:{inner[:60]}"
    return None


_BRACKET_IP = re.compile(r"\[(\d{1,4})\.(\d{1,4})\.(\d{1,4})\.(\d{1,4})\]")


def _illegal_received_ip(p: Parsed) -> str | None:
    """A Received field naming an impossible IPv4 literal: written by hand, not by an MTA."""
    for value in p.received:
        for m in _BRACKET_IP.finditer(value):
            octets = [int(g) for g in m.groups()]
            if any(o > 255 for o in octets) or octets[0] == 0 or octets == [255] * 4:
                return m.group(0)
    return None


def _missing(header: str) -> Test:
    key = {"date": "has_date", "message-id": "has_message_id"}[header]
    return lambda p: None if getattr(p, key) else ""


def _broken(p: Parsed) -> str | None:
    return p.broken or None


RULES: tuple[Rule, ...] = (
    Rule("GTUBE", 1000.0, "the GTUBE test string", _contains(GTUBE)),
    Rule("GTUBE_JUNK", 5.0, "the junk-level GTUBE variant (weight: the junk threshold)",
         _contains(GTUBE_JUNK)),
    Rule("MISSING_DATE", 1.0, "no Date header field", _missing("date")),
    Rule("MISSING_MID", 1.0, "no Message-ID header field", _missing("message-id")),
    Rule("SUBJ_ALL_CAPS", 1.5, "the subject is all capital letters", _subject_caps),
    Rule("EXCLAIM_MANY", 1.0, "many exclamation marks", _exclaims),
    Rule("FROM_DISPLAY_SPOOF", 3.0, "From's display name names a domain other than the "
         "address's", _display_spoof),
    Rule("HTML_LITTLE_TEXT", 1.5, "HTML only, with little text", _html_little_text),
    Rule("ATTACH_EXECUTABLE", 4.0, "an executable attachment, or one inside a zip",
         _executable_attachment),
    Rule("RCVD_ILLEGAL_IP", 2.0, "a Received field with an impossible IP address",
         _illegal_received_ip),
    Rule("MIME_BROKEN", 1.0, "MIME structure that cannot be followed", _broken),
    Rule("ADVANCE_FEE", 2.5, "advance-fee and lottery phrases", _phrases(
        r"\b(?:million (?:us )?dollars|next of kin|beneficiary|inheritance fund|lottery|"
        r"you (?:have )?won|claim your (?:prize|reward|winnings)|western union|money ?gram)\b")),
    Rule("PHARMA", 2.5, "pharmacy spam", _phrases(
        r"\b(?:viagra|cialis|levitra|no prescription needed|online pharmacy)\b")),
    Rule("URGENCY", 1.5, "urgency and too-good-to-be-true phrases", _phrases(
        r"\b(?:act now|limited time (?:offer|only)|100% (?:free|guaranteed)|risk[- ]free|"
        r"once in a lifetime|urgent(?:ly)? (?:reply|response))\b")),
    # Every alternative starts with a letter of its own: the regex engine then skips to
    # those letters (a group in first place, as "(?:account|mailbox) ...", made it 4x slower).
    Rule("ACCOUNT_THREAT", 2.0, "'your account is suspended, verify now' phrases", _phrases(
        r"\b(?:verify your (?:account|identity)|"
        r"account (?:has been |was |will be )?(?:suspended|locked|disabled|deactivated)|"
        r"mailbox (?:has been |was |will be )?(?:suspended|locked|disabled|deactivated)|"
        r"confirm your (?:password|identity|billing)|unusual (?:sign-?in|login) activity|"
        r"update your payment)")),
    Rule("CRYPTO_SCAM", 2.0, "crypto-investment scam phrases", _phrases(
        r"\b(?:double your (?:bitcoin|crypto|money|investment)|bitcoin wallet address|"
        r"guaranteed (?:returns|profit))\b")),
    Rule("CLICK_HERE", 0.5, "'click here'", _phrases(r"\bclick here\b")),
)  # fmt: skip


def with_weights(rules: Sequence[Rule], weights: dict[str, float]) -> tuple[Rule, ...]:
    """The rule table with some weights changed (configuration, not code)."""
    return tuple(replace(r, weight=weights.get(r.name, r.weight)) for r in rules)


# -- phishing ----------------------------------------------------------------------------------

_SHOWN_HOST = re.compile(
    r"^(?:(?:https?|ftp)://)?((?:[\w-]{1,63}\.)+[\w-]{2,63})\.?(?::\d+)?(?:[/?#]\S*)?$"
)


def _shown_host(text: str, psl: PublicSuffixList) -> str:
    """The host a link's visible text names, if it reads as a URL or domain."""
    m = _SHOWN_HOST.match(text.strip())
    if m is None or not is_domain(m.group(1), psl):
        return ""
    return ascii_host(m.group(1).rstrip("."))


def phishing(parsed: Parsed, psl: PublicSuffixList | None = None) -> list[Hit]:
    """Deceptive links: text naming one site and going to another, raw IPs, lookalikes."""
    psl = psl or default_list()
    hits: list[Hit] = []
    mismatch = ip = look = ""
    seen: set[str] = set()  # newsletters repeat one host dozens of times
    orgs: dict[str, str] = {}

    def org(host: str) -> str:
        if host not in orgs:
            orgs[host] = registered_domain(host, psl)
        return orgs[host]

    for lk in parsed.links:
        if not lk.host:
            continue
        if lk.anchor and lk.text and not mismatch:
            shown = _shown_host(lk.text, psl)
            if shown and org(shown) != org(lk.host):
                mismatch = f"text={shown} href={lk.host}"
        if lk.host in seen:
            continue
        seen.add(lk.host)
        if not ip and ip_host(lk.host):
            ip = lk.host
        if not look:
            brand = lookalike_of(lk.host, psl)
            if brand:
                look = f"{lk.host}~{brand}"
    _, _, from_domain = parsed.from_addr.rpartition("@")
    if not look and from_domain:
        brand = lookalike_of(ascii_host(from_domain), psl)
        if brand:
            look = f"from {from_domain}~{brand}"
    if mismatch:
        hits.append(Hit("PHISH_LINK_MISMATCH", 4.0, mismatch))
    if ip:
        hits.append(Hit("URL_IP_LITERAL", 2.0, ip))
    if look:
        hits.append(Hit("LOOKALIKE_DOMAIN", 3.5, look))
    return hits
