"""What one delivery attempt to one recipient came to: shared by local, remote and the runner."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt to one recipient came to."""

    status: str  # "delivered", "deferred" or "bounced" ("reputation" inside the relay)
    detail: str  # the reply, e.g. "550 5.1.1 no such user", or our own reason
    remote: str = ""  # the host that answered, if one did
