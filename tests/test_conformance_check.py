"""`mailspec check` as a user runs it: a target that does not answer, a machine without clamd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from test_conformance_probe import closed_port


def test_mailspec_check_stops_before_running_anything(tmp_path: Path) -> None:
    # Before: 110 tests failed one by one with a traceback each (7,558 lines, 20 s).
    ports = [closed_port() for _ in range(3)]
    path = tmp_path / "dead.toml"
    path.write_text(
        'domain = "example.test"\n[endpoints]\n'
        f'smtp = "smtp://127.0.0.1:{ports[0]}"\n'
        f'submission = "smtp://127.0.0.1:{ports[1]}"\n'
        f'imap = "imap://127.0.0.1:{ports[2]}"\n'
    )
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "reference.cli", "check", "--target", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    took = time.monotonic() - t0
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"mailspec check: smtp 127.0.0.1:{ports[0]} unreachable: connection refused",
        f"mailspec check: submission 127.0.0.1:{ports[1]} unreachable: connection refused",
        f"mailspec check: imap 127.0.0.1:{ports[2]} unreachable: connection refused",
    ]
    assert done.stdout == ""
    assert not (tmp_path / "reports").exists()
    # Interpreter start and imports included; the probe itself takes milliseconds.
    assert took < 10.0


def test_mailspec_check_names_a_broken_target_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('domain = "example.test"\n[endpoints]\nsmtp = "http://x"\n')
    done = subprocess.run(
        [sys.executable, "-m", "reference.cli", "check", "--target", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"mailspec check: {path}: endpoints.smtp: unknown scheme in 'http://x'"
    ]


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
