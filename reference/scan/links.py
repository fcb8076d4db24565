"""Links and where they go: URLs written in text, hosts, registered domains, lookalikes."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from reference.auth.psl import PublicSuffixList, default_list

__all__ = [
    "BRANDS",
    "MAX_LINKS",
    "Link",
    "ascii_host",
    "extract_urls",
    "host_of",
    "ip_host",
    "is_domain",
    "lookalike_of",
    "registered_domain",
]

MAX_LINKS = 200  # links kept per message


@dataclass(frozen=True)
class Link:
    """A link found in the message: where it goes and, for ``<a>``, the text shown for it."""

    url: str
    host: str  # lower case, A-labels; "" when the URL has no usable host
    text: str = ""  # the visible text of an <a> element ("" for a URL in plain text)
    anchor: bool = False


_URL = re.compile(
    r"""(?i)\b(?:(?:https?|ftp)://(?:\[[0-9a-f:.]{2,45}\])?|www\.)[^\s<>"'`{}|\\^\[\]]{0,2000}"""
)
_TRAILING = ".,;:!?)]}'\""
_BARE_PREFIX = re.compile(r"(?i)(?:https?|ftp)://|www\.?")


def extract_urls(text: str, limit: int = MAX_LINKS) -> list[str]:
    """URLs written out in text (``scheme://`` or ``www.``), trailing punctuation removed."""
    found: list[str] = []
    if "://" not in text and "www." not in text.lower():
        return found  # most text has no URL: the regex would try every word for one
    for m in _URL.finditer(text):
        url = m.group(0).rstrip(_TRAILING)
        if _BARE_PREFIX.fullmatch(url):
            continue  # a scheme or "www." with nothing after it
        found.append(url)
        if len(found) >= limit:
            break
    return found


def ascii_host(host: str) -> str:
    if host.isascii():
        return host.lower()
    labels = []
    for label in host.lower().split("."):
        try:
            labels.append(label.encode("idna").decode("ascii") if not label.isascii() else label)
        except UnicodeError:
            labels.append(label)
    return ".".join(labels)


def host_of(url: str) -> str:
    """The host a URL goes to (lower case, A-labels, no trailing dot); "" if none."""
    u = url.strip()
    if u[:4].lower() == "www.":
        u = "http://" + u
    # Browsers read a backslash as a slash: http://bank.example\@evil.test goes to bank.example.
    u = u.replace("\\", "/")
    try:
        parts = urlsplit(u)
        if parts.scheme.lower() not in ("http", "https", "ftp"):
            return ""
        host = parts.hostname or ""
    except ValueError:
        return ""
    return ascii_host(host.rstrip("."))


# -- domains -----------------------------------------------------------------------------------

# RFC 2606/6761 names are not in the PSL but are domains all the same (tests use them).
_RESERVED_TLDS = frozenset({"test", "example", "invalid", "localhost"})


def registered_domain(host: str, psl: PublicSuffixList | None = None) -> str:
    """The registered (organizational) domain of a host name: ``login.bank.example`` ->
    ``bank.example``; an IP address stays itself."""
    if ip_host(host):
        return host
    return (psl or default_list()).organizational_domain(host)


_IPISH = re.compile(r"[0-9a-fx.:]+")
_OBFUSCATED_IP = re.compile(r"(?:0x[0-9a-f]+|\d+)(?:\.(?:0x[0-9a-f]+|\d+)){0,3}")


def ip_host(host: str) -> bool:
    """An IP address, also in the forms browsers accept: ``3221225985``, ``0xc0000201``."""
    if not host or not _IPISH.fullmatch(host):
        return False  # most host names: a letter past f, or a hyphen
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_OBFUSCATED_IP.fullmatch(host))


def is_domain(name: str, psl: PublicSuffixList) -> bool:
    """Looks like a domain name with a real top-level domain (not ``Dr.Who``, ``v2.0``)."""
    labels = name.lower().rstrip(".").split(".")
    if len(labels) < 2 or not all(labels):
        return False
    tld = ascii_host(labels[-1])
    return tld in psl.rules or tld in _RESERVED_TLDS


# Well-known brands phished most often; a registered domain whose first label *looks* like
# one of these without being it is a lookalike (paypa1, rnicrosoft, or apple with a Cyrillic a).
BRANDS = (
    "paypal",
    "apple",
    "microsoft",
    "office365",
    "outlook",
    "google",
    "amazon",
    "netflix",
    "facebook",
    "instagram",
    "linkedin",
    "dropbox",
    "docusign",
    "fedex",
    "chase",
    "wellsfargo",
)

# Confusables folded to one ASCII skeleton: a tiny subset of Unicode TR39's table
# (Cyrillic, Greek and Latin letters that look like ASCII ones), written as escapes.
_CONFUSABLE = str.maketrans(
    {
        **dict.fromkeys("\u0430\u03b1", "a"),
        **dict.fromkeys("\u0435", "e"),
        **dict.fromkeys("\u043e\u03bf", "o"),
        **dict.fromkeys("\u0440\u03c1", "p"),
        **dict.fromkeys("\u0441", "c"),
        **dict.fromkeys("\u0443", "y"),
        **dict.fromkeys("\u0445", "x"),
        **dict.fromkeys("\u0456\u04cf\u03b9\u0131\u0142", "l"),
        **dict.fromkeys("\u0458", "j"),
        **dict.fromkeys("\u0455", "s"),
        **dict.fromkeys("\u0501", "d"),
        **dict.fromkeys("\u04bb", "h"),
        **dict.fromkeys("\u043a\u03ba", "k"),
        **dict.fromkeys("\u0442\u03c4", "t"),
        **dict.fromkeys("\u03bd", "v"),
        **dict.fromkeys("\u0261", "g"),
        "0": "o", "1": "l", "i": "l", "5": "s", "3": "e", "-": "", "_": "",
    }
)  # fmt: skip


def _skeleton(label: str) -> str:
    s = unicodedata.normalize("NFKD", label.lower())
    s = "".join(c for c in s if not unicodedata.combining(c)).translate(_CONFUSABLE)
    return s.replace("rn", "m").replace("vv", "w")


_BRAND_SKELETONS = {_skeleton(b): b for b in BRANDS}


def lookalike_of(host: str, psl: PublicSuffixList | None = None) -> str | None:
    """The brand a host's registered domain imitates without being it, if any: the whole
    first label (``paypa1``), or one of its hyphenated words (``rnicrosoft-365``,
    ``secure-paypa1-login``). A brand's own name as a word (``apple-growers``) is not one."""
    if not host or ip_host(host):
        return None
    label = registered_domain(host, psl).split(".")[0]
    try:
        shown = label.encode("ascii").decode("idna") if label.startswith("xn--") else label
    except UnicodeError:
        shown = label
    words = [w for w in shown.split("-") if w] if "-" in shown else []
    for candidate in (shown, *words[:8]):
        brand = _BRAND_SKELETONS.get(_skeleton(candidate))
        if brand is not None and candidate != brand:
            return brand
    return None
