"""Local delivery's forwarding, without the network: queued copies, return paths, loops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.auth.srs import Srs
from reference.clock import ManualClock
from reference.delivery import Forwarder, LocalDelivery
from reference.delivery.forward import forwarding_loop
from reference.directory import Directory
from reference.mailbox import MailStore
from reference.spool import QueueEntry, Spool

DAY = 86400.0
MESSAGE = b"From: a@bank.example\r\nSubject: hi\r\n\r\nhello\r\n"


class Node:
    def __init__(self, tmp: Path) -> None:
        self.clock = ManualClock(1_700_000_000.0)
        self.directory = Directory(tmp / "dir.sqlite3")
        self.directory.add_domain("example.test")
        self.directory.add_user("alice@example.test", "pw")
        self.spool = Spool(tmp / "spool", self.clock)
        self.srs = Srs([b"secret"], "mail.example.test")
        self.notified: list[str] = []
        self.forwarder = Forwarder(
            self.spool,
            self.clock,
            self.srs,
            is_local=self.directory.is_local_domain,
            notify=self.notified.append,
        )
        self.store = MailStore(tmp / "mail", clock=self.clock)
        self.local = LocalDelivery(self.directory, self.store, self.clock, forwarder=self.forwarder)

    async def queued(self, sender: str, rcpt: str, data: bytes = MESSAGE) -> QueueEntry:
        return await self.spool.enqueue(sender, [rcpt], data)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    yield n
    n.directory.close()


def forwards(node: Node) -> list[QueueEntry]:
    return [e for e in node.spool.entries() if e.kind == "forward"]


async def test_alias_copy_is_queued_once_with_an_srs_return_path(node: Node) -> None:
    node.directory.add_alias("info@example.test", "alice@example.test", "info@gmail.test")
    entry = await node.queued("a@bank.example", "info@example.test")
    for _ in range(2):  # a delivery repeated after a crash finds the copy it queued
        outcome = await node.local.deliver(entry, "info@example.test", MESSAGE)
        assert outcome.status == "delivered" and "forwarded to info@gmail.test" in outcome.detail
    (copy,) = forwards(node)
    assert [r.address for r in copy.recipients] == ["info@gmail.test"]
    assert copy.about == entry.qid and node.notified == [copy.qid]
    assert node.srs.reverse(copy.sender, node.clock.now()) == "a@bank.example"
    data = node.spool.read_message(copy.qid)
    assert data.startswith(b"Delivered-To: info@example.test\r\n") and data.endswith(MESSAGE)
    with node.store.open("alice@example.test") as inbox:
        # Filed once: the entry remembers the accounts it filed into (issue 16's retry bug),
        # and the mailbox its delivery key.
        assert len(inbox.messages()) == 1


@pytest.mark.parametrize(
    ("sender", "kept"), [("", True), ("bob@example.test", True), ("a@bank.example", False)]
)
def test_return_path(node: Node, sender: str, kept: bool) -> None:
    path = node.forwarder.return_path(sender)
    assert (path == sender) is kept
    if not kept:
        assert path.startswith("SRS0=") and path.endswith("@mail.example.test")


async def test_bounce_to_an_srs_address(node: Node) -> None:
    address = node.srs.forward("a@bank.example", node.clock.now())
    assert node.local.is_local(address) and not node.local.is_local("x@mail.example.test")
    bounce = await node.queued("", address)
    outcome = await node.local.deliver(bounce, address, MESSAGE)
    assert outcome.status == "delivered" and "returned to a@bank.example" in outcome.detail
    (back,) = forwards(node)
    assert back.sender == "" and [r.address for r in back.recipients] == ["a@bank.example"]
    assert node.spool.read_message(back.qid) == MESSAGE  # passed on as it came
    # Expired while queued: bounced (never silently dropped) with the reason.
    node.clock.advance(30 * DAY)
    late = await node.queued("", address)
    outcome = await node.local.deliver(late, address, MESSAGE)
    assert outcome.status == "bounced" and "older than 21 days" in outcome.detail


async def test_forwarding_loop_is_bounced(node: Node) -> None:
    node.directory.set_forward("alice@example.test", ["alice@gmail.test"], keep=False)
    looped = b"Delivered-To: Alice@Example.test\r\n" + MESSAGE
    assert forwarding_loop(looped, "alice@example.test")
    assert not forwarding_loop(MESSAGE, "alice@example.test")
    entry = await node.queued("a@bank.example", "alice@example.test", looped)
    outcome = await node.local.deliver(entry, "alice@example.test", looped)
    assert outcome.status == "bounced" and outcome.detail.startswith("5.4.6")
    assert forwards(node) == []


async def test_a_class_without_forwarding_keeps_mail_home_or_bounces(node: Node) -> None:
    # Set while the domain's class still forwarded elsewhere; then the class changed.
    node.directory.add_user("bob@example.test", "pw")
    node.directory.set_forward("alice@example.test", ["alice@gmail.test"], keep=False)
    node.directory.set_forward("bob@example.test", ["bob@gmail.test"], keep=False)
    node.directory.add_alias("away@example.test", "far@gmail.test")
    node.directory.create_cos("home", forward_remote=False)
    node.directory.assign_cos("example.test", "home")
    node.directory.set_enabled("bob@example.test", False)
    kept = await node.local.deliver(
        await node.queued("a@bank.example", "alice@example.test"), "alice@example.test", MESSAGE
    )
    assert kept.status == "delivered" and "alice@example.test/INBOX" in kept.detail
    for rcpt in ("away@example.test", "bob@example.test"):  # no mailbox here to keep it
        bounced = await node.local.deliver(await node.queued("a@bank.example", rcpt), rcpt, MESSAGE)
        assert bounced.status == "bounced" and bounced.detail.startswith("5.7.1"), bounced
    assert forwards(node) == []


async def test_more_than_a_hundred_received_fields_is_a_loop(node: Node) -> None:
    trace = b"Received: from a by b; Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    entry = await node.queued("a@bank.example", "alice@example.test")
    looped = await node.local.deliver(entry, "alice@example.test", trace * 101 + MESSAGE)
    assert looped.status == "bounced" and looped.detail.startswith("5.4.6")
    fine = await node.local.deliver(entry, "alice@example.test", trace * 100 + MESSAGE)
    assert fine.status == "delivered"
