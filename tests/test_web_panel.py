"""The control panel over real HTTPS, as a browser without JavaScript uses it: cookies, the
CSRF token on every form, the shared login lockout, sessions ending on a password change,
who sees which domain, branding, languages and the DMARC chart."""

from __future__ import annotations

import ast
import html
import re
import ssl
from pathlib import Path

import aiohttp
import pytest
from web_client import reference, smtp_auth, token, two_customers

from reference.auth.feedback import DkimAuth, Feedback, PolicyPublished, Row, SpfAuth
from reference.testing import ReferenceServer
from reference.web.i18n import translations

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # only its signature is read


class Browser:
    """One browser profile: a cookie jar, and forms posted with the page's CSRF token."""

    def __init__(self, ref: ReferenceServer, lang: str = "en") -> None:
        self.base = f"https://127.0.0.1:{ref.port('web')}"
        self.tls = ssl.create_default_context(cafile=str(ref.cafile))
        self.hostname = ref.hostname
        self.lang = lang
        # unsafe: the jar keeps cookies of an IP address host (127.0.0.1).
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.last = ""

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self, method: str, path: str, data: dict[str, object] | aiohttp.FormData | None = None
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.request(
            method,
            self.base + path,
            data=data,
            ssl=self.tls,
            server_hostname=self.hostname,
            headers={"Accept-Language": self.lang},
            allow_redirects=True,
        ) as r:
            text = (await r.read()).decode("utf-8", "replace")
            self.last = text
            return r.status, text, r

    async def get(self, path: str) -> tuple[int, str]:
        status, text, _ = await self.request("GET", path)
        return status, text

    async def post(self, page: str, action: str, **fields: object) -> tuple[int, str]:
        """Open ``page``, then post ``fields`` to ``action`` with the page's CSRF token."""
        _, text = await self.get(page)
        found = re.search(r'name="csrf" value="([^"]*)"', text)
        assert found, text
        status, text, _ = await self.request("POST", action, {"csrf": found.group(1), **fields})
        return status, text

    async def login(
        self, address: str = "", password: str = "", *, tok: str = "", admin: str = ""
    ) -> int:
        """By address and password, a token, or a platform administrator's name and password."""
        fields = {"token": tok} if tok else {"address": address, "password": password}
        if admin:
            fields = {"admin": admin, "password": password}
        status, _ = await self.post("/login", "/login", **fields)
        return status


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@pytest.fixture
def ref(tmp_path: Path):  # type: ignore[no-untyped-def]
    with two_customers(tmp_path, **{"submission.auth_max_failures": 3}) as server:
        yield server


async def test_cookies_are_secure_httponly_samesite_and_pages_carry_headers(
    ref: ReferenceServer,
) -> None:
    b = Browser(ref)
    try:
        _, _, r = await b.request("GET", "/login")
        login_cookie = r.cookies["__Host-login"]
        assert login_cookie["secure"] and login_cookie["httponly"]
        assert login_cookie["samesite"] == "Strict" and login_cookie["path"] == "/"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        _, page = await b.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]*)"', page)
        assert csrf
        async with b.session.post(
            b.base + "/login",
            data={"csrf": csrf.group(1), "address": "alice@a.test", "password": "alice-pw"},
            ssl=b.tls,
            server_hostname=b.hostname,
            allow_redirects=False,
        ) as r:
            assert r.status == 303
            session = r.cookies["__Host-session"]
            assert session["secure"] and session["httponly"] and session["samesite"] == "Strict"
        status, page = await b.get("/me")
        assert status == 200 and "alice@a.test" in page
    finally:
        await b.close()


async def test_every_form_needs_the_sessions_csrf_token(ref: ReferenceServer) -> None:
    b = Browser(ref)
    try:
        # The login form too (a forged login would sign the victim in as someone else).
        status, _, _ = await b.request(
            "POST", "/login", {"address": "alice@a.test", "password": "alice-pw"}
        )
        assert status == 403
        assert await b.login("alice@a.test", "alice-pw") == 200
        for fields in ({}, {"csrf": "forged"}):
            status, page = (
                await b.request("POST", "/me/forward", {**fields, "targets": "x@remote.test"})
            )[:2]
            assert status == 403 and "The form has expired" in page
        assert ref.app.directory.forward_of("alice@a.test") == ([], True)
        status, _ = await b.post("/me", "/me/forward", targets="x@remote.test", keep="on")
        assert status == 200
        assert ref.app.directory.forward_of("alice@a.test") == (["x@remote.test"], True)
        # A logout is a form as well: without the token the session stays.
        assert (await b.request("POST", "/logout", {}))[0] == 403
        assert (await b.get("/me"))[0] == 200
    finally:
        await b.close()


