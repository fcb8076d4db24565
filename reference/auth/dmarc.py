"""DMARC (RFC 7489, with np= from RFC 9091): policy discovery, alignment, disposition.

The mechanism says what the domain owner asks for (``Disposition``); whether we honour
it, and what a mailing list changes, is the policy layer's decision. Every evaluation can
be handed to a :class:`DmarcRecorder`, the seam for aggregate reports.
"""

from __future__ import annotations

import enum
import functools
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from reference.auth.dkim import DkimResult, DkimSignature
from reference.auth.lookup import DnsTempError, Lookup
from reference.auth.psl import PublicSuffixList, default_list
from reference.auth.spf import SpfCheck, SpfResult

__all__ = [
    "Disposition",
    "DmarcEvaluation",
    "DmarcObservation",
    "DmarcRecord",
    "DmarcRecorder",
    "DmarcResult",
    "MemoryRecorder",
    "NullRecorder",
    "aligned",
    "evaluate",
    "parse_record",
]


class DmarcResult(enum.StrEnum):
    """RFC 7489 11.2 (the dmarc method of RFC 8601)."""

    NONE = "none"
    PASS = "pass"
    FAIL = "fail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class Disposition(enum.StrEnum):
    """RFC 7489 6.3 p=: what the domain owner asks receivers to do with failing mail."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"

    def weaker(self) -> Disposition:
        """RFC 7489 6.6.4: outside pct=, the next less strict policy applies."""
        return Disposition.NONE if self is not Disposition.REJECT else Disposition.QUARANTINE


class DmarcSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class DmarcRecord:
    """A parsed DMARC record (RFC 7489 6.3)."""

    p: Disposition
    sp: Disposition
    np: Disposition  # RFC 9091: for subdomains that do not exist
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: str = "0"
    raw: str = ""


@functools.lru_cache(maxsize=1024)
def parse_record(text: str) -> DmarcRecord:
    """RFC 7489 6.3-6.4; unknown tags are ignored, a missing or bad p= is an error
    unless rua= is valid (then p=none, RFC 7489 6.6.3 step 6).

    Kept by its text: every message from a domain brings the same record (the DNS answer's
    TTL says when to ask again)."""
    parts = [p.strip() for p in text.split(";")]
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        raise DmarcSyntaxError("the record must start with v=DMARC1")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        if not part:
            continue
        k, eq, v = part.partition("=")
        if not eq:
            raise DmarcSyntaxError(f"bad tag {part!r}")
        k = k.strip().lower()
        if k not in tags:  # the first occurrence counts
            tags[k] = v.strip()
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip())
    ruf = tuple(u.strip() for u in tags.get("ruf", "").split(",") if u.strip())

    def disposition(value: str | None) -> Disposition | None:
        if value is None:
            return None
        try:
            return Disposition(value.lower())
        except ValueError:
            return None

    p = disposition(tags.get("p"))
    if p is None:
        if rua and all(u.lower().startswith("mailto:") for u in rua):
            p = Disposition.NONE
        else:
            raise DmarcSyntaxError("p= is missing or invalid")
    sp = disposition(tags.get("sp")) or p
    np = disposition(tags.get("np")) or sp
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    if adkim not in ("r", "s"):
        adkim = "r"
    if aspf not in ("r", "s"):
        aspf = "r"
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        pct = 100
    pct = min(100, max(0, pct))
    return DmarcRecord(p, sp, np, adkim, aspf, pct, rua, ruf, tags.get("fo", "0"), text)


def aligned(a: str, b: str, mode: str, psl: PublicSuffixList | None = None) -> bool:
    """RFC 7489 3.1: strict is the same name; relaxed the same organizational domain."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    lst = psl or default_list()
    return lst.organizational_domain(a) == lst.organizational_domain(b)


@dataclass(frozen=True)
class DmarcEvaluation:
    """What DMARC says about one RFC5322.From domain."""

    result: DmarcResult
    from_domain: str
    policy_domain: str = ""  # where the record was found ("" when none)
    org_domain: str = ""
    record: DmarcRecord | None = None
    policy: Disposition = Disposition.NONE  # the p, sp or np that applies
    disposition: Disposition = Disposition.NONE  # what the owner asks for this message
    spf_aligned: bool = False
    dkim_aligned: bool = False
    dkim_domain: str = ""  # the aligned passing d=, for the A-R header
    sampled_out: bool = False  # pct= spared this message the full policy
    aligned_temperror: bool = False  # an SPF/DKIM temperror might have aligned
    reason: str = ""


