"""A real HTTPS client (aiohttp) for the reference's web listener, and a reference to aim it at."""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from fakes.dns import FakeDNS
from reference.testing import ReferenceServer

# No slowdown after failed logins (the manual clock would hold the answer); lockouts stay.
QUICK_AUTH = {"submission.auth_delay_after": 99}


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: Any  # parsed JSON, or the text when it is not JSON

    @property
    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem details of a refusal (and that it is one)."""
        assert self.headers.get("Content-Type", "").startswith("application/problem+json"), (
            self.status,
            self.body,
        )
        assert isinstance(self.body, dict) and self.body["status"] == self.status
        return self.body


class Web:
    """Requests to one reference's web listener, over TLS verified against its certificate."""

    def __init__(self, ref: ReferenceServer) -> None:
        self.ref = ref
        self.base = f"https://127.0.0.1:{ref.port('web')}"
        self.tls = ssl.create_default_context(cafile=str(ref.cafile))
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Web:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        basic: tuple[str, str] | None = None,
    ) -> Answer:
        assert self.session is not None
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if basic is not None:
            sent["Authorization"] = aiohttp.encode_basic_auth(*basic)
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method,
            self.base + path,
            data=data,
            headers=sent,
            ssl=self.tls,
            # The certificate is the mail listeners': it names the mail host.
            server_hostname=self.ref.hostname,
        ) as r:
            text = await r.text()
            try:
                parsed: Any = json.loads(text) if text else None
            except ValueError:
                parsed = text
            return Answer(r.status, r.headers, parsed)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def reference(tmp: Path, **overrides: Any) -> Iterator[tuple[ReferenceServer, FakeDNS]]:
    """A reference whose DNS the test holds. remote.test's MX refuses connections (a port
    nobody listens on), so mail to it is deferred at once and stays queued."""
    dns = FakeDNS().start()
    dns.add("remote.test", "MX", "10 mx.remote.test.")
    dns.add("mx.remote.test", "A", "127.0.0.1")
    settings = {**QUICK_AUTH, "relay.port": closed_port(), **overrides}
    try:
        with ReferenceServer(tmp / "var", nameservers=[dns.nameserver], overrides=settings) as ref:
            yield ref, dns
    finally:
        dns.stop()


@contextmanager
def two_customers(tmp: Path, **overrides: Any) -> Iterator[ReferenceServer]:
    """A reference with two customers: a.test with alice, b.test with bob (passwords
    alice-pw and bob-pw)."""
    with reference(tmp, **overrides) as (server, _):
        server.add_domain("a.test")
        server.add_domain("b.test")
        server.add_user("alice@a.test", "alice-pw")
        server.add_user("bob@b.test", "bob-pw")
        yield server


def send_mx(ref: ReferenceServer, rcpts: list[str]) -> list[int]:
    """One transaction on the MX; the RCPT replies."""
    with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
        s.ehlo("client.remote.test")
        s.mail("someone@remote.test")
        codes = [s.rcpt(r)[0] for r in rcpts]
        if 250 in codes:
            s.data(b"From: someone@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n")
        return codes


def smtp_auth(ref: ReferenceServer, user: str, password: str) -> int:
    """One AUTH PLAIN on submission (smtplib's login() would try every mechanism offered);
    its reply code."""
    ctx = ssl.create_default_context(cafile=str(ref.cafile))
    with smtplib.SMTP("127.0.0.1", ref.port("submission"), timeout=10) as s:
        s.starttls(context=ctx)
        s.ehlo()
        s.user, s.password = user, password
        try:
            return s.auth("PLAIN", s.auth_plain)[0]
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code


def token(ref: ReferenceServer, role: str, *, domain: str = "", user: str = "") -> str:
    return ref.app.admin.create_token(role, domain=domain or None, user=user or None)[1]
