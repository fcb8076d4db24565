"""The admin API's routes: each one a row of the table, with who may call it and its models.

Every handler checks the caller's scope on the names in the request before it looks
anything up (so a refusal says nothing about what exists), then calls the service layer
in a thread (hashing passwords and making keys take a while).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from reference.delivery.retire import Retired
from reference.directory import AccessRule, ClassOfService
from reference.service import Admin, SpamThresholds, Vacation, canonical_address, canonical_domain
from reference.spool import QueueEntry
from reference.web.auth import Principal
from reference.web.models import (
    AccessKeyIn,
    AccessRuleIn,
    AccessRuleOut,
    AccountChange,
    AccountIn,
    AccountOut,
    AliasIn,
    AliasMade,
    AliasOut,
    CosAssignIn,
    CosChange,
    CosEffective,
    CosIn,
    CosOut,
    DkimIn,
    DkimOut,
    DmarcPendingOut,
    DmarcReportOut,
    DmarcSentOut,
    DmarcSentQuery,
    DmarcSentXmlOut,
    DnsRecordOut,
    DomainDeleted,
    DomainIn,
    DomainOut,
    ForwardingIn,
    ForwardingOut,
    MailChoiceQuery,
    Me,
    PasswordIn,
    QueueChangeIn,
    QueueChangeOut,
    QueueEntryDetail,
    QueueEntryOut,
    QueueRecipientOut,
    RetiredOut,
    SenderIn,
    SenderOut,
    SieveActiveIn,
    SieveEntryOut,
    SieveListOut,
    SieveScriptIn,
    SieveScriptOut,
    SpamIn,
    SpamOut,
    UsageOut,
    UsageQuery,
    VacationIn,
    VacationOut,
)
from reference.web.problems import HttpProblem

__all__ = ["ALL_ROLES", "Call", "Route", "routes"]

ALL_ROLES = frozenset({"admin", "domain-admin", "user"})
ADMINS = frozenset({"admin", "domain-admin"})
ADMIN = frozenset({"admin"})

T = TypeVar("T")


@dataclass
class Call:
    """One API request, authenticated and with its body validated."""

    request: web.Request
    who: Principal
    body: Any
    admin: Admin
    query: Any = None  # the route's query model, validated

    def domain(self, name: str = "domain") -> str:
        """A domain named in the path, which the caller must administer."""
        domain = canonical_domain(self.request.match_info[name], name)
        if not self.who.may_domain(domain):
            raise HttpProblem(403, f"domain {domain} is not yours", field=name)
        return domain

    def account(self, address: str, field: str = "address") -> str:
        """The canonical ``address``, which the caller must be allowed to manage."""
        canonical = canonical_address(address, field)
        if not self.who.may_account(canonical):
            raise HttpProblem(403, f"account {canonical} is not yours", field=field)
        return canonical

    async def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kw)


Handler = Callable[[Call], Awaitable[BaseModel | list[Any] | None]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    roles: frozenset[str]
    handler: Handler
    body: type[BaseModel] | None = None
    response: Any = None  # a model, list[model], or None (204)
    status: int = 200
    query: type[BaseModel] | None = None  # the query string's model (None: none read)


def _entry(e: QueueEntry) -> dict[str, Any]:
    return {
        "qid": e.qid,
        "sender": e.sender,
        "recipients": [
            QueueRecipientOut(
                address=r.address, status=r.status, attempts=r.attempts, reply=r.reply
            )
            for r in e.recipients
        ],
        "created": e.created,
        "next_attempt": e.next_attempt,
        "size": e.size,
        "lane": Admin.lane(e),
        "held": e.held,
        "attempts": e.attempts,
        "kind": e.kind,
    }


# -- who am I


async def me(c: Call) -> Me:
    return Me(role=c.who.role, domain=c.who.domain, user=c.who.user)


# -- domains


async def list_domains(c: Call) -> list[DomainOut]:
    names = await c.run(c.admin.domains)
    return [DomainOut(name=n) for n in names if c.who.may_domain(n)]


async def add_domain(c: Call) -> DomainOut:
    body: DomainIn = c.body
    return DomainOut(name=await c.run(c.admin.add_domain, body.name))


# -- accounts


async def list_accounts(c: Call) -> list[AccountOut]:
    domain = c.domain()
    accounts = await c.run(c.admin.accounts, domain)
    infos = [await c.run(c.admin.account, a.address) for a in accounts]
    return [AccountOut(**asdict(i)) for i in infos]


async def add_account(c: Call) -> AccountOut:
    body: AccountIn = c.body
    address = c.account(body.address)

    def create() -> Any:
        c.admin.add_account(address, body.password)
        if body.quota_bytes is not None or body.quota_messages is not None:
            c.admin.set_quota(address, bytes=body.quota_bytes, messages=body.quota_messages)
        return c.admin.account(address)

    return AccountOut(**asdict(await c.run(create)))


async def get_account(c: Call) -> AccountOut:
    address = c.account(c.request.match_info["address"])
    return AccountOut(**asdict(await c.run(c.admin.account, address)))


async def change_account(c: Call) -> AccountOut:
    body: AccountChange = c.body
    address = c.account(c.request.match_info["address"])
    given = body.model_fields_set

    def change() -> Any:
        now = c.admin.account(address)  # 404 before anything changes
        if "quota_bytes" in given or "quota_messages" in given:
            c.admin.set_quota(
                address,
                bytes=body.quota_bytes if "quota_bytes" in given else now.quota_bytes,
                messages=body.quota_messages if "quota_messages" in given else now.quota_messages,
            )
        if body.enabled is not None:
            c.admin.set_enabled(address, body.enabled)
        if body.bulk is not None:
            c.admin.set_bulk_sender(address, body.bulk)
        return c.admin.account(address)

    return AccountOut(**asdict(await c.run(change)))


async def set_password(c: Call) -> None:
    body: PasswordIn = c.body
    address = c.account(c.request.match_info["address"])
    await c.run(c.admin.set_password, address, body.password)
    return None


# -- aliases


async def list_aliases(c: Call) -> list[AliasOut]:
    pairs = await c.run(c.admin.aliases, c.domain())
    return [AliasOut(alias=a, target=t) for a, t in pairs]


async def add_alias(c: Call) -> AliasMade:
    body: AliasIn = c.body
    alias = c.account(body.alias, "alias")
    for i, target in enumerate(body.targets):
        # A target in one of our domains must be the caller's too: an alias in one's domain
        # for another customer's account would let its user send as one's domain. Addresses
        # elsewhere are forwarding, which is the alias owner's to choose.
        domain = target.rpartition("@")[2]
        if c.admin.directory.is_local_domain(domain):
            c.account(target, f"targets.{i}")
    made, to = await c.run(c.admin.add_alias, alias, *body.targets)
    return AliasMade(alias=made, targets=to)


async def remove_alias(c: Call) -> None:
    alias = c.account(c.request.match_info["alias"], "alias")
    await c.run(c.admin.remove_alias, alias)
    return None


# -- access lists: the platform's (no domain in the path), or a domain's


def _rule(r: AccessRule) -> AccessRuleOut:
    return AccessRuleOut(
        domain=r.scope or None, kind=r.kind, pattern=r.pattern, action=r.action, text=r.text
    )


def _access_domain(c: Call) -> str | None:
    return c.domain() if "domain" in c.request.match_info else None


async def list_access(c: Call) -> list[AccessRuleOut]:
    domain = _access_domain(c)
    rules = await c.run(c.admin.access_rules, domain)
    # The platform-wide list is the global rules alone (each domain's are under it).
    return [_rule(r) for r in rules if domain is not None or not r.scope]


async def add_access(c: Call) -> AccessRuleOut:
    body: AccessRuleIn = c.body
    rule = await c.run(
        c.admin.add_access,
        body.kind,
        body.pattern,
        body.action,
        domain=_access_domain(c),
        text=body.text,
    )
    return _rule(rule)


async def remove_access(c: Call) -> None:
    body: AccessKeyIn = c.body
    await c.run(c.admin.remove_access, body.kind, body.pattern, domain=_access_domain(c))
    return None


def _access_routes(base: str, roles: frozenset[str], whose: str) -> list[Route]:
    return [
        Route(
            "GET", base, f"{whose} access list", roles, list_access, response=list[AccessRuleOut]
        ),
        Route(
            "POST",
            base,
            f"add a rule to {whose} access list (or replace the one with its kind and pattern)",
            roles,
            add_access,
            AccessRuleIn,
            AccessRuleOut,
            201,
        ),
        Route(
            "POST",
            f"{base}/remove",
            f"remove a rule from {whose} access list",
            roles,
            remove_access,
            AccessKeyIn,
            None,
            204,
        ),
    ]


# -- classes of service


def _cos(c: ClassOfService) -> CosOut:
    return CosOut(**asdict(c))


async def list_cos(c: Call) -> list[CosOut]:
    return [_cos(x) for x in await c.run(c.admin.classes_of_service)]


async def create_cos(c: Call) -> CosOut:
    body: CosIn = c.body
    # Flags left out are allowed; limits left out are the platform's.
    settings = body.model_dump(exclude={"name"}, exclude_none=True)
    return _cos(await c.run(c.admin.create_cos, body.name, **settings))


async def change_cos(c: Call) -> CosOut:
    body: CosChange = c.body
    settings = body.model_dump(exclude_unset=True)
    for flag in ("forward_remote", "lists", "external"):
        if flag in settings and settings[flag] is None:
            settings.pop(flag)  # a permission is allowed or refused, never "the platform's"
    return _cos(await c.run(c.admin.set_cos, c.request.match_info["name"], **settings))


async def delete_cos(c: Call) -> None:
    await c.run(c.admin.delete_cos, c.request.match_info["name"])
    return None


async def assign_account_cos(c: Call) -> None:
    body: CosAssignIn = c.body
    await c.run(c.admin.assign_cos, c.account(c.request.match_info["address"]), body.cos)
    return None


async def assign_domain_cos(c: Call) -> None:
    body: CosAssignIn = c.body
    await c.run(c.admin.assign_cos, c.domain(), body.cos)
    return None


async def account_cos(c: Call) -> CosEffective:
    found, source = await c.run(c.admin.effective_cos, c.account(c.request.match_info["address"]))
    return CosEffective(cos=None if found is None else _cos(found), source=source)


# -- DKIM keys and DNS records


def _records(records: list[Any]) -> list[DnsRecordOut]:
    return [
        DnsRecordOut(
            name=r.name, type=r.type, value=r.value, purpose=r.purpose, zone_line=r.zone_line
        )
        for r in records
    ]


async def get_dkim(c: Call) -> DkimOut:
    domain = c.domain()
    await c.run(c.admin.domain, domain)
    keys, _ = await c.run(c.admin.dkim_keys, domain, make=False)
    return DkimOut(domain=domain, made=False, records=_records(c.admin.dkim_records(keys)))


async def make_dkim(c: Call) -> DkimOut:
    body: DkimIn = c.body
    domain = c.domain()
    await c.run(c.admin.domain, domain)
    keys, made = await c.run(c.admin.dkim_keys, domain, selector=body.selector)
    return DkimOut(domain=domain, made=made, records=_records(c.admin.dkim_records(keys)))


async def dns_records(c: Call) -> list[DnsRecordOut]:
    domain = c.domain()
    await c.run(c.admin.domain, domain)
    return _records(await c.run(c.admin.dns_records, domain, make=False))


# -- the queue


async def list_queue(c: Call) -> list[QueueEntryOut]:
    return [QueueEntryOut(**_entry(e)) for e in await c.run(c.admin.queue)]


async def show_queued(c: Call) -> QueueEntryDetail:
    entry, head = await c.run(c.admin.queued, c.request.match_info["qid"])
    return QueueEntryDetail(**_entry(entry), headers=head)


async def flush_queue(c: Call) -> QueueChangeOut:
    body: QueueChangeIn = c.body
    change = await c.run(c.admin.change_queue, "flush", body.qids)
    return QueueChangeOut(done=change.done, missing=change.missing)


def _queue_action(action: str) -> Handler:
    async def act(c: Call) -> QueueChangeOut:
        qid = c.request.match_info["qid"]
        change = await c.run(c.admin.change_queue, action, [qid])
        if change.missing:
            raise HttpProblem(404, f"no queued message {qid}", field="qid")
        return QueueChangeOut(done=change.done, missing=change.missing)

    return act


# -- deleting an account, forwarding, spam settings, Sieve, out-of-office, DMARC


def _path_account(c: Call) -> str:
    return c.account(c.request.match_info["address"])


def _retired(r: Retired) -> RetiredOut:
    return RetiredOut(address=r.address, messages=r.messages, archived_in=r.archived_in)


def _mail_choice(c: Call) -> dict[str, Any]:
    """The query's choice for the mail; the archive must be the caller's too."""
    q: MailChoiceQuery = c.query
    if q.archive_to is not None:
        c.account(q.archive_to, "archive_to")
    return {"archive_to": q.archive_to, "remove_mail": q.remove_mail}


async def delete_account(c: Call) -> RetiredOut:
    address = _path_account(c)
    return _retired(await c.run(c.admin.delete_account, address, **_mail_choice(c)))


async def delete_domain(c: Call) -> DomainDeleted:
    domain = c.domain()
    retired = await c.run(c.admin.delete_domain, domain, **_mail_choice(c))
    return DomainDeleted(name=domain, accounts=[_retired(r) for r in retired])


async def get_forwarding(c: Call) -> ForwardingOut:
    found = await c.run(c.admin.forwarding, _path_account(c))
    return ForwardingOut(address=found.address, targets=found.targets, keep=found.keep)


async def set_forwarding(c: Call) -> ForwardingOut:
    body: ForwardingIn = c.body
    found = await c.run(c.admin.set_forwarding, _path_account(c), body.targets, keep=body.keep)
    return ForwardingOut(address=found.address, targets=found.targets, keep=found.keep)


def _spam(t: SpamThresholds) -> SpamOut:
    return SpamOut(**asdict(t))


def _spam_scope(c: Call) -> str:
    if "address" in c.request.match_info:
        return _path_account(c)
    return c.domain()


async def get_spam(c: Call) -> SpamOut:
    return _spam(await c.run(c.admin.spam_thresholds, _spam_scope(c)))


async def set_spam(c: Call) -> SpamOut:
    body: SpamIn = c.body
    scope = _spam_scope(c)
    found = await c.run(
        c.admin.set_spam_thresholds, scope, reject=body.reject_score, junk=body.junk_score
    )
    return _spam(found)


async def reset_spam(c: Call) -> SpamOut:
    return _spam(await c.run(c.admin.reset_spam_thresholds, _spam_scope(c)))


async def list_senders(c: Call) -> list[SenderOut]:
    entries = await c.run(c.admin.sender_lists, _path_account(c))
    return [SenderOut(kind=k, pattern=p) for k, p in entries]


async def add_sender(c: Call) -> SenderOut:
    body: SenderIn = c.body
    entry = await c.run(c.admin.list_sender, _path_account(c), body.kind, body.pattern)
    return SenderOut(kind=body.kind, pattern=entry)


async def remove_sender(c: Call) -> None:
    await c.run(c.admin.unlist_sender, _path_account(c), c.request.match_info["pattern"])
    return None


async def list_scripts(c: Call) -> SieveListOut:
    listing, errors = await c.run(c.admin.sieve_scripts, _path_account(c))
    return SieveListOut(
        scripts=[SieveEntryOut(name=n, active=a) for n, a in listing], errors=errors
    )


async def get_script(c: Call) -> SieveScriptOut:
    name = c.request.match_info["name"]
    return SieveScriptOut(
        name=name, script=await c.run(c.admin.sieve_script, _path_account(c), name)
    )


async def put_script(c: Call) -> SieveScriptOut:
    body: SieveScriptIn = c.body
    name = c.request.match_info["name"]
    address = _path_account(c)
    await c.run(c.admin.put_sieve_script, address, name, body.script, activate=body.activate)
    return SieveScriptOut(name=name, script=body.script)


async def delete_script(c: Call) -> None:
    await c.run(c.admin.delete_sieve_script, _path_account(c), c.request.match_info["name"])
    return None


async def activate_script(c: Call) -> SieveListOut:
    body: SieveActiveIn = c.body
    address = _path_account(c)
    await c.run(c.admin.activate_sieve_script, address, body.name or "")
    return await list_scripts(c)


def _vacation(found: Vacation | None) -> VacationOut:
    if found is None:
        return VacationOut(enabled=False)
    v = found.settings
    return VacationOut(
        enabled=True,
        subject=v.subject,
        text=v.text,
        start=v.start or None,
        end=v.end or None,
        days=v.days,
        from_address=v.from_ or None,
        addresses=list(v.addresses),
        beside=found.beside,
    )


async def get_vacation(c: Call) -> VacationOut:
    return _vacation(await c.run(c.admin.vacation, _path_account(c)))


async def set_vacation(c: Call) -> VacationOut:
    body: VacationIn = c.body
    address = _path_account(c)
    found = await c.run(
        c.admin.set_vacation,
        address,
        subject=body.subject,
        text=body.text,
        start=body.start or "",
        end=body.end or "",
        days=body.days,
        from_=body.from_address or "",
        addresses=body.addresses,
    )
    return _vacation(found)


async def clear_vacation(c: Call) -> None:
    await c.run(c.admin.clear_vacation, _path_account(c))
    return None


async def dmarc_reports(c: Call) -> list[DmarcReportOut]:
    domain = c.domain()
    await c.run(c.admin.domain, domain)  # 404 for a domain that is not ours
    reports = await c.run(c.admin.dmarc_reports, domain)
    return [
        DmarcReportOut(
            org_name=r.org_name,
            report_id=r.report_id,
            begin=r.begin,
            end=r.end,
            messages=r.messages,
            aligned=sum(row.count for row in r.rows if row.aligned),
            report=r.to_json(),
        )
        for r in reports
    ]


async def dmarc_pending(c: Call) -> list[DmarcPendingOut]:
    return [DmarcPendingOut(domain=d, evaluations=n) for d, n in await c.run(c.admin.dmarc_pending)]


def _sent_scope(c: Call, domain: str | None) -> list[str] | None:
    """The domains whose sent reports the caller reads (None: all of them)."""
    if domain is not None:
        name = canonical_domain(domain)
        if not c.who.may_domain(name):
            raise HttpProblem(403, f"domain {name} is not yours", field="domain")
        return [name]
    return c.who.domains()


async def dmarc_sent(c: Call) -> list[DmarcSentOut]:
    """The platform's administrator: every report; a domain's: those about their domain."""
    q: DmarcSentQuery = c.query
    reports = await c.run(c.admin.dmarc_sent, _sent_scope(c, q.domain))
    return [DmarcSentOut.model_validate(r.to_json() | {"domain": r.policy_domain}) for r in reports]


async def dmarc_sent_xml(c: Call) -> DmarcSentXmlOut:
    report_id = c.request.match_info["report_id"]
    domain, xml = await c.run(c.admin.dmarc_sent_xml, report_id)
    scope = _sent_scope(c, None)
    if scope is not None and not any(domain == d or domain.endswith("." + d) for d in scope):
        raise HttpProblem(403, f"report {report_id} is not about your domain", field="report_id")
    return DmarcSentXmlOut(report_id=report_id, domain=domain, xml=xml.decode("utf-8"))


# -- usage


async def usage(c: Call) -> UsageOut:
    """A user's own account; a domain administrator's domain (or one of its accounts);
    anything for the platform's administrator."""
    q: UsageQuery = c.query
    account = c.account(q.account, "account") if q.account else None
    domain = q.domain
    if c.who.role == "user":
        account = c.account(c.who.user or "", "account")
    elif c.who.role == "domain-admin" and account is None:
        domain = domain or c.who.domain
    if domain is not None:
        domain = canonical_domain(domain)
        if not c.who.may_domain(domain):
            raise HttpProblem(403, f"domain {domain} is not yours", field="domain")
    report = await c.run(c.admin.usage, domain=domain, account=account, since=q.since or "")
    return UsageOut.model_validate(report.to_dict())