async def test_panel_login_failures_count_in_the_mail_lockout(ref: ReferenceServer) -> None:
    b = Browser(ref)
    try:
        for _ in range(2):
            assert await b.login("alice@a.test", "wrong") == 401
            assert "Wrong address, password or token." in b.last
        assert smtp_auth(ref, "alice@a.test", "wrong") == 535
        # Locked now: the right password on the panel and on SMTP.
        assert await b.login("alice@a.test", "alice-pw") == 429
        assert "Too many failed logins" in b.last
        assert smtp_auth(ref, "alice@a.test", "alice-pw") == 454
        assert await b.login("bob@b.test", "bob-pw") == 200  # others are not locked
    finally:
        await b.close()


async def test_a_password_change_ends_the_users_other_sessions(ref: ReferenceServer) -> None:
    here, there = Browser(ref), Browser(ref)
    try:
        assert await here.login("alice@a.test", "alice-pw") == 200
        assert await there.login("alice@a.test", "alice-pw") == 200
        status, page = await here.post("/me", "/me/password", current="wrong", password="new-pw")
        assert status == 422 and smtp_auth(ref, "alice@a.test", "new-pw") == 535
        status, _ = await here.post("/me", "/me/password", current="alice-pw", password="new-pw")
        assert status == 200
        assert (await here.get("/me"))[0] == 200  # this session goes on
        status, page = await there.get("/me")  # the other one is back at the login
        assert 'action="/login"' in page and "alice@a.test" not in text_of(page)
        # A change made elsewhere (the command line, an administrator) ends this one too.
        ref.app.admin.set_password("alice@a.test", "newer-pw")
        status, page = await here.get("/me")
        assert 'action="/login"' in page
    finally:
        await here.close()
        await there.close()


async def test_a_domain_administrator_sees_only_their_domains(ref: ReferenceServer) -> None:
    b = Browser(ref)
    try:
        assert await b.login(tok=token(ref, "domain-admin", domain="a.test")) == 200
        status, page = await b.get("/domains")
        assert status == 200 and "a.test" in page and "b.test" not in page
        assert (await b.get("/domains/a.test"))[0] == 200
        for path in ("/domains/b.test", "/accounts/bob@b.test", "/domains/b.test/dmarc", "/me"):
            status, page = await b.get(path)
            assert status == 403, path
            assert 'id="accounts"' not in page and 'id="state"' not in page
        before = ref.app.directory.users("b.test")
        status, _ = await b.post(
            "/domains/a.test", "/domains/b.test/accounts", local="mallory", password="x"
        )
        status2, _ = await b.post(
            "/domains/a.test", "/accounts/bob@b.test/password", password="taken"
        )
        status3, _ = await b.post("/domains/a.test", "/domains", name="c.test")
        assert (status, status2, status3) == (403, 403, 403)
        assert ref.app.directory.users("b.test") == before
        assert ref.app.directory.check_password("bob@b.test", "bob-pw")
        assert not ref.app.directory.is_local_domain("c.test")
        # An alias in one's own domain for another customer's account is refused too.
        status, _ = await b.post(
            "/domains/a.test", "/domains/a.test/aliases", local="steal", targets="bob@b.test"
        )
        assert status == 403 and ref.app.directory.aliases("a.test") == []
    finally:
        await b.close()


async def test_a_user_reaches_only_their_own_pages(ref: ReferenceServer) -> None:
    b = Browser(ref)
    try:
        assert await b.login("alice@a.test", "alice-pw") == 200
        for path in (
            "/domains",
            "/domains/a.test",
            "/accounts/alice@a.test",
            "/domains/b.test/dmarc",
        ):
            assert (await b.get(path))[0] == 403, path
        assert (await b.get("/domains/a.test/dmarc"))[0] == 200  # their domain's reports
    finally:
        await b.close()


