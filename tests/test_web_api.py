"""The admin API over real HTTPS: every endpoint does its job, and bad input is a 4xx problem
detail (RFC 9457) naming the field, with nothing changed."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from web_client import Web, reference, token

from reference.testing import ReferenceServer
from reference.web import MAX_BODY

MESSAGE = b"From: alice@a.test\r\nTo: x@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def state(ref: ReferenceServer) -> dict[str, Any]:
    """Everything the API can change, to show a refused request changed nothing: every row
    of the directory database (password hashes included), the queue, the DKIM keys."""
    with contextlib.closing(sqlite3.connect(ref.config.data_path / "directory.sqlite3")) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}
    return {
        "directory": rows,
        "queue": [(e.qid, e.held, e.flushed) for e in ref.app.spool.entries()],
        "dkim": sorted(str(p) for p in (ref.config.data_path / "dkim").rglob("*.key")),
    }


def enqueue(ref: ReferenceServer) -> str:
    """A message for remote.test (whose DNS fails: it stays queued), not yet tried."""
    entry = ref.run(ref.app.spool.enqueue("alice@a.test", ["x@remote.test"], MESSAGE))
    return str(entry.qid)


def _populated(tmp: Path) -> Any:
    with reference(tmp) as (ref, _):
        ref.add_domain("a.test")
        ref.add_user("alice@a.test", "pw")
        yield ref


async def attempted(ref: ReferenceServer, qid: str, attempts: int) -> None:
    """Wait (real time, bounded) until the runner has tried ``qid`` that often.

    A flush that lands while an attempt is still finishing waits for the runner's next
    look at the spool (within a second of its clock): the clock is moved on by that much
    now and then, never near a retry (60 s).
    """
    for i in range(500):
        entry = ref.app.spool.load(qid)
        if entry is not None and entry.attempts >= attempts and not entry.flushed:
            return
        if i % 50 == 49:
            ref.clock.advance(1.0)
        await asyncio.sleep(0.02)
    raise AssertionError(f"{qid} not tried {attempts} times")


@pytest.fixture
def ref(tmp_path: Path) -> Any:
    yield from _populated(tmp_path)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One reference for the refusals: each must leave it as it was, which each test checks."""
    for ref in _populated(tmp_path_factory.mktemp("bad")):
        enqueue(ref)
        yield ref


async def test_me_and_domains(ref: ReferenceServer) -> None:
    admin = token(ref, "admin")
    async with Web(ref) as web:
        assert (await web.call("GET", "/api/v1/me", token=admin)).body == {
            "role": "admin",
            "domain": None,
            "user": None,
        }
        r = await web.call("POST", "/api/v1/domains", token=admin, body={"name": "B.Test."})
        assert (r.status, r.body) == (201, {"name": "b.test"})
        r = await web.call("GET", "/api/v1/domains", token=admin)
        assert r.body == [{"name": "a.test"}, {"name": "b.test"}]
        r = await web.call("POST", "/api/v1/domains", token=admin, body={"name": "b.test"})
        assert (r.status, r.problem["field"]) == (409, "name")


async def test_accounts(ref: ReferenceServer) -> None:
    admin = token(ref, "admin")
    async with Web(ref) as web:
        body = {"address": "Carol@A.test", "password": "s3cret", "quota_bytes": 1000}
        r = await web.call("POST", "/api/v1/accounts", token=admin, body=body)
        assert r.status == 201
        assert r.body == {
            "address": "carol@a.test",
            "domain": "a.test",
            "enabled": True,
            "quota_bytes": 1000,
            "quota_messages": None,
            "bulk": False,
            "aliases": [],
        }
        assert ref.directory.check_password("carol@a.test", "s3cret") == "carol@a.test"
        r = await web.call("GET", "/api/v1/domains/a.test/accounts", token=admin)
        assert [a["address"] for a in r.body] == ["alice@a.test", "carol@a.test"]
        r = await web.call("GET", "/api/v1/accounts/carol@a.test", token=admin)
        assert r.body["quota_bytes"] == 1000
        change = {"enabled": False, "quota_messages": 5, "bulk": True}
        r = await web.call("PATCH", "/api/v1/accounts/carol@a.test", token=admin, body=change)
        assert r.status == 200
        assert (r.body["enabled"], r.body["quota_bytes"], r.body["quota_messages"]) == (
            False,
            1000,  # not named: kept
            5,
        )
        assert r.body["bulk"] is True
        assert ref.directory.lookup("carol@a.test").enabled is False  # type: ignore[union-attr]
        r = await web.call(
            "PATCH", "/api/v1/accounts/carol@a.test", token=admin, body={"quota_bytes": None}
        )
        assert (r.body["quota_bytes"], r.body["quota_messages"]) == (None, 5)  # back to default
        r = await web.call(
            "PUT", "/api/v1/accounts/alice@a.test/password", token=admin, body={"password": "new"}
        )
        assert r.status == 204
        assert ref.directory.check_password("alice@a.test", "new") == "alice@a.test"
        # The user logs in with it (Basic) and sees their own account.
        r = await web.call("GET", "/api/v1/accounts/alice@a.test", basic=("alice@a.test", "new"))
        assert (r.status, r.body["address"]) == (200, "alice@a.test")


