"""The DMARC aggregate reports we sent, over the admin API and in the panel: each
administrator sees those about their own domains, the platform's administrator all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_web_panel import Browser, text_of
from web_client import Web, reference, token

from reference.auth.reports import Destination, SentReport
from reference.testing import ReferenceServer

DAY = 86400
T0 = 1_767_225_600


def sent(domain: str, *destinations: Destination, messages: int = 3) -> SentReport:
    return SentReport(
        f"{T0}.{domain}@mail.example.test",
        domain,
        T0,
        T0 + DAY,
        T0 + DAY + 5.0,
        messages,
        messages - 1,
        destinations,
    )


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    with reference(tmp_path_factory.mktemp("sent")) as (server, _):
        server.add_domain("a.test")
        server.add_domain("b.test")
        server.add_user("alice@a.test", "alice-pw")
        store = server.app.dmarc_store
        store.store_sent(sent("a.test", Destination("rua@a.test", qid="ABC")), b"<feedback>a</>")
        store.store_sent(sent("news.a.test", Destination("rua@a.test", qid="DEF")), b"<f/>")
        store.store_sent(sent("b.test", Destination("rua@b.test", qid="GHI")), b"<f/>")
        remote = sent(
            "remote.example",
            Destination("agg@remote.example", qid="JKL"),
            Destination("x@vendor.example", skipped="no record (RFC 7489 7.1)"),
            messages=9,
        )
        store.store_sent(remote, b"<f/>")
        yield server


async def test_each_administrator_reads_the_reports_about_their_domains(
    ref: ReferenceServer,
) -> None:
    async with Web(ref) as web:
        admin, admin_a = token(ref, "admin"), token(ref, "domain-admin", domain="a.test")
        r = await web.call("GET", "/api/v1/dmarc/sent", token=admin)
        assert r.status == 200
        assert {x["domain"] for x in r.body} == {
            "a.test",
            "news.a.test",
            "b.test",
            "remote.example",
        }
        (remote,) = [x for x in r.body if x["domain"] == "remote.example"]
        assert (remote["messages"], remote["passed"], remote["failed"]) == (9, 8, 1)
        assert remote["destinations"] == [
            {"rua": "agg@remote.example", "qid": "JKL", "skipped": ""},
            {"rua": "x@vendor.example", "qid": "", "skipped": "no record (RFC 7489 7.1)"},
        ]
        r = await web.call("GET", "/api/v1/dmarc/sent", token=admin_a)
        assert sorted(x["domain"] for x in r.body) == ["a.test", "news.a.test"]
        r = await web.call("GET", "/api/v1/dmarc/sent?domain=b.test", token=admin)
        assert [x["domain"] for x in r.body] == ["b.test"]
        r = await web.call("GET", "/api/v1/dmarc/sent?domain=b.test", token=admin_a)
        assert r.status == 403 and r.problem["field"] == "domain"
        r = await web.call("GET", "/api/v1/dmarc/sent?domain=a%20b", token=admin)
        assert r.status == 422 and r.problem["detail"]
        # The XML as sent: theirs, and not another domain's.
        r = await web.call(
            "GET", f"/api/v1/dmarc/sent/{T0}.a.test@mail.example.test", token=admin_a
        )
        assert r.status == 200 and r.body["xml"] == "<feedback>a</>"
        r = await web.call(
            "GET", f"/api/v1/dmarc/sent/{T0}.b.test@mail.example.test", token=admin_a
        )
        assert r.status == 403
        r = await web.call("GET", "/api/v1/dmarc/sent/nothing@here", token=admin)
        assert r.status == 404 and r.problem["detail"]


async def test_the_panel_lists_the_reports_sent(ref: ReferenceServer) -> None:
    b = Browser(ref)
    try:
        assert await b.login(tok=token(ref, "domain-admin", domain="a.test")) == 200
        status, page = await b.get("/domains/a.test/dmarc")
        assert status == 200 and 'href="/dmarc/sent?domain=a.test"' in page  # beside the chart
        status, page = await b.get("/dmarc/sent")
        assert status == 200 and 'id="dmarc-sent"' in page
        text = text_of(page)
        assert "news.a.test" in text and "b.test" not in text.replace("news.a.test", "")
        assert "2026-01-01 00:00 - 2026-01-02 00:00" in text and "rua@a.test" in text
        assert (await b.get("/dmarc/sent?domain=b.test"))[0] == 403
    finally:
        await b.close()
    b = Browser(ref, lang="de")
    try:
        assert await b.login(tok=token(ref, "admin")) == 200
        status, page = await b.get("/dmarc/sent?domain=remote.example")
        text = text_of(page)
        assert status == 200 and "Gesendete DMARC-Berichte über remote.example" in text
        assert "nicht gesendet: no record (RFC 7489 7.1)" in text and "9" in text
        assert 'href="/dmarc/sent"' in page  # the navigation's link
    finally:
        await b.close()
