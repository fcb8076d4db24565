"""The repository a newcomer clones: a README that stands alone, no stray files, a CI setup
script that touches only what it installed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_names_only_files_of_the_repository() -> None:
    links = re.findall(r"\]\(([^)#\s]+)\)", README)  # Markdown links
    # Paths with a folder (a bare `conformance.md` names a report the suite writes).
    paths = re.findall(r"`((?:\.\./|\./)?[\w.-]+/[\w./-]+\.(?:md|toml|py|sh|txt))`", README)
    for target in links + paths:
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        assert not target.startswith("../"), f"the README points outside the repository: {target}"
        assert (ROOT / target).exists(), f"the README names a file that is not here: {target}"


def test_readme_tables_are_whole() -> None:
    lines = README.splitlines()
    for i in range(1, len(lines) - 1):
        # A blank line between two table rows cuts a table in two; the second half then
        # renders as a paragraph of pipes.
        if not lines[i].strip() and lines[i - 1].startswith("|") and lines[i + 1].startswith("|"):
            follows_header = i + 2 < len(lines) and re.match(r"\|\s*-", lines[i + 2])
            assert follows_header, f"README line {i + 1}: a blank line inside a table"


def test_no_generated_output_is_committed() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing committed to look at")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    stray = [f for f in tracked if f.split("/")[0] in ("tmp", "reports", "var")]
    assert stray == []


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def test_ci_services_stops_only_what_it_installed(tmp_path: Path) -> None:
    # A machine that already runs redis-server and lacks clamd: the script installs
    # clamav-daemon and must leave the machine's own redis-server service alone.
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls"
    _stub(bin_, "redis-server", "exit 0")
    _stub(bin_, "id", "echo 0")
    for name in ("apt-get", "service"):
        _stub(bin_, name, f'echo "{name} $*" >> {log}')
    env = {"PATH": str(bin_), "MAILSPEC_CLAMD": str(tmp_path / "no-clamd"), "HOME": str(tmp_path)}
    done = subprocess.run(
        ["/bin/bash", str(ROOT / ".ci" / "services.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert any(c.startswith("apt-get install") and "clamav-daemon" in c for c in calls)
    assert "service clamav-daemon stop" in calls
    assert not [c for c in calls if "redis" in c], calls
    # A client, not a daemon: installed, and nothing to stop.
    assert any(c.startswith("apt-get install") and "sieve-connect" in c for c in calls)
    assert not [c for c in calls if c.startswith("service sieve")], calls
    # The browser and its WebDriver for the control panel's tests: programs, nothing to stop.
    assert any(c.startswith("apt-get install") and "chromium-driver" in c for c in calls)
    assert not [c for c in calls if c.startswith("service chromium")], calls


def test_ci_services_does_nothing_when_all_is_there(tmp_path: Path) -> None:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("redis-server", "clamd", "sieve-connect", "chromium", "chromedriver"):
        _stub(bin_, name, "exit 0")
    _stub(bin_, "apt-get", "exit 1")  # must not be called
    env = {**os.environ, "PATH": str(bin_)}
    done = subprocess.run(
        ["/bin/bash", str(ROOT / ".ci" / "services.sh")], env=env, capture_output=True, timeout=30
    )
    assert done.returncode == 0