async def test_aliases(ref: ReferenceServer) -> None:
    admin = token(ref, "admin")
    async with Web(ref) as web:
        body = {"alias": "Info@a.test", "targets": ["alice@a.test"]}
        r = await web.call("POST", "/api/v1/aliases", token=admin, body=body)
        assert (r.status, r.body) == (201, {"alias": "info@a.test", "targets": ["alice@a.test"]})
        r = await web.call("GET", "/api/v1/domains/a.test/aliases", token=admin)
        assert r.body == [{"alias": "info@a.test", "target": "alice@a.test"}]
        r = await web.call("GET", "/api/v1/accounts/alice@a.test", token=admin)
        assert r.body["aliases"] == ["info@a.test"]
        r = await web.call("POST", "/api/v1/aliases", token=admin, body=body)
        assert (r.status, r.problem["field"]) == (409, "alias")
        assert (await web.call("DELETE", "/api/v1/aliases/info@a.test", token=admin)).status == 204
        assert ref.directory.aliases() == []
        r = await web.call("DELETE", "/api/v1/aliases/info@a.test", token=admin)
        assert (r.status, r.problem["field"]) == (404, "alias")


async def test_dkim_keys_and_dns_records(ref: ReferenceServer) -> None:
    admin = token(ref, "admin")
    async with Web(ref) as web:
        r = await web.call("GET", "/api/v1/domains/a.test/dkim", token=admin)
        assert (r.status, r.body["records"]) == (200, [])  # none made by looking
        r = await web.call("POST", "/api/v1/domains/a.test/dkim", token=admin, body={})
        assert (r.status, r.body["made"]) == (200, True)
        names = [x["name"] for x in r.body["records"]]
        assert names == ["mailspec-rsa._domainkey.a.test", "mailspec-ed25519._domainkey.a.test"]
        assert r.body["records"][0]["value"].startswith("v=DKIM1; k=rsa; p=")
        assert r.body["records"][0]["zone_line"].startswith("mailspec-rsa._domainkey.a.test.\t")
        r = await web.call("POST", "/api/v1/domains/a.test/dkim", token=admin, body={})
        assert r.body["made"] is False  # kept
        r = await web.call("GET", "/api/v1/domains/a.test/dns", token=admin)
        assert [(x["name"], x["type"]) for x in r.body] == [
            ("a.test", "MX"),
            ("a.test", "TXT"),
            ("mailspec-rsa._domainkey.a.test", "TXT"),
            ("mailspec-ed25519._domainkey.a.test", "TXT"),
            ("_dmarc.a.test", "TXT"),
            ("mail.example.test", "TXT"),  # SPF of the SRS domain (forwarded mail)
            ("mailspec-rsa._domainkey.mail.example.test", "TXT"),  # ARC sealing key
        ]
        assert r.body[0]["value"] == "10 mail.example.test."
        r = await web.call(
            "POST", "/api/v1/domains/a.test/dkim", token=admin, body={"selector": "s2"}
        )
        assert r.body["records"][0]["name"] == "s2-rsa._domainkey.a.test"


