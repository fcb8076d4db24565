"""The admin API for what the command line does to a mailbox: deleting an account,
forwarding, spam scores and sender lists, Sieve scripts, the out-of-office reply, and DMARC
reports; each through the same service as the command line, and bad input a 4xx problem
detail naming the field, with nothing changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_auth_reports import T0, _report_mail, observation
from test_web_api import state
from web_client import Web, reference, token

from reference.auth.reports import ReportIntake
from reference.clock import ManualClock
from reference.testing import ReferenceServer

V1 = "/api/v1"
ALICE = f"{V1}/accounts/alice@a.test"
SCRIPT = 'require "fileinto";\r\nif header :contains "subject" "work" { fileinto "Work"; }\r\n'


def _populated(tmp: Path) -> Any:
    with reference(tmp) as (ref, _):
        ref.add_domain("a.test")
        for user in ("alice@a.test", "keeper@a.test"):
            ref.add_user(user, "pw")
        yield ref


@pytest.fixture
def ref(tmp_path: Path) -> Any:
    yield from _populated(tmp_path)


async def test_forwarding_spam_and_senders(ref: ReferenceServer) -> None:
    alice = token(ref, "user", user="alice@a.test")  # self-service
    admin = token(ref, "admin")
    async with Web(ref) as web:
        r = await web.call("GET", f"{ALICE}/forwarding", token=alice)
        assert r.body == {"address": "alice@a.test", "targets": [], "keep": True}  # all kept
        body = {"targets": ["Out@Elsewhere.test"], "keep": True}
        r = await web.call("PUT", f"{ALICE}/forwarding", token=alice, body=body)
        assert r.body == {
            "address": "alice@a.test",
            "targets": ["out@elsewhere.test"],
            "keep": True,
        }
        assert ref.directory.forward_of("alice@a.test") == (["out@elsewhere.test"], True)
        r = await web.call("PUT", f"{ALICE}/forwarding", token=alice, body={"targets": []})
        assert r.body["targets"] == [] and ref.directory.forward_of("alice@a.test")[0] == []

        r = await web.call(
            "PUT", f"{V1}/domains/a.test/spam", token=admin, body={"reject_score": 8}
        )
        assert (r.body["reject_score"], r.body["reject_from"]) == (8, "domain")
        r = await web.call("PUT", f"{ALICE}/spam", token=alice, body={"junk_score": 3.5})
        assert r.body == {
            "scope": "alice@a.test",
            "own_reject": None,
            "own_junk": 3.5,
            "reject_score": 8.0,
            "junk_score": 3.5,
            "reject_from": "domain",
            "junk_from": "user",
        }
        r = await web.call("DELETE", f"{ALICE}/spam", token=alice)
        assert (r.body["junk_score"], r.body["junk_from"]) == (5.0, "config")

        body = {"kind": "block", "pattern": "@Spammy.test"}
        r = await web.call("POST", f"{ALICE}/senders", token=alice, body=body)
        assert (r.status, r.body) == (201, {"kind": "block", "pattern": "@spammy.test"})
        r = await web.call("GET", f"{ALICE}/senders", token=alice)
        assert r.body == [{"kind": "block", "pattern": "@spammy.test"}]
        r = await web.call("DELETE", f"{ALICE}/senders/@spammy.test", token=alice)
        assert r.status == 204 and ref.directory.sender_lists("alice@a.test") == []


async def test_sieve_and_out_of_office(ref: ReferenceServer) -> None:
    alice = token(ref, "user", user="alice@a.test")
    async with Web(ref) as web:
        body = {"script": SCRIPT, "activate": True}
        r = await web.call("PUT", f"{ALICE}/sieve/work", token=alice, body=body)
        assert (r.status, r.body) == (200, {"name": "work", "script": SCRIPT})
        r = await web.call("GET", f"{ALICE}/sieve/work", token=alice)
        assert r.body["script"] == SCRIPT
        r = await web.call("GET", f"{ALICE}/sieve", token=alice)
        assert r.body == {"scripts": [{"name": "work", "active": True}], "errors": []}

        ooo = {"subject": "Away", "text": "Back on Monday.", "end": "2026-01-10", "days": 3}
        r = await web.call("PUT", f"{ALICE}/vacation", token=alice, body=ooo)
        assert r.body["enabled"] is True and r.body["beside"] == "work"
        assert (r.body["subject"], r.body["end"], r.body["days"]) == ("Away", "2026-01-10", 3)
        r = await web.call("GET", f"{ALICE}/vacation", token=alice)
        assert r.body["text"] == "Back on Monday."
        assert (
            ref.app.scripts.active_name("alice@a.test") == "work"
        )  # it goes on applying beside the reply
        r = await web.call("DELETE", f"{ALICE}/vacation", token=alice)
        assert r.status == 204 and ref.app.scripts.active_name("alice@a.test") == "work"
        r = await web.call("GET", f"{ALICE}/vacation", token=alice)
        assert r.body["enabled"] is False

        r = await web.call("DELETE", f"{ALICE}/sieve/work", token=alice)
        assert (r.status, r.problem["field"]) == (409, "name")  # the active one
        r = await web.call("PUT", f"{ALICE}/sieve-active", token=alice, body={"name": None})
        assert r.body["scripts"] == [{"name": "work", "active": False}]
        assert (await web.call("DELETE", f"{ALICE}/sieve/work", token=alice)).status == 204
        assert ref.app.scripts.names("alice@a.test") == []


async def test_delete_account(ref: ReferenceServer) -> None:
    admin = token(ref, "domain-admin", domain="a.test")
    ref.app.store.deliver("alice@a.test", b"Subject: keep me\r\n\r\nhello\r\n")
    async with Web(ref) as web:
        r = await web.call("DELETE", ALICE, token=admin)  # say what happens to the mail
        assert (r.status, r.problem["field"]) == (422, "archive_to")
        r = await web.call("DELETE", f"{ALICE}?archive_to=keeper@a.test", token=admin)
        assert r.status == 200, r.body
        assert r.body["messages"] == 1 and r.body["archived_in"].startswith("Archive/")
        assert ref.directory.lookup("alice@a.test") is None
        assert ref.app.store.usage("keeper@a.test").messages == 1
        r = await web.call("DELETE", f"{ALICE}?remove_mail=true", token=admin)
        assert (r.status, r.problem["field"]) == (404, "address")


async def test_delete_domain(ref: ReferenceServer) -> None:
    """Issue 16: a domain goes with its accounts, their mail archived or removed as asked;
    only the platform's administrator may do it (tests/test_web_authz.py)."""
    ref.add_domain("b.test")
    for user in ("bob@b.test", "carl@b.test"):
        ref.add_user(user, "pw")
    ref.app.store.deliver("bob@b.test", b"Subject: keep me\r\n\r\nhello\r\n")
    admin = token(ref, "admin")
    async with Web(ref) as web:
        r = await web.call("DELETE", f"{V1}/domains/b.test", token=admin)
        assert (r.status, r.problem["field"]) == (422, "archive_to")
        assert "say what happens to the mail" in r.problem["detail"]
        # Refused before any account goes: its lists, and lists elsewhere its accounts own.
        for address in ("team@b.test", "staff@a.test"):
            ref.create_list(address, owner="carl@b.test")
            before = state(ref)
            r = await web.call("DELETE", f"{V1}/domains/b.test?remove_mail=true", token=admin)
            assert (r.status, r.problem["field"]) == (409, "domain")
            assert state(ref) == before
            ref.app.admin.delete_list(address)
        ref.set_archive("b.test", "carl@b.test")  # an archive of what goes: it goes too
        r = await web.call("DELETE", f"{V1}/domains/B.Test?archive_to=keeper@a.test", token=admin)
        assert r.status == 200, r.body
        assert r.body == {
            "name": "b.test",
            "accounts": [
                {"address": "bob@b.test", "messages": 1, "archived_in": "Archive/bob@b_test"},
                {"address": "carl@b.test", "messages": 0, "archived_in": "Archive/carl@b_test"},
            ],
        }
        assert not ref.directory.is_local_domain("b.test")
        assert ref.directory.lookup("bob@b.test") is None
        assert ref.app.store.usage("keeper@a.test").messages == 1
        assert not ref.app.store.has_account("bob@b.test")
        r = await web.call("DELETE", f"{V1}/domains/b.test?remove_mail=true", token=admin)
        assert (r.status, r.problem["field"]) == (404, "domain")
        ref.add_domain("empty.test")  # no accounts: no mail to decide about
        r = await web.call("DELETE", f"{V1}/domains/empty.test", token=admin)
        assert (r.status, r.body) == (200, {"name": "empty.test", "accounts": []})


