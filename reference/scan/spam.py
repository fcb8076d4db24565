"""The spam scorer: the rule table and phishing checks over a parsed message, and URIBL.

Mechanism only: it turns a parsed message into a :class:`Score` (the rules that fired, with
their weights); what a score means for the SMTP dialogue is ``reference.policy.spam``'s job.
The parse is :mod:`reference.scan.analysis` (links and their domains in
:mod:`reference.scan.links`), the rules :mod:`reference.scan.rules`.

The rules are data (:data:`RULES`), deliberately few and each tested; this is not
SpamAssassin, whose thousands of rules are tuned against live corpora. Every step is
bounded (bytes parsed, MIME parts walked, text kept, links followed, domains looked up)
and :func:`parse` never raises, whatever the bytes: broken MIME is a fact about the
message (the ``MIME_BROKEN`` rule), never an exception.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dns.asyncresolver

from reference.auth.lookup import DnsTempError, Lookup
from reference.auth.psl import PublicSuffixList, default_list
from reference.log import event
from reference.scan.analysis import Parsed, parse
from reference.scan.links import Link, ip_host, is_domain, registered_domain
from reference.scan.rules import RULES, Hit, Rule, Score, phishing, with_weights

# The scorer's face for reference.policy.spam: parse, score, look up; the rest lives in
# analysis (the parse), links (URLs and domains) and rules (the rule table).
__all__ = ["RULES", "UriZone", "analyse", "parse", "uribl", "with_weights"]

log = logging.getLogger("mailspec.spam")

MAX_URIBL_DOMAINS = 20  # distinct registered domains looked up per message


# -- scoring ------------------------------------------------------------------------------------


def analyse(
    parsed: Parsed,
    rules: Sequence[Rule] = RULES,
    *,
    psl: PublicSuffixList | None = None,
) -> Score:
    """The rule table and the phishing checks over a parsed message (no network)."""
    hits: list[Hit] = []
    for rule in rules:
        try:
            detail = rule.test(parsed)
        except Exception:  # a rule bug must not lose mail: that rule stays silent
            log.exception("spam.rule-error rule=%s", rule.name)
            continue
        if detail is not None:
            hits.append(Hit(rule.name, rule.weight, detail))
    return Score(tuple(hits) + tuple(phishing(parsed, psl)))


# -- URI blocklists ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UriZone:
    """A URI blocklist (SURBL/URIBL style, RFC 5782 2.3): ``<domain>.<zone>`` is listed.

    ``codes`` maps a return address to a weight; empty takes any 127/8 answer at ``weight``.
    """

    zone: str
    codes: dict[str, float] = field(default_factory=dict)
    weight: float = 10.0


def _refused_answer(code: str) -> bool:
    # 127.0.0.1 (URIBL, SURBL) and 127.255.255.x (Spamhaus) mean "query refused" (public
    # resolver, over quota), not "listed".
    return code == "127.0.0.1" or code.startswith("127.255.255.")


async def uribl(
    resolver: dns.asyncresolver.Resolver | Lookup,
    zones: Sequence[UriZone],
    links: Iterable[Link],
    *,
    psl: PublicSuffixList | None = None,
    limit: int = MAX_URIBL_DOMAINS,
) -> list[Hit]:
    """The registered domains of the links, looked up in each zone; failures score nothing.

    Through a :class:`Lookup` (the spam check keeps one), answers are kept for their TTL
    on its clock, as the authentication checks' are."""
    lookup = resolver if isinstance(resolver, Lookup) else Lookup(resolver)
    psl = psl or default_list()
    domains: list[str] = []
    for lk in links:
        if not lk.host or ip_host(lk.host) or not is_domain(lk.host, psl):
            continue
        d = registered_domain(lk.host, psl)
        if d not in domains:
            domains.append(d)
        if len(domains) >= limit:
            break

    async def one(domain: str, z: UriZone) -> Hit | None:
        name = f"{domain}.{z.zone}"
        try:
            answer = await lookup.addresses(name, "A")  # none: NXDOMAIN or no A record
        except DnsTempError as e:
            event(log, "uribl.temperror", zone=z.zone, domain=domain, error=str(e))
            return None
        weight = 0.0
        for r in answer.records:
            code = str(r)
            if not code.startswith("127.") or _refused_answer(code):
                if _refused_answer(code):
                    event(log, "uribl.refused", level=logging.WARNING, zone=z.zone, code=code)
                continue
            if z.codes and code not in z.codes:
                continue
            weight = max(weight, z.codes.get(code, z.weight))
        if weight <= 0:
            return None
        return Hit("URIBL_" + re.sub(r"\W", "_", z.zone.upper()), weight, domain)

    found = await asyncio.gather(*(one(d, z) for d in domains for z in zones))
    # One hit per zone (the heaviest): a message with ten listed links is no more refused.
    best: dict[str, Hit] = {}
    for h in found:
        if h is not None and (h.rule not in best or h.weight > best[h.rule].weight):
            best[h.rule] = h
    return list(best.values())