async def test_queue(ref: ReferenceServer) -> None:
    admin = token(ref, "admin")
    first, second = sorted([enqueue(ref), enqueue(ref)])  # one millisecond: random order
    async with Web(ref) as web:
        r = await web.call("GET", "/api/v1/queue", token=admin)
        assert [(e["qid"], e["lane"], e["held"]) for e in r.body] == [
            (first, "regular", False),
            (second, "regular", False),
        ]
        assert r.body[0]["recipients"][0]["address"] == "x@remote.test"
        r = await web.call("GET", f"/api/v1/queue/{first}", token=admin)
        assert "Subject: hi" in r.body["headers"]
        r = await web.call("POST", f"/api/v1/queue/{first}/hold", token=admin)
        assert (r.status, r.body) == (200, {"done": [first], "missing": []})
        assert ref.app.spool.load(first).held  # type: ignore[union-attr]
        r = await web.call("POST", f"/api/v1/queue/{first}/release", token=admin)
        assert not ref.app.spool.load(first).held  # type: ignore[union-attr]
        await attempted(ref, first, 1)  # released: tried at once (deferred: the MX refuses)
        r = await web.call("DELETE", f"/api/v1/queue/{second}", token=admin)
        assert (r.status, r.body["done"]) == (200, [second])
        assert ref.app.spool.load(second) is None
        r = await web.call("POST", f"/api/v1/queue/{first}/flush", token=admin)
        assert r.body["done"] == [first]
        await attempted(ref, first, 2)
        r = await web.call("POST", "/api/v1/queue/flush", token=admin, body={})
        assert (r.status, r.body["done"]) == (200, [first])
        await attempted(ref, first, 3)
        r = await web.call("GET", f"/api/v1/queue/{second}", token=admin)
        assert (r.status, r.problem["field"]) == (404, "qid")


# -- bad input: (method, path, body or raw bytes, status, field)

