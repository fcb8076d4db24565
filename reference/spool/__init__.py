"""The durable queue: messages written and fsynced before the 250, with per-recipient state."""

from reference.spool.lease import Board, SpoolLease
from reference.spool.queue import (
    BOUNCED,
    DELIVERED,
    PENDING,
    QueueEntry,
    Recipient,
    Spool,
    SpoolError,
)

__all__ = [
    "BOUNCED",
    "DELIVERED",
    "PENDING",
    "Board",
    "QueueEntry",
    "Recipient",
    "Spool",
    "SpoolError",
    "SpoolLease",
]