async def test_the_administrator_manages_accounts_and_aliases(ref: ReferenceServer) -> None:
    b = Browser(ref)
    try:
        assert await b.login(tok=token(ref, "admin")) == 200
        status, _ = await b.post("/domains", "/domains", name="C.Test")
        assert status == 200 and ref.app.directory.is_local_domain("c.test")
        status, _ = await b.post(
            "/domains/c.test",
            "/domains/c.test/accounts",
            local="carol",
            password="carol-pw",
            quota_mib="5",
        )
        assert status == 200 and ref.app.directory.quota("carol@c.test") == (5 * 1024 * 1024, None)
        page = "/accounts/carol@c.test"
        assert (await b.post(page, page + "/quota", quota_mib="5", quota_messages="100"))[0] == 200
        assert ref.app.directory.quota("carol@c.test") == (5 * 1024 * 1024, 100)
        status, text = await b.post(page, page + "/quota", quota_mib="lots")
        assert status == 422 and "whole number" in text
        assert (await b.post(page, page + "/enabled", enabled="0"))[0] == 200
        assert not ref.app.directory.lookup("carol@c.test").enabled  # type: ignore[union-attr]
        assert (await b.post(page, page + "/enabled", enabled="1"))[0] == 200
        assert (await b.post(page, page + "/password", password="fresh"))[0] == 200
        assert ref.app.directory.check_password("carol@c.test", "fresh")
        status, _ = await b.post(
            "/domains/c.test", "/domains/c.test/aliases", local="info", targets="carol@c.test"
        )
        assert ("info@c.test", "carol@c.test") in ref.app.directory.aliases("c.test")
        assert (await b.post(page, page + "/delete", confirm="wrong"))[0] == 422
        assert ref.app.directory.lookup("carol@c.test") is not None
        status, text = await b.post(page, page + "/delete", confirm="carol@c.test")
        assert status == 422 and "say what happens to the mail" in text  # never by default
        assert ref.app.directory.lookup("carol@c.test") is not None
        done = await b.post(page, page + "/delete", confirm="carol@c.test", mail="remove")
        assert done[0] == 200
        assert ref.app.directory.lookup("carol@c.test") is None
    finally:
        await b.close()


async def test_branding_is_shown_to_the_domains_users_only(ref: ReferenceServer) -> None:
    reseller, alice, bob = Browser(ref), Browser(ref), Browser(ref)
    try:
        assert await reseller.login(tok=token(ref, "domain-admin", domain="a.test")) == 200
        form = aiohttp.FormData()
        _, page = await reseller.get("/domains/a.test")
        csrf = re.search(r'name="csrf" value="([^"]*)"', page)
        assert csrf
        form.add_field("csrf", csrf.group(1))
        form.add_field("name", "Acme Hosting")
        form.add_field("logo", b"<svg onload=alert(1)>", filename="x.svg")
        status, text, _ = await reseller.request("POST", "/domains/a.test/branding", form)
        assert status == 422 and "PNG or JPEG" in text
        form = aiohttp.FormData()
        form.add_field("csrf", csrf.group(1))
        form.add_field("name", "Acme Hosting")
        form.add_field("logo", PNG, filename="logo.png", content_type="image/png")
        status, _, _ = await reseller.request("POST", "/domains/a.test/branding", form)
        assert status == 200
        assert await alice.login("alice@a.test", "alice-pw") == 200
        _, page = await alice.get("/me")
        assert "Acme Hosting" in page and 'src="/logo/a.test"' in page
        _, _, r = await alice.request("GET", "/logo/a.test")
        assert r.status == 200 and r.headers["Content-Type"] == "image/png"
        assert await bob.login("bob@b.test", "bob-pw") == 200
        _, page = await bob.get("/me")
        assert "Acme Hosting" not in page
    finally:
        for b in (reseller, alice, bob):
            await b.close()


async def test_accept_language_chooses_and_the_switch_overrides(ref: ReferenceServer) -> None:
    b = Browser(ref, lang="fr-CH, de-DE;q=0.8, en;q=0.5")
    try:
        _, page = await b.get("/login")
        assert '<html lang="de">' in page and "Anmelden" in page
        status, page = await b.get("/lang/en?next=/login")
        assert status == 200 and '<html lang="en">' in page and "Log in" in page
        _, page = await b.get("/lang/en?next=//evil.example/")  # never elsewhere
        assert '<html lang="en">' in page
    finally:
        await b.close()


