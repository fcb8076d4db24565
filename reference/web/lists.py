"""The admin API's distribution lists and archive-all rules, and the members' one-click
unsubscribe (RFC 8058), which their copies' List-Unsubscribe names."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from reference.service import Admin, Invalid, ServiceError
from reference.web.api import ADMIN, ADMINS, Call, Route
from reference.web.models import Address
from reference.web.problems import HttpProblem

__all__ = ["ArchiveIn", "ArchiveOut", "ListIn", "ListOut", "list_routes", "one_click"]

# Request bodies: exactly the documented fields, of exactly their types.
STRICT = ConfigDict(extra="forbid", strict=True)
Policy = Literal["public", "members", "local"]
Members = Annotated[
    list[Address],
    Field(max_length=1000, description="accounts, aliases or lists here, or addresses elsewhere"),
]


class ListIn(BaseModel):
    model_config = STRICT

    address: Address
    owner: Address = Field(description="the account that receives the list's bounces")
    name: str = Field(default="", max_length=100, description="display name (List-Id, From)")
    policy: Policy = Field(
        default="public",
        description="who may post: anyone, only members, or only users signed in here",
    )
    members: Members = Field(default_factory=list)


class ListChange(BaseModel):
    model_config = STRICT

    policy: Policy


class MembersIn(BaseModel):
    model_config = STRICT

    members: Members = Field(min_length=1)


class ListOut(BaseModel):
    address: str
    name: str
    policy: str
    owner: str
    bounce_address: str = Field(description="the envelope sender of the members' copies")
    list_id: str = Field(description="RFC 2919 List-Id")
    members: list[str]


class ArchiveIn(BaseModel):
    model_config = STRICT

    archive: Address = Field(description="the archive account (read-only over IMAP)")


class ArchiveOut(BaseModel):
    scope: str = Field(description="an account, or a domain (each of its accounts)")
    archive: str


def _members_yours(c: Call, members: list[str], field: str = "members") -> None:
    """Members in our domains must be the caller's (as alias targets must)."""
    for i, member in enumerate(members):
        if c.admin.directory.is_local_domain(member.rpartition("@")[2]):
            c.account(member, f"{field}.{i}")


async def list_lists(c: Call) -> list[ListOut]:
    infos = await c.run(c.admin.mailing_lists, c.domain())
    return [ListOut(**asdict(i)) for i in infos]


async def create_list(c: Call) -> ListOut:
    body: ListIn = c.body
    address = c.account(body.address)
    owner = c.account(body.owner, "owner")
    _members_yours(c, body.members)

    def create() -> ListOut:
        info = c.admin.create_list(address, owner=owner, name=body.name, policy=body.policy)
        if body.members:
            info = c.admin.add_list_members(info.address, body.members)
        return ListOut(**asdict(info))

    return await c.run(create)


async def get_list(c: Call) -> ListOut:
    address = c.account(c.request.match_info["address"])
    return ListOut(**asdict(await c.run(c.admin.mailing_list, address)))


async def change_list(c: Call) -> ListOut:
    body: ListChange = c.body
    address = c.account(c.request.match_info["address"])
    return ListOut(**asdict(await c.run(c.admin.set_list_policy, address, body.policy)))


async def delete_list(c: Call) -> None:
    await c.run(c.admin.delete_list, c.account(c.request.match_info["address"]))
    return None


async def add_members(c: Call) -> ListOut:
    body: MembersIn = c.body
    address = c.account(c.request.match_info["address"])
    _members_yours(c, body.members)
    return ListOut(**asdict(await c.run(c.admin.add_list_members, address, body.members)))


async def remove_member(c: Call) -> ListOut:
    address = c.account(c.request.match_info["address"])
    member = c.request.match_info["member"]
    return ListOut(**asdict(await c.run(c.admin.remove_list_member, address, member)))


async def list_archives(c: Call) -> list[ArchiveOut]:
    return [ArchiveOut(**asdict(r)) for r in await c.run(c.admin.archive_rules)]


async def set_archive(c: Call) -> ArchiveOut:
    body: ArchiveIn = c.body
    rule = await c.run(c.admin.set_archive, c.request.match_info["scope"], body.archive)
    return ArchiveOut(**asdict(rule))


async def clear_archive(c: Call) -> None:
    await c.run(c.admin.clear_archive, c.request.match_info["scope"])
    return None


def list_routes() -> list[Route]:
    v1 = "/api/v1"
    one = f"{v1}/lists/{{address}}"
    return [
        Route(
            "GET",
            f"{v1}/domains/{{domain}}/lists",
            "a domain's distribution lists",
            ADMINS,
            list_lists,
            response=list[ListOut],
        ),
        Route(
            "POST",
            f"{v1}/lists",
            "make a distribution list",
            ADMINS,
            create_list,
            ListIn,
            ListOut,
            201,
        ),
        Route("GET", one, "a list: policy, owner, members", ADMINS, get_list, response=ListOut),
        Route("PATCH", one, "change who may post", ADMINS, change_list, ListChange, ListOut),
        Route("DELETE", one, "delete a list", ADMINS, delete_list, status=204),
        Route("POST", f"{one}/members", "add members", ADMINS, add_members, MembersIn, ListOut),
        Route(
            "DELETE",
            f"{one}/members/{{member}}",
            "remove a member",
            ADMINS,
            remove_member,
            response=ListOut,
        ),
        Route(
            "GET",
            f"{v1}/archives",
            "the archive-all rules",
            ADMIN,
            list_archives,
            response=list[ArchiveOut],
        ),
        Route(
            "PUT",
            f"{v1}/archives/{{scope}}",
            "copy every message to and from an account or domain into an archive account",
            ADMIN,
            set_archive,
            ArchiveIn,
            ArchiveOut,
        ),
        Route(
            "DELETE", f"{v1}/archives/{{scope}}", "stop archiving", ADMIN, clear_archive, status=204
        ),
    ]


def one_click(admin: Admin) -> web.RouteDef:
    """POST /lists/unsubscribe?list=…&member=…&token=…, body "List-Unsubscribe=One-Click"
    (RFC 8058 3.2): the member is removed; no credentials but the token in their copy."""

    async def unsubscribe(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("List-Unsubscribe") != "One-Click":
            raise HttpProblem(400, 'the body is "List-Unsubscribe=One-Click" (RFC 8058)')
        q = request.query
        try:
            done = await asyncio.to_thread(
                admin.unsubscribe, q.get("list", ""), q.get("member", ""), q.get("token", "")
            )
        except Invalid as e:
            raise HttpProblem(403, str(e), field=e.field) from None
        except ServiceError as e:
            raise HttpProblem(400, str(e), field=e.field) from None
        return web.Response(text=f"{q.get('member')} unsubscribed from {done}\n")

    return web.post("/lists/unsubscribe", unsubscribe)
