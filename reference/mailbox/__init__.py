"""The message store shared by delivery, IMAP and POP3: Maildir++ with a UID index."""

from reference.mailbox.folder import (
    SYSTEM_FLAGS,
    Changes,
    FlagUpdate,
    Mailbox,
    NoSuchMessage,
    Status,
    StoredMessage,
    TextOf,
    normalize_flags,
)
from reference.mailbox.paths import (
    DELIMITER,
    SPECIAL_USE,
    InvalidAddress,
    InvalidFolder,
    normalize_folder,
)
from reference.mailbox.store import (
    CREATABLE_USES,
    FolderExists,
    MailStore,
    NoSuchFolder,
    Quota,
    QuotaExceeded,
    Usage,
)

__all__ = [
    "CREATABLE_USES",
    "DELIMITER",
    "SPECIAL_USE",
    "SYSTEM_FLAGS",
    "Changes",
    "FlagUpdate",
    "FolderExists",
    "InvalidAddress",
    "InvalidFolder",
    "MailStore",
    "Mailbox",
    "NoSuchFolder",
    "NoSuchMessage",
    "Quota",
    "QuotaExceeded",
    "Status",
    "StoredMessage",
    "TextOf",
    "Usage",
    "normalize_flags",
    "normalize_folder",
]
