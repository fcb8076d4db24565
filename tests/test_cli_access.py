"""`mailspec access add|remove|list`: the rules land in the directory the server reads,
and bad input is refused with a reason, changing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.cli import main
from reference.directory import AccessRule, Directory


def run(capsys: pytest.CaptureFixture[str], tmp: Path, *argv: str) -> tuple[int, str, str]:
    rc = main([*argv, "--data-dir", str(tmp)])
    out, err = capsys.readouterr()
    return rc, out, err


def rules(tmp: Path) -> list[AccessRule]:
    d = Directory(tmp / "directory.sqlite3")
    try:
        return d.access_rules()
    finally:
        d.close()


def test_access_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, tmp_path, "domain", "add", "example.test")[0] == 0
    rc, out, _ = run(
        capsys, tmp_path, "access", "add", "client", "198.51.100.9/24", "reject", "--text", "Go"
    )
    assert rc == 0 and "198.51.100.0/24" in out
    argv = (
        "access",
        "add",
        "recipient",
        "Staff@Example.TEST",
        "restrict",
        "--domain",
        "example.test",
    )
    assert run(capsys, tmp_path, *argv)[0] == 0
    assert run(capsys, tmp_path, "access", "add", "sender", "@spam.test", "accept")[0] == 0
    assert rules(tmp_path) == [
        AccessRule("", "client", "198.51.100.0/24", "reject", "Go"),
        AccessRule("", "sender", "spam.test", "accept", ""),
        AccessRule("example.test", "recipient", "staff@example.test", "restrict", ""),
    ]
    _, out, _ = run(capsys, tmp_path, "access", "list", "--domain", "example.test")
    assert out.split() == ["example.test", "recipient", "staff@example.test", "restrict"]
    assert run(capsys, tmp_path, "access", "remove", "sender", "spam.test")[0] == 0
    rc, _, err = run(capsys, tmp_path, "access", "remove", "sender", "spam.test")
    assert rc == 1 and "no sender rule" in err


REFUSALS = [
    (("sender", "spam.test", "restrict"), "restrict is for a recipient"),
    (("client", "not-an-ip", "reject"), "not an address or network"),
    (("sender", "x.test", "reject", "--domain", "nope.test"), "not ours"),
    (("helo", "bad..name", "reject"), "not a domain name"),
]


def test_access_bad_rules_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, says in REFUSALS:
        rc, _, err = run(capsys, tmp_path, "access", "add", *argv)
        assert rc == 1 and says in err, (argv, err)
    assert rules(tmp_path) == []
