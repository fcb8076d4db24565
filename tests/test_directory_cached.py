"""The directory the mail path reads: answers kept in memory, and forgotten at any change
made through any connection, in this process or another."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from reference.directory import CachedDirectory, Directory

ALICE = "alice@example.test"


@pytest.fixture
def files(tmp_path: Path) -> tuple[CachedDirectory, Directory]:
    """The node's cached directory and another connection to the same file (the admin's)."""
    path = tmp_path / "dir.sqlite3"
    admin = Directory(path)
    admin.add_domain("example.test")
    admin.add_user(ALICE, "pw")
    cached = CachedDirectory(path)
    yield cached, admin
    cached.close()
    admin.close()


def test_answers_follow_changes_made_through_another_connection(
    files: tuple[CachedDirectory, Directory],
) -> None:
    cached, admin = files
    assert cached.expand(ALICE).owner is not None
    assert not cached.is_local_domain("example.org")
    assert cached.expand("bob@example.test").exists is False
    admin.add_domain("example.org")
    admin.add_user("bob@example.test", "pw")
    assert cached.is_local_domain("example.org")
    assert cached.expand("bob@example.test").exists
    admin.set_enabled(ALICE, False)
    owner = cached.expand(ALICE).owner
    assert owner is not None and not owner.enabled
    admin.delete_user("bob@example.test")
    assert not cached.expand("bob@example.test").exists
    assert cached.resolve("bob@example.test") is None


def test_answers_follow_changes_made_through_its_own_connection(
    files: tuple[CachedDirectory, Directory],
) -> None:
    cached, _ = files
    assert cached.lookup("carol@example.test") is None
    cached.add_user("carol@example.test", "pw")
    found = cached.lookup("carol@example.test")
    assert found is not None and found.address == "carol@example.test"


def test_answers_follow_changes_made_by_another_process(
    files: tuple[CachedDirectory, Directory], tmp_path: Path
) -> None:
    cached, _ = files
    assert cached.effective_cos(ALICE) == (None, "platform")
    assert not cached.expand("team@example.test").exists
    script = (
        "import sys; from pathlib import Path; from reference.directory import Directory\n"
        "d = Directory(Path(sys.argv[1]))\n"
        "d.create_cos('gold', quota_bytes=5)\n"
        "d.assign_cos('alice@example.test', 'gold')\n"
        "d.add_alias('team@example.test', 'alice@example.test')\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "dir.sqlite3")], check=True, cwd=root
    )
    cos, source = cached.effective_cos(ALICE)
    assert cos is not None and cos.name == "gold" and source == "account"
    assert [a.address for a in cached.expand("team@example.test").accounts] == [ALICE]


def test_lists_and_dicts_answered_are_copies(files: tuple[CachedDirectory, Directory]) -> None:
    cached, _ = files
    cached.spam_settings(ALICE)["x"] = None  # type: ignore[assignment]
    assert "x" not in cached.spam_settings(ALICE)
    cached.access_decisions(("",), {"sender": ALICE}).append(None)  # type: ignore[arg-type]
    assert cached.access_decisions(("",), {"sender": ALICE}) == []


async def test_on_the_loop_a_commit_made_before_a_turn_is_seen_in_it(
    files: tuple[CachedDirectory, Directory],
) -> None:
    # The data version is read once a turn of the loop (it costs more than the rest of a kept
    # answer): what reached the loop after a commit (a thread's result, a client's line) is
    # handled in a later turn, and sees the commit.
    cached, admin = files
    assert not cached.expand("bob@example.test").exists
    await asyncio.to_thread(admin.add_user, "bob@example.test", "pw")
    assert cached.expand("bob@example.test").exists
    assert cached.lookup("carol@example.test") is None
    admin.add_user("carol@example.test", "pw")
    assert cached.lookup("carol@example.test") is None  # the same turn: read once a turn
    await asyncio.sleep(0)
    assert cached.lookup("carol@example.test") is not None

    def in_a_thread() -> bool:
        assert not cached.is_local_domain("example.org")
        admin.add_domain("example.org")
        return cached.is_local_domain("example.org")

    assert await asyncio.to_thread(in_a_thread)  # another thread reads it at every question


async def test_on_the_loop_its_own_writes_are_seen_at_once(
    files: tuple[CachedDirectory, Directory],
) -> None:
    # The admin API and the service layer write through the node's own directory: a change
    # is seen by the next question, in the same turn.
    cached, _ = files
    assert cached.lookup("dave@example.test") is None
    cached.add_user("dave@example.test", "pw")
    assert cached.lookup("dave@example.test") is not None
    cached.set_enabled("dave@example.test", False)
    found = cached.lookup("dave@example.test")
    assert found is not None and not found.enabled


def test_access_decisions_kept_by_each_value_are_the_directorys(
    files: tuple[CachedDirectory, Directory],
) -> None:
    # Kept by each (scope, kind, value) apart, so a new client reuses what is known of the
    # sender and the recipient: the decisions (and their order) are those of the database.
    cached, admin = files
    admin.add_access("example.test", "sender", "spam.test", "reject", "no spam here")
    admin.add_access("example.test", "recipient", ALICE, "restrict")
    admin.add_access("", "client", "203.0.113.0/24", "reject")
    admin.add_access("", "client", "203.0.113.7/32", "accept")
    admin.add_access("", "helo", "bad.test", "reject")
    admin.add_access("", "sender", "x@spam.test", "accept")
    scopes = ("example.test", "")
    for client in ("203.0.113.7", "203.0.113.8", "198.51.100.1", ""):
        for sender in ("x@spam.test", "y@a.spam.test", "z@ok.test"):
            for helo in ("mx.bad.test", "mx.ok.test"):
                values = {"sender": sender, "helo": helo, "client": client, "recipient": ALICE}
                want = admin.access_decisions(scopes, values)
                assert cached.access_decisions(scopes, values) == want
                assert cached.access_decisions(scopes, values) == want  # and when kept
    admin.remove_access("", "client", "203.0.113.7/32")
    values = {"recipient": ALICE, "client": "203.0.113.7", "helo": "h.test", "sender": ""}
    assert cached.access_decisions(scopes, values) == admin.access_decisions(scopes, values)
