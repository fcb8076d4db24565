"""The control panel in a real browser (Debian's Chromium, driven by Selenium through
chromium-driver) against `mailspec serve` on loopback: an administrator creates a domain and
a user; the user sets a forward and an out-of-office and sees the DMARC report chart; a
domain administrator does not see another domain; the platform administrator logs in with
a password, holds and releases a queued message; a user sees their usage.

One browser serves every test of the module (starting Chromium is the slow part). With
MAILSPEC_SCREENSHOTS set to a folder, each main page is saved there as a PNG.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.dns import FakeDNS
from reference.auth.feedback import DkimAuth, Feedback, PolicyPublished, Row, SpfAuth
from reference.auth.reports import report_message
from reference.cli import main
from reference.directory import Directory
from reference.sieve import ScriptStore
from reference.testing import ServedProcess, serve_process, write_config

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = os.environ.get("MAILSPEC_SCREENSHOTS", "")


def _gone(old: Any) -> Callable[[Any], bool]:
    """Selenium's staleness_of, also for the way Chromium says it while the page is being
    replaced: "Node with given id does not belong to the document", a plain WebDriverException."""

    def check(_driver: Any) -> bool:
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise
        return False

    return check


pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
    reason="needs Debian's chromium and chromium-driver (.ci/services.sh installs them)",
)


class Panel:
    """The browser, pointed at one served node."""

    def __init__(self, driver: webdriver.Chrome, served: ServedProcess) -> None:
        self.driver = driver
        self.served = served
        self.base = f"https://127.0.0.1:{served.ports['web']}"
        # The node's directory, read and written beside it as the command line does.
        self.directory = Directory(served.data_dir / "directory.sqlite3")
        self.dns: FakeDNS | None = None  # the node's DNS, which tests may add records to

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def fill(self, name: str, value: str, *, by: str = By.NAME) -> None:
        field = self.driver.find_element(by, name)
        field.clear()
        field.send_keys(value)

    def click(self, element_id: str) -> None:
        """Press a button or follow a link, and wait for the page it leads to."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(By.ID, element_id).click()
        WebDriverWait(self.driver, 10).until(_gone(old))
        WebDriverWait(self.driver, 10).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    def follow(self, link_text: str) -> None:
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(By.LINK_TEXT, link_text).click()
        WebDriverWait(self.driver, 10).until(_gone(old))

    @property
    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def shot(self, name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))

    def login(self, address: str = "", password: str = "", *, token: str = "") -> None:
        self.driver.delete_all_cookies()  # a new person at the same browser
        self.open("/login")
        self.shot("login")
        if token:
            self.fill("token", token, by=By.ID)
            self.click("token-login")
        else:
            self.fill("address", address, by=By.ID)
            self.fill("password", password, by=By.ID)
            self.click("login")

    def token(self, role: str, domain: str | None = None) -> str:
        """What `mailspec token create` prints, made in-process (a command costs seconds)."""
        return self.directory.create_token(role, now=time.time(), domain=domain)[1]


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Panel]:
    tmp = tmp_path_factory.mktemp("panel")
    data = tmp / "var"
    with FakeDNS() as dns, socket.socket() as closed:
        # remote.test's MX is a port nobody listens on: mail to it waits in the queue.
        closed.bind(("127.0.0.1", 0))
        dns.add("remote.test", "MX", "10 mx.remote.test.")
        dns.add("mx.remote.test", "A", "127.0.0.1")
        config = write_config(
            tmp / "mailspec.toml",
            dns={"nameservers": [dns.nameserver]},
            relay={"port": closed.getsockname()[1]},
        )
        directory = Directory(data / "directory.sqlite3")  # as `mailspec domain|user add` do
        directory.add_domain("example.test")
        directory.add_user("alice@example.test", "alice-pw")
        directory.close()
        served = serve_process(data, config)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=1100,1300",
            "--lang=en-US",
        ):
            options.add_argument(arg)
        # The node's certificate is its own (self-signed): trusted for this browser only.
        options.accept_insecure_certs = True
        try:
            driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
        except WebDriverException:
            served.stop()
            raise
        panel = Panel(driver, served)
        panel.dns = dns
        try:
            yield panel
        finally:
            panel.directory.close()
            driver.quit()
            served.stop()


