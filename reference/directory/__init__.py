"""The directory: domains and accounts in SQL (SQLite under data_dir by default)."""

from reference.directory.access import ACCESS_ACTIONS, ACCESS_KINDS, GLOBAL, AccessRule
from reference.directory.accounts import Account
from reference.directory.aliases import Destinations
from reference.directory.cached import CachedDirectory
from reference.directory.cos import DEFAULT_COS, ClassOfService
from reference.directory.directory import Directory
from reference.directory.lists import LIST_POLICIES, ArchiveRule, ListRole, MailingList
from reference.directory.passwords import hash_password, verify_password
from reference.directory.schema import DirectoryError, normalize_domain, split_address
from reference.directory.spam import SpamSettings, normalize_sender_pattern
from reference.directory.sql import DirectoryUnavailable
from reference.directory.tokens import ROLES, ApiToken

__all__ = [
    "ACCESS_ACTIONS",
    "ACCESS_KINDS",
    "DEFAULT_COS",
    "GLOBAL",
    "LIST_POLICIES",
    "ROLES",
    "AccessRule",
    "Account",
    "ApiToken",
    "ArchiveRule",
    "CachedDirectory",
    "ClassOfService",
    "Destinations",
    "Directory",
    "DirectoryError",
    "DirectoryUnavailable",
    "ListRole",
    "MailingList",
    "SpamSettings",
    "hash_password",
    "normalize_domain",
    "normalize_sender_pattern",
    "split_address",
    "verify_password",
]
