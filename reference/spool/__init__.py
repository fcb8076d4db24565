"""The durable queue: messages written and fsynced before the 250, with per-recipient state."""

from reference.spool.lease import SpoolLease
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
    "QueueEntry",
    "Recipient",
    "Spool",
    "SpoolError",
    "SpoolLease",
]
