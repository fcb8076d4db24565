"""The directory: domains, accounts, hashed passwords, postmaster routing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reference.directory import Directory, DirectoryError, hash_password, verify_password


@pytest.fixture
def directory(directory_target: Path | str) -> Directory:
    d = Directory(directory_target)
    d.add_domain("Example.TEST")
    yield d
    d.close()


def test_password_is_stored_hashed(tmp_path: Path) -> None:
    directory = Directory(tmp_path / "dir.sqlite3")
    directory.add_domain("example.test")
    directory.add_user("Alice@example.test", "s3cret")
    directory.close()
    raw = (
        sqlite3.connect(tmp_path / "dir.sqlite3")
        .execute("SELECT address, password FROM accounts")
        .fetchone()
    )
    assert raw[0] == "alice@example.test"
    assert raw[1].startswith("scrypt$") and "s3cret" not in raw[1]


def test_check_password(directory: Directory) -> None:
    directory.add_user("alice@example.test", "s3cret")
    assert directory.check_password("ALICE@example.test", "s3cret") == "alice@example.test"
    assert directory.check_password("alice@example.test", "wrong") is None
    assert directory.check_password("nobody@example.test", "s3cret") is None
    assert directory.check_password("not an address", "x") is None


async def test_authenticate_is_async(directory: Directory) -> None:
    directory.add_user("bob@example.test", "pw")
    assert await directory.authenticate("bob@example.test", "pw") == "bob@example.test"
    assert await directory.authenticate("bob@example.test", "") is None


def test_refusals_say_why(directory: Directory) -> None:
    with pytest.raises(DirectoryError, match="not ours"):
        directory.add_user("x@other.test", "pw")
    directory.add_user("x@example.test", "pw")
    with pytest.raises(DirectoryError, match="exists already"):
        directory.add_user("X@example.test", "pw")
    with pytest.raises(DirectoryError, match="local part"):
        directory.add_user("../etc@example.test", "pw")
    with pytest.raises(DirectoryError, match="domain"):
        directory.add_domain("not a domain")


def test_postmaster_goes_to_first_account(directory: Directory) -> None:
    assert directory.postmaster("example.test") is None
    directory.add_user("admin@example.test", "pw")
    directory.add_user("zed@example.test", "pw")
    pm = directory.postmaster("example.test")
    assert pm is not None and pm.address == "admin@example.test"
    directory.add_user("postmaster@example.test", "pw")
    pm = directory.postmaster("example.test")
    assert pm is not None and pm.address == "postmaster@example.test"


def test_hash_roundtrip() -> None:
    h = hash_password("pässword")
    assert verify_password("pässword", h)
    assert not verify_password("password", h)
    assert not verify_password("x", "garbage")


def test_quota_and_enable(directory: Directory) -> None:
    directory.add_user("q@example.test", "pw")
    assert directory.quota("q@example.test") == (None, None)
    directory.set_quota("Q@example.test", messages=5)
    assert directory.quota("q@example.test") == (None, 5)
    with pytest.raises(DirectoryError):
        directory.set_quota("q@example.test", bytes=-1)
    directory.set_enabled("q@example.test", False)
    account = directory.lookup("q@example.test")
    assert account is not None and not account.enabled
    assert directory.check_password("q@example.test", "pw") is None  # no login while disabled
    directory.set_enabled("q@example.test", True)
    assert directory.check_password("q@example.test", "pw") == "q@example.test"
    with pytest.raises(DirectoryError, match="no such account"):
        directory.set_enabled("nobody@example.test", False)


def test_resolve_routes_aliases_and_postmaster(directory: Directory) -> None:
    directory.add_user("admin@example.test", "pw")
    directory.add_alias("sales@example.test", "admin@example.test")
    for address in ("admin@example.test", "Sales@example.test", "postmaster@example.test"):
        found = directory.resolve(address)
        assert found is not None and found.address == "admin@example.test", address
    assert directory.resolve("nobody@example.test") is None
    assert directory.resolve("postmaster@other.test") is None
