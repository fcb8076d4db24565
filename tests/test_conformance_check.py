"""`mailspec check` as a user runs it: on a machine with clamd, and on one without."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def check_virus_rows(
    tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "reference.cli", "check", "-k", "virus", "--report", "rep"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        # Only what the test says: a MAILSPEC_CLAMD in the caller's environment must not
        # decide which way this runs.
        env={**{k: v for k, v in os.environ.items() if k != "MAILSPEC_CLAMD"}, **env},
    )
    rows = json.loads((tmp_path / "rep" / "conformance.json").read_text())["requirements"]
    return done, {r["id"]: r for r in rows}


VIRUS_ROWS = {"PLATFORM-inbound.virus", "PLATFORM-outbound.virus"}


def test_with_clamd_the_virus_rows_pass(tmp_path: Path) -> None:
    done, rows = check_virus_rows(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert set(rows) >= VIRUS_ROWS
    assert {rows[i]["status"] for i in VIRUS_ROWS} == {"pass"}
    assert "lacks 'antivirus'" not in done.stdout


def test_without_clamd_the_virus_rows_are_not_applicable(tmp_path: Path) -> None:
    # Before: both MUSTs failed (the reference, started without a scanner, took EICAR).
    done, rows = check_virus_rows(tmp_path, MAILSPEC_CLAMD="none")
    assert done.returncode == 0, done.stdout[-3000:]
    why = (
        "target 'reference' lacks capability 'antivirus': "
        "MAILSPEC_CLAMD=none: running without clamd"
    )
    for i in VIRUS_ROWS:
        assert (rows[i]["status"], rows[i]["detail"]) == ("not_applicable", why)
    assert {r["status"] for r in rows.values()} == {"not_applicable"}
    out = done.stdout
    notice = out.index("mailspec: target 'reference' lacks 'antivirus'")
    assert notice < out.index("conformance/tests/"), "said before the first test"
    assert " pass " not in out and "FAIL" not in out
