"""SRS (the scheme postsrsd implements): postsrsd's own published examples, and the clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.auth.srs import Srs, SrsError, is_srs, load_secrets

# postsrsd's tests (tests/blackbox/socketmap.py, tests/unit/test_srs2.c): secret "tops3cr3t",
# domain example.com, at 2020-01-01 00:01:00 UTC.
NOW = 1577836860.0
SRS = Srs([b"tops3cr3t"], "example.com")
DAY = 86400.0

FORWARD = [
    ("test@example.com", "test@example.com"),  # our own domain: not rewritten
    ("test@otherdomain.com", "SRS0=vmyz=2W=otherdomain.com=test@example.com"),
    (
        "SRS0=XjO9=2V=otherdomain.com=test@example.com",
        "SRS0=XjO9=2V=otherdomain.com=test@example.com",
    ),
    ("SRS0=opaque+string@otherdomain.com", "SRS1=chaI=otherdomain.com==opaque+string@example.com"),
    (
        "SRS1=X=thirddomain.com==opaque+string@otherdomain.com",
        "SRS1=JIBX=thirddomain.com==opaque+string@example.com",
    ),
    ("test@" + "a" * 503 + ".net", "SRS0=G7tR=2W=" + "a" * 503 + ".net=test@example.com"),
    ("", ""),  # the null sender stays null
]

REVERSE = [
    ("SRS0=XjO9=2V=otherdomain.com=test@example.com", "test@otherdomain.com"),
    ("SRS1=JIBX=thirddomain.com==opaque+string@example.com", "SRS0=opaque+string@thirddomain.com"),
    ("srs0=xjo9=2v=otherdomain.com=test@example.com", "test@otherdomain.com"),
    ("SRS0=XJO9=2V=OTHERDOMAIN.COM=TEST@EXAMPLE.COM", "TEST@OTHERDOMAIN.COM"),
    ("SRS0=iCvJ=2W=" + "a" * 478 + ".net=test@example.com", "test@" + "a" * 478 + ".net"),
]

REFUSED = [
    ("SRS0=te87=T7=otherdomain.com=test@example.com", "expired"),  # six months old
    ("SRS0=VcIb=7N=otherdomain.com=test@example.com", "expired"),  # six months ahead
    ("SRS0=FAKE=2V=otherdomain.com=test@example.com", "forged"),
    ("SRS0=@example.com", "malformed"),
    ("SRS0=XjO9@example.com", "malformed"),
    ("SRS0=XjO9=2V@example.com", "malformed"),
    ("SRS0=XjO9=2V=otherdomain.com@example.com", "malformed"),
    ("test@example.com", "malformed"),
]


@pytest.mark.parametrize(("sender", "expected"), FORWARD)
def test_forward_matches_postsrsd(sender: str, expected: str) -> None:
    assert SRS.forward(sender, NOW) == expected


@pytest.mark.parametrize(("address", "expected"), REVERSE)
def test_reverse_matches_postsrsd(address: str, expected: str) -> None:
    assert SRS.reverse(address, NOW) == expected


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_refused_like_postsrsd(address: str, reason: str) -> None:
    with pytest.raises(SrsError) as e:
        SRS.reverse(address, NOW)
    assert e.value.reason == reason


def test_validity_window_follows_the_injected_clock() -> None:
    address = SRS.forward("alice@gmail.test", NOW)
    assert SRS.reverse(address, NOW + 21 * DAY) == "alice@gmail.test"
    with pytest.raises(SrsError, match="older than 21 days"):
        SRS.reverse(address, NOW + 22 * DAY)
    short = Srs([b"tops3cr3t"], "example.com", max_age_days=2)
    with pytest.raises(SrsError):
        short.reverse(address, NOW + 3 * DAY)


def test_an_older_secret_still_reverses() -> None:
    address = SRS.forward("alice@gmail.test", NOW)
    rotated = Srs([b"new-secret", b"tops3cr3t"], "example.com")
    assert rotated.reverse(address, NOW) == "alice@gmail.test"
    with pytest.raises(SrsError, match="hash"):
        Srs([b"other"], "example.com").reverse(address, NOW)


def test_is_srs() -> None:
    assert is_srs("SRS0=vmyz=2W=otherdomain.com=test@example.com")
    assert is_srs("srs1+x=y==z@example.com")
    assert not is_srs("srs@example.com") and not is_srs("alice@example.com")


def test_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "srs" / "secrets"
    first = load_secrets(path)
    assert load_secrets(path) == first and len(first[0]) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("rotated\n" + path.read_text())
    assert load_secrets(path) == [b"rotated", *first]
