"""What the envelope carries besides sender and recipients, typed and decoded once: the DSN
request (RFC 3461), the body type (RFC 6152, RFC 3030) and SMTPUTF8 (RFC 6531)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DsnRequest", "RecipientDsn"]


@dataclass(frozen=True)
class RecipientDsn:
    """RFC 3461 4.1 and 4.2 for one recipient: when to notify, and who it first was."""

    notify: str | None = None  # "NEVER" or e.g. "SUCCESS,FAILURE" (upper case)
    orcpt: tuple[str, str] | None = None  # (addr-type, address decoded from xtext)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.notify is not None:
            out["notify"] = self.notify
        if self.orcpt is not None:
            out["orcpt"] = list(self.orcpt)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecipientDsn:
        orcpt = d.get("orcpt")
        return cls(d.get("notify"), (str(orcpt[0]), str(orcpt[1])) if orcpt else None)


@dataclass(frozen=True)
class DsnRequest:
    """RFC 3461 4.3 and 4.4 for the message, and the per-recipient requests."""

    ret: str | None = None  # "FULL" or "HDRS"
    # As sent, in xtext: RFC 3464 2.2.1 returns it in Original-Envelope-Id that way.
    envid: str | None = None
    recipients: Mapping[str, RecipientDsn] = field(default_factory=dict)

    def for_recipient(self, address: str) -> RecipientDsn:
        return self.recipients.get(address, RecipientDsn())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ret is not None:
            out["ret"] = self.ret
        if self.envid is not None:
            out["envid"] = self.envid
        rcpts = {a: r.to_dict() for a, r in self.recipients.items() if r.to_dict()}
        if rcpts:
            out["recipients"] = rcpts
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DsnRequest:
        rcpts = {a: RecipientDsn.from_dict(r) for a, r in d.get("recipients", {}).items()}
        return cls(d.get("ret"), d.get("envid"), rcpts)
