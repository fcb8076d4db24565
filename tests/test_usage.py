"""Usage per account and day: mail flows through a real reference (refused, accepted,
delivered, sent) and each figure moves by exactly what the test did; the command line, the
admin API and the service give the same report; several processes add up exactly."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import smtplib
import ssl
from pathlib import Path

import pytest
from web_client import Web, reference, send_mx, token

from reference.cli import main
from reference.clock import ManualClock
from reference.service import Invalid
from reference.testing import ReferenceServer
from reference.usage import UsageStore, day_of

GREYLIST = {"greylist.delay": "60s", "greylist.bypass_networks": []}


def submit(ref: ReferenceServer, sender: str, rcpts: list[str]) -> int:
    ctx = ssl.create_default_context(cafile=str(ref.cafile))
    with smtplib.SMTP("127.0.0.1", ref.port("submission"), timeout=10) as s:
        s.starttls(context=ctx)
        s.login("bob@a.test", "pw")
        code = s.mail(sender)[0]
        if code != 250:
            return code
        for r in rcpts:
            s.rcpt(r)
        return s.data(b"From: bob@a.test\r\nSubject: out\r\n\r\n" + b"x" * 500 + b"\r\n")[0]


def stored_sizes(ref: ReferenceServer, account: str) -> list[int]:
    """Each message in the account's INBOX as spooled (delivery adds two header lines)."""
    prefix_end = b"\r\nDelivered-To: " + account.encode() + b"\r\n"
    local, domain = account.split("@")
    sizes = []
    for f in sorted((ref.config.data_path / "mail" / domain / local).glob("*/*")):
        if f.parent.name in ("new", "cur"):
            raw = f.read_bytes()
            sizes.append(len(raw) - raw.index(prefix_end) - len(prefix_end))
    return sizes


def cli_report(ref: ReferenceServer, *args: str) -> dict[str, object]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["usage", "--data-dir", str(ref.config.data_path), "--json", *args]) == 0
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