def routes() -> list[Route]:
    """The API, in the order the OpenAPI document lists it."""
    # Lists and archives keep their routes beside their models (they build on this module).
    from reference.web.lists import list_routes

    v1 = "/api/v1"
    acct = f"{v1}/accounts/{{address}}"
    return [
        Route("GET", f"{v1}/me", "the caller's role and scope", ALL_ROLES, me, response=Me),
        Route(
            "GET",
            f"{v1}/domains",
            "our domains (a domain administrator's own)",
            ADMINS,
            list_domains,
            response=list[DomainOut],
        ),
        Route("POST", f"{v1}/domains", "add a domain", ADMIN, add_domain, DomainIn, DomainOut, 201),
        Route(
            "GET",
            f"{v1}/domains/{{domain}}/accounts",
            "a domain's accounts",
            ADMINS,
            list_accounts,
            response=list[AccountOut],
        ),
        Route(
            "POST",
            f"{v1}/accounts",
            "create an account (optionally with its quota)",
            ADMINS,
            add_account,
            AccountIn,
            AccountOut,
            201,
        ),
        Route(
            "GET",
            f"{v1}/accounts/{{address}}",
            "an account: state, quota, aliases",
            ALL_ROLES,
            get_account,
            response=AccountOut,
        ),
        Route(
            "PATCH",
            f"{v1}/accounts/{{address}}",
            "enable or disable an account, set its quota or lane",
            ADMINS,
            change_account,
            AccountChange,
            AccountOut,
        ),
        Route(
            "PUT",
            f"{v1}/accounts/{{address}}/password",
            "change an account's password (users: their own)",
            ALL_ROLES,
            set_password,
            PasswordIn,
            None,
            204,
        ),
        Route(
            "GET",
            f"{v1}/domains/{{domain}}/aliases",
            "a domain's aliases",
            ADMINS,
            list_aliases,
            response=list[AliasOut],
        ),
        Route(
            "POST",
            f"{v1}/aliases",
            "make another address of an account",
            ADMINS,
            add_alias,
            AliasIn,
            AliasMade,
            201,
        ),
        Route(
            "DELETE",
            f"{v1}/aliases/{{alias}}",
            "remove an alias",
            ADMINS,
            remove_alias,
            status=204,
        ),
        *_access_routes(f"{v1}/access", ADMIN, "the platform's"),
        Route("GET", f"{v1}/cos", "the classes of service", ADMIN, list_cos, response=list[CosOut]),
        Route(
            "POST", f"{v1}/cos", "create a class of service", ADMIN, create_cos, CosIn, CosOut, 201
        ),
        Route(
            "PATCH",
            f"{v1}/cos/{{name}}",
            "change a class of service (null: the platform's setting)",
            ADMIN,
            change_cos,
            CosChange,
            CosOut,
        ),
        Route(
            "DELETE",
            f"{v1}/cos/{{name}}",
            "delete a class no one has",
            ADMIN,
            delete_cos,
            status=204,
        ),
        Route(
            "PUT",
            f"{v1}/accounts/{{address}}/cos",
            "give an account a class of service (null: none of its own)",
            ADMIN,
            assign_account_cos,
            CosAssignIn,
            None,
            204,
        ),
        Route(
            "GET",
            f"{v1}/accounts/{{address}}/cos",
            "the class of service that applies to an account, and where it comes from",
            ALL_ROLES,
            account_cos,
            response=CosEffective,
        ),
        Route(
            "PUT",
            f"{v1}/domains/{{domain}}/cos",
            "give a domain a class of service (null: none)",
            ADMIN,
            assign_domain_cos,
            CosAssignIn,
            None,
            204,
        ),
        *_access_routes(f"{v1}/domains/{{domain}}/access", ADMINS, "the domain's"),
        Route(
            "GET",
            f"{v1}/domains/{{domain}}/dkim",
            "the domain's DKIM keys, as the records to publish",
            ADMINS,
            get_dkim,
            response=DkimOut,
        ),
        Route(
            "POST",
            f"{v1}/domains/{{domain}}/dkim",
            "make the domain's missing DKIM keys; the records to publish",
            ADMINS,
            make_dkim,
            DkimIn,
            DkimOut,
        ),
        Route(
            "GET",
            f"{v1}/domains/{{domain}}/dns",
            "every DNS record the domain needs (MX, SPF, DKIM, DMARC)",
            ADMINS,
            dns_records,
            response=list[DnsRecordOut],
        ),
        Route(
            "GET",
            f"{v1}/queue",
            "every queued message",
            ADMIN,
            list_queue,
            response=list[QueueEntryOut],
        ),
        Route(
            "GET",
            f"{v1}/queue/{{qid}}",
            "one queued message: envelope and header",
            ADMIN,
            show_queued,
            response=QueueEntryDetail,
        ),
        Route(
            "POST",
            f"{v1}/queue/flush",
            "retry now (every message when no qids are given)",
            ADMIN,
            flush_queue,
            QueueChangeIn,
            QueueChangeOut,
        ),
        *(
            Route(
                "POST",
                f"{v1}/queue/{{qid}}/{action}",
                text,
                ADMIN,
                _queue_action(action),
                response=QueueChangeOut,
            )
            for action, text in (
                ("flush", "retry one message now"),
                ("hold", "stop delivery attempts"),
                ("release", "resume delivery attempts"),
            )
        ),
        Route(
            "DELETE",
            f"{v1}/queue/{{qid}}",
            "remove from the queue, without a bounce",
            ADMIN,
            _queue_action("delete"),
            response=QueueChangeOut,
        ),
        *list_routes(),
        Route(
            "DELETE",
            f"{v1}/accounts/{{address}}",
            "delete an account; its mail archived (archive_to) or removed (remove_mail)",
            ADMINS,
            delete_account,
            response=RetiredOut,
            query=MailChoiceQuery,
        ),
        Route(
            "DELETE",
            f"{v1}/domains/{{domain}}",
            "delete a domain with its accounts and aliases; their mail archived (archive_to) "
            "or removed (remove_mail)",
            ADMIN,
            delete_domain,
            response=DomainDeleted,
            query=MailChoiceQuery,
        ),
        Route(
            "GET",
            f"{acct}/forwarding",
            "where the account's mail is forwarded",
            ALL_ROLES,
            get_forwarding,
            response=ForwardingOut,
        ),
        Route(
            "PUT",
            f"{acct}/forwarding",
            "forward the account's mail (no targets: stop)",
            ALL_ROLES,
            set_forwarding,
            ForwardingIn,
            ForwardingOut,
        ),
        *(
            route
            for scope, roles in ((acct, ALL_ROLES), (f"{v1}/domains/{{domain}}", ADMINS))
            for route in (
                Route(
                    "GET",
                    f"{scope}/spam",
                    "spam scores: own and in force",
                    roles,
                    get_spam,
                    response=SpamOut,
                ),
                Route(
                    "PUT",
                    f"{scope}/spam",
                    "set spam scores (one not given is kept)",
                    roles,
                    set_spam,
                    SpamIn,
                    SpamOut,
                ),
                Route(
                    "DELETE",
                    f"{scope}/spam",
                    "back to the scores above (domain, config)",
                    roles,
                    reset_spam,
                    response=SpamOut,
                ),
            )
        ),
        Route(
            "GET",
            f"{acct}/senders",
            "the account's allowed and blocked senders",
            ALL_ROLES,
            list_senders,
            response=list[SenderOut],
        ),
        Route(
            "POST",
            f"{acct}/senders",
            "allow or block a sender (sender@domain or @domain)",
            ALL_ROLES,
            add_sender,
            SenderIn,
            SenderOut,
            201,
        ),
        Route(
            "DELETE",
            f"{acct}/senders/{{pattern}}",
            "take a sender off the lists",
            ALL_ROLES,
            remove_sender,
            status=204,
        ),
        Route(
            "GET",
            f"{acct}/sieve",
            "the account's Sieve scripts, and the active one's errors",
            ALL_ROLES,
            list_scripts,
            response=SieveListOut,
        ),
        Route(
            "PUT",
            f"{acct}/sieve-active",
            "make a script the one that runs (null: none)",
            ALL_ROLES,
            activate_script,
            SieveActiveIn,
            SieveListOut,
        ),
        Route(
            "GET",
            f"{acct}/sieve/{{name}}",
            "one Sieve script",
            ALL_ROLES,
            get_script,
            response=SieveScriptOut,
        ),
        Route(
            "PUT",
            f"{acct}/sieve/{{name}}",
            "store a Sieve script (only one that compiles)",
            ALL_ROLES,
            put_script,
            SieveScriptIn,
            SieveScriptOut,
        ),
        Route(
            "DELETE",
            f"{acct}/sieve/{{name}}",
            "delete a Sieve script (not the active one)",
            ALL_ROLES,
            delete_script,
            status=204,
        ),
        Route(
            "GET",
            f"{acct}/vacation",
            "the out-of-office reply",
            ALL_ROLES,
            get_vacation,
            response=VacationOut,
        ),
        Route(
            "PUT",
            f"{acct}/vacation",
            "turn the out-of-office reply on (RFC 5230)",
            ALL_ROLES,
            set_vacation,
            VacationIn,
            VacationOut,
        ),
        Route(
            "DELETE",
            f"{acct}/vacation",
            "turn it off (the account's own script goes on applying)",
            ALL_ROLES,
            clear_vacation,
            status=204,
        ),
        Route(
            "GET",
            f"{v1}/domains/{{domain}}/dmarc/reports",
            "DMARC aggregate reports received about the domain",
            ADMINS,
            dmarc_reports,
            response=list[DmarcReportOut],
        ),
        Route(
            "GET",
            f"{v1}/dmarc/pending",
            "DMARC evaluations not yet reported (sent daily to each rua), per domain",
            ADMIN,
            dmarc_pending,
            response=list[DmarcPendingOut],
        ),
        Route(
            "GET",
            f"{v1}/dmarc/sent",
            "DMARC aggregate reports we sent (a domain administrator: those about their "
            "domain), with what became of each rua= address",
            ADMINS,
            dmarc_sent,
            response=list[DmarcSentOut],
            query=DmarcSentQuery,
        ),
        Route(
            "GET",
            f"{v1}/dmarc/sent/{{report_id}}",
            "one report we sent, its XML as sent",
            ADMINS,
            dmarc_sent_xml,
            response=DmarcSentXmlOut,
        ),
        Route(
            "GET",
            f"{v1}/usage",
            "usage per account and day: messages and bytes in and out, refusals, storage",
            ALL_ROLES,
            usage,
            response=UsageOut,
            query=UsageQuery,
        ),
    ]
