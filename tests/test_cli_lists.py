"""`mailspec list|archive …`: distribution lists and archive-all rules from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.cli import main


def run(capsys: pytest.CaptureFixture[str], tmp: Path, *argv: str) -> tuple[int, str, str]:
    rc = main([*argv, "--data-dir", str(tmp)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    for argv in (
        ("domain", "add", "example.test"),
        ("user", "add", "alice@example.test", "--password", "pw"),
        ("user", "add", "vault@example.test", "--password", "pw"),
    ):
        assert run(capsys, tmp_path, *argv)[0] == 0
    return tmp_path


def test_list_commands(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(
        capsys,
        data,
        *("list", "create", "team@example.test", "--owner", "alice@example.test"),
        *("--name", "Team", "--policy", "members", "--member", "alice@example.test"),
    )
    assert rc == 0, err
    assert "list team@example.test (Team): members" in out
    assert "bounces to team-bounces@example.test" in out
    rc, out, err = run(capsys, data, "list", "add-member", "team@example.test", "x@remote.test")
    assert rc == 0 and "x@remote.test added to team@example.test" in out
    rc, out, err = run(capsys, data, "list", "add-member", "team@example.test", "no@example.test")
    assert rc == 1 and "no such account: no@example.test" in err
    rc, out, err = run(capsys, data, "list", "policy", "team@example.test", "local")
    assert rc == 0 and "is local" in out
    rc, out, _ = run(capsys, data, "list", "list")
    assert out == "team@example.test\tlocal\t2 members\towner alice@example.test\n"
    rc, out, err = run(capsys, data, "list", "remove-member", "team@example.test", "y@remote.test")
    assert rc == 1 and "not a member" in err
    assert run(capsys, data, "list", "delete", "team@example.test")[0] == 0
    rc, out, err = run(capsys, data, "list", "show", "team@example.test")
    assert rc == 1 and "no such list" in err


def test_archive_commands(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, data, "archive", "set", "example.test", "vault@example.test")
    assert rc == 0 and "copied into vault@example.test" in out, err
    rc, out, err = run(capsys, data, "archive", "set", "nobody.test", "vault@example.test")
    assert rc == 1 and "not ours" in err
    assert run(capsys, data, "archive", "list")[1] == "example.test\t-> vault@example.test\n"
    assert run(capsys, data, "archive", "clear", "example.test")[0] == 0
    rc, out, err = run(capsys, data, "archive", "clear", "example.test")
    assert rc == 1 and "no archive rule" in err
