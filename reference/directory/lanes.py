"""Queue lanes by sender: the accounts whose mail takes the bulk lane."""

from __future__ import annotations

from reference.directory.accounts import Accounts
from reference.directory.schema import DirectoryError


class BulkSenders(Accounts):
    """Accounts with the bulk-sender flag (newsletters: their mail takes the bulk lane)."""

    def set_bulk_sender(self, address: str, bulk: bool = True) -> str:
        """Mark an account as a sender of newsletters (its mail takes the bulk lane)."""
        account = self.lookup(address)
        if account is None:
            raise DirectoryError(f"no such account: {address}")
        with self._lock:
            if bulk:
                self._db.execute(
                    "INSERT OR IGNORE INTO bulk_senders(address) VALUES (?)", (account.address,)
                )
            else:
                self._db.execute("DELETE FROM bulk_senders WHERE address = ?", (account.address,))
        return account.address

    def is_bulk_sender(self, address: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM bulk_senders WHERE address = ?", (address.lower(),)
            ).fetchone()
        return row is not None
