"""Where mail for an address goes: several targets, subaddresses, catch-alls, alias domains,
forwarding; deleting accounts and domains; an old database opened by this version."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.directory import Directory, DirectoryError
from reference.directory.schema import VERSION

SCHEMA0 = Path(__file__).parent / "data" / "directory-schema0.sql"


@pytest.fixture
def directory(directory_target: Path | str) -> Iterator[Directory]:
    d = Directory(directory_target)
    d.add_domain("example.test")
    for user in ("alice", "bob"):
        d.add_user(f"{user}@example.test", "pw")
    yield d
    d.close()


def locals_of(d: Directory, address: str) -> list[str]:
    return [a.address for a in d.expand(address).accounts]


def test_alias_with_local_and_remote_targets(directory: Directory) -> None:
    directory.add_alias("info@example.test", "alice@example.test", "Someone@Gmail.test")
    found = directory.expand("info@example.test")
    assert locals_of(directory, "info@example.test") == ["alice@example.test"]
    assert found.remote == ("someone@gmail.test",)
    # A purely remote alias exists too (the MX accepts it), with no account of its own.
    directory.add_alias("ext@example.test", "someone@gmail.test")
    assert directory.expand("ext@example.test").exists
    assert directory.resolve("ext@example.test") is None
    with pytest.raises(DirectoryError, match="no such account"):
        directory.add_alias("x@example.test", "nobody@example.test")


def test_alias_of_alias_and_loops(directory: Directory) -> None:
    directory.add_alias("sales@example.test", "bob@example.test")
    directory.add_alias("team@example.test", "alice@example.test", "sales@example.test")
    directory.add_alias("sales@example.test", "team@example.test")  # a loop, expanded once
    assert locals_of(directory, "team@example.test") == ["alice@example.test", "bob@example.test"]


@pytest.mark.parametrize("delimiter", ["+", "-"])
def test_subaddress(directory_target: Path | str, delimiter: str) -> None:
    d = Directory(directory_target, delimiter=delimiter)
    d.add_domain("example.test")
    d.add_user("alice@example.test", "pw")
    assert locals_of(d, f"alice{delimiter}news@example.test") == ["alice@example.test"]
    assert locals_of(d, f"Alice{delimiter}a{delimiter}b@example.test") == ["alice@example.test"]
    assert not d.expand("alice_news@example.test").exists
    # An address with the delimiter in it that exists is its own (RFC 5233 leaves it so).
    d.add_user(f"alice{delimiter}news@example.test", "pw")
    assert locals_of(d, f"alice{delimiter}news@example.test") == [
        f"alice{delimiter}news@example.test"
    ]


def test_no_subaddress_without_delimiter(directory_target: Path | str) -> None:
    d = Directory(directory_target, delimiter="")
    d.add_domain("example.test")
    d.add_user("alice@example.test", "pw")
    assert not d.expand("alice+news@example.test").exists


def test_catch_all(directory: Directory) -> None:
    assert not directory.expand("anything@example.test").exists
    directory.add_alias("@example.test", "bob@example.test")
    assert locals_of(directory, "anything@example.test") == ["bob@example.test"]
    assert locals_of(directory, "alice@example.test") == ["alice@example.test"]
    assert locals_of(directory, "alice+x@example.test") == ["alice@example.test"]
    assert directory.remove_alias("@example.test")
    assert not directory.expand("anything@example.test").exists


def test_alias_domain(directory: Directory) -> None:
    directory.add_alias("info@example.test", "bob@example.test")
    assert directory.add_alias_domain("Example.ORG", "example.test") == (
        "example.org",
        "example.test",
    )
    assert directory.is_local_domain("example.org")
    assert locals_of(directory, "alice@example.org") == ["alice@example.test"]
    assert locals_of(directory, "info@example.org") == ["bob@example.test"]
    assert not directory.expand("nobody@example.org").exists
    with pytest.raises(DirectoryError, match="not ours"):
        directory.add_user("carol@example.org", "pw")
    with pytest.raises(DirectoryError, match="one of our domains"):
        directory.add_alias_domain("example.test", "example.test")
    with pytest.raises(DirectoryError, match=r"alias of example\.test"):
        directory.delete_domain("example.test")
    assert directory.delete_domain("example.org") == "example.org"
    assert not directory.is_local_domain("example.org")


def test_forwarding(directory: Directory) -> None:
    directory.set_forward("alice@example.test", ["alice@gmail.test"], keep=False)
    found = directory.expand("alice@example.test")
    assert found.accounts == () and found.remote == ("alice@gmail.test",)
    assert found.owner is not None and found.owner.address == "alice@example.test"
    directory.set_forward("alice@example.test", ["alice@gmail.test", "bob@example.test"], keep=True)
    assert locals_of(directory, "alice@example.test") == [
        "alice@example.test",
        "bob@example.test",
    ]
    assert directory.forward_of("alice@example.test") == (
        ["alice@gmail.test", "bob@example.test"],
        True,
    )
    assert directory.clear_forward("alice@example.test")
    assert directory.forward_of("alice@example.test") == ([], True)
    with pytest.raises(DirectoryError, match="itself"):
        directory.set_forward("alice@example.test", ["alice@example.test"], keep=False)


def test_forwarding_loop_keeps_the_mail(directory: Directory) -> None:
    directory.set_forward("alice@example.test", ["bob@example.test"], keep=False)
    directory.set_forward("bob@example.test", ["alice@example.test"], keep=False)
    assert locals_of(directory, "alice@example.test") == ["alice@example.test"]


def test_delete_user_takes_its_rows(directory: Directory) -> None:
    directory.add_alias("info@example.test", "alice@example.test", "bob@example.test")
    directory.set_forward("alice@example.test", ["x@gmail.test"], keep=True)
    directory.set_quota("alice@example.test", messages=5)
    directory.set_sender_list("alice@example.test", "block", "@spam.test")
    directory.set_spam_settings("alice@example.test", reject_score=9)
    directory.set_bulk_sender("alice@example.test")
    assert directory.delete_user("Alice@example.test").address == "alice@example.test"
    assert directory.lookup("alice@example.test") is None
    assert locals_of(directory, "info@example.test") == ["bob@example.test"]
    assert directory.quota("alice@example.test") == (None, None)
    assert directory.sender_lists("alice@example.test") == []
    assert not directory.is_bulk_sender("alice@example.test")
    with pytest.raises(DirectoryError, match="no such account"):
        directory.delete_user("alice@example.test")
    # The address can be used again, with nothing of the old account.
    directory.add_user("alice@example.test", "pw2")
    assert directory.forward_of("alice@example.test") == ([], True)


def test_delete_domain(directory: Directory) -> None:
    with pytest.raises(DirectoryError, match="still has accounts"):
        directory.delete_domain("example.test")
    directory.add_alias("@example.test", "bob@example.test")
    for user in directory.users("example.test"):
        directory.delete_user(user.address)
    assert directory.delete_domain("example.test") == "example.test"
    assert directory.domains() == [] and directory.aliases() == []
    with pytest.raises(DirectoryError, match="not ours"):
        directory.delete_domain("example.test")


def test_an_old_database_keeps_working(tmp_path: Path) -> None:
    """A directory written by the version before alias targets (schema 0) opens, keeps its
    aliases, and takes the new kinds of targets."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA0.read_text())
    db.execute("INSERT INTO domains VALUES ('example.test')")
    db.execute(
        "INSERT INTO accounts(address, domain, password) VALUES (?, ?, ?)",
        ("alice@example.test", "example.test", "scrypt$x"),
    )
    db.execute("INSERT INTO aliases VALUES ('sales@example.test', 'alice@example.test')")
    db.commit()
    db.close()
    for _ in range(2):  # opened twice: the second open finds it migrated
        d = Directory(path)
        assert d.aliases() == [("sales@example.test", "alice@example.test")]
        assert d.resolve("sales@example.test") == d.lookup("alice@example.test")
        assert d.owns("alice@example.test", "sales@example.test")
        d.close()
    d = Directory(path)
    d.add_alias("sales@example.test", "someone@gmail.test")
    assert d.expand("sales@example.test").remote == ("someone@gmail.test",)
    d.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "aliases" not in tables and "alias_targets" in tables
    db.close()
