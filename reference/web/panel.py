"""The control panel: server-rendered pages (Jinja2) for each role, working without JavaScript.

A platform administrator logs in with a name and password (``mailspec admin create``) or
an API token, a domain administrator with an API token (``mailspec token create``), a user
with their address and password; failures count in the node's lockout with SMTP, IMAP and
POP3. Every form carries the session's CSRF token, every POST
is checked against it, and each change is made through the service layer the API and the
command line use. Pages answer in English or German (see :mod:`reference.web.i18n`).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2
from aiohttp import web

from reference.refusal import Refusal
from reference.service import Admin, Branding, ServiceError, canonical_address, canonical_domain
from reference.web.auth import Principal, WebAuth
from reference.web.chart import dmarc_chart
from reference.web.i18n import LANGUAGES, Gettext, choose, gettext_for
from reference.web.problems import HttpProblem
from reference.web.sessions import Session, SessionStore

__all__ = ["COOKIE", "LANG_COOKIE", "LOGIN_COOKIE", "Panel"]

# __Host-: the browser keeps it only if Secure, for this host, on every path.
COOKIE = "__Host-session"
LOGIN_COOKIE = "__Host-login"  # the login forms' CSRF token, before there is a session
LANG_COOKIE = "lang"
STATIC = Path(__file__).parent / "static"
ADMINS = ("admin", "domain-admin")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

T = TypeVar("T")
Page = Callable[["Ctx"], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A page the caller may not see, or a form that is not valid: shown, not raised on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Ctx:
    """One request to the panel: who is asking, in which language."""

    request: web.Request
    session: Session | None
    lang: str
    _: Gettext

    @property
    def who(self) -> Principal:
        assert self.session is not None  # pages behind the login
        return self.session.who


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _safe_next(path: str) -> str:
    """Only a path on this site (never ``//elsewhere``) to go back to."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


class Panel:
    """The pages, over the service layer and the session store."""

    def __init__(self, admin: Admin, auth: WebAuth, sessions: SessionStore) -> None:
        self.admin = admin
        self.auth = auth
        self.sessions = sessions
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("reference.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["size"] = _size
        self.env.filters["q"] = lambda s: quote(str(s), safe="@")

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._page(self.home, login=True))
        r.add_get("/login", self._page(self.login_form))
        r.add_post("/login", self._page(self.login))
        r.add_post("/logout", self._page(self.logout, login=True))
        r.add_get("/lang/{lang}", self._page(self.language))
        r.add_get("/static/panel.css", self.stylesheet)
        r.add_get("/domains", self._page(self.domains, ADMINS))
        r.add_post("/domains", self._page(self.add_domain, ("admin",)))
        r.add_get("/domains/{domain}", self._page(self.domain, ADMINS))
        r.add_post("/domains/{domain}/{action}", self._page(self.domain_action, ADMINS))
        r.add_get("/domains/{domain}/dmarc", self._page(self.dmarc, login=True))
        r.add_get("/dmarc/sent", self._page(self.dmarc_sent, ADMINS))
        r.add_get("/logo/{domain}", self.logo)
        r.add_get("/accounts/{address}", self._page(self.account, ADMINS))
        r.add_post("/accounts/{address}/{action}", self._page(self.account_action, ADMINS))
        r.add_get("/me", self._page(self.me, ("user",)))
        r.add_post("/me/{action}", self._page(self.me_action, ("user",)))
        # The queue and usage pages live in their own module, on this one's plumbing.
        from reference.web.monitor import Monitor

        Monitor(self).add_routes(app)

    # -- plumbing

    def _page(
        self, handler: Page, roles: tuple[str, ...] = (), *, login: bool = False
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Language, session, role and (on a POST) the CSRF token, before ``handler``."""

        async def page(request: web.Request) -> web.StreamResponse:
            lang = choose(
                request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language", "")
            )
            ctx = Ctx(request, await self._session(request), lang, gettext_for(lang))
            try:
                if (roles or login) and ctx.session is None:
                    return self._redirect("/login?next=" + quote(request.path_qs, safe=""))
                if roles and ctx.who.role not in roles:
                    raise Refused(403, ctx._("This page is not for your role."))
                response = await handler(ctx)
            except Refused as e:
                response = self.render(ctx, "error.html", {"message": str(e)}, status=e.status)
            except Refusal as e:  # the service's (or the directory's): in the reader's words
                message = ctx._(e.template, **e.values)
                response = self.render(ctx, "error.html", {"message": message}, status=422)
            response.headers.update(SECURITY_HEADERS)
            return response

        return page

    async def _session(self, request: web.Request) -> Session | None:
        """The cookie's session if it is still good: its password stamp current (a changed
        password or a disabled account ends it) or its token not revoked."""
        session = await asyncio.to_thread(self.sessions.get, request.cookies.get(COOKIE, ""))
        if session is None:
            return None
        who = session.who
        good = True
        if who.role == "user" and who.user is not None:
            stamp = await asyncio.to_thread(self.admin.directory.password_stamp, who.user)
            good = stamp is not None and hmac.compare_digest(stamp, session.stamp or "")
        if who.admin is not None:  # a password login: ends with a new password or removal
            stamp = await asyncio.to_thread(self.admin.directory.admin_stamp, who.admin)
            good = stamp is not None and hmac.compare_digest(stamp, session.stamp or "")
        elif who.token is not None or who.role != "user":
            tokens = await asyncio.to_thread(self.admin.directory.tokens)
            good = good and any(t.id == who.token for t in tokens)
        if not good:
            await asyncio.to_thread(self.sessions.end, session)
            return None
        return session

    async def form(self, ctx: Ctx) -> dict[str, Any]:
        """The POSTed fields, once the CSRF token in them is the session's."""
        data = await ctx.request.post()
        expected = ctx.session.csrf if ctx.session else ctx.request.cookies.get(LOGIN_COOKIE, "")
        given = data.get("csrf")
        if not expected or not isinstance(given, str) or not hmac.compare_digest(given, expected):
            raise Refused(
                403, ctx._("The form has expired. Go back, reload the page and try again.")
            )
        return dict(data)

    def render(
        self, ctx: Ctx, template: str, values: dict[str, Any], status: int = 200
    ) -> web.Response:
        session = ctx.session
        values = {
            "_": ctx._,
            "lang": ctx.lang,
            "languages": LANGUAGES,
            "here": ctx.request.path_qs,
            "who": session.who if session else None,
            "csrf": session.csrf if session else "",
            "brand": self._brand(session.who) if session else None,
            "done": ctx.request.query.get("done", ""),
            **values,
        }
        html = self.env.get_template(template).render(values)
        return web.Response(text=html, content_type="text/html", status=status)

    def _brand(self, who: Principal) -> Branding | None:
        """The branding its users see: their domain's; a domain administrator sees theirs."""
        domain = who.domain or (who.user.rpartition("@")[2] if who.user else None)
        return self.admin.branding(domain) if domain else None

    async def _action(self, ctx: Ctx) -> tuple[str, dict[str, Any]]:
        """Which form was posted (the last part of the path) and its checked fields."""
        return ctx.request.match_info["action"], await self.form(ctx)

    @staticmethod
    def _redirect(location: str) -> web.Response:
        # 303: the browser GETs the page after a POST (a reload does not post again).
        return web.Response(status=303, headers={"Location": location})

    def _done(self, location: str, what: str) -> web.Response:
        return self._redirect(f"{location}?done={what}")

    @staticmethod
    async def run(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kw)

    def _domain(self, ctx: Ctx) -> str:
        domain = canonical_domain(ctx.request.match_info["domain"])
        if not ctx.who.may_domain(domain):
            raise Refused(403, ctx._("Domain %(domain)s is not yours.", domain=domain))
        return domain

    def _account(self, ctx: Ctx) -> str:
        address = canonical_address(ctx.request.match_info["address"])
        if not ctx.who.may_account(address):
            raise Refused(403, ctx._("Account %(address)s is not yours.", address=address))
        return address

    # -- login, logout, language

    async def home(self, ctx: Ctx) -> web.StreamResponse:
        return self._redirect("/me" if ctx.who.role == "user" else "/domains")

    async def login_form(self, ctx: Ctx, error: str = "", status: int = 200) -> web.StreamResponse:
        token = ctx.request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self.render(
            ctx,
            "login.html",
            {
                "login_csrf": token,
                "error": error,
                "next": _safe_next(ctx.request.query.get("next", "/")),
            },
            status,
        )
        response.set_cookie(
            LOGIN_COOKIE, token, secure=True, httponly=True, samesite="Strict", path="/"
        )
        return response

    async def login(self, ctx: Ctx) -> web.StreamResponse:
        data = await self.form(ctx)
        peer = ctx.request.remote or ""
        try:
            if data.get("token"):
                who = await self.auth.by_token(str(data["token"]).strip(), peer)
            elif data.get("admin"):
                who = await self.auth.by_admin_password(
                    str(data["admin"]), str(data.get("password", "")), peer
                )
            else:
                who = await self.auth.by_password(
                    str(data.get("address", "")).strip(), str(data.get("password", "")), peer
                )
        except HttpProblem as e:
            message = (
                ctx._("Too many failed logins. Try again later.")
                if e.status == 429
                else ctx._("Wrong address, password or token.")
            )
            return await self.login_form(ctx, message, e.status)
        stamp = None
        if who.user is not None and who.role == "user":
            stamp = await self.run(self.admin.directory.password_stamp, who.user)
        elif who.admin is not None:
            stamp = await self.run(self.admin.directory.admin_stamp, who.admin)
        cookie, _ = await self.run(self.sessions.create, who, stamp)
        response = self._redirect(_safe_next(str(data.get("next", "/"))))
        response.set_cookie(COOKIE, cookie, secure=True, httponly=True, samesite="Strict", path="/")
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, ctx: Ctx) -> web.StreamResponse:
        await self.form(ctx)
        assert ctx.session is not None
        await self.run(self.sessions.end, ctx.session)
        response = self._redirect("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    async def language(self, ctx: Ctx) -> web.StreamResponse:
        lang = ctx.request.match_info["lang"]
        if lang not in LANGUAGES:
            raise Refused(404, ctx._("No such language."))
        response = self._redirect(_safe_next(ctx.request.query.get("next", "/")))
        response.set_cookie(
            LANG_COOKIE,
            lang,
            secure=True,
            httponly=True,
            samesite="Lax",
            path="/",
            max_age=365 * 86400,
        )
        return response

    async def stylesheet(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC / "panel.css",
            headers={"Content-Type": "text/css", "Cache-Control": "max-age=3600"},
        )

    async def logo(self, request: web.Request) -> web.StreamResponse:
        """A domain's logo: shown on the login page too, so it is not behind the login."""
        try:
            found = await self.run(self.admin.logo, request.match_info["domain"])
        except ServiceError:
            found = None
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(
            body=body,
            content_type=content_type,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"},
        )

    # -- administrators: domains, accounts, aliases, branding

    async def domains(self, ctx: Ctx) -> web.StreamResponse:
        names = [d for d in await self.run(self.admin.domains) if ctx.who.may_domain(d)]
        return self.render(ctx, "domains.html", {"domains": names})

    async def add_domain(self, ctx: Ctx) -> web.StreamResponse:
        data = await self.form(ctx)
        domain = await self.run(self.admin.add_domain, str(data.get("name", "")))
        return self._done(f"/domains/{quote(domain)}", "domain-added")

    async def domain(self, ctx: Ctx) -> web.StreamResponse:
        domain = self._domain(ctx)

        def gather() -> dict[str, Any]:
            self.admin.domain(domain)
            accounts = [self.admin.account(a.address) for a in self.admin.accounts(domain)]
            return {
                "domain": domain,
                "accounts": accounts,
                "aliases": self.admin.aliases(domain),
                "branding": self.admin.branding(domain),
                "reports": len(self.admin.dmarc_reports(domain)),
            }

        return self.render(ctx, "domain.html", await self.run(gather))

    async def domain_action(self, ctx: Ctx) -> web.StreamResponse:
        domain = self._domain(ctx)
        action, data = await self._action(ctx)
        here = f"/domains/{quote(domain)}"
        if action == "accounts":
            address = canonical_address(f"{data.get('local', '')}@{domain}")
            quota = _number(ctx, data.get("quota_mib", ""))

            def create() -> None:
                self.admin.add_account(address, str(data.get("password", "")))
                if quota is not None:
                    self.admin.set_quota(address, bytes=quota * 1024 * 1024)

            await self.run(create)
            return self._done(here, "account-added")
        if action == "aliases":
            alias = canonical_address(f"{data.get('local', '')}@{domain}", "alias")
            targets = [t.strip() for t in str(data.get("targets", "")).split(",") if t.strip()]
            for t in targets:  # a target in our domains must be the caller's too (as the API)
                local = self.admin.directory.is_local_domain(t.rpartition("@")[2])
                if local and not ctx.who.may_account(canonical_address(t, "targets")):
                    raise Refused(403, ctx._("Account %(address)s is not yours.", address=t))
            await self.run(self.admin.add_alias, alias, *targets)
            return self._done(here, "alias-added")
        if action == "alias-remove":
            alias = canonical_address(str(data.get("alias", "")), "alias")
            if not ctx.who.may_account(alias):
                raise Refused(403, ctx._("Account %(address)s is not yours.", address=alias))
            await self.run(self.admin.remove_alias, alias)
            return self._done(here, "alias-removed")
        if action == "branding":
            upload = data.get("logo")
            logo = upload.file.read() if isinstance(upload, web.FileField) else None
            remove = data.get("remove_logo") == "on"
            await self.run(
                self.admin.set_branding,
                domain,
                str(data.get("name", "")),
                b"" if remove else (logo or None),
            )
            return self._done(here, "branding-saved")
        if action == "delete":
            if ctx.who.role != "admin":
                raise Refused(403, ctx._("Only the platform's administrator deletes domains."))
            if data.get("confirm") != domain:
                raise Refused(422, ctx._("Type the domain to confirm the deletion."))
            await self.run(self.admin.delete_domain, domain, **self._mail_choice(ctx, data))
            return self._done("/domains", "domain-deleted")
        raise Refused(404, ctx._("No such action."))

    def _mail_choice(self, ctx: Ctx, data: dict[str, Any]) -> dict[str, Any]:
        """What a delete form chose for the mail: moved into an archive account (one the
        caller manages, as in the API) or removed; no choice is the service's to refuse."""
        if data.get("mail") == "archive":
            archive = canonical_address(str(data.get("archive_to", "")), "archive_to")
            if not ctx.who.may_account(archive):
                raise Refused(403, ctx._("Account %(address)s is not yours.", address=archive))
            return {"archive_to": archive}
        return {"remove_mail": data.get("mail") == "remove"}

    async def account(self, ctx: Ctx) -> web.StreamResponse:
        address = self._account(ctx)
        info = await self.run(self.admin.account, address)
        storage = await self.run(self.admin.storage, address)
        return self.render(ctx, "account.html", {"account": info, "storage": storage})

    async def account_action(self, ctx: Ctx) -> web.StreamResponse:
        address = self._account(ctx)
        action, data = await self._action(ctx)
        here = f"/accounts/{quote(address, safe='@')}"
        if action == "password":
            await self.run(self.admin.set_password, address, str(data.get("password", "")))
        elif action == "quota":
            mib = _number(ctx, data.get("quota_mib", ""))
            messages = _number(ctx, data.get("quota_messages", ""))
            await self.run(
                self.admin.set_quota,
                address,
                bytes=None if mib is None else mib * 1024 * 1024,
                messages=messages,
            )
        elif action == "enabled":
            await self.run(self.admin.set_enabled, address, data.get("enabled") == "1")
        elif action == "delete":
            if data.get("confirm") != address:
                raise Refused(422, ctx._("Type the address to confirm the deletion."))
            await self.run(self.admin.delete_account, address, **self._mail_choice(ctx, data))
            return self._done(f"/domains/{quote(address.rpartition('@')[2])}", "account-deleted")
        else:
            raise Refused(404, ctx._("No such action."))
        return self._done(here, f"{action}-saved")

    # -- DMARC reports as a chart

    async def dmarc(self, ctx: Ctx) -> web.StreamResponse:
        domain = canonical_domain(ctx.request.match_info["domain"])
        who = ctx.who
        own = who.role == "user" and (who.user or "").rpartition("@")[2] == domain
        if not (who.may_domain(domain) or own):
            raise Refused(403, ctx._("Domain %(domain)s is not yours.", domain=domain))
        cells = await self.run(self.admin.dmarc_days, domain)
        return self.render(
            ctx, "dmarc.html", {"domain": domain, "chart": dmarc_chart(cells), "cells": cells}
        )

    async def dmarc_sent(self, ctx: Ctx) -> web.StreamResponse:
        """The reports we sent: the platform's administrator, all (or one domain's); a
        domain's administrator, those about their domain."""
        name = ctx.request.query.get("domain", "")
        domain = canonical_domain(name) if name else ""
        if domain and not ctx.who.may_domain(domain):
            raise Refused(403, ctx._("Domain %(domain)s is not yours.", domain=domain))
        reports = await self.run(self.admin.dmarc_sent, [domain] if domain else ctx.who.domains())
        periods = [f"{_utc(r.begin)} - {_utc(r.end)}" for r in reports]
        return self.render(
            ctx,
            "dmarc_sent.html",
            {"domain": domain, "reports": list(zip(reports, periods, strict=True))},
        )

    # -- a user's own settings

    async def me(self, ctx: Ctx) -> web.StreamResponse:
        user = ctx.who.user
        assert user is not None

        def gather() -> dict[str, Any]:
            scripts, _ = self.admin.sieve_scripts(user)
            chosen = str(ctx.request.query.get("script", ""))
            names = [n for n, _ in scripts]
            vacation = self.admin.vacation(user)
            return {
                "user": user,
                "domain": user.rpartition("@")[2],
                "storage": self.admin.storage(user),
                "forward": self.admin.forwarding(user),
                "ooo": vacation.settings if vacation else None,
                "spam": self.admin.spam_thresholds(user),
                "scripts": scripts,
                "script_name": chosen if chosen in names else "",
                "script_text": self.admin.sieve_script(user, chosen) if chosen in names else "",
            }

        return self.render(ctx, "me.html", await self.run(gather))

    async def me_action(self, ctx: Ctx) -> web.StreamResponse:
        user = ctx.who.user
        session = ctx.session
        assert user is not None and session is not None
        action, data = await self._action(ctx)

        def text(name: str) -> str:
            return str(data.get(name, ""))

        if action == "password":
            if not await self._password_ok(user, text("current"), ctx):
                raise Refused(422, ctx._("The current password is not right."))
            await self.run(self.admin.set_password, user, text("password"))
            # This session goes on; every other one of the account ends.
            stamp = await self.run(self.admin.directory.password_stamp, user)
            await self.run(self.sessions.restamp, session, stamp)
            await self.run(self.sessions.end_others, user, session)
        elif action == "forward":
            targets = [t.strip() for t in text("targets").replace("\n", ",").split(",")]
            await self.run(
                self.admin.set_forwarding,
                user,
                [t for t in targets if t],
                keep=data.get("keep") == "on",
            )
        elif action == "vacation":
            days = text("days").strip() or "7"
            if not days.isdigit():
                raise Refused(422, ctx._("The days between two replies are a whole number."))
            await self.run(
                self.admin.set_vacation,
                user,
                subject=text("subject").strip() or ctx._("Out of office"),
                text=text("text"),
                start=text("start"),
                end=text("end"),
                days=int(days),
            )
        elif action == "vacation-off":
            await self.run(self.admin.clear_vacation, user)
        elif action == "spam":
            await self.run(
                self.admin.set_spam_thresholds,
                user,
                reject=_score(ctx, text("reject")),
                junk=_score(ctx, text("junk")),
                replace=True,  # the form shows both: an empty one is the domain's again
            )
        elif action == "sieve":
            name = text("name").strip()
            await self.run(
                self.admin.put_sieve_script,
                user,
                name,
                text("script"),
                activate=data.get("activate") == "on",
            )
            return self._redirect(f"/me?done=sieve-saved&script={quote(name)}")
        else:
            raise Refused(404, ctx._("No such action."))
        return self._done("/me", f"{action}-saved")

    async def _password_ok(self, user: str, password: str, ctx: Ctx) -> bool:
        """The current password, asked again before a change; a wrong one counts as a failed
        login (someone at an unlocked screen must not get to guess)."""
        try:
            await self.auth.by_password(user, password, ctx.request.remote or "")
        except HttpProblem:
            return False
        return True


def _number(ctx: Ctx, raw: Any) -> int | None:
    text = str(raw).strip()
    if not text:
        return None
    if not text.isdigit():
        raise Refused(422, ctx._("A quota is a whole number, 0 or more."))
    return int(text)


def _score(ctx: Ctx, raw: str) -> float | None:
    text = raw.strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise Refused(422, ctx._("A score is a number, such as 6.5.")) from None