async def evaluate(
    lookup: Lookup,
    from_domain: str,
    spf: SpfCheck | None,
    dkim: Sequence[DkimSignature],
    *,
    psl: PublicSuffixList | None = None,
    sample: Callable[[], float] = random.random,
) -> DmarcEvaluation:
    """RFC 7489 6.6: the DMARC result and requested disposition for one From domain.

    ``sample`` returns a float in [0, 1) for pct= sampling (inject a fixed one in tests).
    """
    lst = psl or default_list()
    from_domain = from_domain.lower().rstrip(".")
    org = lst.organizational_domain(from_domain)
    try:
        record, policy_domain, error = await _discover(lookup, from_domain, org)
    except DnsTempError as e:
        return DmarcEvaluation(
            DmarcResult.TEMPERROR, from_domain, org_domain=org, reason=f"DNS: {e}"
        )
    if record is None:
        return DmarcEvaluation(
            DmarcResult.PERMERROR if error else DmarcResult.NONE,
            from_domain,
            org_domain=org,
            reason=error or "no DMARC record",
        )
    spf_ok = (
        spf is not None
        and spf.result is SpfResult.PASS
        and aligned(spf.domain, from_domain, record.aspf, lst)
    )
    dkim_pass = [s for s in dkim if s.passed and aligned(s.domain, from_domain, record.adkim, lst)]
    temperror = (
        spf is not None
        and spf.result is SpfResult.TEMPERROR
        and aligned(spf.domain, from_domain, record.aspf, lst)
    ) or any(
        s.result is DkimResult.TEMPERROR and aligned(s.domain, from_domain, record.adkim, lst)
        for s in dkim
    )
    # RFC 7489 6.6.3 / RFC 9091: p for the domain itself, sp (or np) for its subdomains.
    if policy_domain == from_domain:
        policy = record.p
    elif record.np is not record.sp and not await _exists(lookup, from_domain):
        policy = record.np
    else:
        policy = record.sp
    base = DmarcEvaluation(
        DmarcResult.FAIL,
        from_domain,
        policy_domain=policy_domain,
        org_domain=org,
        record=record,
        policy=policy,
        spf_aligned=spf_ok,
        dkim_aligned=bool(dkim_pass),
        dkim_domain=dkim_pass[0].domain if dkim_pass else "",
        aligned_temperror=temperror,
        reason="no aligned SPF or DKIM pass",
    )
    if spf_ok or dkim_pass:
        how = "DKIM" if dkim_pass else "SPF"
        return replace(base, result=DmarcResult.PASS, reason=f"aligned {how} pass")
    if record.pct < 100 and policy is not Disposition.NONE and sample() * 100 >= record.pct:
        return replace(base, disposition=policy.weaker(), sampled_out=True)
    return replace(base, disposition=policy)


async def _exists(lookup: Lookup, domain: str) -> bool:
    try:
        return await lookup.exists(domain)
    except DnsTempError:
        return True  # unsure: the ordinary sp= applies


async def _discover(
    lookup: Lookup, from_domain: str, org: str
) -> tuple[DmarcRecord | None, str, str]:
    """RFC 7489 6.6.3: _dmarc.<From domain>, then _dmarc.<organizational domain>."""
    error = ""
    for domain in dict.fromkeys([from_domain, org]):
        texts = await lookup.txt(f"_dmarc.{domain}")
        candidates = [t for t in texts if t.replace(b" ", b"").startswith(b"v=DMARC1")]
        # Only records starting with v=DMARC1 count; several of them is as good as none.
        if len(candidates) != 1:
            continue
        try:
            return parse_record(candidates[0].decode("utf-8", "replace")), domain, ""
        except DmarcSyntaxError as e:
            error = f"_dmarc.{domain}: {e}"
    return None, "", error


# -- the seam for aggregate reports (RFC 7489 7.2) -------------------------------------------


@dataclass(frozen=True)
class DmarcObservation:
    """One evaluated message, as an aggregate report row needs it."""

    when: float
    source_ip: str
    envelope_from: str
    helo: str
    evaluation: DmarcEvaluation
    spf: SpfCheck | None
    dkim: tuple[DkimSignature, ...]
    applied: Disposition  # what we did: none (delivered), quarantine, reject
    overrides: tuple[str, ...] = ()  # RFC 7489 7.2.1 PolicyOverrideType: mailing_list, ...
    # Counted in a report sent anyway, never the reason to send one: the message was itself
    # a report (or mail to or from our report address), and reporting on reports loops.
    optional: bool = False


class DmarcRecorder(Protocol):
    """Receives every DMARC evaluation; an aggregate-report writer implements this."""

    def record(self, observation: DmarcObservation) -> None: ...


class NullRecorder:
    def record(self, observation: DmarcObservation) -> None:
        pass


@dataclass
class MemoryRecorder:
    """The last ``limit`` observations in memory (tests, diagnostics)."""

    limit: int = 10_000
    observations: deque[DmarcObservation] = field(default_factory=deque)

    def record(self, observation: DmarcObservation) -> None:
        self.observations.append(observation)
        while len(self.observations) > self.limit:
            self.observations.popleft()
