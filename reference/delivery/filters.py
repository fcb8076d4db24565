"""The user's own Sieve script at local delivery: where the message is filed, and the
messages the script sends (redirects, the vacation reply, the rejection message).

A script that fails never loses mail: the message is kept where it would have gone
without a script, and the error is logged and left beside the script for the user.
"""

from __future__ import annotations

import email.utils
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from reference.clock import Clock
from reference.log import event
from reference.sieve import (
    Context,
    Filing,
    Limits,
    ReplyLog,
    Result,
    Script,
    ScriptStore,
    SieveError,
    SieveRuntimeError,
    Vacation,
    error_notice,
    evaluate,
    no_reply_reason,
    rejection,
    vacation_reply,
)
from reference.sieve.outofoffice import SCRIPT_NAME as OUT_OF_OFFICE
from reference.spool import QueueEntry, Spool

log = logging.getLogger("mailspec.sieve")

_SCORE = re.compile(rb"^X-Spam-Score:[ \t]*(-?[0-9]+(?:\.[0-9]+)?)", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class Outgoing:
    """A message the script sends, through the outbound queue."""

    sender: str
    recipient: str
    data: bytes
    kind: str  # "redirect", "vacation", "reject"


@dataclass
class Decision:
    """Where one recipient's copy goes, and what goes out."""

    filings: list[Filing]
    outgoing: list[Outgoing] = field(default_factory=list)
    discarded: bool = False
    notices: list[bytes] = field(default_factory=list)  # for the user's INBOX


def spam_score(data: bytes) -> float | None:
    """Our own spam score, from the X-Spam-Score field the MX's check wrote (and from which
    it removed any field of that name the sender had put in)."""
    end = data.find(b"\r\n\r\n")
    m = _SCORE.search(data[: end if end >= 0 else len(data)])
    return float(m.group(1)) if m else None


def _delivered_to(data: bytes, account: str) -> int:
    """How many Delivered-To fields of the header name ``account``."""
    end = data.find(b"\r\n\r\n")
    head = data[: end if end >= 0 else len(data)].decode("utf-8", "replace")
    found = re.findall(r"^Delivered-To:[ \t]*(\S+)", head, re.MULTILINE | re.IGNORECASE)
    return sum(1 for a in found if a.strip("<>").lower() == account.lower())


def _without_return_path(data: bytes) -> bytes:
    if data[:12].lower() == b"return-path:":
        return data.split(b"\r\n", 1)[1]
    return data


class SieveFilter:
    """Runs an account's active script for one delivery."""

    def __init__(
        self,
        scripts: ScriptStore,
        replies: ReplyLog,
        spool: Spool,
        clock: Clock,
        *,
        hostname: str,
        # An account's aliases: (its own, the group aliases it is one of the targets of).
        addresses: Callable[[str], tuple[Iterable[str], Iterable[str]]],
        spam_threshold: Callable[[str], float] | float = 10.0,
        limits: Limits | None = None,
        subaddress_delimiter: str = "+",
    ) -> None:
        self.scripts = scripts
        self.replies = replies
        self.spool = spool
        self.clock = clock
        self.hostname = hostname
        self.addresses = addresses
        self.spam_threshold = spam_threshold
        self.limits = limits or Limits()
        self.subaddress_delimiter = subaddress_delimiter
        # Set by the composition root once the queue runner exists: start what we queue.
        self.notify: Callable[[str], None] | None = None

    def decide(self, entry: QueueEntry, rcpt: str, account: str, data: bytes) -> Decision:
        """Run the script (in a worker thread); never raises for a script's fault."""
        keep = Filing(entry.folder or "INBOX")
        try:
            script = self.scripts.active(account)
            ooo = self._out_of_office(account)
        except (SieveError, OSError) as e:
            return self._failed(entry, account, f"script unreadable: {e}", keep)
        if script is None and ooo is None:
            return Decision([keep])
        threshold = (
            self.spam_threshold(account) if callable(self.spam_threshold) else self.spam_threshold
        )
        ctx = Context(
            message=data,
            envelope_from=entry.sender,
            envelope_to=rcpt,
            user=account,
            now=self.clock.now(),
            spam_score=spam_score(data),
            spam_threshold=threshold,
            keep_folder=keep.folder,
            subaddress_delimiter=self.subaddress_delimiter,
            limits=self.limits,
        )
        try:
            result = evaluate(script, ctx) if script is not None else Result(filings=(keep,))
        except SieveRuntimeError as e:
            failed = self._failed(entry, account, str(e), keep)
            return self._with_out_of_office(failed, ooo, ctx, entry, account)
        except Exception as e:  # a fault of ours on odd mail: still never lose it
            log.exception("sieve.fault qid=%s user=%s", entry.qid, account)
            failed = self._failed(entry, account, f"internal error: {e!r}", keep)
            return self._with_out_of_office(failed, ooo, ctx, entry, account)
        if ooo is not None and result.vacation is None and not (result.reject or result.discarded):
            # The out-of-office form and the user's own script both apply: the script files
            # the message, and the form's reply goes out unless the script refused or
            # discarded the message or sent a vacation reply of its own (one per message).
            result = replace(result, vacation=self._vacation(ooo, ctx))
        return self._decision(entry, rcpt, account, data, result)

    def _out_of_office(self, account: str) -> Script | None:
        """The out-of-office form's script, when it is on beside another active script."""
        if self.scripts.active_name(account) == OUT_OF_OFFICE:
            return None  # it is the active script itself (set before both applied)
        return self.scripts.compiled(account, OUT_OF_OFFICE)

    @staticmethod
    def _vacation(ooo: Script, ctx: Context) -> Vacation | None:
        try:
            return evaluate(ooo, ctx).vacation
        except SieveRuntimeError:
            return None  # a generated script does not fail; if it did, no reply, mail kept

    def _with_out_of_office(
        self, decision: Decision, ooo: Script | None, ctx: Context, entry: QueueEntry, account: str
    ) -> Decision:
        """A failed user script still leaves the out-of-office reply to go out."""
        vac = None if ooo is None else self._vacation(ooo, ctx)
        if vac is None:
            return decision
        sent = self._decision(entry, ctx.envelope_to, account, ctx.message, Result(vacation=vac))
        decision.outgoing.extend(sent.outgoing)
        return decision

    def _decision(
        self, entry: QueueEntry, rcpt: str, account: str, data: bytes, result: Result
    ) -> Decision:
        now = self.clock.now()
        out: list[Outgoing] = []
        filings = list(result.filings)
        if result.redirects and _delivered_to(data, account) > 1:
            # It came back to this account already (our own Delivered-To, added at each
            # local delivery and kept on redirect): a redirect loop. Kept here, not sent on.
            event(log, "sieve.redirect-loop", qid=entry.qid, user=account)
            if not filings:
                filings.append(Filing(entry.folder or "INBOX"))
            result = replace(result, redirects=())
        for address in result.redirects:
            # RFC 5228 4.2: the message goes on as it is, from the same envelope sender;
            # Return-Path belongs to a final delivery only (RFC 5321 4.4).
            out.append(Outgoing(entry.sender, address, _without_return_path(data), "redirect"))
        if result.reject is not None and entry.sender and entry.kind != "dsn":
            # RFC 5429 2.1: after acceptance the refusal becomes a message to the sender
            # (never to a null sender: no loops).
            body = rejection(
                result.reject.reason,
                data,
                sender=entry.sender,
                recipient=rcpt,
                hostname=self.hostname,
                now=now,
            )
            out.append(Outgoing("", entry.sender, body, "reject"))
        vac = result.vacation
        if vac is not None:
            aliases, groups = self.addresses(account)
            own = {a.lower() for a in (account, rcpt, *aliases, *vac.addresses)}
            # Mail to a group alias is a distribution, not the user's own mail (RFC 5230
            # 4.5), and a reply never goes to a group alias: its members (the user too)
            # would all get it.
            own -= {g.lower() for g in groups} - {a.lower() for a in vac.addresses}
            why = no_reply_reason(data, entry.sender, own)
            if why is None and entry.sender.lower() in {g.lower() for g in groups}:
                why = "group alias"
            if why is None and not self.replies.claim(
                account, entry.sender, vac.handle or vac.reason, now, vac.seconds
            ):
                why = "replied within the period"  # RFC 5230 4.2
            if vac.from_ and email.utils.parseaddr(vac.from_)[1].lower() not in own:
                # RFC 5230 4.3: a reply never goes out in someone else's name.
                event(log, "sieve.vacation-from-refused", qid=entry.qid, user=account)
                vac = replace(vac, from_="")
            if why is None:
                reply = vacation_reply(
                    vac, data, sender=entry.sender, user=account, hostname=self.hostname, now=now
                )
                # RFC 3834 3.3: an automatic reply is sent from the null sender.
                out.append(Outgoing("", entry.sender, reply, "vacation"))
            else:
                event(log, "sieve.vacation-skipped", qid=entry.qid, user=account, why=why)
        discarded = result.discarded
        event(
            log,
            "sieve.done",
            qid=entry.qid,
            user=account,
            folders=",".join(f.folder for f in result.filings) or "-",
            redirects=len(result.redirects),
            reject="yes" if result.reject else "no",
            discarded="yes" if discarded else "no",
        )
        return Decision(filings, out, discarded)

    def _failed(self, entry: QueueEntry, account: str, why: str, keep: Filing) -> Decision:
        """The message kept as without a script; the error logged, kept for the user, and
        the first one of this script told in their INBOX."""
        event(log, "sieve.error", level=logging.WARNING, qid=entry.qid, user=account, error=why)
        decision = Decision([keep])
        if self.scripts.record_error(account, f"{entry.qid}: {why}"):
            notice = error_notice(account, why, hostname=self.hostname, now=self.clock.now())
            decision.notices.append(notice)
        return decision

    async def send(self, entry: QueueEntry, messages: list[Outgoing]) -> None:
        """Queue what the script sends (after the message itself was filed)."""
        for msg in messages:
            queued = await self.spool.enqueue(
                msg.sender,
                [msg.recipient],
                msg.data,
                role="sieve",
                kind="dsn" if msg.kind == "reject" else "mail",
                about=entry.qid,
            )
            event(log, f"sieve.{msg.kind}", qid=queued.qid, about=entry.qid, to=msg.recipient)
            if self.notify is not None:
                self.notify(queued.qid)
