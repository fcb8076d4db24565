"""Spam scoring at DATA: refused in the dialogue over the reject score, Junk over the junk score.

The engines (``reference.scan``: rules and phishing, URI blocklists, Bayes, Office macros)
and the client's DNSBL score (the :class:`Dnsbl` check's ``score``, reused) add up to one
score; only here does a score become a reply. Inbound: ``550 5.7.1 Message refused as spam
(score 14.2, threshold 10)``, or a message filed into Junk with ``X-Spam-*`` fields.
Submission: the same engines, ``550 5.7.1`` in words the user understands, never Junk.
The rules that fired go to the log, never to the wire (STYLE 9).

Spam scanning fails open: an engine that breaks or a DNS lookup that fails adds nothing
and is logged; mail is never refused or lost because a filter had a bad day.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dns.asyncresolver

from reference.auth.message import header_fields, split_message
from reference.log import event
from reference.policy import CONTINUE, Action, Check, CheckResult, Session, refuse
from reference.policy.dnsbl import Dnsbl
from reference.scan import bayes as bayes_mod
from reference.scan import macros as macros_mod
from reference.scan import spam as engine
from reference.scan.bayes import Bayes
from reference.scan.spam import Hit, Parsed, Rule, Score, UriZone
from reference.smtp.replies import Reply

__all__ = ["SPAM_NOT_SENT", "SPAM_REFUSED", "SpamCheck", "bayes_path"]

log = logging.getLogger("mailspec.spam")

SPAM_REFUSED = Reply(550, "5.7.1", "Message refused as spam (score {score}, threshold {threshold})")
SPAM_NOT_SENT = Reply(
    550,
    "5.7.1",
    "Your message was not sent because it looks like spam (score {score}, threshold "
    "{threshold}). Check its links and attachments, or ask your administrator",
)

# Fields a sender could forge to look scanned and clean: ours replace them.
OWN_FIELDS = ("x-spam-status", "x-spam-score", "x-spam-flag")


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
    """DATA: score the message; refuse at ``reject_score``, file into Junk at ``junk_score``."""

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
        bayes: Bayes | None = None,
        macro_score: float = 3.0,
        macro_max_size: int = macros_mod.DEFAULT_MAX_SIZE,
    ) -> None:
        self.reject_score = reject_score
        self.junk_score = junk_score
        # The junk-level GTUBE scores exactly the junk threshold, whatever it is set to.
        self.rules = engine.with_weights(rules, {"GTUBE_JUNK": junk_score})
        self.resolver = resolver
        self.uribl = list(uribl)
        self.dnsbl = dnsbl
        self.bayes = bayes
        self.macro_score = macro_score
        self.macro_max_size = macro_max_size

    # -- scoring ------------------------------------------------------------------------

    def _local(self, msg: bytes) -> tuple[Parsed, Score]:
        """Parse, rules, phishing and Bayes: CPU and SQLite work, run on a worker thread."""
        parsed = engine.parse(msg)
        score = engine.analyse(parsed, self.rules)
        if self.bayes is not None:
            try:
                h = bayes_mod.hit(self.bayes.score_parsed(parsed))
            except Exception as e:  # a locked or broken token database: no opinion
                event(log, "bayes.error", level=logging.WARNING, error=repr(e))
                h = None
            if h is not None:
                score = score.plus([h])
        return parsed, score

    async def _network(self, s: Session, parsed: Parsed) -> list[Hit]:
        hits: list[Hit] = []
        if self.uribl and self.resolver is not None:
            hits += await engine.uribl(self.resolver, self.uribl, parsed.links)
        if self.dnsbl is not None and s.role == "mx" and s.user is None:
            _, listed = await self.dnsbl.score(s.peer)
            # Heavy listings were refused at RCPT; what is left here is the lighter score.
            hits += [Hit("RCVD_IN_DNSBL", w, f"{zone}:{code}") for zone, code, w in listed]
        return hits

    async def score(self, s: Session, msg: bytes) -> Score:
        """The message's score with every engine (what :meth:`data` decides on)."""
        parsed, score = await asyncio.to_thread(self._local, msg)
        extra = await self._network(s, parsed)
        if self.macro_score > 0:
            reports = await macros_mod.scan(parsed.attachments, max_size=self.macro_max_size)
            extra += macros_mod.hits(reports, self.macro_score)
        return score.plus(extra)

    # -- the decision -------------------------------------------------------------------

    async def data(self, s: Session, sender: str, rcpts: Sequence[str], msg: bytes) -> CheckResult:
        try:
            score = await self.score(s, msg)
        except Exception:  # fail open: a filter bug must not refuse or lose mail
            log.exception("spam.error peer=%s sender=%s", s.peer, sender or "<>")
            return CONTINUE
        total = score.total
        fields: dict[str, Any] = dict(
            role=s.role,
            peer=s.peer,
            user=s.user,
            sender=sender or "<>",
            score=_fmt(total),
            rules=score.summary(),
        )
        if total >= self.reject_score:
            event(log, "spam.refused", threshold=f"{self.reject_score:g}", **fields)
            template = SPAM_NOT_SENT if s.role == "submission" else SPAM_REFUSED
            text = template.text.format(score=_fmt(total), threshold=f"{self.reject_score:g}")
            return refuse(template.with_text(text), f"spam score {_fmt(total)}: {score.summary()}")
        if s.role != "mx":
            return CONTINUE  # outbound: sent, or refused above; Junk is a recipient's folder
        junk = total >= self.junk_score
        if junk:
            event(log, "spam.junk", threshold=f"{self.junk_score:g}", **fields)
        return CheckResult(
            Action.CONTINUE,
            prepend_headers=self._fields(score, junk),
            remove_headers=tuple(
                f.raw for f in header_fields(split_message(msg)[0]) if f.lname in OWN_FIELDS
            ),
            meta={"folder": "Junk"} if junk else {},
        )

    def _fields(self, score: Score, junk: bool) -> bytes:
        names = ",".join(score.rules) or "none"
        status = f"{'Yes' if junk else 'No'}, score={_fmt(score.total)} " + (
            f"required={self.junk_score:g} tests={names}"
        )
        out = _fold("X-Spam-Status", status) + f"X-Spam-Score: {_fmt(score.total)}\r\n".encode()
        if junk:
            out += b"X-Spam-Flag: YES\r\n"
        return out


def bayes_path(data_dir: Path) -> Path:
    """Where the node's token database lives."""
    return data_dir / "bayes.sqlite3"
