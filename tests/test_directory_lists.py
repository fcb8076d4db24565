"""Distribution lists and archive-all rules in the directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.directory import Directory, DirectoryError


@pytest.fixture
def directory(directory_target: Path | str) -> Iterator[Directory]:
    d = Directory(directory_target)
    d.add_domain("example.test")
    d.add_user("alice@example.test", "pw")
    d.add_user("bob@example.test", "pw")
    d.add_user("vault@example.test", "pw")
    yield d
    d.close()


def test_list_address_expands_to_the_list_and_bounces_to_its_owner(directory: Directory) -> None:
    made = directory.create_list("Team@example.test", owner="alice@example.test", name="Team")
    assert (made.address, made.list_id, made.bounce_address) == (
        "team@example.test",
        "team.example.test",
        "team-bounces@example.test",
    )
    assert directory.expand("team@example.test").lists == ("team@example.test",)
    bounces = directory.expand("team-bounces@example.test")
    assert [a.address for a in bounces.accounts] == ["alice@example.test"]
    directory.add_alias("all@example.test", "team@example.test")
    assert directory.expand("all@example.test").lists == ("team@example.test",)


def test_members_and_refusals(directory: Directory) -> None:
    directory.create_list("team@example.test", owner="alice@example.test")
    assert directory.add_members("team@example.test", "Bob@example.test", "x@remote.test") == [
        "bob@example.test",
        "x@remote.test",
    ]
    assert directory.is_member("team@example.test", "BOB@example.test")
    with pytest.raises(DirectoryError, match="member of itself"):
        directory.add_members("team@example.test", "team@example.test")
    with pytest.raises(DirectoryError, match="no such account"):
        directory.add_members("team@example.test", "nobody@example.test")
    with pytest.raises(DirectoryError, match="receives mail already"):
        directory.create_list("bob@example.test", owner="alice@example.test")
    with pytest.raises(DirectoryError, match="policy"):
        directory.create_list("x@example.test", owner="alice@example.test", policy="secret")
    with pytest.raises(DirectoryError, match="owns the list"):
        directory.delete_user("alice@example.test")
    assert directory.remove_member("team@example.test", "x@remote.test")
    assert directory.members("team@example.test") == ["bob@example.test"]
    assert directory.delete_list("team@example.test")
    assert not directory.expand("team@example.test").exists


def test_archive_rules_account_before_domain(directory: Directory) -> None:
    directory.set_archive("example.test", "vault@example.test")
    assert directory.archive_of("alice@example.test") == "vault@example.test"
    assert directory.archive_of("vault@example.test") is None  # never into itself
    directory.add_user("vault2@example.test", "pw")
    directory.set_archive("bob@example.test", "vault2@example.test")
    assert directory.archive_of("bob@example.test") == "vault2@example.test"
    assert directory.is_archive("vault@example.test")
    assert not directory.is_archive("alice@example.test")
    with pytest.raises(DirectoryError, match="is the archive of"):
        directory.delete_user("vault@example.test")
    with pytest.raises(DirectoryError, match="no such account"):
        directory.set_archive("example.test", "nobody@example.test")
    assert directory.clear_archive("example.test")
    assert directory.archive_of("alice@example.test") is None
