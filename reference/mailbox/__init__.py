"""The message store shared by delivery, IMAP and POP3: Maildir++ with a UID index."""

from reference.mailbox.paths import (
    DELIMITER,
    SPECIAL_USE,
    InvalidAddress,
    InvalidFolder,
    normalize_folder,
)
from reference.mailbox.store import (
    SYSTEM_FLAGS,
    Mailbox,
    MailStore,
    NoSuchFolder,
    NoSuchMessage,
    StoredMessage,
    normalize_flags,
)

__all__ = [
    "DELIMITER",
    "SPECIAL_USE",
    "SYSTEM_FLAGS",
    "InvalidAddress",
    "InvalidFolder",
    "MailStore",
    "Mailbox",
    "NoSuchFolder",
    "NoSuchMessage",
    "StoredMessage",
    "normalize_flags",
    "normalize_folder",
]
