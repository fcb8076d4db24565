"""Opening the SQLite files that several processes of a node (or a cluster) share."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

__all__ = ["connect"]


def connect(path: Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection in WAL mode, autocommit, usable from several threads.

    Several processes starting at once may all switch a new file to WAL; SQLite answers the
    losers SQLITE_BUSY at once, without its busy handler, so that step is retried here.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    for attempt in range(100):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if ("locked" not in str(e) and "busy" not in str(e)) or attempt == 99:
                db.close()
                raise
            time.sleep(0.05)  # at start-up only: a few other processes initialising
    db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return db
