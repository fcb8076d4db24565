"""`mailspec alias|domain|user …` for the addresses of issue 16: several and remote targets,
catch-alls, alias domains, forwarding, and deleting accounts and domains with their mail."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.cli import main
from reference.directory import Directory
from reference.mailbox import MailStore


def run(capsys: pytest.CaptureFixture[str], tmp: Path, *argv: str) -> tuple[int, str, str]:
    rc = main([*argv, "--data-dir", str(tmp)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    for argv in (
        ("domain", "add", "example.test"),
        ("domain", "add", "archive.test"),
        ("user", "add", "alice@example.test", "--password", "pw"),
        ("user", "add", "bob@example.test", "--password", "pw"),
        ("user", "add", "keeper@archive.test", "--password", "pw"),
    ):
        assert run(capsys, tmp_path, *argv)[0] == 0
    return tmp_path


def store(data: Path) -> MailStore:
    return MailStore(data / "mail")


def test_alias_to_a_remote_address(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, data, "alias", "add", "info@example.test", "someone@gmail.com")
    assert rc == 0, err
    assert out.startswith("alias info@example.test -> someone@gmail.com added")
    rc, out, _ = run(capsys, data, "alias", "add", "info@example.test", "bob@example.test")
    assert rc == 0 and "-> bob@example.test added" in out
    rc, out, _ = run(capsys, data, "alias", "list")
    assert out.splitlines() == [
        "info@example.test -> bob@example.test",
        "info@example.test -> someone@gmail.com",
    ]
    rc, out, _ = run(capsys, data, "alias", "remove", "info@example.test", "someone@gmail.com")
    assert rc == 0 and "removed" in out
    rc, _, err = run(capsys, data, "alias", "add", "x@example.test", "nobody@example.test")
    assert rc == 1 and "no such account: nobody@example.test" in err


def test_catchall_and_alias_domain(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, data, "domain", "catchall", "example.test", "bob@example.test")
    assert rc == 0 and out.startswith("catch-all of example.test -> bob@example.test")
    rc, out, _ = run(capsys, data, "domain", "catchall", "example.test")
    assert out.strip() == "example.test: bob@example.test"
    rc, out, _ = run(capsys, data, "domain", "alias", "example.org", "example.test")
    assert rc == 0 and out.startswith("domain example.org delivers as example.test")
    rc, out, _ = run(capsys, data, "domain", "list")
    assert "example.org (alias of example.test)" in out.splitlines()
    d = Directory(data / "directory.sqlite3")
    try:
        found = d.expand("whoever@example.org")
        assert [a.address for a in found.accounts] == ["bob@example.test"]
    finally:
        d.close()
    rc, out, _ = run(capsys, data, "domain", "catchall", "example.test", "--off")
    assert rc == 0 and "removed" in out
    rc, out, _ = run(capsys, data, "domain", "delete", "example.org")
    assert rc == 0 and "domain example.org deleted" in out


def test_user_forward(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, data, "user", "forward", "alice@example.test", "a@gmail.test")
    assert rc == 0 and out.startswith("alice@example.test forwards to a@gmail.test, keeps no copy")
    rc, out, _ = run(
        capsys, data, "user", "forward", "alice@example.test", "a@gmail.test", "--keep"
    )
    assert "keeps a copy" in out
    rc, out, _ = run(capsys, data, "user", "forward", "alice@example.test")
    assert out.strip() == "alice@example.test forwards to a@gmail.test, keeps a copy"
    rc, out, _ = run(capsys, data, "user", "forward", "alice@example.test", "--off")
    assert rc == 0 and "no forwarding" in out
    rc, _, err = run(capsys, data, "user", "forward", "nobody@example.test", "x@gmail.test")
    assert rc == 1 and "no such account" in err


def test_user_delete_says_what_happens_to_the_mail(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mail = store(data)
    mail.deliver("alice@example.test", b"Subject: one\r\n\r\nhello\r\n")
    mail.create_folder("alice@example.test", "Work")
    mail.deliver("alice@example.test", b"Subject: two\r\n\r\nwork\r\n", "Work", flags=["\\Seen"])
    rc, _, err = run(capsys, data, "user", "delete", "alice@example.test")
    assert rc == 1 and "say what happens to the mail" in err
    rc, _, err = run(
        capsys, data, "user", "delete", "alice@example.test", "--archive-to", "nobody@x.test"
    )
    assert rc == 1 and "no such archive account" in err
    rc, out, err = run(
        capsys, data, "user", "delete", "alice@example.test", "--archive-to", "keeper@archive.test"
    )
    assert rc == 0, err
    assert "alice@example.test deleted: 2 message(s) moved to Archive/alice@example_test" in out
    folders = mail.folders("keeper@archive.test")
    assert "Archive/alice@example_test/INBOX" in folders
    with mail.open("keeper@archive.test", "Archive/alice@example_test/Work") as box:
        (moved,) = box.messages()
        assert "\\Seen" in moved.flags and b"work" in box.read(moved.uid)
    assert not mail.has_account("alice@example.test")
    rc, _, err = run(capsys, data, "user", "delete", "alice@example.test", "--remove-mail")
    assert rc == 1 and "no such account" in err


def test_user_delete_with_a_full_archive_keeps_the_mail(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store(data).deliver("alice@example.test", b"Subject: one\r\n\r\nhello\r\n")
    assert run(capsys, data, "user", "quota", "keeper@archive.test", "--messages", "1")[0] == 0
    store(data).deliver("keeper@archive.test", b"Subject: own\r\n\r\nfull\r\n")
    argv = ("user", "delete", "alice@example.test", "--archive-to", "keeper@archive.test")
    rc, _, err = run(capsys, data, *argv)
    assert rc == 1 and "its mail stays in its mailbox" in err
    assert store(data).has_account("alice@example.test")
    # Once there is room, the same command moves what was kept.
    assert run(capsys, data, "user", "quota", "keeper@archive.test", "--messages", "0")[0] == 0
    rc, out, err = run(capsys, data, *argv)
    assert rc == 0, err
    assert "1 message(s) moved" in out and not store(data).has_account("alice@example.test")


def test_domain_delete(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store(data).deliver("bob@example.test", b"Subject: one\r\n\r\nhello\r\n")
    rc, _, err = run(capsys, data, "domain", "delete", "example.test")
    assert rc == 1 and "say what happens to the mail" in err
    rc, _, err = run(
        capsys, data, "domain", "delete", "example.test", "--archive-to", "bob@example.test"
    )
    assert rc == 1 and "being deleted itself" in err
    rc, out, err = run(capsys, data, "domain", "delete", "example.test", "--remove-mail")
    assert rc == 0, err
    lines = out.splitlines()
    assert "alice@example.test deleted: 0 message(s) removed" in lines
    assert "bob@example.test deleted: 1 message(s) removed" in lines
    assert lines[-1].startswith("domain example.test deleted")
    assert not store(data).has_account("bob@example.test")
    rc, out, _ = run(capsys, data, "domain", "list")
    assert out.split() == ["archive.test"]