async def test_figures_move_exactly_as_mail_flows(tmp_path: Path) -> None:
    with reference(tmp_path, **GREYLIST) as (ref, _):
        ref.add_domain("a.test")
        ref.add_domain("b.test")
        for user in ("bob@a.test", "carol@a.test", "dave@b.test"):
            ref.add_user(user, "pw")
        today = day_of(ref.clock.now())
        # Nothing counted yet: each account's today, with empty mailboxes.
        start = ref.app.admin.usage()
        assert [(r.domain, r.messages_in, r.refused, r.storage_bytes) for r in start.domains] == [
            ("a.test", 0, {}, 0),
            ("b.test", 0, {}, 0),
        ]

        assert send_mx(ref, ["bob@a.test"]) == [451]  # greylisted: a refusal of bob's mail
        ref.clock.advance(61)
        assert send_mx(ref, ["nobody@a.test", "bob@a.test"]) == [550, 250]  # no such user: a.test's
        ref.wait_delivered()
        # Sent by bob: one message to one remote and one local recipient.
        assert submit(ref, "bob@a.test", ["x@remote.test", "carol@a.test"]) == 250
        ref.wait_delivered()
        assert submit(ref, "dave@b.test", []) == 553  # not bob's address: refused at MAIL
        (queued,) = ref.app.spool.entries()

        report = ref.app.admin.usage(domain="a.test").to_dict()
        bob_in, carol_in = stored_sizes(ref, "bob@a.test"), stored_sizes(ref, "carol@a.test")
        assert carol_in == [queued.size]  # what bob sent is what carol got
        bob_storage = ref.app.store.usage("bob@a.test").bytes
        carol_storage = ref.app.store.usage("carol@a.test").bytes
        row = {"day": today, "domain": "a.test"}
        assert report["accounts"] == [
            {
                **row,
                "account": "",
                "messages_in": 0,
                "bytes_in": 0,
                "messages_out": 0,
                "bytes_out": 0,
                "refused": {"no_such_user": 1},
                "storage_bytes": None,
            },
            {
                **row,
                "account": "bob@a.test",
                "messages_in": 1,
                "bytes_in": bob_in[0],
                "messages_out": 1,
                "bytes_out": queued.size,
                "refused": {"greylisted": 1, "sender_not_owned": 1},
                "storage_bytes": bob_storage,
            },
            {
                **row,
                "account": "carol@a.test",
                "messages_in": 1,
                "bytes_in": queued.size,
                "messages_out": 0,
                "bytes_out": 0,
                "refused": {},
                "storage_bytes": carol_storage,
            },
        ]
        assert report["domains"] == [
            {
                **row,
                "messages_in": 2,
                "bytes_in": bob_in[0] + queued.size,
                "messages_out": 1,
                "bytes_out": queued.size,
                "refused": {"greylisted": 1, "no_such_user": 1, "sender_not_owned": 1},
                "storage_bytes": bob_storage + carol_storage,
            }
        ]

        # The command line and the API give the same report as the service. (The command
        # line's own clock is the wall clock: it adds a row for its today, with the storage
        # recorded at the last delivery.)
        cli = cli_report(ref, "--domain", "a.test")
        assert {k: [r for r in v if r["day"] == today] for k, v in cli.items()} == report  # type: ignore[attr-defined]
        admin, bob = token(ref, "admin"), token(ref, "user", user="bob@a.test")
        admin_b = token(ref, "domain-admin", domain="b.test")
        async with Web(ref) as web:
            r = await web.call("GET", "/api/v1/usage?domain=a.test", token=admin)
            assert (r.status, r.body) == (200, report)
            r = await web.call("GET", "/api/v1/usage", token=bob)  # a user: their own only
            assert r.body == {"accounts": [report["accounts"][1]], "domains": []}  # type: ignore[index]
            r = await web.call("GET", "/api/v1/usage", token=admin_b)  # their domain only
            assert [a["account"] for a in r.body["accounts"]] == ["dave@b.test"]
            assert r.body["accounts"][0]["messages_in"] == 0
            for who, query, field in (
                (admin_b, "?domain=a.test", "domain"),
                (bob, "?account=carol@a.test", "account"),
                (bob, "?domain=a.test", "domain"),
            ):
                r = await web.call("GET", f"/api/v1/usage{query}", token=who)
                assert (r.status, r.problem["field"]) == (403, field)
            for query, status, field in (
                ("?since=yesterday", 422, "since"),
                ("?account=not-an-address", 422, "account"),
                ("?colour=red", 422, "colour"),
                ("?domain=a.test&domain=b.test", 422, "domain"),
                ("?domain=other.test", 404, "domain"),
            ):
                r = await web.call("GET", f"/api/v1/usage{query}", token=admin)
                assert (r.status, r.problem["field"]) == (status, field), query

        for since in ("2026-1-1", "yesterday"):  # the service names the field at fault
            with pytest.raises(Invalid) as e:
                ref.app.admin.usage(since=since)
            assert e.value.field == "since"

        # The next day starts new rows; storage is carried over from the last seen.
        ref.clock.advance(86400)
        later = ref.app.admin.usage(domain="a.test", since=day_of(ref.clock.now()))
        assert [(r.account, r.messages_in, r.storage_bytes) for r in later.accounts] == [
            ("bob@a.test", 0, bob_storage),
            ("carol@a.test", 0, carol_storage),
        ]


def _count(path: str, n: int) -> None:
    store = UsageStore(Path(path), ManualClock(start=86400.0))
    for _ in range(n):
        store.received("bob@a.test", 10)
        store.sent("bob@a.test", 3)
        store.refused("greylisted", [("a.test", "bob@a.test")])
    store.close()


def test_several_processes_add_up_exactly(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_count, args=(str(path), 150)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    (row,) = UsageStore(path, ManualClock(start=86400.0)).rows()
    counts = (row.messages_in, row.bytes_in, row.messages_out, row.bytes_out)
    assert counts == (300, 3000, 300, 900)
    assert row.refused == {"greylisted": 300}


def test_a_day_is_the_utc_date() -> None:
    assert day_of(0.0) == "1970-01-01"
    assert day_of(86_399.999) == "1970-01-01"
    assert day_of(86_400.0) == "1970-01-02"
    assert day_of(-0.5) == "1969-12-31"
    assert day_of(1_796_342_400.0) == "2026-12-04"