BAD: list[tuple[str, str, Any, int, str | None]] = [
    ("POST", "/api/v1/domains", {"name": 5}, 422, "name"),
    ("POST", "/api/v1/domains", {"name": "a.test", "admin": True}, 422, "admin"),
    ("POST", "/api/v1/domains", {"name": "bad_domain!"}, 422, "name"),
    ("POST", "/api/v1/domains", {}, 422, "name"),
    ("POST", "/api/v1/domains", [1], 422, "(body)"),
    ("POST", "/api/v1/domains", b"{not json", 400, "(body)"),
    ("POST", "/api/v1/domains", {"name": "a.test"}, 409, "name"),
    ("POST", "/api/v1/accounts", {"address": "not-an-address", "password": "x"}, 422, "address"),
    ("POST", "/api/v1/accounts", {"address": "a b@a.test", "password": "x"}, 422, "address"),
    ("POST", "/api/v1/accounts", {"address": "x@other.test", "password": "x"}, 422, "address"),
    ("POST", "/api/v1/accounts", {"address": "x@a.test", "password": 5}, 422, "password"),
    ("POST", "/api/v1/accounts", {"address": "x@a.test", "password": ""}, 422, "password"),
    ("POST", "/api/v1/accounts", {"address": "x@a.test"}, 422, "password"),
    (
        "POST",
        "/api/v1/accounts",
        {"address": "x@a.test", "password": "x", "quota_bytes": "5"},
        422,
        "quota_bytes",
    ),
    (
        "POST",
        "/api/v1/accounts",
        {"address": "x@a.test", "password": "x", "quota_bytes": -1},
        422,
        "quota_bytes",
    ),
    (
        "POST",
        "/api/v1/accounts",
        {"address": "x@a.test", "password": "x", "role": "admin"},
        422,
        "role",
    ),
    ("POST", "/api/v1/accounts", {"address": "alice@a.test", "password": "x"}, 409, "address"),
    ("PATCH", "/api/v1/accounts/alice@a.test", {"enabled": "no"}, 422, "enabled"),
    ("PATCH", "/api/v1/accounts/alice@a.test", {"enabled": 0}, 422, "enabled"),
    (
        "PATCH",
        "/api/v1/accounts/alice@a.test",
        {"enabled": False, "quota_messages": -5},
        422,
        "quota_messages",
    ),
    ("PATCH", "/api/v1/accounts/alice@a.test", {"password": "x"}, 422, "password"),
    ("PATCH", "/api/v1/accounts/nobody@a.test", {"enabled": False}, 404, "address"),
    ("PATCH", "/api/v1/accounts/no-at-sign", {"enabled": False}, 422, "address"),
    ("GET", "/api/v1/accounts/nobody@a.test", None, 404, "address"),
    ("PUT", "/api/v1/accounts/alice@a.test/password", {"password": ["x"]}, 422, "password"),
    ("PUT", "/api/v1/accounts/alice@a.test/password", {"password": ""}, 422, "password"),
    ("PUT", "/api/v1/accounts/nobody@a.test/password", {"password": "x"}, 404, "address"),
    (
        "POST",
        "/api/v1/aliases",
        {"alias": "info@a.test", "targets": ["nobody@a.test"]},
        404,
        "targets",
    ),
    (
        "POST",
        "/api/v1/aliases",
        {"alias": "info@b.test", "targets": ["alice@a.test"]},
        422,
        "alias",
    ),
    (
        "POST",
        "/api/v1/aliases",
        {"alias": "alice@a.test", "targets": ["alice@a.test"]},
        409,
        "alias",
    ),
    ("POST", "/api/v1/aliases", {"alias": "@a.test", "targets": ["alice@a.test"]}, 422, "alias"),
    ("DELETE", "/api/v1/aliases/none@a.test", None, 404, "alias"),
    ("GET", "/api/v1/domains/other.test/accounts", None, 404, "domain"),
    ("GET", "/api/v1/domains/bad_name!/aliases", None, 422, "domain"),
    ("POST", "/api/v1/domains/a.test/dkim", {"selector": "../../etc"}, 422, "selector"),
    ("POST", "/api/v1/domains/a.test/dkim", {"selector": 7}, 422, "selector"),
    ("POST", "/api/v1/domains/other.test/dkim", {}, 404, "domain"),
    ("GET", "/api/v1/domains/other.test/dns", None, 404, "domain"),
    ("GET", "/api/v1/queue/..%2F..%2Fdirectory", None, 422, "qid"),
    ("GET", "/api/v1/queue/0123456789ABCDEF", None, 404, "qid"),
    ("POST", "/api/v1/queue/0123456789ABCDEF/hold", None, 404, "qid"),
    ("DELETE", "/api/v1/queue/0123456789ABCDEF", None, 404, "qid"),
    ("POST", "/api/v1/queue/flush", {"qids": "all"}, 422, "qids"),
    ("POST", "/api/v1/queue/flush", {"qids": ["../x"]}, 422, "qids.0"),
    ("POST", "/api/v1/queue/0123456789ABCDEF/hold", {"now": True}, 400, None),
    ("GET", "/api/v1/nothing-here", None, 404, None),
    ("DELETE", "/api/v1/domains", None, 405, None),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"), BAD, ids=[f"{b[0]} {b[1]} {b[3]}" for b in BAD]
)
async def test_bad_input_is_a_problem_and_changes_nothing(
    shared: ReferenceServer, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    ref = shared
    admin = token(ref, "admin")
    before = state(ref)
    async with Web(ref) as web:
        if isinstance(body, bytes):
            r = await web.call(
                method, path, token=admin, data=body, headers={"Content-Type": "application/json"}
            )
        else:
            r = await web.call(method, path, token=admin, body=body)
    assert r.status == status, r.body
    problem = r.problem
    assert problem["title"] and problem["detail"]
    if status == 405:
        assert r.headers["Allow"]
    if field is not None:
        assert problem["field"] == field, problem
        assert problem["errors"][0]["field"] == field
    assert state(ref) == before


async def test_huge_bodies_and_wrong_media_types_are_refused(ref: ReferenceServer) -> None:
    admin = token(ref, "admin")
    before = state(ref)
    huge = b'{"name": "' + b"a" * (MAX_BODY + 10) + b'.test"}'
    async with Web(ref) as web:
        r = await web.call(
            "POST",
            "/api/v1/domains",
            token=admin,
            data=huge,
            headers={"Content-Type": "application/json"},
        )
        assert r.status == 413 and "larger than" in r.problem["detail"]

        # Sent in chunks, without a Content-Length: refused while it is read.
        async def chunks() -> Any:
            for _ in range(MAX_BODY // 1024 + 10):
                yield b" " * 1024

        assert web.session is not None
        async with web.session.post(
            web.base + "/api/v1/accounts",
            data=chunks(),
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
            ssl=web.tls,
            server_hostname=ref.hostname,
        ) as resp:
            assert resp.status == 413
            assert resp.headers["Content-Type"].startswith("application/problem+json")
        r = await web.call(
            "POST",
            "/api/v1/domains",
            token=admin,
            data=b"name=b.test",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status == 415 and r.problem
    assert state(ref) == before


async def test_openapi_document_is_made_from_the_routes(ref: ReferenceServer) -> None:
    from openapi_spec_validator import validate

    from reference.web.api import routes

    async with Web(ref) as web:
        r = await web.call("GET", "/api/v1/openapi.json")  # public: it describes, it holds nothing
    doc = r.body
    assert r.status == 200 and doc["openapi"].startswith("3.1")
    validate(doc)  # a valid OpenAPI 3.1 document, by an independent validator
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert listed == {(route.method, route.path) for route in routes()}
    post = doc["paths"]["/api/v1/accounts"]["post"]
    schema_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    account_in = doc["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert set(account_in["required"]) == {"address", "password"}
    assert account_in["additionalProperties"] is False  # unknown fields are refused
    assert "422" in post["responses"] and "Problem" in doc["components"]["schemas"]
    assert post["x-roles"] == ["admin", "domain-admin"]


async def test_access_lists(ref: ReferenceServer) -> None:
    admin = token(ref, "admin")
    async with Web(ref) as web:
        body = {"kind": "client", "pattern": "198.51.100.7/24", "action": "reject", "text": "No"}
        r = await web.call("POST", "/api/v1/access", token=admin, body=body)
        assert (r.status, r.body) == (
            201,
            {
                "domain": None,
                "kind": "client",
                "pattern": "198.51.100.0/24",
                "action": "reject",
                "text": "No",
            },
        )
        body = {"kind": "recipient", "pattern": "staff@a.test", "action": "restrict"}
        r = await web.call("POST", "/api/v1/domains/a.test/access", token=admin, body=body)
        assert (r.status, r.body["domain"]) == (201, "a.test")
        r = await web.call("GET", "/api/v1/access", token=admin)
        assert [x["pattern"] for x in r.body] == ["198.51.100.0/24"]
        r = await web.call("GET", "/api/v1/domains/a.test/access", token=admin)
        assert [x["pattern"] for x in r.body] == ["staff@a.test"]
        bad = {"kind": "sender", "pattern": "x.test", "action": "restrict"}
        r = await web.call("POST", "/api/v1/access", token=admin, body=bad)
        assert (r.status, r.problem["field"]) == (422, "action")
        bad = {"kind": "client", "pattern": "not-an-ip", "action": "reject"}
        r = await web.call("POST", "/api/v1/access", token=admin, body=bad)
        assert (r.status, r.problem["field"]) == (422, "pattern")
        key = {"kind": "client", "pattern": "198.51.100.0/24"}
        r = await web.call("POST", "/api/v1/access/remove", token=admin, body=key)
        assert r.status == 204
        r = await web.call("POST", "/api/v1/access/remove", token=admin, body=key)
        assert (r.status, r.problem["field"]) == (404, "pattern")
        assert [(x.scope, x.pattern) for x in ref.directory.access_rules()] == [
            ("a.test", "staff@a.test")
        ]


async def test_classes_of_service(ref: ReferenceServer) -> None:
    admin = token(ref, "admin")
    async with Web(ref) as web:
        body = {
            "name": "basic",
            "quota_messages": 100,
            "rate_recipients": "50/1h",
            "external": False,
        }
        r = await web.call("POST", "/api/v1/cos", token=admin, body=body)
        assert (r.status, r.body["external"], r.body["lists"]) == (201, False, True)
        r = await web.call("POST", "/api/v1/cos", token=admin, body=body)
        assert (r.status, r.problem["field"]) == (409, "name")
        bad = {"name": "odd", "rate_bytes": "lots"}
        r = await web.call("POST", "/api/v1/cos", token=admin, body=bad)
        assert (r.status, r.problem["field"]) == (422, "rate_bytes")
        change = {"quota_messages": None, "max_message_size": 5000}
        r = await web.call("PATCH", "/api/v1/cos/basic", token=admin, body=change)
        assert (r.body["quota_messages"], r.body["max_message_size"]) == (None, 5000)
        r = await web.call("PUT", "/api/v1/domains/a.test/cos", token=admin, body={"cos": "basic"})
        assert r.status == 204
        r = await web.call("GET", "/api/v1/accounts/alice@a.test/cos", token=admin)
        assert (r.body["cos"]["name"], r.body["source"]) == ("basic", "domain")
        r = await web.call("DELETE", "/api/v1/cos/basic", token=admin)
        assert (r.status, r.problem["field"]) == (409, "name")  # still given to a.test
        await web.call("PUT", "/api/v1/domains/a.test/cos", token=admin, body={"cos": None})
        r = await web.call("GET", "/api/v1/accounts/alice@a.test/cos", token=admin)
        assert r.body == {"cos": None, "source": "platform"}
        assert (await web.call("DELETE", "/api/v1/cos/basic", token=admin)).status == 204
        r = await web.call("GET", "/api/v1/cos", token=admin)
        assert r.body == []
