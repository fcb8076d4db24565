"""Sender authentication as policy: SPF, DKIM, ARC and DMARC results turned into actions.

Inbound (the MX): MAIL starts the SPF checks, DATA verifies DKIM and ARC, evaluates DMARC
for each RFC5322.From domain, and answers with a refusal (p=reject), a Junk filing
(p=quarantine), or an accepted message carrying our Authentication-Results. Outbound
(submission): the message is DKIM-signed for its domain. The mechanisms live in
``reference.auth``; only here do their results become replies.

The SPF result travels from MAIL to DATA without session state: it is a pure function of
(client address, HELO name, MAIL FROM) and the DNS, so MAIL starts the evaluation as a
task keyed on exactly those inputs and DATA awaits the task with the same key (or
evaluates afresh if the task is gone). The checks stay stateless per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reference.auth import arc as arc_mod
from reference.auth import dkim as dkim_mod
from reference.auth import dmarc as dmarc_mod
from reference.auth import spf as spf_mod
from reference.auth.arc import ArcChain, ArcResult
from reference.auth.dkim import DkimSignature
from reference.auth.dmarc import (
    Disposition,
    DmarcEvaluation,
    DmarcObservation,
    DmarcRecorder,
    DmarcResult,
    NullRecorder,
)
from reference.auth.keys import ALGORITHMS, KeyStore, KeyStoreError, SigningKey
from reference.auth.lookup import Lookup
from reference.auth.message import from_domains, header_fields, split_message
from reference.auth.psl import PublicSuffixList, default_list
from reference.auth.results import authentication_results, forged_fields
from reference.auth.spf import SpfCheck, SpfResult
from reference.clock import Clock
from reference.directory import Directory, DirectoryError, split_address
from reference.log import event
from reference.policy import CONTINUE, Action, Check, CheckResult, Session, refuse
from reference.smtp.replies import Reply

__all__ = [
    "DKIM_SIGNING_FAILED",
    "DMARC_REJECTED",
    "DNS_TEMPFAIL",
    "DkimSigning",
    "SenderAuthentication",
]

log = logging.getLogger("mailspec.auth")

# RFC 7489 6.6.3/10.3 wants the refusal to say why; the detail stays in the log.
DMARC_REJECTED = Reply(
    550, "5.7.1", "Message refused: not authenticated for {domain}, whose DMARC policy is reject"
)
DNS_TEMPFAIL = Reply(
    451, "4.4.3", "Temporary DNS failure authenticating the sender, try again later"
)
DKIM_SIGNING_FAILED = Reply(451, "4.3.0", "Cannot DKIM-sign the message now, try again later")

MAX_PENDING_SPF = 10_000  # SPF evaluations started at MAIL and not yet claimed by DATA
SPF_TTL = 300.0  # seconds an unclaimed evaluation is kept (RFC 5321's DATA timeout is 3 min)
_STRICTNESS = {Disposition.NONE: 0, Disposition.QUARANTINE: 1, Disposition.REJECT: 2}

SpfPair = tuple[SpfCheck, SpfCheck]  # (MAIL FROM identity, HELO identity)


@dataclass(frozen=True)
class _Decision:
    evaluation: DmarcEvaluation
    applied: Disposition
    overrides: tuple[str, ...] = ()
    tempfail: bool = False


class SenderAuthentication(Check):
    """The MX's SPF, DKIM, ARC and DMARC checks and its Authentication-Results field."""

    name = "sender-authentication"

    def __init__(
        self,
        lookup: Lookup,
        clock: Clock,
        *,
        authserv_id: str,
        dmarc_reject: bool = True,
        dmarc_quarantine: bool = True,
        dmarc_tempfail: bool = True,
        arc_trusted: Sequence[str] = (),
        recorder: DmarcRecorder | None = None,
        sample: Callable[[], float] = random.random,
        psl: PublicSuffixList | None = None,
    ) -> None:
        self.lookup = lookup
        self.clock = clock
        self.authserv_id = authserv_id
        self.dmarc_reject = dmarc_reject
        self.dmarc_quarantine = dmarc_quarantine
        self.dmarc_tempfail = dmarc_tempfail
        self.arc_trusted = tuple(d.lower().rstrip(".") for d in arc_trusted)
        self.recorder: DmarcRecorder = recorder or NullRecorder()
        self.sample = sample
        self.psl = psl or default_list()
        self._spf: OrderedDict[tuple[str, str, str], tuple[float, asyncio.Task[SpfPair]]] = (
            OrderedDict()
        )

    # -- SPF: started at MAIL, claimed at DATA ------------------------------------------

    @staticmethod
    def _key(s: Session, sender: str) -> tuple[str, str, str]:
        return s.peer, s.helo.lower(), sender.lower()

    async def mail(self, s: Session, sender: str) -> CheckResult:
        if s.role != "mx" or not s.peer:
            return CONTINUE
        key = self._key(s, sender)
        now = self.clock.monotonic()
        # Unclaimed evaluations (the client went away, or was greylisted at RCPT) expire, so a
        # retry later never gets a stale result.
        while self._spf and (
            len(self._spf) >= MAX_PENDING_SPF or next(iter(self._spf.values()))[0] < now - SPF_TTL
        ):
            _, (_, old) = self._spf.popitem(last=False)
            old.cancel()
        previous = self._spf.pop(key, None)
        if previous is not None:
            previous[1].cancel()
        task = asyncio.get_running_loop().create_task(self._spf_checks(s, sender))
        self._spf[key] = (now, task)
        return CONTINUE  # RFC 7208 8: SPF alone never refuses here

    async def spf_result(self, s: Session, sender: str) -> SpfCheck | None:
        """The MAIL FROM SPF result of this transaction, without claiming it (greylisting)."""
        entry = self._spf.get(self._key(s, sender))
        if entry is None:
            return None
        try:
            mail_from, _ = await asyncio.shield(entry[1])
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the session itself is cancelled (its client hung up): not ours to end
            return None  # the SPF task was cancelled under us (a newer MAIL replaced it)
        return mail_from

    async def _spf_checks(self, s: Session, sender: str) -> SpfPair:
        now = self.clock.now()
        try:
            mail_from_check = spf_mod.check_mail_from(
                self.lookup, s.peer, sender, s.helo, receiver=self.authserv_id, now=now
            )
            if not sender:  # RFC 7208 2.4: the null sender's identity is the HELO name
                mail_from = await mail_from_check
                return mail_from, mail_from
            mail_from, helo = await asyncio.gather(
                mail_from_check,
                spf_mod.check_helo(self.lookup, s.peer, s.helo, receiver=self.authserv_id, now=now),
            )
        except Exception:  # a bug must not lose the message: report temperror and log it
            log.exception("event=spf.error peer=%s", s.peer)
            err = SpfCheck(SpfResult.TEMPERROR, "", "mailfrom", sender, "internal error")
            return err, SpfCheck(SpfResult.TEMPERROR, s.helo, "helo", "", "internal error")
        return mail_from, helo

    async def _claim_spf(self, s: Session, sender: str) -> SpfPair:
        # A task cancelled under us (a newer MAIL with the same key replaced it): evaluate
        # afresh, unless it is this coroutine that is being cancelled.
        entry = self._spf.pop(self._key(s, sender), None)
        if entry is not None:
            with contextlib.suppress(asyncio.CancelledError):
                return await entry[1]
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError
        return await self._spf_checks(s, sender)

    # -- DATA ---------------------------------------------------------------------------

    async def data(self, s: Session, sender: str, rcpts: Sequence[str], msg: bytes) -> CheckResult:
        if s.role != "mx":
            # Submission is a border too: a user must not hand a colleague results "from us".
            forged = tuple(forged_fields(msg, self.authserv_id))
            return CheckResult(Action.CONTINUE, remove_headers=forged) if forged else CONTINUE
        spf_mail, spf_helo = await self._claim_spf(s, sender)
        now = self.clock.now()
        signatures = await dkim_mod.verify(self.lookup, msg, now=now)
        chain = await arc_mod.verify(self.lookup, msg)
        header, _ = split_message(msg)
        decisions = [
            self._decide(
                await dmarc_mod.evaluate(
                    self.lookup, domain, spf_mail, signatures, psl=self.psl, sample=self.sample
                ),
                spf_mail,
                signatures,
                chain,
                header,
            )
            for domain in from_domains(header)
        ]
        spf_results = [spf_mail] if spf_mail.identity == "helo" else [spf_mail, spf_helo]
        ar = authentication_results(
            self.authserv_id,
            spf=spf_results,
            dkim=signatures,
            dmarc=[(d.evaluation, d.applied.value) for d in decisions],
            arc=chain,
            remote_ip=s.peer,
        )
        for d in decisions:
            self.recorder.record(
                DmarcObservation(
                    when=now,
                    source_ip=s.peer,
                    envelope_from=sender,
                    helo=s.helo,
                    evaluation=d.evaluation,
                    spf=spf_mail,
                    dkim=tuple(signatures),
                    applied=d.applied,
                    overrides=d.overrides,
                )
            )
        worst = max(decisions, key=lambda d: (d.tempfail, _STRICTNESS[d.applied]), default=None)
        event(
            log,
            "auth",
            peer=s.peer,
            sender=sender or "<>",
            spf=spf_mail.result.value,
            dkim=",".join(f"{x.result.value}:{x.domain}" for x in signatures) or "none",
            arc=chain.result.value,
            dmarc=",".join(
                f"{d.evaluation.result.value}:{d.evaluation.from_domain}" for d in decisions
            )
            or "none",
            action=("tempfail" if worst.tempfail else worst.applied.value) if worst else "none",
            overrides=",".join(o for d in decisions for o in d.overrides),
        )
        if worst is not None and worst.tempfail:
            return refuse(
                DNS_TEMPFAIL, f"DNS error evaluating DMARC for {worst.evaluation.from_domain}"
            )
        if worst is not None and worst.applied is Disposition.REJECT:
            domain = worst.evaluation.from_domain
            return refuse(
                DMARC_REJECTED.with_text(DMARC_REJECTED.text.format(domain=domain)),
                f"DMARC p=reject for {domain}: {worst.evaluation.reason}",
            )
        meta = {"folder": "Junk"} if worst and worst.applied is Disposition.QUARANTINE else {}
        return CheckResult(
            Action.CONTINUE,
            prepend_headers=ar,
            remove_headers=tuple(forged_fields(msg, self.authserv_id)),
            meta=meta,
        )

    def _decide(
        self,
        ev: DmarcEvaluation,
        spf: SpfCheck,
        signatures: Sequence[DkimSignature],
        chain: ArcChain,
        header: bytes,
    ) -> _Decision:
        """RFC 7489 6.6.4 / 7.2.1: what we do with what the domain owner asks."""
        if ev.result is DmarcResult.TEMPERROR:
            # The record could not be read: refuse nothing; try again later only when
            # nothing (relaxed-)aligned passed, since then the policy could be reject.
            passed = (
                spf.result is SpfResult.PASS
                and dmarc_mod.aligned(spf.domain, ev.from_domain, "r", self.psl)
            ) or any(
                sig.passed and dmarc_mod.aligned(sig.domain, ev.from_domain, "r", self.psl)
                for sig in signatures
            )
            return _Decision(ev, Disposition.NONE, tempfail=self.dmarc_tempfail and not passed)
        overrides: tuple[str, ...] = ("sampled_out",) if ev.sampled_out else ()
        if ev.result is not DmarcResult.FAIL or ev.disposition is Disposition.NONE:
            return _Decision(ev, Disposition.NONE, overrides)
        if self._trusted_arc(chain):
            return _Decision(ev, Disposition.NONE, (*overrides, "trusted_forwarder"))
        asked = ev.disposition
        if asked is Disposition.REJECT:
            if _looks_like_list(header):
                # Lists rewrite subjects and footers, breaking DKIM; they are not spoofers.
                return _Decision(ev, Disposition.QUARANTINE, (*overrides, "mailing_list"))
            if ev.aligned_temperror and self.dmarc_tempfail:
                return _Decision(ev, Disposition.NONE, overrides, tempfail=True)
            if not self.dmarc_reject:
                return _Decision(ev, Disposition.QUARANTINE, (*overrides, "local_policy"))
            return _Decision(ev, Disposition.REJECT, overrides)
        if not self.dmarc_quarantine:
            return _Decision(ev, Disposition.NONE, (*overrides, "local_policy"))
        return _Decision(ev, Disposition.QUARANTINE, overrides)

    def _trusted_arc(self, chain: ArcChain) -> bool:
        if chain.result is not ArcResult.PASS or not chain.newest_sealer:
            return False
        sealer = chain.newest_sealer
        return any(sealer == d or sealer.endswith("." + d) for d in self.arc_trusted)


