"""Sender authentication as policy: SPF, DKIM, ARC and DMARC results turned into actions.

Inbound (the MX): MAIL starts the SPF checks, DATA verifies DKIM and ARC, evaluates DMARC
for each RFC5322.From domain, and answers with a refusal (p=reject), a Junk filing
(p=quarantine), or an accepted message carrying our Authentication-Results. Outbound
(submission): the message is DKIM-signed for its domain. The mechanisms live in
``reference.auth``; only here do their results become replies.

SPF starts at MAIL as a task on the transaction (RFC 7208 evaluates MAIL FROM and HELO,
which are known then); greylisting at RCPT and DMARC at DATA await that one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reference.auth import arc as arc_mod
from reference.auth import dkim as dkim_mod
from reference.auth import dmarc as dmarc_mod
from reference.auth import spf as spf_mod
from reference.auth.arc import ArcChain, ArcResult
from reference.auth.dkim import DkimSignature, DomainSigner
from reference.auth.dmarc import (
    Disposition,
    DmarcEvaluation,
    DmarcObservation,
    DmarcRecorder,
    DmarcResult,
    NullRecorder,
)
from reference.auth.feedback import is_report_subject
from reference.auth.keys import ALGORITHMS, KeyStore, KeyStoreError
from reference.auth.lookup import Lookup
from reference.auth.psl import PublicSuffixList, default_list
from reference.auth.results import authentication_results, forged_fields
from reference.auth.spf import SpfCheck, SpfResult
from reference.clock import Clock
from reference.directory import Directory, DirectoryError, split_address
from reference.log import event
from reference.mail import replies
from reference.mail.message import Message
from reference.policy import (
    CONTINUE,
    KEEP,
    Action,
    Check,
    CheckResult,
    Filing,
    SpfPair,
    Transaction,
    refuse,
)

__all__ = [
    "DkimSigning",
    "SenderAuthentication",
]

log = logging.getLogger("mailspec.auth")

_STRICTNESS = {Disposition.NONE: 0, Disposition.QUARANTINE: 1, Disposition.REJECT: 2}


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
        report_address: str = "",
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
        self.report_address = report_address.lower()  # where our own reports come from
        self.sample = sample
        self.psl = psl or default_list()

    # -- SPF: started at MAIL, awaited at RCPT (greylisting) and DATA ------------------

    async def mail(self, tx: Transaction) -> CheckResult:
        if tx.role != "mx" or not tx.peer:
            return CONTINUE
        tx.spf = asyncio.get_running_loop().create_task(self._spf_checks(tx))
        return CONTINUE  # RFC 7208 8: SPF alone never refuses here

    async def _spf_checks(self, tx: Transaction) -> SpfPair:
        with tx.timed("spf", "mail"):
            return await self._spf_pair(tx)

    async def _spf_pair(self, tx: Transaction) -> SpfPair:
        s, sender = tx.session, tx.sender
        now = self.clock.now()
        try:
            mail_from_check = spf_mod.check_mail_from(
                self.lookup, s.peer, sender, s.helo, receiver=self.authserv_id, now=now
            )
            if not sender:  # RFC 7208 2.4: the null sender's identity is the HELO name
                mail_from = await mail_from_check
                return SpfPair(mail_from, mail_from)
            # Both at once (their DNS queries overlap), with one task rather than gather's two.
            helo_check = asyncio.get_running_loop().create_task(
                spf_mod.check_helo(self.lookup, s.peer, s.helo, receiver=self.authserv_id, now=now)
            )
            try:
                mail_from = await mail_from_check
            except BaseException:
                helo_check.cancel()
                raise
            helo = await helo_check
        except Exception:  # a bug must not lose the message: report temperror and log it
            log.exception("event=spf.error peer=%s", s.peer)
            err = SpfCheck(SpfResult.TEMPERROR, "", "mailfrom", sender, "internal error")
            return SpfPair(err, SpfCheck(SpfResult.TEMPERROR, s.helo, "helo", "", "internal error"))
        return SpfPair(mail_from, helo)

    async def _spf(self, tx: Transaction) -> SpfPair:
        if tx.spf is None:  # no MAIL stage ran (a direct call): evaluate now
            tx.spf = asyncio.get_running_loop().create_task(self._spf_checks(tx))
        return await tx.spf

    # -- DATA ---------------------------------------------------------------------------

    async def data(self, tx: Transaction) -> CheckResult:
        s, sender, msg = tx.session, tx.sender, tx.msg
        if s.role != "mx":
            # Submission is a border too: a user must not hand a colleague results "from us".
            forged = tuple(forged_fields(msg, self.authserv_id))
            return CheckResult(Action.CONTINUE, remove_headers=forged) if forged else CONTINUE
        spf_mail, spf_helo = await self._spf(tx)
        now = self.clock.now()
        with tx.timed("dkim", "data"):
            signatures = await dkim_mod.verify(self.lookup, msg, now=now)
        with tx.timed("arc", "data"):
            chain = await arc_mod.verify(self.lookup, msg)
        with tx.timed("dmarc", "data"):
            evaluations = [
                await dmarc_mod.evaluate(
                    self.lookup, domain, spf_mail, signatures, psl=self.psl, sample=self.sample
                )
                for domain in msg.from_domains
            ]
        decisions = [self._decide(ev, spf_mail, signatures, chain, msg) for ev in evaluations]
        spf_results = [spf_mail] if spf_mail.identity == "helo" else [spf_mail, spf_helo]
        ar = authentication_results(
            self.authserv_id,
            spf=spf_results,
            dkim=signatures,
            dmarc=[(d.evaluation, d.applied.value) for d in decisions],
            arc=chain,
            remote_ip=s.peer,
        )
        optional = self._is_report(tx)
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
                    optional=optional,
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
                replies.DNS_TEMPFAIL,
                f"DNS error evaluating DMARC for {worst.evaluation.from_domain}",
            )
        if worst is not None and worst.applied is Disposition.REJECT:
            domain = worst.evaluation.from_domain
            return refuse(
                replies.DMARC_REJECTED.format(domain=domain),
                f"DMARC p=reject for {domain}: {worst.evaluation.reason}",
            )
        quarantined = worst is not None and worst.applied is Disposition.QUARANTINE
        return CheckResult(
            Action.CONTINUE,
            prepend_headers=ar,
            remove_headers=tuple(forged_fields(msg, self.authserv_id)),
            filing=Filing(folder="Junk") if quarantined else KEEP,
        )

    def _is_report(self, tx: Transaction) -> bool:
        """Mail that is an aggregate report, or to or from our report address (a bounce of
        one of ours, or one of ours come back): reporting on it could loop between two
        reporters, so its evaluation is optional (mox does the same)."""
        ours = self.report_address
        if ours and ours in {a.lower() for a in (tx.sender, *tx.recipients)}:
            return True
        return any(is_report_subject(f.text()) for f in tx.msg.get_all("subject"))

    def _decide(
        self,
        ev: DmarcEvaluation,
        spf: SpfCheck,
        signatures: Sequence[DkimSignature],
        chain: ArcChain,
        msg: Message,
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
            # RFC 2369/2919 list fields: what a mailing list adds to every message it sends.
            if msg.has("list-id", "list-post"):
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
        self.signer = DomainSigner(
            keys, selector=selector, algorithms=algorithms, generate=generate
        )
        self.directory = directory
        self.clock = clock

    def signing_domain(self, msg: Message | bytes, sender: str) -> str | None:
        """The From domain if it is ours (DMARC alignment), else the envelope's if ours."""
        candidates = Message.of(msg).from_domains[:1]
        with contextlib.suppress(DirectoryError):
            candidates.append(split_address(sender)[1])
        for domain in candidates:
            if self.directory.is_local_domain(domain):
                return domain
        return None

    async def data(self, tx: Transaction) -> CheckResult:
        if tx.role != "submission" or tx.user is None:
            return CONTINUE
        msg = tx.msg
        domain = self.signing_domain(msg, tx.sender)
        if domain is None:
            return CONTINUE
        try:
            signatures = await asyncio.to_thread(
                self.signer.sign, msg, domain, now=self.clock.now()
            )
        except KeyStoreError as e:
            event(log, "dkim.key_error", level=logging.ERROR, domain=domain, error=str(e))
            return refuse(replies.DKIM_SIGNING_FAILED, f"DKIM keys of {domain}: {e}")
        if not signatures:
            return CONTINUE
        return CheckResult(Action.CONTINUE, prepend_headers=signatures)
