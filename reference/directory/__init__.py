"""The directory: domains and accounts in SQL (SQLite under data_dir by default)."""

from reference.directory.accounts import Account
from reference.directory.aliases import Destinations
from reference.directory.directory import Directory
from reference.directory.lists import LIST_POLICIES, ArchiveRule, ListRole, MailingList
from reference.directory.passwords import hash_password, verify_password
from reference.directory.schema import DirectoryError, normalize_domain, split_address
from reference.directory.spam import SpamSettings, normalize_sender_pattern
from reference.directory.tokens import ROLES, ApiToken

__all__ = [
    "LIST_POLICIES",
    "ROLES",
    "Account",
    "ApiToken",
    "ArchiveRule",
    "Destinations",
    "Directory",
    "DirectoryError",
    "ListRole",
    "MailingList",
    "SpamSettings",
    "hash_password",
    "normalize_domain",
    "normalize_sender_pattern",
    "split_address",
    "verify_password",
]