async def test_dmarc_reports(ref: ReferenceServer) -> None:
    admin = token(ref, "domain-admin", domain="a.test")
    async with Web(ref) as web:
        r = await web.call("GET", f"{V1}/domains/a.test/dmarc/reports", token=admin)
        assert (r.status, r.body) == (200, [])
        # A report about a.test arrives (as local delivery hands it over), and an evaluation
        # waits for the daily report we send.
        intake = ReportIntake(ref.app.dmarc_store, lambda d: True, ManualClock(T0))
        intake("postmaster@a.test", _report_mail("a.test"))
        ref.app.dmarc_store.record(observation())
        r = await web.call("GET", f"{V1}/domains/a.test/dmarc/reports", token=admin)
        (report,) = r.body
        assert (report["org_name"], report["messages"], report["aligned"]) == ("google.com", 9, 7)
        assert len(report["report"]["rows"]) == 2
        r = await web.call("GET", f"{V1}/dmarc/pending", token=token(ref, "admin"))
        assert (r.status, r.body) == (200, [{"domain": "bank.example", "evaluations": 1}])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Any:
    for ref in _populated(tmp_path_factory.mktemp("bad")):
        ref.app.admin.put_sieve_script("alice@a.test", "work", SCRIPT, activate=True)
        ref.app.store.deliver("alice@a.test", b"Subject: keep me\r\n\r\nhello\r\n")
        yield ref


