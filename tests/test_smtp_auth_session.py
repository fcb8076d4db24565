"""SMTP AUTH against the real listener: the session keeps the account in ``user``,
and nothing deprecated is touched (no warning logged or raised on any AUTH)."""

from __future__ import annotations

import base64
import logging
import warnings
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import SmtpEnv, StartSmtp

ALICE, PW = "alice@example.test", "pw"


@pytest.fixture
async def env(smtp_listener: StartSmtp) -> SmtpEnv:
    return await smtp_listener("submission", tls_mode="implicit")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def dialogue(env: SmtpEnv, lines: list[bytes]) -> list[str]:
    """The greeting and the reply to each line."""
    c = await env.open()
    replies = [await c.reply()]
    for line in lines:
        await c.send(line + b"\r\n")
        replies.append(await c.reply())
    c.writer.close()
    return replies


async def test_auth_sets_the_session_and_warns_of_nothing(env: SmtpEnv) -> None:
    # aiosmtpd's own smtp_AUTH sets Session.login_data, whose setter logs "Session.login_data
    # is deprecated" at WARNING on every successful AUTH (a log record, not a Python warning:
    # pyproject's filterwarnings could not hide it, nor show it). Both kinds are watched.
    aiosmtpd_log = logging.getLogger("mail.log")
    seen = Records()
    aiosmtpd_log.addHandler(seen)
    level = aiosmtpd_log.level
    aiosmtpd_log.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as raised:
            warnings.simplefilter("always")
            plain = base64.b64encode(f"\0{ALICE}\0{PW}".encode())
            login = [base64.b64encode(ALICE.encode()), base64.b64encode(PW.encode())]
            first = await dialogue(env, [b"EHLO c.test", b"AUTH PLAIN " + plain, b"NOOP"])
            second = await dialogue(env, [b"EHLO c.test", b"AUTH LOGIN", *login, b"MAIL FROM:<>"])
    finally:
        aiosmtpd_log.removeHandler(seen)
        aiosmtpd_log.setLevel(level)
    assert first[2].startswith("235 2.7.0 ") and second[4].startswith("235 2.7.0 ")
    assert second[5].startswith("250 ")  # MAIL is allowed: the session is authenticated
    deprecated = [r.getMessage() for r in seen.records if "deprecat" in r.getMessage().lower()]
    assert deprecated == []
    assert [str(w.message) for w in raised] == []


async def test_the_session_holds_the_account(env: SmtpEnv) -> None:
    c = await env.connect(ehlo="c.test")
    plain = base64.b64encode(f"\0ALICE@example.test\0{PW}".encode()).decode()
    assert (await c.cmd(f"AUTH PLAIN {plain}")).startswith("235 ")
    (server,) = env.listener.sessions
    assert server.user == ALICE  # the account's address, as the directory says
    assert (await c.cmd(f"AUTH PLAIN {plain}")).startswith("503 ")
    c.writer.close()
