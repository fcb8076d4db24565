"""What a fake MX saw: the messages it accepted and every session's replies."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal

from fakes.mx.catalogue import Reply
from fakes.mx.policy import STAGES, Stage

__all__ = ["Attempt", "Delivery", "Event", "Outcome"]

Outcome = Literal["delivered", "rejected", "tempfailed", "hangup", "accepted", "open"]


@dataclass(frozen=True)
class Delivery:
    """One accepted message, as the MX received it."""

    mx: str  # the fake MX's name
    source: str  # client (peer) address
    helo: str
    tls: bool
    mail_from: str  # "" for the null reverse-path
    rcpt_tos: tuple[str, ...]  # accepted recipients, in order
    data: bytes  # the message as received, dot-unstuffed
    time: float  # the MX clock's now() when DATA ended
    queue_id: str
    mail_options: tuple[str, ...] = ()  # MAIL parameters as sent, keyword upper-cased
    rcpt_options: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    auth_user: str | None = None
    spf: str | None = None  # the MX's SPF result for mail_from from source (None: unchecked)

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass(frozen=True)
class Event:
    """One answer the MX gave at a stage; ``reply`` None means it hung up instead."""

    stage: Stage
    argument: str  # EHLO name, address, or "" (connect, data)
    reply: Reply | None
    rule: str | None  # the rule that decided, None for the default
    time: float

    @property
    def refused(self) -> bool:
        return self.reply is None or not self.reply.positive


@dataclass(frozen=True)
class Attempt:
    """One SMTP session (a connection), from connect to close."""

    mx: str
    source: str
    started: float
    helo: str | None = None
    tls: bool = False
    auth_user: str | None = None
    events: tuple[Event, ...] = ()
    queue_ids: tuple[str, ...] = ()  # messages delivered in this session
    closed: bool = False

    @property
    def stage(self) -> Stage:
        """The furthest stage the session reached."""
        return max((e.stage for e in self.events), key=STAGES.index, default="connect")

    @property
    def refusals(self) -> tuple[Event, ...]:
        return tuple(e for e in self.events if e.refused)

    @property
    def last_reply(self) -> Reply | None:
        return self.events[-1].reply if self.events else None

    @property
    def outcome(self) -> Outcome:
        """delivered > hangup > rejected (any 5xx) > tempfailed (any 4xx) > accepted/open."""
        if self.queue_ids:
            return "delivered"
        refusals = self.refusals
        if any(e.reply is None for e in refusals):
            return "hangup"
        if any(e.reply is not None and e.reply.permanent for e in refusals):
            return "rejected"
        if refusals:
            return "tempfailed"
        return "accepted" if self.closed else "open"
