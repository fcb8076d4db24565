"""The list distributor on its own: a post becomes one queued copy per member, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reference.clock import ManualClock
from reference.delivery.lists import ListDistributor, munged_from
from reference.directory import Directory
from reference.spool import Spool

POST = b"From: Alice <alice@poster.test>\r\nSubject: hi\r\nList-Id: <forged.x>\r\n\r\nHello.\r\n"


def setup(tmp: Path) -> tuple[Directory, Spool, ListDistributor]:
    d = Directory(tmp / "dir.sqlite3")
    d.add_domain("example.test")
    d.add_user("owner@example.test", "pw")
    d.create_list("team@example.test", owner="owner@example.test", name="Team")
    spool = Spool(tmp / "spool", ManualClock())
    lists = ListDistributor(d, spool, ManualClock(), None, web_base=lambda: "https://h:1")
    return d, spool, lists


def test_one_copy_per_member_once(tmp_path: Path) -> None:
    d, spool, lists = setup(tmp_path)
    d.add_members("team@example.test", "owner@example.test", "x@remote.test")

    async def run() -> None:
        post = await spool.enqueue("alice@poster.test", ["team@example.test"], POST)
        first = await lists.distribute(post, "team@example.test", POST)
        again = await lists.distribute(post, "team@example.test", POST)  # a repeated delivery
        assert first.status == "delivered" and first.detail == again.detail
        copies = [e for e in spool.entries() if e.kind == "list"]
        assert sorted(r.address for e in copies for r in e.recipients) == [
            "owner@example.test",
            "x@remote.test",
        ]
        assert {e.sender for e in copies} == {"team-bounces@example.test"}
        data = spool.read_message(copies[0].qid)
        assert data.count(b"List-Id:") == 1 and b"List-Id: Team <team.example.test>" in data
        assert b"X-Loop: team@example.test\r\n" in data
        # Back at the list (a list among its members' members): bounced, not sent again.
        looped = await lists.distribute(post, "team@example.test", data)
        assert looped.status == "bounced" and looped.detail.startswith("5.4.6")

    asyncio.run(run())


def test_a_list_without_members_bounces(tmp_path: Path) -> None:
    _, spool, lists = setup(tmp_path)

    async def run() -> None:
        post = await spool.enqueue("alice@poster.test", ["team@example.test"], POST)
        outcome = await lists.distribute(post, "team@example.test", POST)
        assert outcome.status == "bounced" and "no members" in outcome.detail

    asyncio.run(run())


def test_munged_from(tmp_path: Path) -> None:
    d, _, _ = setup(tmp_path)
    team = d.mailing_list("team@example.test")
    assert team is not None
    assert munged_from("Alice <alice@poster.test>", team) == "Alice via Team <team@example.test>"
    assert munged_from("bob@poster.test", team) == "bob via Team <team@example.test>"
    assert munged_from("Zoë <z@poster.test>", team).startswith("=?utf-8?")