def dmarc_report(domain: str, days_ago: int, report_id: str) -> bytes:
    """An aggregate report as a receiver mails it: two sources, one passing, one not."""
    day = (int(time.time()) // 86400 - days_ago) * 86400
    fb = Feedback(
        "receiver.example",
        "dmarc@receiver.example",
        report_id,
        day,
        day + 86399,
        PolicyPublished(domain, p="reject"),
        (
            Row(
                "192.0.2.10",
                12 - days_ago,
                "none",
                "pass",
                "pass",
                domain,
                dkim_results=(DkimAuth(domain, "mail", "pass"),),
                spf_results=(SpfAuth(domain, "mfrom", "pass"),),
            ),
            Row("203.0.113.66", 2 * days_ago, "reject", "fail", "fail", domain),
        ),
    )
    return report_message(
        fb,
        to=f"postmaster@{domain}",
        sender="dmarc@receiver.example",
        submitter="receiver.example",
        now=time.time(),
    )


def test_an_administrator_creates_a_domain_and_a_user_who_manages_their_mail(
    panel: Panel,
) -> None:
    port = panel.served.ports["web"]
    assert f"  panel        https://127.0.0.1:{port}/ " in "".join(panel.served.output)
    panel.login(token=panel.token("admin"))
    assert "Platform administrator" in panel.text
    panel.fill("domain-name", "shop.test", by=By.ID)
    panel.click("add-domain")
    assert panel.driver.find_element(By.TAG_NAME, "h1").text == "shop.test"
    panel.fill("account-local", "carol", by=By.ID)
    panel.fill("account-password", "carol-pw", by=By.ID)
    panel.click("add-account")
    assert "carol@shop.test" in panel.driver.find_element(By.ID, "accounts").text
    panel.shot("admin-domain")
    panel.open("/domains")
    assert {"example.test", "shop.test"} <= set(
        panel.driver.find_element(By.ID, "domains").text.split()
    )
    panel.shot("admin-domains")
    panel.open("/accounts/carol@shop.test")
    panel.shot("admin-account")

    # Carol logs in and sets a forward and an out-of-office.
    panel.login("carol@shop.test", "carol-pw")
    assert panel.driver.find_element(By.TAG_NAME, "h1").text == "carol@shop.test"
    panel.fill("forward-targets", "carol@elsewhere.test", by=By.ID)
    panel.click("save-forward")
    assert "Saved." in panel.text
    panel.fill("ooo-subject", "Away until Monday", by=By.ID)
    panel.fill("ooo-text", "I am away; Dave reads my mail.", by=By.ID)
    panel.click("save-ooo")
    assert panel.driver.find_element(By.ID, "ooo-state").text == "On"
    panel.shot("user-settings")
    assert panel.directory.forward_of("carol@shop.test") == (["carol@elsewhere.test"], True)
    scripts = ScriptStore(panel.served.data_dir / "sieve")
    assert "Away until Monday" in (scripts.get("carol@shop.test", "out-of-office") or "")

    # A DMARC aggregate report about shop.test arrives by mail; Carol sees it as a chart.
    with smtplib.SMTP("127.0.0.1", panel.served.ports["mx"], timeout=10) as s:
        for days_ago, report_id in ((2, "r-1"), (1, "r-2")):
            report = dmarc_report("shop.test", days_ago, report_id)
            s.sendmail("dmarc@receiver.example", ["postmaster@shop.test"], report)
    for _ in range(100):  # delivery (and the report's intake) runs after the 250
        panel.open("/domains/shop.test/dmarc")
        if len(panel.driver.find_elements(By.CSS_SELECTOR, "#dmarc-chart rect")) >= 6:
            break  # both reports are in: a bar per source and day, and the legend
        time.sleep(0.1)
    chart = panel.driver.find_element(By.ID, "dmarc-chart")
    assert len(chart.find_elements(By.CSS_SELECTOR, "rect.pass")) == 3  # a bar a day; the legend
    assert len(chart.find_elements(By.CSS_SELECTOR, "rect.fail")) == 3
    assert "192.0.2.10" in chart.text and "203.0.113.66" in chart.text
    panel.shot("user-dmarc-chart")


def test_a_domain_administrator_does_not_see_another_domain(panel: Panel) -> None:
    panel.directory.add_domain("reseller.test")
    panel.login(token=panel.token("domain-admin", "reseller.test"))
    assert panel.driver.find_element(By.ID, "domains").text.split() == ["reseller.test"]
    panel.open("/domains/example.test")
    assert "Domain example.test is not yours." in panel.text
    assert not panel.driver.find_elements(By.ID, "accounts")
    panel.open("/accounts/alice@example.test")
    assert "not yours" in panel.text and "alice-pw" not in panel.driver.page_source
    panel.shot("domain-admin-refused")
    # Their own domain, with their branding.
    panel.open("/domains/reseller.test")
    panel.fill("brand-name-input", "Reseller Mail", by=By.ID)
    panel.click("save-branding")
    assert panel.driver.find_element(By.ID, "brand-name").text == "Reseller Mail"
    panel.shot("domain-admin-domain")


def test_an_administrator_deletes_a_domain_saying_what_happens_to_its_mail(
    panel: Panel,
) -> None:
    panel.directory.add_domain("closing.test")
    panel.directory.add_user("dora@closing.test", "dora-pw")
    panel.login(token=panel.token("admin"))
    panel.open("/domains/closing.test")
    panel.fill("confirm-delete", "closing.test", by=By.ID)
    panel.click("delete-domain")
    assert "say what happens to the mail" in panel.text  # never removed by default
    assert panel.directory.is_local_domain("closing.test")
    panel.open("/domains/closing.test")
    panel.driver.find_element(By.ID, "mail-archive").click()
    panel.fill("archive-to", "alice@example.test", by=By.ID)
    panel.fill("confirm-delete", "closing.test", by=By.ID)
    panel.shot("admin-domain-delete")
    panel.click("delete-domain")
    assert "Saved." in panel.text
    assert "closing.test" not in panel.driver.find_element(By.ID, "domains").text.split()
    assert not panel.directory.is_local_domain("closing.test")
    assert panel.directory.lookup("dora@closing.test") is None


def test_the_panel_speaks_german_when_asked(panel: Panel) -> None:
    panel.login("alice@example.test", "alice-pw")
    panel.follow("Deutsch")
    assert panel.driver.find_element(By.ID, "logout").text == "Abmelden"
    assert "Abwesenheitsnotiz" in panel.text
    panel.shot("user-settings-de")
    panel.follow("English")
    assert panel.driver.find_element(By.ID, "logout").text == "Log out"


def test_the_administrator_releases_a_held_message_and_a_user_sees_their_usage(
    panel: Panel,
) -> None:
    # Alice sends mail to remote.test, whose MX does not answer: it waits in the queue.
    with smtplib.SMTP("127.0.0.1", panel.served.ports["submission"], timeout=10) as s:
        tls = panel.served.tls_context()
        tls.check_hostname = False  # its certificate names the mail host, not 127.0.0.1
        s.starttls(context=tls)
        s.login("alice@example.test", "alice-pw")
        s.sendmail(
            "alice@example.test",
            ["friend@remote.test"],
            b"From: alice@example.test\r\nTo: friend@remote.test\r\nSubject: Hello\r\n\r\nHi.\r\n",
        )
    # What `mailspec admin create root` writes, made in-process (a command costs seconds).
    panel.directory.add_admin("root", "root-pw", now=time.time())
    panel.driver.delete_all_cookies()
    panel.open("/login")
    panel.fill("admin-name", "root", by=By.ID)
    panel.fill("admin-password", "root-pw", by=By.ID)
    panel.click("admin-login")
    assert "Platform administrator" in panel.text
    panel.click("nav-queue")
    row = panel.driver.find_element(By.CSS_SELECTOR, "#queue tr[id^='m-']")
    qid = str(row.get_attribute("id"))[2:]
    assert "friend@remote.test" in row.text
    panel.click(f"hold-{qid}")
    assert panel.driver.find_element(By.CSS_SELECTOR, f"#m-{qid} .state").text.startswith("held")
    chart = panel.driver.find_element(By.ID, "queue-chart")
    assert "oldest:" in chart.text and chart.find_elements(By.CSS_SELECTOR, "rect.depth")
    panel.shot("admin-queue-held")
    panel.click(f"release-{qid}")
    assert not panel.driver.find_element(By.CSS_SELECTOR, f"#m-{qid} .state").text.startswith(
        "held"
    )
    assert panel.driver.find_elements(By.ID, f"hold-{qid}")
    panel.shot("admin-queue")
    panel.click("nav-usage")
    assert "alice@example.test" in panel.driver.find_element(By.ID, "usage-accounts").text
    panel.shot("admin-usage")

    # Alice sees her own usage: the message she sent, in the chart and the table.
    panel.login("alice@example.test", "alice-pw")
    panel.click("nav-usage")
    chart = panel.driver.find_element(By.ID, "usage-chart")
    assert len(chart.find_elements(By.CSS_SELECTOR, "rect.out")) == 2  # a bar and the legend
    table = panel.driver.find_element(By.ID, "usage-accounts").text
    assert "alice@example.test" in table and "carol" not in table
    panel.shot("user-usage")
    panel.follow("Deutsch")
    assert panel.driver.find_element(By.TAG_NAME, "h1").text.startswith("Nutzung")
    panel.shot("user-usage-de")
    panel.follow("English")


def test_an_administrator_sees_the_dmarc_reports_sent(panel: Panel) -> None:
    # news.example asks for aggregate reports at its own address; its mail arrives here.
    assert panel.dns is not None
    panel.dns.spf("news.example", "v=spf1 ip4:127.0.0.0/8 -all")
    panel.dns.dmarc("news.example", "v=DMARC1; p=none; rua=mailto:dmarc@news.example")
    message = b"From: info@news.example\r\nSubject: news\r\n\r\nHello.\r\n"
    with smtplib.SMTP("127.0.0.1", panel.served.ports["mx"], timeout=10) as s:
        s.sendmail("info@news.example", ["postmaster@example.test"], message)
    # The operator sends the pending reports now rather than at the end of the day.
    flush = ["dmarc", "flush", "--config", str(panel.served.config)]
    assert main([*flush, "--data-dir", str(panel.served.data_dir)]) == 0
    panel.login(token=panel.token("admin"))
    panel.follow("DMARC reports sent")
    table = panel.driver.find_element(By.ID, "dmarc-sent").text
    assert "news.example" in table and "dmarc@news.example" in table
    panel.shot("admin-dmarc-sent")