BAD: list[tuple[str, str, Any, int, str | None]] = [
    ("PUT", f"{ALICE}/forwarding", {"targets": "x@y.test"}, 422, "targets"),
    ("PUT", f"{ALICE}/forwarding", {"targets": ["not an address"]}, 422, "targets.0"),
    ("PUT", f"{ALICE}/forwarding", {"targets": ["x@y.test"], "keep": "yes"}, 422, "keep"),
    ("PUT", f"{ALICE}/forwarding", {"targets": [], "copy": True}, 422, "copy"),
    ("PUT", f"{ALICE}/forwarding", {"targets": ["alice@a.test"]}, 422, "targets"),
    ("PUT", f"{V1}/accounts/nobody@a.test/forwarding", {"targets": []}, 404, "address"),
    ("PUT", f"{ALICE}/spam", {"reject_score": 0}, 422, "reject_score"),
    ("PUT", f"{ALICE}/spam", {"reject_score": "high"}, 422, "reject_score"),
    ("PUT", f"{ALICE}/spam", {"reject_score": 2, "junk_score": 4}, 422, "junk_score"),
    ("PUT", f"{ALICE}/spam", {"threshold": 4}, 422, "threshold"),
    ("PUT", f"{V1}/domains/other.test/spam", {"reject_score": 4}, 404, "domain"),
    ("POST", f"{ALICE}/senders", {"kind": "maybe", "pattern": "@x.test"}, 422, "kind"),
    ("POST", f"{ALICE}/senders", {"kind": "allow", "pattern": "not a pattern"}, 422, "pattern"),
    ("POST", f"{ALICE}/senders", {"kind": "allow"}, 422, "pattern"),
    ("DELETE", f"{ALICE}/senders/@never.test", None, 404, "pattern"),
    ("PUT", f"{ALICE}/sieve/broken", {"script": "if true {"}, 422, "script"),
    ("PUT", f"{ALICE}/sieve/work", {"script": SCRIPT, "activate": 1}, 422, "activate"),
    ("PUT", f"{ALICE}/sieve/work", {"script": 5}, 422, "script"),
    ("PUT", f"{ALICE}/sieve/bad%01name", {"script": SCRIPT}, 422, "name"),  # a control character
    ("GET", f"{ALICE}/sieve/none", None, 404, "name"),
    ("DELETE", f"{ALICE}/sieve/none", None, 404, "name"),
    ("DELETE", f"{ALICE}/sieve/work", None, 409, "name"),
    ("PUT", f"{ALICE}/sieve-active", {"name": "none"}, 404, "name"),
    ("PUT", f"{ALICE}/sieve-active", {}, 422, "name"),
    ("PUT", f"{ALICE}/vacation", {"subject": "Away"}, 422, "text"),
    ("PUT", f"{ALICE}/vacation", {"subject": "A", "text": "B", "days": 31}, 422, "days"),
    ("PUT", f"{ALICE}/vacation", {"subject": "A", "text": "B", "start": "soon"}, 422, "start"),
    (
        "PUT",
        f"{ALICE}/vacation",
        {"subject": "A", "text": "B", "start": "2026-02-02", "end": "2026-02-01"},
        422,
        "end",
    ),
    (
        "PUT",
        f"{ALICE}/vacation",
        {"subject": "A", "text": "B", "from_address": "x"},
        422,
        "from_address",
    ),
    ("DELETE", ALICE, None, 422, "archive_to"),
    ("DELETE", f"{ALICE}?archive_to=alice@a.test", None, 422, "archive_to"),
    ("DELETE", f"{ALICE}?archive_to=nobody@a.test", None, 404, "archive_to"),
    ("DELETE", f"{ALICE}?archive_to=keeper@a.test&remove_mail=true", None, 422, "archive_to"),
    ("DELETE", f"{ALICE}?remove_mail=maybe", None, 422, "remove_mail"),
    ("DELETE", f"{ALICE}?purge=true", None, 422, "purge"),
    ("DELETE", f"{V1}/accounts/nobody@a.test?remove_mail=true", None, 404, "address"),
    ("GET", f"{V1}/domains/other.test/dmarc/reports", None, 404, "domain"),
    ("DELETE", f"{V1}/domains/a.test", None, 422, "archive_to"),
    ("DELETE", f"{V1}/domains/a.test?archive_to=alice@a.test", None, 422, "archive_to"),
    ("DELETE", f"{V1}/domains/a.test?archive_to=nobody@a.test", None, 404, "archive_to"),
    ("DELETE", f"{V1}/domains/a.test?archive_to=not-an-address", None, 422, "archive_to"),
    (
        "DELETE",
        f"{V1}/domains/a.test?archive_to=keeper@a.test&remove_mail=true",
        None,
        422,
        "archive_to",
    ),
    ("DELETE", f"{V1}/domains/a.test?remove_mail=maybe", None, 422, "remove_mail"),
    ("DELETE", f"{V1}/domains/a.test?remove_mail=true&remove_mail=true", None, 422, "remove_mail"),
    ("DELETE", f"{V1}/domains/a.test?purge=true", None, 422, "purge"),
    ("DELETE", f"{V1}/domains/a.test?remove_mail=true", {"really": True}, 400, None),
    ("DELETE", f"{V1}/domains/other.test?remove_mail=true", None, 404, "domain"),
    ("DELETE", f"{V1}/domains/bad_name!?remove_mail=true", None, 422, "domain"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"), BAD, ids=[f"{b[0]} {b[1]} {b[3]}" for b in BAD]
)
async def test_bad_input_is_a_problem_and_changes_nothing(
    shared: ReferenceServer, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    admin = token(shared, "admin")
    before = state(shared)
    async with Web(shared) as web:
        r = await web.call(method, path, token=admin, body=body)
    assert r.status == status, r.body
    assert r.problem["detail"]
    if field is not None:
        assert r.problem["field"] == field, r.problem
    assert state(shared) == before


async def test_huge_script_is_refused(shared: ReferenceServer) -> None:
    admin = token(shared, "admin")
    before = state(shared)
    async with Web(shared) as web:
        body = {"script": "#" * 70_000}
        r = await web.call("PUT", f"{ALICE}/sieve/big", token=admin, body=body)
    assert r.status == 413 and r.problem
    assert state(shared) == before
