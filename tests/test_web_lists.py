"""The admin API's lists and archive rules, and the one-click unsubscribe, over real HTTPS."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from web_client import Web, reference, token

from reference.testing import ReferenceServer


@pytest.fixture
def ref(tmp_path: Path) -> Any:
    with reference(tmp_path) as (ref, _):
        ref.add_domain("a.test")
        ref.add_domain("b.test")
        for user in ("alice@a.test", "bob@a.test", "vault@a.test", "carol@b.test"):
            ref.add_user(user, "pw")
        yield ref


async def test_lists_through_the_api(ref: ReferenceServer) -> None:
    admin = token(ref, "admin")
    reseller = token(ref, "domain-admin", domain="a.test")
    async with Web(ref) as web:
        body = {"address": "team@a.test", "owner": "alice@a.test", "name": "Team"}
        made = await web.call("POST", "/api/v1/lists", token=reseller, body=body)
        assert made.status == 201, made.body
        assert made.body["bounce_address"] == "team-bounces@a.test"
        assert made.body["list_id"] == "team.a.test" and made.body["policy"] == "public"
        again = await web.call("POST", "/api/v1/lists", token=admin, body=body)
        assert again.status == 409
        # A member in another customer's domain is not the reseller's to add.
        other = {"members": ["carol@b.test"]}
        refused = await web.call(
            "POST", "/api/v1/lists/team@a.test/members", token=reseller, body=other
        )
        assert refused.status == 403 and refused.body["field"] == "members.0"
        members = {"members": ["bob@a.test", "x@remote.test"]}
        added = await web.call(
            "POST", "/api/v1/lists/team@a.test/members", token=reseller, body=members
        )
        assert added.body["members"] == ["bob@a.test", "x@remote.test"]
        changed = await web.call(
            "PATCH", "/api/v1/lists/team@a.test", token=admin, body={"policy": "secret"}
        )
        assert changed.status == 422 and changed.body["field"] == "policy"
        changed = await web.call(
            "PATCH", "/api/v1/lists/team@a.test", token=admin, body={"policy": "members"}
        )
        assert changed.body["policy"] == "members"
        listed = await web.call("GET", "/api/v1/domains/a.test/lists", token=reseller)
        assert [x["address"] for x in listed.body] == ["team@a.test"]
        gone = await web.call(
            "DELETE", "/api/v1/lists/team@a.test/members/x@remote.test", token=admin
        )
        assert gone.body["members"] == ["bob@a.test"]
        assert (await web.call("DELETE", "/api/v1/lists/team@a.test", token=admin)).status == 204
        assert (await web.call("GET", "/api/v1/lists/team@a.test", token=admin)).status == 404


async def test_one_click_unsubscribe(ref: ReferenceServer) -> None:
    ref.create_list("team@a.test", owner="alice@a.test", members=["bob@a.test"])
    found = ref.directory.mailing_list("team@a.test")
    assert found is not None
    good = found.unsubscribe_token("bob@a.test")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    one_click = b"List-Unsubscribe=One-Click"
    async with Web(ref) as web:
        for tok, body, status in (
            ("0" * 32, one_click, 403),  # a forged token
            (good, b"List-Unsubscribe=Maybe", 400),  # not RFC 8058's body
            (good, one_click, 200),
            (good, one_click, 200),  # twice: still fine, nothing more to do
        ):
            query = urlencode({"list": "team@a.test", "member": "bob@a.test", "token": tok})
            answer = await web.call("POST", f"/lists/unsubscribe?{query}", data=body, headers=form)
            assert answer.status == status, (tok, body, answer.body)
            if status == 403:
                assert ref.directory.members("team@a.test") == ["bob@a.test"]
    assert ref.directory.members("team@a.test") == []


async def test_archive_rules_through_the_api(ref: ReferenceServer) -> None:
    admin = token(ref, "admin")
    async with Web(ref) as web:
        put = await web.call(
            "PUT", "/api/v1/archives/a.test", token=admin, body={"archive": "vault@a.test"}
        )
        assert put.body == {"scope": "a.test", "archive": "vault@a.test"}
        missing = await web.call(
            "PUT", "/api/v1/archives/a.test", token=admin, body={"archive": "nobody@a.test"}
        )
        assert missing.status == 404 and missing.body["field"] == "archive"
        rules = await web.call("GET", "/api/v1/archives", token=admin)
        assert rules.body == [{"scope": "a.test", "archive": "vault@a.test"}]
        reseller = token(ref, "domain-admin", domain="a.test")
        assert (await web.call("GET", "/api/v1/archives", token=reseller)).status == 403
        assert (await web.call("DELETE", "/api/v1/archives/a.test", token=admin)).status == 204
    assert ref.directory.archive_of("alice@a.test") is None
