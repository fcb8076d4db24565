"""Spam scoring at DATA: refused in the dialogue over the reject score, Junk over the junk score.

The engines (``reference.scan``: rules and phishing, URI blocklists, Bayes, Office macros)
and the client's DNSBL score (the :class:`Dnsbl` check's ``score``, reused) add up to one
score; only here does a score become a reply. Inbound: ``550 5.7.1 Message refused as spam
(score 14.2, threshold 10)``, or a message filed into Junk with ``X-Spam-*`` fields.
Submission: the same engines, ``550 5.7.1`` in words the user understands, never Junk.
The rules that fired go to the log with the queue id, never to the wire (STYLE 9).

Inbound, the recipients' own settings from the directory apply (``mailspec spam
settings|allow|block``):

- thresholds per account, else per domain, else the configured ones, field by field;
- a sender on the recipient's block list is refused at RCPT (:class:`BlockedSenders`,
  ``550 5.7.1 Sender blocked by recipient``), as hosted Postfix sender_access maps and
  Fastmail's blocked senders do: the sender learns at once, nothing is silently lost.
  A block-listed From address (the envelope sender being someone else's, as for mail
  sent through a newsletter service) files the message into Junk;
- an allow-listed sender (envelope or From) skips content scoring. It never skips virus
  scanning or DMARC, which run as their own checks, so a spoofed allow-listed address
  from a domain with a DMARC policy is still refused or quarantined.

One scan decides for the whole message. When its local recipients' settings differ
(thresholds, or how they list the sender), the configured thresholds apply and no list
does, as Rspamd applies per-user settings only when all recipients share them: a message
is refused only by a rule every recipient agreed to. Bayes scores with the recipient's own
classifier when the message has one local recipient whose classifier is ready.

Spam scanning fails open: an engine that breaks or a DNS lookup that fails adds nothing
and is logged; mail is never refused or lost because a filter had a bad day.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncresolver

from reference.auth.lookup import Lookup
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
    Session,
    Transaction,
    refuse,
)
from reference.policy.dnsbl import Dnsbl
from reference.scan import bayes as bayes_mod
from reference.scan import macros as macros_mod
from reference.scan import spam as engine
from reference.scan.analysis import Parsed
from reference.scan.bayes import Classifiers
from reference.scan.rules import Hit, Rule, Score
from reference.scan.spam import UriZone
from reference.state.tokens import open_tokens

__all__ = [
    "BlockedSenders",
    "SpamCheck",
    "Thresholds",
    "Verdict",
    "bayes_path",
    "open_classifiers",
]

log = logging.getLogger("mailspec.spam")

# Fields a sender could forge to look scanned and clean: ours replace them.
OWN_FIELDS = ("x-spam-status", "x-spam-score", "x-spam-flag")


@dataclass(frozen=True)
class Thresholds:
    """Where a message is refused and where it goes to Junk, and whose settings those are."""

    reject: float
    junk: float
    source: str = "global"  # "global", "domain", "user"; "mixed" for recipients that differ


@dataclass(frozen=True)
class _Recipient:
    account: str | None  # the account that reads it (None: none, e.g. a mailing list)
    thresholds: Thresholds
    listed: tuple[str, str] | None  # ("allow" | "block", the pattern that matched)


@dataclass(frozen=True)
class Verdict:
    """What the spam check made of one message."""

    score: Score
    thresholds: Thresholds
    bayes: str = "off"  # whose classifier scored it: "global", "user", "off" or "error"
    listed: tuple[str, str] | None = None

    @property
    def action(self) -> str:
        """One of "refused", "junk" or "inbox"."""
        total = self.score.total
        if total >= self.thresholds.reject:
            return "refused"
        return "junk" if total >= self.thresholds.junk else "inbox"


def _account(directory: Directory, rcpt: str) -> str | None:
    """The account that reads mail for ``rcpt``: its own, an alias's target, or for
    postmaster the domain's administrator (routed as delivery does)."""
    found = directory.resolve(rcpt)
    return found.address if found is not None else None


class BlockedSenders(Check):
    """RCPT: a sender on the recipient's block list is refused, for that recipient only."""

    name = "blocked-senders"

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        sender = tx.sender
        if not sender:
            return CONTINUE  # bounces are never blocked: they answer our own mail
        account = _account(self.directory, rcpt)
        if account is None:
            return CONTINUE
        listed = self.directory.sender_listed(account, [sender])
        if listed is None or listed[0] != "block":
            return CONTINUE
        event(log, "spam.blocked", peer=tx.peer, sender=sender, rcpt=account, pattern=listed[1])
        return refuse(
            replies.SENDER_BLOCKED, f"{sender} is on {account}'s block list ({listed[1]})"
        )


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def _fold(name: str, value: str) -> bytes:
    """One header field folded at commas to stay well under 78 characters a line."""
    lines: list[str] = [f"{name}: "]
    for i, word in enumerate(value.split(",")):
        piece = ("," if i else "") + word
        if len(lines[-1]) + len(piece) > 76 and lines[-1].strip():
            lines[-1] += ","
            lines.append("\t" + word)
        else:
            lines[-1] += piece
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


