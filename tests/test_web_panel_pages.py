"""The panel's queue and usage pages and the platform administrators' password login, over
real HTTPS as a browser without JavaScript uses them: who sees which messages and figures,
what the queue's buttons do, the charts, and the login counted in the mail lockout."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest
from test_web_panel import Browser, text_of
from web_client import smtp_auth, token, two_customers

from reference.cli import main
from reference.testing import ReferenceServer
from reference.usage import day_of
from reference.web import monitor
from reference.web.chart import LABEL_ROOM, NOTE_WIDTH, Series, bar_chart

MESSAGE = b"From: x@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n"


@pytest.fixture
def ref(tmp_path: Path):  # type: ignore[no-untyped-def]
    with two_customers(tmp_path, **{"submission.auth_max_failures": 3}) as server:
        yield server


def enqueue(ref: ReferenceServer, rcpts: list[str], *, user: str | None = None) -> str:
    """A message in the spool as submission leaves it; the runner is not woken for it (the
    clock stands still), so it waits until a test acts on it."""
    sender = user or "someone@remote.test"
    entry = ref.run(ref.app.spool.enqueue(sender, rcpts, MESSAGE, user=user, role="submission"))
    return str(entry.qid)


def settle(ref: ReferenceServer) -> None:
    """Every queued message tried once now (the runner woken on its loop, as a flush does)."""

    async def wake() -> None:
        ref.app.runner.notify()

    ref.run(wake())
    deadline = time.monotonic() + 10
    while any(e.attempts == 0 for e in ref.app.spool.entries()):
        assert time.monotonic() < deadline, "the runner did not try them"
        time.sleep(0.02)


def admin_login(ref: ReferenceServer, name: str = "root", password: str = "root-pw") -> None:
    """`mailspec admin create`, as an operator runs it beside the server."""
    data = str(ref.config.data_path)
    assert main(["admin", "create", name, "--password", password, "--data-dir", data]) == 0


# -- platform administrators log in with a password


async def test_a_platform_administrator_logs_in_with_name_and_password(
    ref: ReferenceServer,
) -> None:
    admin_login(ref)
    b = Browser(ref)
    try:
        assert await b.login(admin="Root", password="wrong") == 401
        assert "Wrong address, password or token." in b.last
        assert await b.login(admin="root", password="root-pw") == 200
        status, page = await b.get("/domains")
        assert status == 200 and "Platform administrator" in page and "b.test" in page
        assert (await b.post("/domains", "/domains", name="c.test"))[0] == 200
        assert ref.app.directory.is_local_domain("c.test")
        # A new password (here from the command line) ends the sessions opened before.
        data = str(ref.config.data_path)
        assert main(["admin", "passwd", "root", "--password", "new", "--data-dir", data]) == 0
        _, page = await b.get("/domains")
        assert 'action="/login"' in page
        assert await b.login(admin="root", password="new") == 200
        assert main(["admin", "delete", "root", "--data-dir", data]) == 0
        _, page = await b.get("/domains")
        assert 'action="/login"' in page
    finally:
        await b.close()


async def test_administrator_login_failures_count_in_the_mail_lockout(
    ref: ReferenceServer,
) -> None:
    admin_login(ref)
    stored = ref.app.directory._admin_hash("root")
    assert stored is not None and stored.startswith("scrypt$")  # hashed as accounts are
    b = Browser(ref)
    try:
        # Guesses at the name over SMTP count against the panel login, and the other way.
        assert smtp_auth(ref, "root", "guess") == 535
        assert await b.login(admin="root", password="guess") == 401
        assert smtp_auth(ref, "root", "guess") == 535
        assert await b.login(admin="root", password="root-pw") == 429
        assert "Too many failed logins" in b.last
        assert await b.login(tok=token(ref, "admin")) == 200  # a token still works
    finally:
        await b.close()


def test_an_administrators_name_is_not_an_address(ref: ReferenceServer) -> None:
    data = str(ref.config.data_path)
    assert main(["admin", "create", "me@a.test", "--password", "x", "--data-dir", data]) == 1
    assert main(["admin", "create", "root", "--password", "", "--data-dir", data]) == 1
    assert ref.app.directory.admins() == []


# -- the queue page


async def test_the_queue_page_lists_and_acts_and_draws_its_chart(
    ref: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = enqueue(ref, ["x@remote.test", "y@remote.test"], user="alice@a.test")
    ref.clock.advance(1)
    newer = enqueue(ref, ["z@remote.test"], user="bob@b.test")
    settle(ref)  # both tried once: remote.test's MX refuses connections
    ref.clock.advance(3725)
    admin_login(ref)
    b = Browser(ref)
    try:
        assert await b.login(admin="root", password="root-pw") == 200
        status, page = await b.get("/queue")
        assert status == 200 and waiting in page and newer in page
        assert '<svg id="queue-chart"' in page
        assert "regular lane messages: 2" in page  # the bars' titles
        assert "bulk lane messages" not in page
        assert "oldest: 1 h 2 min" in text_of(page)
        row = re.search(rf'<tr id="m-{waiting}">(.*?)</tr>', page, re.S)
        assert row and "x@remote.test" in row.group(1) and "1 h 2 min" in text_of(row.group(1))
        cells = text_of(row.group(1))
        assert "deferred" in cells and "attempts:" in cells
        reply = re.search(r'<td class="reply">([^<]+)</td>', row.group(1))
        assert reply and reply.group(1).startswith("451 4.4.2 connection to mx.remote.test")
        # A long queue is listed from its oldest message, up to a page's worth.
        monkeypatch.setattr(monitor, "QUEUE_ROWS", 1)
        _, page = await b.get("/queue")
        assert "The oldest 1 of 2 messages" in page and waiting in page and newer not in page
        monkeypatch.undo()
        # Hold, then release, then delete: each a form with the session's CSRF token.
        assert (await b.post("/queue", f"/queue/{waiting}/hold"))[0] == 200
        assert ref.app.spool.load(waiting).held  # type: ignore[union-attr]
        _, page = await b.get("/queue")
        assert f'id="release-{waiting}"' in page and f'id="hold-{waiting}"' not in page
        assert (await b.post("/queue", f"/queue/{waiting}/release"))[0] == 200
        assert not ref.app.spool.load(waiting).held  # type: ignore[union-attr]
        assert (await b.post("/queue", f"/queue/{newer}/delete"))[0] == 200
        assert ref.app.spool.load(newer) is None
        status, page = await b.post("/queue", f"/queue/{newer}/hold")  # gone: said so
        assert status == 404 and f"No queued message {newer}" in page
        status, _ = await b.post("/queue", f"/queue/{waiting}/bounce")
        assert status == 404
        # A form without the token changes nothing.
        status, _, _ = await b.request("POST", f"/queue/{waiting}/delete", {"csrf": "x"})
        assert status == 403 and ref.app.spool.load(waiting) is not None
    finally:
        await b.close()


async def test_a_domain_administrator_sees_and_handles_only_their_domains_messages(
    ref: ReferenceServer,
) -> None:
    ref.set_quota("alice@a.test", bytes=1)  # her mail waits in the queue (452 4.2.2)
    theirs = enqueue(ref, ["x@remote.test"], user="alice@a.test")
    inbound = enqueue(ref, ["alice@a.test"])  # mail for their user only
    other = enqueue(ref, ["x@remote.test"], user="bob@b.test")
    mixed = enqueue(ref, ["alice@a.test", "bob@b.test"])  # another customer's too
    forged = ref.run(ref.app.spool.enqueue("ceo@a.test", ["x@remote.test"], MESSAGE)).qid
    settle(ref)  # each tried once, and still queued
    b = Browser(ref)
    try:
        assert await b.login(tok=token(ref, "domain-admin", domain="a.test")) == 200
        status, page = await b.get("/queue")
        assert status == 200 and theirs in page and inbound in page
        for qid in (other, mixed, forged):
            assert qid not in page
        assert "regular lane messages: 2" in page
        for qid in (other, mixed):
            for action in ("hold", "delete", "flush"):
                status, page = await b.post("/queue", f"/queue/{qid}/{action}")
                assert status == 404 and f"No queued message {qid}" in page
        assert all(ref.app.spool.load(q) is not None for q in (other, mixed, forged))
        assert not ref.app.spool.load(other).held  # type: ignore[union-attr]
        assert (await b.post("/queue", f"/queue/{theirs}/hold"))[0] == 200
        assert ref.app.spool.load(theirs).held  # type: ignore[union-attr]
    finally:
        await b.close()


async def test_users_have_no_queue_page(ref: ReferenceServer) -> None:
    qid = enqueue(ref, ["x@remote.test"], user="alice@a.test")
    b = Browser(ref)
    try:
        assert await b.login("alice@a.test", "alice-pw") == 200
        status, page = await b.get("/queue")
        assert status == 403 and qid not in page
        status, _ = await b.post("/me", f"/queue/{qid}/delete")
        assert status == 403 and ref.app.spool.load(qid) is not None
        _, page = await b.get("/me")
        assert 'href="/queue"' not in page and 'href="/usage"' in page
    finally:
        await b.close()


# -- the usage page


def record_usage(ref: ReferenceServer) -> str:
    usage = ref.app.usage
    usage.received("alice@a.test", 1000, storage=1000)
    ref.clock.advance(86400)
    for _ in range(3):
        usage.received("alice@a.test", 2000, storage=7000)
    usage.sent("alice@a.test", 500)
    usage.received("bob@b.test", 4000, storage=4000)
    usage.refused("spam", [("a.test", "alice@a.test")])
    usage.refused("unknown user", [("a.test", "")])
    return day_of(ref.clock.now())


async def test_a_user_sees_their_own_usage_and_quota(ref: ReferenceServer) -> None:
    today = record_usage(ref)
    ref.set_quota("alice@a.test", bytes=10 * 1024 * 1024, messages=100)
    b = Browser(ref)
    try:
        assert await b.login("alice@a.test", "alice-pw") == 200
        status, page = await b.get("/usage")
        assert status == 200 and '<svg id="usage-chart"' in page
        assert "bob@b.test" not in page and "b.test" not in text_of(page)
        assert f"{today[5:]} messages in: 3" in page and f"{today[5:]} messages out: 1" in page
        assert "of 10.0 MiB" in text_of(page) and "of 100" in text_of(page)
        row = re.search(rf"<tr>\s*<td>{today}</td>(.*?)</tr>", page, re.S)
        assert row and "spam: 1" in row.group(1) and "5.9 KiB" in text_of(row.group(1))
        for path in ("/usage?account=bob@b.test", "/usage?domain=a.test"):
            status, page = await b.get(path)
            assert status == 403 and 'id="usage-chart"' not in page, path
    finally:
        await b.close()


async def test_administrators_see_their_domains_usage(ref: ReferenceServer) -> None:
    today = record_usage(ref)
    reseller, admin = Browser(ref), Browser(ref)
    try:
        assert await reseller.login(tok=token(ref, "domain-admin", domain="a.test")) == 200
        status, page = await reseller.get("/usage")
        assert status == 200 and "alice@a.test" in page and "bob@b.test" not in page
        assert "unknown user: 1" in page  # the domain's own refusals
        assert f"{today[5:]} messages in: 3" in page
        status, _ = await reseller.get("/usage?account=alice@a.test")
        assert status == 200
        for path in ("/usage?domain=b.test", "/usage?account=bob@b.test"):
            status, page = await reseller.get(path)
            assert status == 403 and 'id="usage-chart"' not in page, path
        admin_login(ref)
        assert await admin.login(admin="root", password="root-pw") == 200
        status, page = await admin.get("/usage")
        assert status == 200 and "alice@a.test" in page and "bob@b.test" in page
        assert f"{today[5:]} messages in: 4" in page  # every domain's
        status, page = await admin.get("/usage?domain=b.test")
        assert status == 200 and "bob@b.test" in page and "alice@a.test" not in page
    finally:
        await reseller.close()
        await admin.close()


# -- the charts' layout (what the screenshots showed going wrong: cut and overlapping labels)


def test_bar_chart_labels_fit_and_do_not_overlap() -> None:
    days = [(f"11-{d:02}", [d, 30 - d]) for d in range(1, 31)]
    chart = bar_chart(days, [Series("in", "in"), Series("out", "out")])
    xs = [x for x, _, _ in chart.labels]
    assert all(b - a >= LABEL_ROOM for a, b in itertools.pairwise(xs))
    assert xs[-1] < chart.width and chart.labels[-1][1] == "11-30"  # the latest day has one
    assert all(b.x + b.width <= chart.width and b.y >= chart.top for b in chart.bars)
    lanes = bar_chart(
        [("regular lane", [3]), ("bulk lane", [0])],
        [Series("depth", "messages")],
        ["oldest: 1 h 2 min", "empty"],
    )
    (first, *_), (second, *_) = lanes.labels
    assert first >= NOTE_WIDTH // 2 and second - first >= NOTE_WIDTH  # a note's room each side
    assert [v[2] for v in lanes.values] == ["3", "0"]
