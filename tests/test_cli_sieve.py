"""`mailspec sieve …` and `mailspec vacation …` on a data directory (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.cli import main

USER = "bob@example.test"


@pytest.fixture
def data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    d = str(tmp_path / "var")
    assert main(["domain", "add", "example.test", "--data-dir", d]) == 0
    assert main(["user", "add", USER, "--password", "pw", "--data-dir", d]) == 0
    assert main(["alias", "add", "robert@example.test", USER, "--data-dir", d]) == 0
    capsys.readouterr()
    return d


def run(capsys: pytest.CaptureFixture[str], data: str, *args: str) -> tuple[int, str, str]:
    rc = main([*args, "--data-dir", data])
    out, err = capsys.readouterr()
    return rc, out, err


def test_put_list_show_activate_delete(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "f.sieve"
    script.write_text('require "fileinto";\nfileinto "Later";\n')
    # An alias names its account.
    assert run(capsys, data, "sieve", "put", "robert@example.test", "main", str(script))[0] == 0
    assert run(capsys, data, "sieve", "list", USER)[1] == "main\n"
    assert run(capsys, data, "sieve", "activate", USER, "main")[0] == 0
    assert run(capsys, data, "sieve", "list", USER)[1] == "main  (active)\n"
    assert run(capsys, data, "sieve", "show", USER, "main")[1] == script.read_text()
    rc, _, err = run(capsys, data, "sieve", "delete", USER, "main")
    assert rc == 1 and "active" in err
    assert run(capsys, data, "sieve", "activate", USER, "--off")[0] == 0
    assert run(capsys, data, "sieve", "delete", USER, "main")[0] == 0
    assert run(capsys, data, "sieve", "list", USER)[1] == ""


def test_check_and_bad_scripts(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.sieve"
    bad.write_text('fileinto "x";\n')
    rc, _, err = run(capsys, data, "sieve", "check", str(bad))
    assert rc == 1 and "fileinto" in err
    rc, _, err = run(capsys, data, "sieve", "put", USER, "bad", str(bad))
    assert rc == 1 and "fileinto" in err
    rc, _, err = run(capsys, data, "sieve", "list", "nobody@example.test")
    assert rc == 1 and "no such account" in err


def test_vacation_set_show_clear(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = tmp_path / "own.sieve"
    own.write_text("keep;\n")
    run(capsys, data, "sieve", "put", USER, "mine", str(own), "--activate")
    rc, out, _ = run(
        capsys, data, "vacation", "set", USER, "--subject", "Away", "--text", "Back Monday.",
        "--start", "2026-12-20", "--end", "2027-01-03", "--days", "3",
    )  # fmt: skip
    # The user's own script stays active: both apply at delivery.
    assert rc == 0 and "'mine' still applies" in out
    assert run(capsys, data, "sieve", "list", USER)[1] == "mine  (active)\nout-of-office\n"
    rc, out, _ = run(capsys, data, "vacation", "show", USER)
    assert "2026-12-20" in out and "2027-01-03" in out and "Back Monday." in out
    assert "3 between replies" in out and "beside    mine" in out
    rc, out, _ = run(capsys, data, "vacation", "clear", USER)
    assert rc == 0 and "cleared" in out
    assert run(capsys, data, "sieve", "list", USER)[1] == "mine  (active)\n"
    assert "no out-of-office" in run(capsys, data, "vacation", "show", USER)[1]
    rc, _, err = run(
        capsys, data, "vacation", "set", USER, "--subject", "x", "--text", "y", "--start", "soon"
    )
    assert rc == 1 and "YYYY-MM-DD" in err