def _looks_like_list(header: bytes) -> bool:
    """RFC 2369/2919 list fields: what a mailing list adds to every message it sends."""
    return any(f.lname in ("list-id", "list-post") for f in header_fields(header))


class DkimSigning(Check):
    """Submission: DKIM-sign for the author's domain (rsa-sha256 and ed25519 by default).

    Keep it last in the chain: nothing may change the message after it is signed.
    """

    name = "dkim-signing"

    def __init__(
        self,
        keys: KeyStore,
        directory: Directory,
        clock: Clock,
        *,
        selector: str,
        algorithms: Sequence[str] = tuple(ALGORITHMS),
        generate: bool = True,
    ) -> None:
        self.keys = keys
        self.directory = directory
        self.clock = clock
        self.selector = selector
        self.algorithms = tuple(algorithms)
        self.generate = generate

    def signing_domain(self, msg: bytes, sender: str) -> str | None:
        """The From domain if it is ours (DMARC alignment), else the envelope's if ours."""
        header, _ = split_message(msg)
        candidates = from_domains(header)[:1]
        with contextlib.suppress(DirectoryError):
            candidates.append(split_address(sender)[1])
        for domain in candidates:
            if self.directory.is_local_domain(domain):
                return domain
        return None

    def _keys(self, domain: str) -> list[SigningKey]:
        keys = self.keys.load(domain, self.selector, self.algorithms)
        if len(keys) < len(self.algorithms) and self.generate:
            keys = self.keys.generate(domain, self.selector, self.algorithms)
            event(
                log,
                "dkim.keygen",
                domain=domain,
                selector=self.selector,
                records=" | ".join(f"{k.record_name} TXT {k.public_record()}" for k in keys),
            )
        return keys

    async def data(self, s: Session, sender: str, rcpts: Sequence[str], msg: bytes) -> CheckResult:
        if s.role != "submission" or s.user is None:
            return CONTINUE
        domain = self.signing_domain(msg, sender)
        if domain is None:
            return CONTINUE
        try:
            keys = await asyncio.to_thread(self._keys, domain)
        except KeyStoreError as e:
            event(log, "dkim.key_error", level=logging.ERROR, domain=domain, error=str(e))
            return refuse(DKIM_SIGNING_FAILED, f"DKIM keys of {domain}: {e}")
        if not keys:
            return CONTINUE
        now = self.clock.now()
        signatures = await asyncio.to_thread(dkim_mod.sign, msg, keys, now=now)
        return CheckResult(Action.CONTINUE, prepend_headers=signatures)


def auth_checks(
    *,
    lookup: Lookup,
    clock: Clock,
    directory: Directory,
    data_dir: Path,
    authserv_id: str,
    verify: bool,
    sign: bool,
    dmarc_reject: bool,
    dmarc_quarantine: bool,
    dmarc_tempfail: bool,
    arc_trusted: Sequence[str],
    selector: str,
    algorithms: Sequence[str],
    recorder: DmarcRecorder | None = None,
) -> tuple[list[Check], list[Check]]:
    """(checks for early in the chain, checks that must stay last) from the [auth] settings."""
    first: list[Check] = []
    last: list[Check] = []
    if verify:
        first.append(
            SenderAuthentication(
                lookup,
                clock,
                authserv_id=authserv_id,
                dmarc_reject=dmarc_reject,
                dmarc_quarantine=dmarc_quarantine,
                dmarc_tempfail=dmarc_tempfail,
                arc_trusted=arc_trusted,
                recorder=recorder,
            )
        )
    if sign:
        last.append(
            DkimSigning(
                KeyStore(data_dir / "dkim"),
                directory,
                clock,
                selector=selector,
                algorithms=algorithms,
            )
        )
    return first, last