def test_every_text_of_the_panel_has_a_german_translation() -> None:
    web = Path(__file__).resolve().parent.parent / "reference" / "web"
    sources = [*sorted((web / "templates").glob("*.html")), web / "panel.py", web / "monitor.py"]
    wanted = {
        m.group(1)
        for p in sources
        for m in re.finditer(r'\b_\(\s*"((?:[^"\\]|\\.)*)"', p.read_text("utf-8"))
    }
    german = translations("de")
    assert sorted(wanted - set(german)) == []
    for msgid in wanted:  # the same named values in both
        assert re.findall(r"%\(\w+\)s", msgid) == re.findall(r"%\(\w+\)s", german[msgid])


# Where the refusals the panel shows are written: each message a template with named values.
REFUSING = [
    "reference/service.py",
    "reference/directory/schema.py",
    "reference/directory/accounts.py",
    "reference/directory/aliases.py",
    "reference/directory/spam.py",
    "reference/directory/directory.py",
    "reference/delivery/retire.py",
]


def test_every_refusal_of_the_service_has_a_german_translation() -> None:
    root = Path(__file__).resolve().parent.parent
    kinds = {"Invalid", "NotFound", "Conflict", "ServiceError", "DirectoryError"}
    wanted, built = set(), []
    for name in REFUSING:
        for node in ast.walk(ast.parse((root / name).read_text("utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in kinds or not node.args:
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                wanted.add(first.value)
            else:  # an f-string cannot be looked up in a catalogue
                built.append(f"{name}:{node.lineno}")
    # Write a refusal as a template with named values, Invalid("no such list: %(address)s",
    # "address", address=a), and give it a German msgstr in the panel's catalogue.
    assert built == [], "a refusal built with an f-string cannot be translated"
    german = translations("de")
    assert sorted(wanted - set(german)) == [], "a refusal without a German translation"
    for msgid in wanted:
        assert sorted(re.findall(r"%\(\w+\)\w", msgid)) == sorted(
            re.findall(r"%\(\w+\)\w", german[msgid])
        ), msgid


async def test_refusals_of_the_service_are_shown_in_the_readers_language(
    ref: ReferenceServer,
) -> None:
    admin, alice = Browser(ref, lang="de"), Browser(ref, lang="de")
    try:
        assert await admin.login(tok=token(ref, "admin")) == 200
        page = "/domains/a.test"
        status, text = await admin.post(page, page + "/accounts", local="alice", password="x")
        assert status == 422 and "alice@a.test gibt es schon" in text_of(text)
        status, text = await admin.post("/domains", "/domains", name="bad_name!")
        assert status == 422 and "Kein Domainname: 'bad_name!'" in text_of(text)
        page = "/accounts/alice@a.test"
        status, text = await admin.post(page, page + "/delete", confirm="alice@a.test")
        assert status == 422 and "Wählen Sie, was mit den E-Mails geschieht" in text_of(text)
        status, text = await admin.post(
            page,
            page + "/delete",
            confirm="alice@a.test",
            mail="archive",
            archive_to="nobody@a.test",
        )
        assert status == 422 and "Kein solches Archivpostfach: nobody@a.test" in text_of(text)
        assert ref.app.directory.lookup("alice@a.test") is not None
        assert await alice.login("alice@a.test", "alice-pw") == 200
        status, text = await alice.post("/me", "/me/spam", junk="12", reject="9")
        assert status == 422 and "darf nicht größer sein" in text_of(text)
        status, text = await alice.post("/me", "/me/forward", targets="alice@a.test")
        assert status == 422 and "kann nicht an sich selbst weiterleiten" in text_of(text)
    finally:
        await admin.close()
        await alice.close()


async def test_the_platform_administrator_deletes_a_domain_with_its_mail_archived(
    ref: ReferenceServer,
) -> None:
    ref.add_domain("c.test")
    ref.add_user("carol@c.test", "pw")
    ref.app.store.deliver("carol@c.test", b"Subject: keep\r\n\r\nme\r\n")
    admin, reseller = Browser(ref), Browser(ref)
    try:
        assert await reseller.login(tok=token(ref, "domain-admin", domain="c.test")) == 200
        _, text = await reseller.get("/domains/c.test")
        assert "/domains/c.test/delete" not in text  # no form for what they may not do
        status, text = await reseller.post(
            "/domains/c.test", "/domains/c.test/delete", confirm="c.test", mail="remove"
        )
        assert status == 403 and ref.app.directory.is_local_domain("c.test")
        assert await admin.login(tok=token(ref, "admin")) == 200
        page = "/domains/c.test"
        status, text = await admin.post(page, page + "/delete", confirm="c.test")
        assert status == 422 and "say what happens to the mail" in text
        status, _ = await admin.post(
            page, page + "/delete", confirm="c.test", mail="archive", archive_to="alice@a.test"
        )
        assert status == 200 and not ref.app.directory.is_local_domain("c.test")
        assert ref.app.store.usage("alice@a.test").messages == 1
        assert "Archive/carol@c_test/INBOX" in ref.app.store.folders("alice@a.test")
    finally:
        await admin.close()
        await reseller.close()


async def test_the_dmarc_chart_shows_pass_and_fail_per_source_and_day(
    ref: ReferenceServer,
) -> None:
    day = 1_700_000_000 - 1_700_000_000 % 86400
    report = Feedback(
        "google.com",
        "noreply-dmarc@google.com",
        "r1",
        day,
        day + 86399,
        PolicyPublished("a.test", p="reject"),
        (
            Row(
                "192.0.2.1",
                7,
                "none",
                "pass",
                "pass",
                "a.test",
                dkim_results=(DkimAuth("a.test", "s", "pass"),),
                spf_results=(SpfAuth("a.test", "mfrom", "pass"),),
            ),
            Row("198.51.100.9", 3, "reject", "fail", "fail", "a.test"),
        ),
    )
    ref.app.dmarc_store.store_received(report, day + 90000, "postmaster@a.test")
    b = Browser(ref)
    try:
        assert await b.login("alice@a.test", "alice-pw") == 200
        status, page = await b.get("/domains/a.test/dmarc")
        assert status == 200 and '<svg id="dmarc-chart"' in page
        assert page.count('class="pass"') == 2 and page.count('class="fail"') == 2  # bars + legend
        assert "Passed: 7, failed: 3" in page
        assert "192.0.2.1 2023-11-14: 7" in page and "198.51.100.9 2023-11-14: 3" in page
    finally:
        await b.close()


BOBS = "0123456789ABCDEF"  # the queue id of a message bob sent, waiting in the queue
# Every page and form of the panel, with who may reach it when it names b.test or its
# account bob: the rest get 403 (a visitor not logged in: the login page). The forms are
# sent with a field the service refuses (422), so an allowed call changes nothing either.
MATRIX: list[tuple[str, str, str, dict[str, str], set[str]]] = [
    ("GET", "/domains", "/domains", {}, {"admin", "reseller-a", "reseller-b"}),
    ("POST", "/domains", "/domains", {"name": ""}, {"admin"}),
    ("GET", "/domains/{domain}", "/domains/b.test", {}, {"admin", "reseller-b"}),
    (
        "POST",
        "/domains/{domain}/{action}",
        "/domains/b.test/accounts",
        {"local": "", "password": ""},
        {"admin", "reseller-b"},
    ),
    ("GET", "/domains/{domain}/dmarc", "/domains/b.test/dmarc", {}, {"admin", "reseller-b", "bob"}),
    ("GET", "/dmarc/sent", "/dmarc/sent?domain=b.test", {}, {"admin", "reseller-b"}),
    ("GET", "/accounts/{address}", "/accounts/bob@b.test", {}, {"admin", "reseller-b"}),
    (
        "POST",
        "/accounts/{address}/{action}",
        "/accounts/bob@b.test/quota",
        {"quota_mib": "lots"},
        {"admin", "reseller-b"},
    ),
    ("GET", "/me", "/me", {}, {"alice", "bob"}),
    ("POST", "/me/{action}", "/me/spam", {"junk": "lots"}, {"alice", "bob"}),
    ("POST", "/logout", "/logout", {"csrf": "wrong"}, set()),  # everyone's own: checked above
    # The queue: every administrator has the page (showing their own messages); bob's
    # message (held already: holding it again changes nothing) only the platform's and b's.
    ("GET", "/queue", "/queue", {}, {"admin", "reseller-a", "reseller-b"}),
    ("POST", "/queue/flush", "/queue/flush", {}, {"admin", "reseller-a", "reseller-b"}),
    ("POST", "/queue/{qid}/{action}", f"/queue/{BOBS}/hold", {}, {"admin", "reseller-b"}),
    ("GET", "/usage", "/usage?domain=b.test", {}, {"admin", "reseller-b"}),
    ("GET", "/usage", "/usage?account=bob@b.test", {}, {"admin", "reseller-b", "bob"}),
    ("GET", "/usage", "/usage", {}, {"admin", "reseller-a", "reseller-b", "alice", "bob"}),
]
PUBLIC = {"/", "/login", "/lang/{lang}", "/static/panel.css", "/logo/{domain}"}


def test_the_matrix_names_every_page_of_the_panel(tmp_path: Path) -> None:
    app = aiohttp.web.Application()
    with reference(tmp_path) as (server, _):
        assert server.app.web.panel is not None
        server.app.web.panel.add_routes(app)
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    listed = {(m, template) for m, template, *_ in MATRIX}
    assert routes - listed == {(m, p) for m, p in routes if p in PUBLIC}


async def test_nobody_reaches_another_domains_pages(ref: ReferenceServer) -> None:
    callers = {
        "admin": {"tok": token(ref, "admin")},
        "root": {"admin": "root", "password": "root-pw"},  # the platform's, by password
        "reseller-a": {"tok": token(ref, "domain-admin", domain="a.test")},
        "reseller-b": {"tok": token(ref, "domain-admin", domain="b.test")},
        "alice": {"address": "alice@a.test", "password": "alice-pw"},
        "bob": {"address": "bob@b.test", "password": "bob-pw"},
        "nobody": {},
    }
    ref.run(
        ref.app.spool.enqueue("bob@b.test", ["x@remote.test"], b"\r\n", qid=BOBS, user="bob@b.test")
    )
    ref.app.spool.hold(BOBS)
    ref.app.admin.create_admin("root", "root-pw")
    before = ref.app.directory.users()
    wrong = []
    for name, credentials in callers.items():
        b = Browser(ref)
        try:
            if credentials:
                assert await b.login(**credentials) == 200
            for method, _, path, fields, allowed in MATRIX:
                if method == "GET":
                    status, page = await b.get(path)
                else:
                    status, page = await b.post(
                        "/login" if name == "nobody" else "/", path, **fields
                    )
                # 404: another domain's queued message is as one not queued.
                reached = status not in (403, 404) and 'action="/login"' not in page
                if path == "/logout":
                    reached = status != 403 and name != "nobody"
                if reached != ((name if name != "root" else "admin") in allowed):
                    wrong.append(f"{name} {method} {path}: {status}")
        finally:
            await b.close()
    assert wrong == []
    assert ref.app.directory.users() == before
    assert [(e.qid, e.held) for e in ref.app.spool.entries()] == [(BOBS, True)]


async def test_a_refused_spam_setting_keeps_the_one_there_was(ref: ReferenceServer) -> None:
    b = Browser(ref)
    try:
        assert await b.login("alice@a.test", "alice-pw") == 200
        assert (await b.post("/me", "/me/spam", junk="4", reject="9"))[0] == 200
        status, page = await b.post("/me", "/me/spam", junk="12", reject="9")
        assert status == 422 and "must not be more than the reject score" in page
        kept = ref.app.directory.spam_settings("alice@a.test")["alice@a.test"]
        assert (kept.junk_score, kept.reject_score) == (4, 9)
        assert (await b.post("/me", "/me/spam", junk="", reject=""))[0] == 200  # the domain's
        assert ref.app.directory.spam_settings("alice@a.test") == {}
    finally:
        await b.close()


async def test_a_revoked_token_ends_the_sessions_it_opened(ref: ReferenceServer) -> None:
    b = Browser(ref)
    try:
        made, secret = ref.app.admin.create_token("admin")
        assert await b.login(tok=secret) == 200
        assert (await b.get("/domains"))[0] == 200
        ref.app.admin.revoke_token(made.id)
        _, page = await b.get("/domains")
        assert 'action="/login"' in page
    finally:
        await b.close()
