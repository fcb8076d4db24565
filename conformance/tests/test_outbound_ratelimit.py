"""PLATFORM outbound.ratelimit: 60 recipients per 5 minutes per user, exact under concurrency."""

from __future__ import annotations

import base64
import secrets
import threading

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.smtp_client import SMTPClient
from conformance.target import Admin, ClockControl, Target

LIMIT, WINDOW = 60, 300


def fresh_user(admin: Admin, target: Target) -> tuple[str, str]:
    address = f"rl-{secrets.token_hex(4)}@{target.domain}"
    password = secrets.token_urlsafe(12)
    admin.add_user(address, password)
    return address, password


def login(smtp: SMTPConnector, address: str, password: str) -> SMTPClient:
    client = smtp.session("submission", tls=True)
    token = base64.b64encode(f"\0{address}\0{password}".encode()).decode()
    client.command(f"AUTH PLAIN {token}").expect(235, doing="AUTH PLAIN")
    client.mail(address).expect(250, doing="MAIL FROM")
    return client


def rcpt_codes(client: SMTPClient, count: int, tag: str) -> list[int]:
    return [client.rcpt(f"{tag}-{i}@remote.example").code for i in range(count)]


@requirement(
    "PLATFORM",
    "outbound.ratelimit",
    "MUST",
    "a user's 61st recipient within 5 minutes gets 450 4.7.1 saying when to retry",
    needs=("admin",),
)
def test_limit_is_exact_and_says_when(smtp: SMTPConnector, admin: Admin, target: Target) -> None:
    address, password = fresh_user(admin, target)
    client = login(smtp, address, password)
    codes = rcpt_codes(client, LIMIT, "a")
    assert codes == [250] * LIMIT
    over = client.rcpt("one-too-many@remote.example")
    assert (over.code, over.enhanced) == (450, "4.7.1"), str(over)
    assert "try again" in over.text.lower()


@requirement(
    "PLATFORM",
    "outbound.ratelimit",
    "MUST",
    "concurrent sessions of one user together get exactly the allowed recipients",
    needs=("admin",),
)
def test_concurrent_sessions_count_exactly(
    smtp: SMTPConnector, admin: Admin, target: Target
) -> None:
    address, password = fresh_user(admin, target)
    clients = [login(smtp, address, password) for _ in range(4)]
    results: list[list[int]] = [[] for _ in clients]

    def run(i: int) -> None:
        results[i] = rcpt_codes(clients[i], 25, f"c{i}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = [c for r in results for c in r]
    assert len(codes) == 100
    assert codes.count(250) == LIMIT, f"accepted {codes.count(250)} of 100"
    assert set(codes) == {250, 450}


@requirement(
    "PLATFORM",
    "outbound.ratelimit",
    "MUST",
    "the window slides: recipients are accepted again once 5 minutes have passed",
    needs=("admin", "clock"),
)
def test_window_slides(
    smtp: SMTPConnector, admin: Admin, target: Target, clock: ClockControl
) -> None:
    address, password = fresh_user(admin, target)
    client = login(smtp, address, password)
    assert rcpt_codes(client, LIMIT, "w") == [250] * LIMIT
    assert client.rcpt("early@remote.example").code == 450
    clock.advance(WINDOW - 1)
    assert client.rcpt("still-early@remote.example").code == 450
    clock.advance(1)
    assert client.rcpt("later@remote.example").code == 250
