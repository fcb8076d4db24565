"""Organizational domains (RFC 7489 3.2) from the bundled Public Suffix List.

public_suffix_list.dat is a copy of https://publicsuffix.org/list/public_suffix_list.dat
(Mozilla Public License 2.0, see the file's header), taken from the ``publicsuffixlist``
package. It is read once, never fetched at run time; refresh it by copying a newer one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

__all__ = ["PublicSuffixList", "default_list", "organizational_domain"]

MAX_KEPT = 10_000  # organizational domains remembered per list


@dataclass(frozen=True)
class PublicSuffixList:
    """The rules of the list: plain, wildcard ("*.ck") and exception ("!www.ck") rules."""

    rules: frozenset[str]
    wildcards: frozenset[str]  # the parent of each "*." rule
    exceptions: frozenset[str]
    # Organizational domains found, by name: DMARC asks for the same few with every message.
    _orgs: dict[str, str] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> PublicSuffixList:
        rules: set[str] = set()
        wildcards: set[str] = set()
        exceptions: set[str] = set()
        for line in text.splitlines():
            rule = line.strip().split(" ", 1)[0]
            if not rule or rule.startswith("//"):
                continue
            rule = _idna(rule)
            if rule.startswith("!"):
                exceptions.add(rule[1:])
            elif rule.startswith("*."):
                wildcards.add(rule[2:])
            else:
                rules.add(rule)
        return cls(frozenset(rules), frozenset(wildcards), frozenset(exceptions))

    def public_suffix(self, domain: str) -> str:
        """The longest public suffix of ``domain`` (the PSL algorithm; "*" is the default rule)."""
        labels = _idna(domain.lower().rstrip(".")).split(".")
        best = labels[-1]  # the implicit "*" rule
        for i in range(len(labels) - 1, -1, -1):
            candidate = ".".join(labels[i:])
            if candidate in self.exceptions:
                # An exception rule: its parent is the suffix, and it wins outright.
                return ".".join(labels[i + 1 :])
            if candidate in self.rules:
                best = candidate
            parent = ".".join(labels[i + 1 :])
            if i + 1 < len(labels) and parent in self.wildcards:
                best = candidate
        return best

    def organizational_domain(self, domain: str) -> str:
        """RFC 7489 3.2: the public suffix plus one label (the domain itself if it is a suffix)."""
        found = self._orgs.get(domain)
        if found is None:
            if len(self._orgs) >= MAX_KEPT:
                self._orgs.clear()
            found = self._orgs[domain] = self._organizational_domain(domain)
        return found

    def _organizational_domain(self, domain: str) -> str:
        name = _idna(domain.lower().rstrip("."))
        suffix = self.public_suffix(name)
        if name == suffix:
            return name
        labels = name.split(".")
        n = len(suffix.split(".")) + 1
        return ".".join(labels[-n:])


def _idna(text: str) -> str:
    """The A-label form, so that a U-label rule and an xn-- name compare equal."""
    if text.isascii():
        return text.lower()
    out = []
    for label in text.lower().split("."):
        if label.isascii() or label in ("*", "!"):
            out.append(label)
            continue
        prefix = "!" if label.startswith("!") else ""
        try:
            out.append(prefix + label.removeprefix("!").encode("idna").decode("ascii"))
        except UnicodeError:
            out.append(label)
    return ".".join(out)


@functools.cache
def default_list() -> PublicSuffixList:
    """The bundled list, parsed once per process."""
    text = resources.files("reference.auth").joinpath("public_suffix_list.dat").read_text("utf-8")
    return PublicSuffixList.parse(text)


def organizational_domain(domain: str) -> str:
    return default_list().organizational_domain(domain)
