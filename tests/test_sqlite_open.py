"""Several processes opening a new shared SQLite file at once all get it in WAL mode."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from reference.sqlite import connect


def _open(path: str) -> str:
    db = connect(Path(path))
    try:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        db.close()


def test_concurrent_first_opens(tmp_path: Path) -> None:
    for round_ in range(3):
        path = str(tmp_path / f"shared{round_}.sqlite3")
        with multiprocessing.get_context("spawn").Pool(6) as pool:
            modes = pool.map(_open, [path] * 12)
        assert modes == ["wal"] * 12