class SpamCheck(Check):
    """DATA: score the message; refuse at the reject score, file into Junk at the junk score."""

    name = "spam"

    def __init__(
        self,
        *,
        reject_score: float = 10.0,
        junk_score: float = 5.0,
        rules: Sequence[Rule] = engine.RULES,
        resolver: dns.asyncresolver.Resolver | None = None,
        uribl: Sequence[UriZone] = (),
        dnsbl: Dnsbl | None = None,
        bayes: Classifiers | None = None,
        directory: Directory | None = None,
        macro_score: float = 3.0,
        macro_max_size: int = macros_mod.DEFAULT_MAX_SIZE,
        clock: Clock | None = None,
    ) -> None:
        self.reject_score = reject_score
        self.junk_score = junk_score
        self.base_rules = tuple(rules)
        self.rules = self._rules_for(junk_score)
        self.resolver = resolver
        # URIBL answers kept for their TTL on the server's clock, across messages.
        self.lookup = Lookup(resolver, clock) if resolver is not None else None
        self.uribl = list(uribl)
        self.dnsbl = dnsbl
        self.bayes = bayes
        self.directory = directory
        self.macro_score = macro_score
        self.macro_max_size = macro_max_size

    def _rules_for(self, junk: float) -> tuple[Rule, ...]:
        # The junk-level GTUBE scores exactly the junk threshold, whatever it is set to.
        return engine.with_weights(self.base_rules, {"GTUBE_JUNK": junk})

    # -- whose settings -----------------------------------------------------------------

    @property
    def default_thresholds(self) -> Thresholds:
        return Thresholds(self.reject_score, self.junk_score)

    def _recipient(self, rcpt: str, senders: list[str]) -> _Recipient:
        assert self.directory is not None
        d = self.directory
        account = _account(d, rcpt)
        try:
            domain = split_address(account or rcpt)[1]
        except DirectoryError:
            domain = ""
        rows = d.spam_settings(*(x for x in (account, domain) if x))
        mine, ours = rows.get(account or ""), rows.get(domain)
        reject, junk, source = self.reject_score, self.junk_score, "global"
        for row, name in ((ours, "domain"), (mine, "user")):
            if row is None:
                continue
            if row.reject_score is not None:
                reject, source = row.reject_score, name
            if row.junk_score is not None:
                junk, source = row.junk_score, name
        listed = d.sender_listed(account, senders) if account and senders else None
        return _Recipient(account, Thresholds(reject, junk, source), listed)

    def _recipients(self, s: Session, senders: list[str], rcpts: Sequence[str]) -> _Recipient:
        """The settings the message is judged by (see the module's docstring)."""
        if s.role != "mx" or self.directory is None or not rcpts:
            return _Recipient(None, self.default_thresholds, None)
        each = [self._recipient(r, senders) for r in rcpts]
        first = each[0]
        accounts = {r.account for r in each}
        if all(
            (r.thresholds.reject, r.thresholds.junk, r.listed and r.listed[0])
            == (first.thresholds.reject, first.thresholds.junk, first.listed and first.listed[0])
            for r in each
        ):
            account = first.account if len(accounts) == 1 else None
            return _Recipient(account, first.thresholds, first.listed)
        mixed = Thresholds(self.reject_score, self.junk_score, "mixed")
        return _Recipient(None, mixed, None)

    # -- scoring ------------------------------------------------------------------------

    def _bayes_hit(self, account: str | None, parsed: Parsed) -> tuple[str, Hit | None]:
        if self.bayes is None:
            return "off", None
        try:
            whose, classifier = self.bayes.for_recipient(account)
            return whose, bayes_mod.hit(classifier.score_parsed(parsed))
        except Exception as e:  # a locked or broken token database: no opinion
            event(log, "bayes.error", level=logging.WARNING, error=repr(e))
            return "error", None

    def _local(
        self, s: Session, sender: str, rcpts: Sequence[str], msg: Message
    ) -> tuple[Parsed, Verdict]:
        """Parse, settings and lists, rules, phishing and Bayes: CPU, SQLite and directory
        work, run on a worker thread."""
        parsed = engine.parse(msg)  # the MIME structure: parts, text, links, attachments
        senders = [a for a in (sender, parsed.from_addr) if a]
        who = self._recipients(s, senders, rcpts)
        t = who.thresholds
        if who.listed is not None and who.listed[0] == "allow":
            allowed = Score((Hit("USER_ALLOWLIST", 0.0, who.listed[1]),))
            return parsed, Verdict(allowed, t, listed=who.listed)
        rules = self.rules if t.junk == self.junk_score else self._rules_for(t.junk)
        score = engine.analyse(parsed, rules)
        if who.listed is not None:  # blocked: at least Junk, whatever the content
            score = score.plus([Hit("USER_BLOCKLIST", t.junk, who.listed[1])])
        whose, h = self._bayes_hit(who.account, parsed)
        if h is not None:
            score = score.plus([h])
        return parsed, Verdict(score, t, whose, who.listed)

    async def _network(self, s: Session, parsed: Parsed) -> list[Hit]:
        hits: list[Hit] = []
        if self.uribl and self.lookup is not None:
            hits += await engine.uribl(self.lookup, self.uribl, parsed.links)
        if self.dnsbl is not None and s.role == "mx" and s.user is None:
            _, listed = await self.dnsbl.score(s.peer)
            # Heavy listings were refused at RCPT; what is left here is the lighter score.
            hits += [Hit("RCVD_IN_DNSBL", w, f"{zone}:{code}") for zone, code, w in listed]
        return hits

    async def evaluate(
        self, s: Session, sender: str, rcpts: Sequence[str], msg: Message | bytes
    ) -> Verdict:
        """The message's score with every engine, and the thresholds it is judged by."""
        parsed, verdict = await asyncio.to_thread(self._local, s, sender, rcpts, Message.of(msg))
        if verdict.listed is not None and verdict.listed[0] == "allow":
            return verdict
        extra = await self._network(s, parsed)
        if self.macro_score > 0:
            reports = await macros_mod.scan(parsed.attachments, max_size=self.macro_max_size)
            extra += macros_mod.hits(reports, self.macro_score)
        return Verdict(verdict.score.plus(extra), verdict.thresholds, verdict.bayes, verdict.listed)

    async def score(self, s: Session, msg: Message | bytes) -> Score:
        """The message's score with every engine and no recipient's settings."""
        return (await self.evaluate(s, "", (), msg)).score

    # -- the decision -------------------------------------------------------------------

    async def data(self, tx: Transaction) -> CheckResult:
        s, sender, msg = tx.session, tx.sender, tx.msg
        try:
            verdict = await self.evaluate(s, sender, tx.recipients, msg)
        except Exception:  # fail open: a filter bug must not refuse or lose mail
            log.exception("spam.error qid=%s peer=%s sender=%s", tx.qid, s.peer, sender or "<>")
            return CONTINUE
        score, t = verdict.score, verdict.thresholds
        total = score.total
        fields: dict[str, Any] = dict(
            qid=tx.qid or None,
            role=s.role,
            peer=s.peer,
            user=s.user,
            sender=sender or "<>",
            score=_fmt(total),
            rules=score.summary(),
            settings=t.source,
            bayes=verdict.bayes,
        )
        action = verdict.action
        if action == "refused":
            event(log, "spam.refused", threshold=f"{t.reject:g}", **fields)
            template = replies.SPAM_NOT_SENT if s.role == "submission" else replies.SPAM_REFUSED
            return refuse(
                template.format(score=_fmt(total), threshold=f"{t.reject:g}"),
                f"spam score {_fmt(total)}: {score.summary()}",
            )
        if s.role != "mx":
            event(log, "spam.passed", **fields)
            return CONTINUE  # outbound: sent, or refused above; Junk is a recipient's folder
        junk = action == "junk"
        event(log, "spam.junk" if junk else "spam.passed", threshold=f"{t.junk:g}", **fields)
        return CheckResult(
            Action.CONTINUE,
            prepend_headers=self._fields(score, t.junk, junk),
            remove_headers=tuple(f.raw for f in msg.fields if f.lname in OWN_FIELDS),
            filing=Filing(folder="Junk") if junk else KEEP,
        )

    @staticmethod
    def _fields(score: Score, required: float, junk: bool) -> bytes:
        names = ",".join(score.rules) or "none"
        status = f"{'Yes' if junk else 'No'}, score={_fmt(score.total)} " + (
            f"required={required:g} tests={names}"
        )
        out = _fold("X-Spam-Status", status) + f"X-Spam-Score: {_fmt(score.total)}\r\n".encode()
        if junk:
            out += b"X-Spam-Flag: YES\r\n"
        return out


def bayes_path(data_dir: Path) -> Path:
    """Where the node's token database lives (without Redis)."""
    return data_dir / "bayes.sqlite3"


def open_classifiers(
    state_url: str, data_dir: Path, *, min_spam: int, min_ham: int, user_min: int
) -> Classifiers:
    """The global and per-account classifiers over the node's token database (Redis when
    ``state_url`` is set, as the other shared policy state)."""
    db = open_tokens(state_url, bayes_path(data_dir))
    return Classifiers(db, min_spam=min_spam, min_ham=min_ham, user_min=user_min)
