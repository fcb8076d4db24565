"""The authorization matrix: every endpoint of the admin API, called by every role and by
another domain's administrator. Nobody reaches what is not theirs (401 or 403, a problem
detail, nothing changed), and everyone reaches what is."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_web_api import state
from web_client import Web, reference, token

from reference.auth.reports import SentReport
from reference.testing import ReferenceServer
from reference.web.api import routes

MESSAGE = b"From: alice@a.test\r\nSubject: hi\r\n\r\nHello.\r\n"
# Who calls: the platform's administrator, a.test's and b.test's administrators, a user of
# each domain, nobody, and someone with a made-up token.
CALLERS = ("admin", "admin-a", "admin-b", "alice", "bob", "anonymous", "forged")
_counter = itertools.count()


@dataclass
class World:
    ref: ReferenceServer
    tokens: dict[str, str | None]
    qid: str = ""

    def enqueue(self) -> str:
        entry = self.ref.run(self.ref.app.spool.enqueue("alice@a.test", ["x@remote.test"], MESSAGE))
        return str(entry.qid)


@dataclass(frozen=True)
class Case:
    method: str
    route: str  # as in the route table
    allowed: frozenset[str]
    # The path and body to send, made fresh for each call (after what it needs exists).
    make: Callable[[World], tuple[str, Any]] = field(compare=False)


def fresh(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


def alias_to_delete(w: World) -> tuple[str, Any]:
    alias = f"{fresh('gone')}@a.test"
    w.ref.add_alias(alias, "alice@a.test")
    return f"/api/v1/aliases/{alias}", None


def access_rule() -> dict[str, str]:
    return {"kind": "sender", "pattern": f"{fresh('s')}@spam.test", "action": "reject"}


def access_to_remove(w: World, domain: str) -> tuple[str, Any]:
    pattern = f"{fresh('r')}@spam.test"
    w.ref.add_access(domain, "sender", pattern, "reject")
    base = f"{V1}/domains/{domain}/access" if domain else f"{V1}/access"
    return f"{base}/remove", {"kind": "sender", "pattern": pattern}


def cos_made(w: World) -> str:
    name = fresh("cos")
    w.ref.create_cos(name)
    return name


def list_to_delete(w: World) -> tuple[str, Any]:
    address = f"{fresh('gone')}@a.test"
    w.ref.create_list(address, owner="alice@a.test")
    return f"/api/v1/lists/{address}", None


def member_to_remove(w: World) -> tuple[str, Any]:
    member = f"{fresh('m')}@remote.test"
    w.ref.add_list_members("team@a.test", member)
    return f"/api/v1/lists/team@a.test/members/{member}", None


def archive_to_clear(w: World) -> tuple[str, Any]:
    w.ref.set_archive("alice@a.test", "carol@a.test")
    return "/api/v1/archives/alice@a.test", None


def account_to_delete(w: World) -> tuple[str, Any]:
    address = f"{fresh('leaving')}@a.test"
    w.ref.add_user(address, "pw")
    return f"{V1}/accounts/{address}?remove_mail=true", None


def domain_to_delete(w: World) -> tuple[str, Any]:
    domain = f"{fresh('gone')}.test"
    w.ref.add_domain(domain)
    w.ref.add_user(f"someone@{domain}", "pw")
    return f"{V1}/domains/{domain}?remove_mail=true", None


def sender_to_remove(w: World) -> tuple[str, Any]:
    pattern = f"@{fresh('s')}.test"
    w.ref.app.admin.list_sender("alice@a.test", "block", pattern)
    return f"{V1}/accounts/alice@a.test/senders/{pattern}", None


def script_to_delete(w: World) -> tuple[str, Any]:
    name = fresh("old")
    w.ref.app.admin.put_sieve_script("alice@a.test", name, "keep;\r\n", activate=False)
    return f"{ALICE}/sieve/{name}", None


ADMIN = frozenset({"admin"})
ADMINS = frozenset({"admin", "admin-a", "admin-b"})
A_ADMINS = frozenset({"admin", "admin-a"})
SELF = frozenset({"admin", "admin-a", "alice"})
EVERYONE = frozenset({"admin", "admin-a", "admin-b", "alice", "bob"})
V1 = "/api/v1"
A = f"{V1}/domains/a.test"
ALICE = f"{V1}/accounts/alice@a.test"
ACCT = f"{V1}/accounts/{{address}}"

CASES = [
    Case("GET", f"{V1}/me", EVERYONE, lambda w: (f"{V1}/me", None)),
    Case(
        "GET",
        f"{V1}/domains",
        frozenset({"admin", "admin-a", "admin-b"}),
        lambda w: (f"{V1}/domains", None),
    ),
    Case(
        "POST", f"{V1}/domains", ADMIN, lambda w: (f"{V1}/domains", {"name": fresh("d") + ".test"})
    ),
    Case(
        "GET",
        f"{V1}/domains/{{domain}}/accounts",
        A_ADMINS,
        lambda w: (f"{V1}/domains/a.test/accounts", None),
    ),
    Case(
        "POST",
        f"{V1}/accounts",
        A_ADMINS,
        lambda w: (f"{V1}/accounts", {"address": fresh("u") + "@a.test", "password": "pw"}),
    ),
    Case(
        "GET", f"{V1}/accounts/{{address}}", SELF, lambda w: (f"{V1}/accounts/alice@a.test", None)
    ),
    Case(
        "PATCH",
        f"{V1}/accounts/{{address}}",
        A_ADMINS,
        lambda w: (f"{V1}/accounts/carol@a.test", {"quota_messages": next(_counter)}),
    ),
    Case(
        "PUT",
        f"{V1}/accounts/{{address}}/password",
        SELF,
        lambda w: (f"{V1}/accounts/alice@a.test/password", {"password": "pw"}),
    ),
    Case(
        "GET",
        f"{V1}/domains/{{domain}}/aliases",
        A_ADMINS,
        lambda w: (f"{V1}/domains/a.test/aliases", None),
    ),
    Case(
        "POST",
        f"{V1}/aliases",
        A_ADMINS,
        lambda w: (
            f"{V1}/aliases",
            {"alias": fresh("al") + "@a.test", "targets": ["alice@a.test"]},
        ),
    ),
    Case("DELETE", f"{V1}/aliases/{{alias}}", A_ADMINS, alias_to_delete),
    Case("GET", f"{V1}/access", ADMIN, lambda w: (f"{V1}/access", None)),
    Case("POST", f"{V1}/access", ADMIN, lambda w: (f"{V1}/access", access_rule())),
    Case("POST", f"{V1}/access/remove", ADMIN, lambda w: access_to_remove(w, "")),
    Case("GET", f"{V1}/domains/{{domain}}/access", A_ADMINS, lambda w: (f"{A}/access", None)),
    Case(
        "POST",
        f"{V1}/domains/{{domain}}/access",
        A_ADMINS,
        lambda w: (f"{A}/access", access_rule()),
    ),
    Case(
        "POST",
        f"{V1}/domains/{{domain}}/access/remove",
        A_ADMINS,
        lambda w: access_to_remove(w, "a.test"),
    ),
    Case("GET", f"{V1}/cos", ADMIN, lambda w: (f"{V1}/cos", None)),
    Case("POST", f"{V1}/cos", ADMIN, lambda w: (f"{V1}/cos", {"name": fresh("c")})),
    Case(
        "PATCH",
        f"{V1}/cos/{{name}}",
        ADMIN,
        lambda w: (f"{V1}/cos/{cos_made(w)}", {"lists": False}),
    ),
    Case("DELETE", f"{V1}/cos/{{name}}", ADMIN, lambda w: (f"{V1}/cos/{cos_made(w)}", None)),
    Case(
        "PUT",
        f"{V1}/accounts/{{address}}/cos",
        ADMIN,
        lambda w: (f"{V1}/accounts/carol@a.test/cos", {"cos": None}),
    ),
    Case(
        "GET",
        f"{V1}/accounts/{{address}}/cos",
        SELF,
        lambda w: (f"{V1}/accounts/alice@a.test/cos", None),
    ),
    Case("PUT", f"{V1}/domains/{{domain}}/cos", ADMIN, lambda w: (f"{A}/cos", {"cos": None})),
    Case("GET", f"{V1}/domains/{{domain}}/dkim", A_ADMINS, lambda w: (f"{A}/dkim", None)),
    Case("POST", f"{V1}/domains/{{domain}}/dkim", A_ADMINS, lambda w: (f"{A}/dkim", {})),
    Case("GET", f"{V1}/domains/{{domain}}/dns", A_ADMINS, lambda w: (f"{A}/dns", None)),
    Case("GET", f"{V1}/queue", ADMIN, lambda w: (f"{V1}/queue", None)),
    Case("GET", f"{V1}/queue/{{qid}}", ADMIN, lambda w: (f"{V1}/queue/{w.qid}", None)),
    Case("POST", f"{V1}/queue/flush", ADMIN, lambda w: (f"{V1}/queue/flush", {"qids": [w.qid]})),
    *(
        Case(
            "POST",
            f"{V1}/queue/{{qid}}/{action}",
            ADMIN,
            lambda w, action=action: (f"{V1}/queue/{w.qid}/{action}", None),
        )
        for action in ("hold", "release", "flush")
    ),
    Case("DELETE", f"{V1}/queue/{{qid}}", ADMIN, lambda w: (f"{V1}/queue/{w.enqueue()}", None)),
    Case("GET", f"{V1}/domains/{{domain}}/lists", A_ADMINS, lambda w: (f"{A}/lists", None)),
    Case(
        "POST",
        f"{V1}/lists",
        A_ADMINS,
        lambda w: (f"{V1}/lists", {"address": fresh("l") + "@a.test", "owner": "alice@a.test"}),
    ),
    Case("GET", f"{V1}/lists/{{address}}", A_ADMINS, lambda w: (f"{V1}/lists/team@a.test", None)),
    Case(
        "PATCH",
        f"{V1}/lists/{{address}}",
        A_ADMINS,
        lambda w: (f"{V1}/lists/team@a.test", {"policy": "members"}),
    ),
    Case("DELETE", f"{V1}/lists/{{address}}", A_ADMINS, list_to_delete),
    Case(
        "POST",
        f"{V1}/lists/{{address}}/members",
        A_ADMINS,
        lambda w: (f"{V1}/lists/team@a.test/members", {"members": ["carol@a.test"]}),
    ),
    Case("DELETE", f"{V1}/lists/{{address}}/members/{{member}}", A_ADMINS, member_to_remove),
    Case("GET", f"{V1}/archives", ADMIN, lambda w: (f"{V1}/archives", None)),
    Case(
        "PUT",
        f"{V1}/archives/{{scope}}",
        ADMIN,
        lambda w: (f"{V1}/archives/alice@a.test", {"archive": "carol@a.test"}),
    ),
    Case("DELETE", f"{V1}/archives/{{scope}}", ADMIN, archive_to_clear),
    Case("GET", f"{V1}/usage", EVERYONE, lambda w: (f"{V1}/usage", None)),
    Case("DELETE", ACCT, A_ADMINS, account_to_delete),
    Case("DELETE", f"{V1}/domains/{{domain}}", ADMIN, domain_to_delete),
    Case("GET", f"{ACCT}/forwarding", SELF, lambda w: (f"{ALICE}/forwarding", None)),
    Case("PUT", f"{ACCT}/forwarding", SELF, lambda w: (f"{ALICE}/forwarding", {"targets": []})),
    Case("GET", f"{ACCT}/spam", SELF, lambda w: (f"{ALICE}/spam", None)),
    Case("PUT", f"{ACCT}/spam", SELF, lambda w: (f"{ALICE}/spam", {"junk_score": 4})),
    Case("DELETE", f"{ACCT}/spam", SELF, lambda w: (f"{ALICE}/spam", None)),
    Case("GET", f"{V1}/domains/{{domain}}/spam", A_ADMINS, lambda w: (f"{A}/spam", None)),
    Case(
        "PUT",
        f"{V1}/domains/{{domain}}/spam",
        A_ADMINS,
        lambda w: (f"{A}/spam", {"reject_score": 9}),
    ),
    Case("DELETE", f"{V1}/domains/{{domain}}/spam", A_ADMINS, lambda w: (f"{A}/spam", None)),
    Case("GET", f"{ACCT}/senders", SELF, lambda w: (f"{ALICE}/senders", None)),
    Case(
        "POST",
        f"{ACCT}/senders",
        SELF,
        lambda w: (f"{ALICE}/senders", {"kind": "allow", "pattern": f"@{fresh('ok')}.test"}),
    ),
    Case("DELETE", f"{ACCT}/senders/{{pattern}}", SELF, sender_to_remove),
    Case("GET", f"{ACCT}/sieve", SELF, lambda w: (f"{ALICE}/sieve", None)),
    Case("PUT", f"{ACCT}/sieve-active", SELF, lambda w: (f"{ALICE}/sieve-active", {"name": "s"})),
    Case("GET", f"{ACCT}/sieve/{{name}}", SELF, lambda w: (f"{ALICE}/sieve/s", None)),
    Case(
        "PUT",
        f"{ACCT}/sieve/{{name}}",
        SELF,
        lambda w: (f"{ALICE}/sieve/{fresh('n')}", {"script": "keep;\r\n"}),
    ),
    Case("DELETE", f"{ACCT}/sieve/{{name}}", SELF, script_to_delete),
    Case("GET", f"{ACCT}/vacation", SELF, lambda w: (f"{ALICE}/vacation", None)),
    Case(
        "PUT",
        f"{ACCT}/vacation",
        SELF,
        lambda w: (f"{ALICE}/vacation", {"subject": "Away", "text": "Back soon."}),
    ),
    Case("DELETE", f"{ACCT}/vacation", SELF, lambda w: (f"{ALICE}/vacation", None)),
    Case(
        "GET",
        f"{V1}/domains/{{domain}}/dmarc/reports",
        A_ADMINS,
        lambda w: (f"{A}/dmarc/reports", None),
    ),
    Case("GET", f"{V1}/dmarc/pending", ADMIN, lambda w: (f"{V1}/dmarc/pending", None)),
    # Each administrator reads the reports about their own domains (the list is scoped).
    Case("GET", f"{V1}/dmarc/sent", ADMINS, lambda w: (f"{V1}/dmarc/sent", None)),
    Case(
        "GET",
        f"{V1}/dmarc/sent/{{report_id}}",
        A_ADMINS,
        lambda w: (f"{V1}/dmarc/sent/{SENT_ABOUT_A}", None),
    ),
]

# Requests a role may make in general, aimed across a boundary: refused all the same.
ACROSS = [
    ("admin-a", "POST", f"{V1}/accounts", {"address": "x@b.test", "password": "pw"}),
    ("admin-a", "POST", f"{V1}/aliases", {"alias": "x@a.test", "targets": ["bob@b.test"]}),
    ("admin-a", "POST", f"{V1}/aliases", {"alias": "x@b.test", "targets": ["alice@a.test"]}),
    ("admin-a", "GET", f"{V1}/accounts/bob@b.test", None),
    ("admin-a", "PUT", f"{V1}/accounts/bob@b.test/password", {"password": "x"}),
    ("admin-a", "DELETE", f"{V1}/aliases/info@b.test", None),
    ("admin-a", "GET", f"{V1}/domains/B.TEST./accounts", None),  # any spelling of b.test
    ("admin-a", "POST", f"{V1}/domains/b.test/access", access_rule()),
    ("admin-a", "POST", f"{V1}/access", access_rule()),
    ("alice", "GET", f"{V1}/accounts/carol@a.test", None),
    ("alice", "PUT", f"{V1}/accounts/carol@a.test/password", {"password": "x"}),
    ("alice", "PATCH", f"{V1}/accounts/alice@a.test", {"quota_bytes": 0}),  # not their quota
    ("bob", "GET", f"{V1}/accounts/Alice@A.test", None),
    ("admin-a", "GET", f"{V1}/accounts/bob@b.test/cos", None),
    ("admin-a", "POST", f"{V1}/lists", {"address": "x@b.test", "owner": "alice@a.test"}),
    ("admin-a", "POST", f"{V1}/lists", {"address": "x@a.test", "owner": "bob@b.test"}),
    ("admin-a", "POST", f"{V1}/lists/team@a.test/members", {"members": ["bob@b.test"]}),
    ("admin-a", "GET", f"{V1}/lists/staff@b.test", None),
    ("admin-b", "GET", f"{V1}/usage?domain=a.test", None),
    ("admin-a", "GET", f"{V1}/usage?account=bob@b.test", None),
    ("alice", "GET", f"{V1}/usage?account=carol@a.test", None),
    ("alice", "GET", f"{V1}/usage?domain=a.test", None),
    ("admin-a", "DELETE", f"{V1}/accounts/bob@b.test?remove_mail=true", None),
    ("admin-a", "DELETE", f"{V1}/accounts/carol@a.test?archive_to=bob@b.test", None),
    ("admin-a", "DELETE", f"{V1}/domains/a.test?remove_mail=true", None),  # not even their own
    ("admin-a", "PUT", f"{V1}/accounts/bob@b.test/forwarding", {"targets": []}),
    ("admin-a", "PUT", f"{V1}/domains/b.test/spam", {"reject_score": 3}),
    ("alice", "PUT", f"{V1}/accounts/carol@a.test/vacation", {"subject": "x", "text": "y"}),
    ("alice", "PUT", f"{V1}/accounts/carol@a.test/sieve/x", {"script": "keep;"}),
    ("bob", "GET", f"{V1}/accounts/alice@a.test/sieve/s", None),
    ("admin-b", "GET", f"{V1}/dmarc/sent?domain=a.test", None),
]

SENT_ABOUT_A = "1767225600.0123456789abcdef@mail.example.test"  # a report sent about a.test


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with reference(tmp_path_factory.mktemp("authz")) as (ref, _):
        for domain in ("a.test", "b.test"):
            ref.add_domain(domain)
        for user in ("alice@a.test", "carol@a.test", "bob@b.test"):
            ref.add_user(user, "pw")
        ref.add_alias("info@b.test", "bob@b.test")
        ref.create_list("team@a.test", owner="alice@a.test")
        ref.create_list("staff@b.test", owner="bob@b.test")
        ref.app.admin.put_sieve_script("alice@a.test", "s", "keep;\r\n", activate=False)
        report = SentReport(SENT_ABOUT_A, "a.test", 1767225600, 1767312000, 1767312000.0, 3, 2, ())
        ref.app.dmarc_store.store_sent(report, b"<feedback/>")
        tokens: dict[str, str | None] = {
            "admin": token(ref, "admin"),
            "admin-a": token(ref, "domain-admin", domain="a.test"),
            "admin-b": token(ref, "domain-admin", domain="b.test"),
            "alice": token(ref, "user", user="alice@a.test"),
            "bob": token(ref, "user", user="bob@b.test"),
            "anonymous": None,
            "forged": "mst_0123456789ab_" + "x" * 43,
        }
        w = World(ref, tokens)
        w.qid = w.enqueue()
        yield w


def test_the_matrix_covers_every_route() -> None:
    assert {(c.method, c.route) for c in CASES} == {(r.method, r.path) for r in routes()}
    for case in CASES:
        route = next(r for r in routes() if (r.method, r.path) == (case.method, case.route))
        # Users and other domains' administrators are in the table's roles for some routes:
        # what keeps them out there is the scope check, which the cases below exercise.
        assert "admin" in route.roles


async def test_nobody_reaches_what_is_not_theirs(world: World) -> None:
    refused = 0
    async with Web(world.ref) as web:
        calls = [(c, who) for c in CASES for who in CALLERS if who not in c.allowed]
        calls += [(None, a) for a in ACROSS]  # type: ignore[misc]
        for case, who in calls:
            if case is None:
                who, method, path, body = who  # type: ignore[misc]
            else:
                method = case.method
                path, body = case.make(world)
            before = state(world.ref)
            r = await web.call(method, path, token=world.tokens[who], body=body)
            # A forged token is refused, then locked out like any guessed password.
            expected = {"anonymous": (401,), "forged": (401, 429)}.get(who, (403,))
            assert r.status in expected, (who, method, path, r.status, r.body)
            assert r.problem["detail"]
            assert state(world.ref) == before, (who, method, path)
            refused += 1
    assert refused == len(calls) > 60


async def test_everyone_reaches_what_is_theirs(world: World) -> None:
    async with Web(world.ref) as web:
        for case in CASES:
            for who in sorted(case.allowed):
                path, body = case.make(world)
                r = await web.call(case.method, path, token=world.tokens[who], body=body)
                assert r.status < 300, (who, case.method, path, r.status, r.body)
        # A domain's administrator sees only their domain in the list of all.
        r = await web.call("GET", f"{V1}/domains", token=world.tokens["admin-b"])
        assert r.body == [{"name": "b.test"}]
        r = await web.call("GET", f"{V1}/me", token=world.tokens["alice"])
        assert r.body == {"role": "user", "domain": None, "user": "alice@a.test"}


def test_callers_are_each_role() -> None:
    assert set(CALLERS) >= set().union(*(c.allowed for c in CASES))
    assert Path(__file__).name.startswith("test_")
