"""`mailspec cos create|set|assign|show|list|delete`: classes of service in the directory the
server reads; refusals say why and change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.cli import main


def run(capsys: pytest.CaptureFixture[str], tmp: Path, *argv: str) -> tuple[int, str, str]:
    rc = main([*argv, "--data-dir", str(tmp)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cos_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ("domain", "add", "example.test"),
        ("user", "add", "bob@example.test", "--password", "pw"),
        ("cos", "create", "basic", "--quota-messages", "2", "--rate-recipients", "3/1h"),
        ("cos", "create", "default", "--max-size", "1000000", "--no-external"),
        ("cos", "assign", "example.test", "basic"),
    ):
        assert run(capsys, tmp_path, *argv)[0] == 0, argv
    _, out, _ = run(capsys, tmp_path, "cos", "show", "bob@example.test")
    assert "class basic (from its domain)" in out and "quota_messages    2" in out
    assert run(capsys, tmp_path, "cos", "list")[1] == "basic\texample.test\ndefault\t-\n"
    assert run(capsys, tmp_path, "cos", "assign", "example.test", "--off")[0] == 0
    _, out, _ = run(capsys, tmp_path, "cos", "show", "bob@example.test")
    assert "class default (from its default)" in out and "external          refused" in out
    assert run(capsys, tmp_path, "cos", "set", "basic", "--unset", "quota-messages")[0] == 0
    assert "quota_messages    (platform)" in run(capsys, tmp_path, "cos", "show", "basic")[1]
    assert run(capsys, tmp_path, "cos", "delete", "basic")[0] == 0
    assert run(capsys, tmp_path, "cos", "list")[1] == "default\t-\n"


REFUSALS = [
    (("cos", "create", "Bad!"), "not a class name"),
    (("cos", "set", "nope", "--lists"), "no such class"),
    (("cos", "create", "x", "--rate-bytes", "lots"), "not a limit"),
    (("cos", "assign", "nobody@example.test", "default"), "no such account"),
    (("cos", "assign", "example.test"), "NAME, or --off"),
]


def test_cos_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, tmp_path, "domain", "add", "example.test")[0] == 0
    assert run(capsys, tmp_path, "cos", "create", "default")[0] == 0
    for argv, says in REFUSALS:
        rc, _, err = run(capsys, tmp_path, *argv)
        assert rc == 1 and says in err, (argv, err)
    assert run(capsys, tmp_path, "cos", "list")[1] == "default\t-\n"
