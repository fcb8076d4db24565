"""The directory: domains and accounts in SQL (SQLite under data_dir by default)."""

from __future__ import annotations

from reference.directory.aliases import Aliases
from reference.directory.lanes import BulkSenders
from reference.directory.spam import SpamPreferences
from reference.directory.tokens import ApiTokens


class Directory(Aliases, SpamPreferences, BulkSenders, ApiTokens):
    """Domains, accounts, aliases, quotas, spam settings, sender lists, bulk senders and API
    tokens, in one SQL database. Thread-safe; async wrappers keep hashing off the event loop."""
