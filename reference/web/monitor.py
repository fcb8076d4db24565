"""The panel's queue and usage pages, each with a chart drawn on the server.

The queue: the platform administrator sees and handles every queued message, a domain's
administrator their domain's (the service layer decides which those are), users none. Usage:
a user sees their own account and quota, a domain's administrator their domain and its
accounts, the platform administrator everything. Both read and act through the service
layer, as the API and the command line do.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from reference.service import QUEUE_ACTIONS, NotFound, canonical_address, canonical_domain
from reference.spool import QueueEntry
from reference.usage import UsageRow, day_of
from reference.web.chart import Series, bar_chart
from reference.web.i18n import Gettext
from reference.web.panel import ADMINS, Ctx, Panel, Refused

__all__ = ["QUEUE_ROWS", "USAGE_DAYS", "Monitor", "age"]

USAGE_DAYS = 30  # the usage page shows this many days, today included
QUEUE_ROWS = 500  # the queue page lists the oldest messages up to this many (a page, not a dump)


def age(seconds: float, _: Gettext) -> str:
    """``95`` -> "1 min 35 s": the two largest units, enough to tell old from new."""
    s = max(int(seconds), 0)
    parts = [(s // 86400, _("d")), (s // 3600 % 24, "h"), (s // 60 % 60, "min"), (s % 60, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n} {unit}" for n, unit in parts[:2])


def _state(entry: QueueEntry) -> str:
    if entry.held:
        return "held"
    return "deferred" if entry.attempts else "waiting"


class Monitor:
    """The queue and usage pages, on the panel's plumbing (sessions, CSRF, languages)."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        self.admin = panel.admin

    def add_routes(self, app: web.Application) -> None:
        page = self.panel._page
        r = app.router
        r.add_get("/queue", page(self.queue, ADMINS))
        r.add_post("/queue/flush", page(self.flush_all, ADMINS))
        r.add_post("/queue/{qid}/{action}", page(self.queue_action, ADMINS))
        r.add_get("/usage", page(self.usage, login=True))

    # -- the queue

    @staticmethod
    def _scope(ctx: Ctx) -> str | None:
        """Whose messages: every one (None) for the platform, else the domain's."""
        return None if ctx.who.role == "admin" else ctx.who.domain

    async def queue(self, ctx: Ctx) -> web.StreamResponse:
        _ = ctx._
        scope = self._scope(ctx)

        def gather() -> dict[str, Any]:
            now = self.admin.clock.now()
            entries = sorted(self.admin.queue(scope), key=lambda e: e.created)
            depth = self.admin.queue_depth(scope)
            lanes = {"regular": _("regular lane"), "bulk": _("bulk lane")}
            chart = bar_chart(
                [(lanes.get(lane, lane), [n]) for lane, n, _oldest in depth],
                [Series("depth", _("messages"))],
                [
                    _("oldest: %(age)s", age=age(oldest, _)) if oldest is not None else _("empty")
                    for _lane, _n, oldest in depth
                ],
            )
            rows = [
                {
                    "qid": e.qid,
                    "state": _state(e),
                    "lane": self.admin.lane(e),
                    "age": age(now - e.created, _),
                    "next": age(e.next_attempt - now, _) if e.next_attempt > now else "",
                    "sender": e.sender or "<>",
                    "recipients": e.pending or e.recipients,
                    "reply": next((r.reply for r in reversed(e.recipients) if r.reply), ""),
                    "attempts": e.attempts,
                    "size": e.size,
                }
                for e in entries[:QUEUE_ROWS]
            ]
            return {"rows": rows, "total": len(entries), "chart": chart, "scope": scope}

        return self.panel.render(ctx, "queue.html", await self.panel.run(gather))

    async def flush_all(self, ctx: Ctx) -> web.StreamResponse:
        await self.panel.form(ctx)
        await self.panel.run(self.admin.change_queue, "flush", domain=self._scope(ctx))
        return self.panel._done("/queue", "flush")

    async def queue_action(self, ctx: Ctx) -> web.StreamResponse:
        action, _data = await self.panel._action(ctx)
        if action not in QUEUE_ACTIONS:
            raise Refused(404, ctx._("No such action."))
        qid = ctx.request.match_info["qid"]
        gone = Refused(404, ctx._("No queued message %(qid)s.", qid=qid))
        try:
            change = await self.panel.run(
                self.admin.change_queue, action, [qid], domain=self._scope(ctx)
            )
        except NotFound:  # another domain's: said as of one not queued
            raise gone from None
        if change.missing:  # gone meanwhile (delivered, or deleted by someone else)
            raise gone
        return self.panel._done("/queue", action)

    # -- usage

    def _usage_scope(self, ctx: Ctx) -> tuple[str | None, str | None]:
        """(domain, account) the page shows: the query's, if it is the caller's to see."""
        who = ctx.who
        query = ctx.request.query
        account = canonical_address(query["account"], "account") if query.get("account") else None
        domain = canonical_domain(query["domain"]) if query.get("domain") and not account else None
        if who.role == "user":
            account = account or who.user
        elif who.role == "domain-admin" and account is None:
            domain = domain or who.domain
        if account is not None and not who.may_account(account):
            raise Refused(403, ctx._("Account %(address)s is not yours.", address=account))
        if domain is not None and not who.may_domain(domain):
            raise Refused(403, ctx._("Domain %(domain)s is not yours.", domain=domain))
        return domain, account

    async def usage(self, ctx: Ctx) -> web.StreamResponse:
        _ = ctx._
        domain, account = self._usage_scope(ctx)

        def gather() -> dict[str, Any]:
            now = self.admin.clock.now()
            days = [day_of(now - n * 86400) for n in reversed(range(USAGE_DAYS))]
            report = self.admin.usage(domain=domain, account=account, since=days[0])
            per_day = {day: [0, 0] for day in days}  # every day, the quiet ones too
            for row in report.accounts if account else report.domains:
                per_day[row.day][0] += row.messages_in
                per_day[row.day][1] += row.messages_out
            chart = bar_chart(
                [(day[5:], per_day[day]) for day in days],
                [Series("in", _("messages in")), Series("out", _("messages out"))],
            )
            return {
                "domain": domain,
                "account": account,
                "chart": chart,
                "domains": _newest_first(report.domains),
                "accounts": _newest_first(report.accounts),
                "storage": self.panel.admin.storage(account) if account else None,
                "choices": [d for d in self.admin.domains() if ctx.who.may_domain(d)],
            }

        return self.panel.render(ctx, "usage.html", await self.panel.run(gather))


def _newest_first(rows: list[UsageRow]) -> list[UsageRow]:
    return sorted(rows, key=lambda r: (r.day, r.domain, r.account), reverse=True)
