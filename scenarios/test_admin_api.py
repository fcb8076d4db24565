"""An operator runs `mailspec serve`, makes a token and sets up a customer's domain through
the admin API; the customer's administrator adds a mailbox; mail for it arrives; /metrics
counts it."""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
import time
from pathlib import Path
from typing import Any

import aiohttp

from fakes.dns import FakeDNS
from reference.testing import ServedProcess, mailspec, serve_process, write_config


async def call(
    session: aiohttp.ClientSession,
    node: ServedProcess,
    method: str,
    path: str,
    token: str,
    body: Any = None,
) -> tuple[int, Any]:
    async with session.request(
        method,
        f"https://127.0.0.1:{node.ports['web']}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        ssl=node.tls_context(),
        server_hostname="mail.example.test",
    ) as r:
        return r.status, (await r.json(content_type=None))


def made_token(output: str) -> str:
    return output.strip().splitlines()[-1]


async def test_operator_sets_up_a_customer_domain(tmp_path: Path, fake_dns: FakeDNS) -> None:
    data = tmp_path / "var"
    config = write_config(tmp_path / "mailspec.toml", dns={"nameservers": [fake_dns.nameserver]})
    node = serve_process(data, config)
    try:
        admin = made_token(mailspec("token", "create", "--role", "admin", data_dir=data))
        async with aiohttp.ClientSession() as s:
            assert await call(s, node, "POST", "/api/v1/domains", admin, {"name": "shop.test"}) == (
                201,
                {"name": "shop.test"},
            )
            status, records = await call(s, node, "GET", "/api/v1/domains/shop.test/dns", admin)
            assert status == 200 and [r["type"] for r in records][:2] == ["MX", "TXT"]
            # The customer's own administrator, scoped to their domain.
            reseller = made_token(
                mailspec(
                    "token",
                    "create",
                    "--role",
                    "domain-admin",
                    "--domain",
                    "shop.test",
                    data_dir=data,
                )
            )
            body = {"address": "anna@shop.test", "password": "anna-pw", "quota_messages": 100}
            status, account = await call(s, node, "POST", "/api/v1/accounts", reseller, body)
            assert (status, account["quota_messages"]) == (201, 100)
            status, dkim = await call(
                s, node, "POST", "/api/v1/domains/shop.test/dkim", reseller, {}
            )
            assert status == 200 and len(dkim["records"]) == 2
            status, _ = await call(s, node, "POST", "/api/v1/domains", reseller, {"name": "x.test"})
            assert status == 403

            # Mail to the new mailbox, from the internet (the MX) to IMAP.
            with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=10) as smtp:
                smtp.sendmail(
                    "friend@remote.test", ["anna@shop.test"], b"Subject: welcome\r\n\r\nHi.\r\n"
                )
            deadline = time.monotonic() + 10
            while True:
                imap = imaplib.IMAP4_SSL(
                    "127.0.0.1", node.ports["imaps"], ssl_context=node.tls_context()
                )
                imap.login("anna@shop.test", "anna-pw")
                count = int(imap.select("INBOX")[1][0] or 0)
                imap.logout()
                if count == 1 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert count == 1
            async with s.get(
                f"https://127.0.0.1:{node.ports['web']}/metrics",
                ssl=node.tls_context(),
                server_hostname="mail.example.test",
            ) as r:
                metrics = await r.text()
            assert (
                'mailspec_delivery_attempts_total{destination="local",outcome="delivered"} 1.0'
                in metrics
            )
    finally:
        assert node.stop() == 0
