"""The SMTP session's answers, byte for byte, to every command and the usual mistakes.

Each dialogue is sent line by line to a real listener and each reply read whole, so a
change to any reply text, code, enhanced code or advertised extension shows here.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import SmtpEnv, StartSmtp

ALICE, PW = "alice@example.test", "pw"
HOST = "mx.example.test"
STARTTLS = "<starttls>"  # upgrade the client side after the 220


async def dialogue(env: SmtpEnv, lines: list[str]) -> list[str]:
    """The greeting and one whole reply per line sent."""
    c = await env.open()
    got = [await c.reply()]
    try:
        for line in lines:
            if line == STARTTLS:
                await c.writer.start_tls(env.client_tls, server_hostname=HOST)
                continue
            try:
                got.append(await c.cmd(line))
            except ConnectionError:
                got.append("<closed>")
                break
    finally:
        c.writer.close()
    return got


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


HELP_ALL = "BDAT DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY"
HELP_TLS = HELP_ALL.replace("RSET", "RSET STARTTLS")
EHLO_PLAIN = (
    f"250-{HOST}\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-ENHANCEDSTATUSCODES\r\n"
    "250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250-CHUNKING\r\n"
)

Case = tuple[str, str, list[tuple[str, str]]]
CASES: list[Case] = [
    (
        "mx",
        "none",
        [
            ("NOOP", "250 2.0.0 OK\r\n"),
            ("NOOP anything at all", "250 2.0.0 OK\r\n"),
            ("MAIL FROM:<a@b.test>", "503 5.5.1 Error: send HELO first\r\n"),
            ("RCPT TO:<a@b.test>", "503 5.5.1 Error: send HELO first\r\n"),
            ("DATA", "503 5.5.1 Error: send HELO first\r\n"),
            ("BDAT 0 LAST", "503 5.5.1 Error: send HELO/EHLO first\r\n"),
            ("AUTH PLAIN", "503 5.5.1 Error: send EHLO first\r\n"),
            ("HELP", f"250 2.0.0 Supported commands: {HELP_ALL}\r\n"),
            ("HELP MAIL", "250 2.0.0 Syntax: MAIL FROM: <address>\r\n"),
            ("HELP auth", f"501 5.5.4 Supported commands: {HELP_ALL}\r\n"),
            ("HELP STARTTLS", f"501 5.5.4 Supported commands: {HELP_ALL}\r\n"),
            ("VRFY", "501 5.5.4 Syntax: VRFY <address>\r\n"),
            (
                "VRFY <a@b.test>",
                "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n",
            ),
            (
                "VRFY alice",
                "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n",
            ),
            ("VRFY <<>", "502 5.5.1 Could not VRFY <<>\r\n"),
            ("EXPN list", "502 5.5.1 EXPN not implemented\r\n"),
            ("RSET x", "501 5.5.4 Syntax: RSET\r\n"),
            ("RSET", "250 2.0.0 OK\r\n"),
            ("STARTTLS", "454 4.7.0 TLS not available\r\n"),
            ("STARTTLS now", "501 5.5.4 Syntax: STARTTLS\r\n"),
            ("FOO", "500 5.5.2 Error: command not recognized\r\n"),
            ("", "500 5.5.2 Error: bad syntax\r\n"),
            ("EHLO", "501 5.5.4 Syntax: EHLO hostname\r\n"),
            ("HELO", "501 5.5.4 Syntax: HELO hostname\r\n"),
        ],
    ),
    (
        "mx",
        "none",
        [
            ("HELO c.test", f"250 {HOST}\r\n"),
            ("NOOP " + "x" * 600, "500 5.5.2 Error: line too long\r\n"),
            ("NOOP " + "x" * 5000, "500 5.5.2 Error: line too long\r\n"),
            ("MAIL FROM:<a@b.test> SIZE=20000", "501 5.5.4 Parameters need EHLO\r\n"),
            ("HELP MAIL", "250 2.0.0 Syntax: MAIL FROM: <address>\r\n"),
            ("AUTH PLAIN", "500 5.5.2 Error: command 'AUTH' not recognized\r\n"),
            ("EHLO c.test", EHLO_PLAIN + "250 HELP\r\n"),
            (
                "MAIL FROM:<a@b.test> SIZE=20000",
                "552 5.3.4 Message size exceeds fixed maximum message size (10000)\r\n",
            ),
            ("MAIL FROM:<a@b.test> " + "X" * 990, "500 5.5.2 Error: line too long\r\n"),
            ("HELP MAIL", "250 2.0.0 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n"),
            ("HELP rcpt", "250 2.0.0 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n"),
            ("HELP BDAT", "250 2.0.0 Syntax: BDAT chunk-size [LAST]\r\n"),
            (
                "AUTH PLAIN",
                "538 5.7.11 Encryption required for requested authentication mechanism\r\n",
            ),
            ("DATA", "503 5.5.1 Error: need MAIL command\r\n"),
            ("RCPT TO:<a@b.test>", "503 5.5.1 Error: need MAIL command\r\n"),
            ("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK\r\n"),
            ("MAIL FROM:<a@b.test>", "503 5.5.1 Error: nested MAIL command\r\n"),
            ("AUTH PLAIN", "503 5.5.1 Error: AUTH not allowed during a mail transaction\r\n"),
            ("DATA", "503 5.5.1 Error: need RCPT command\r\n"),
            ("RCPT TO:<x@y.test>", "250 2.1.5 Recipient OK\r\n"),
            ("DATA x", "501 5.5.4 Syntax: DATA\r\n"),
            ("BDAT x", "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n"),
            ("RSET", "250 2.0.0 OK\r\n"),
            ("RCPT TO:<a@b.test>", "503 5.5.1 Error: need MAIL command\r\n"),
            ("QUIT now", "501 5.5.4 Syntax: QUIT\r\n"),
            ("QUIT", "221 2.0.0 Bye\r\n"),
        ],
    ),
    (
        "mx",
        "starttls",
        [
            (
                "HELP",
                f"250 2.0.0 Supported commands: {HELP_TLS}\r\n",
            ),
            ("HELP STARTTLS", "250 2.0.0 Syntax: STARTTLS\r\n"),
            ("EHLO c.test", EHLO_PLAIN + "250-STARTTLS\r\n250 HELP\r\n"),
            ("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK\r\n"),
            ("STARTTLS", "220 2.0.0 Ready to start TLS\r\n"),
            (STARTTLS, ""),
            ("MAIL FROM:<a@b.test>", "503 5.5.1 Error: send HELO first\r\n"),
            ("EHLO c.test", EHLO_PLAIN + "250-AUTH LOGIN PLAIN\r\n250 HELP\r\n"),
            ("STARTTLS", "503 5.5.1 Error: TLS already active\r\n"),
            ("AUTH", "501 5.5.4 Not enough value\r\n"),
            ("AUTH PLAIN a b", "501 5.5.4 Too many values\r\n"),
            ("AUTH CRAM-MD5", "504 5.5.4 Unrecognized authentication type\r\n"),
            ("AUTH PLAIN !!!", "501 5.5.2 Can't decode base64\r\n"),
            ("AUTH PLAIN " + b64("nonul"), "501 5.5.2 Can't split auth value\r\n"),
            (
                "AUTH PLAIN " + b64(f"\0{ALICE}\0wrong"),
                "535 5.7.8 Authentication credentials invalid\r\n",
            ),
            ("AUTH PLAIN", "334 \r\n"),
            ("*", "501 5.7.0 Auth aborted\r\n"),
            ("AUTH PLAIN", "334 \r\n"),
            ("!!", "501 5.5.2 Can't decode base64\r\n"),
            ("AUTH LOGIN", "334 VXNlciBOYW1lAA==\r\n"),
            (b64(ALICE), "334 UGFzc3dvcmQA\r\n"),
            (b64("wrong"), "535 5.7.8 Authentication credentials invalid\r\n"),
            ("AUTH LOGIN " + b64(ALICE), "334 UGFzc3dvcmQA\r\n"),
            ("*", "501 5.7.0 Auth aborted\r\n"),
            ("AUTH PLAIN " + b64(f"\0{ALICE}\0{PW}"), "235 2.7.0 Authentication successful\r\n"),
            ("AUTH PLAIN " + b64(f"\0{ALICE}\0{PW}"), "503 5.5.1 Already authenticated\r\n"),
            ("QUIT", "221 2.0.0 Bye\r\n"),
        ],
    ),
    (
        "submission",
        "starttls",
        [
            ("HELP", "530 5.7.0 Authentication required\r\n"),
            ("VRFY <a@b.test>", "530 5.7.0 Authentication required\r\n"),
            ("MAIL FROM:<a@b.test>", "503 5.5.1 Error: send HELO first\r\n"),
            ("EHLO c.test", EHLO_PLAIN + "250-STARTTLS\r\n250 HELP\r\n"),
            ("MAIL FROM:<a@b.test>", "530 5.7.0 Authentication required\r\n"),
            ("BDAT 0", "530 5.7.0 Authentication required\r\n"),
            (
                "AUTH PLAIN",
                "538 5.7.11 Encryption required for requested authentication mechanism\r\n",
            ),
            ("QUIT", "221 2.0.0 Bye\r\n"),
        ],
    ),
    (
        "submission",
        "implicit",
        [
            ("EHLO c.test", EHLO_PLAIN + "250-AUTH LOGIN PLAIN\r\n250 HELP\r\n"),
            ("STARTTLS", "503 5.5.1 Error: TLS already active\r\n"),
            ("HELP", "530 5.7.0 Authentication required\r\n"),
            ("AUTH LOGIN " + b64(ALICE), "334 UGFzc3dvcmQA\r\n"),
            (b64(PW), "235 2.7.0 Authentication successful\r\n"),
            ("HELP", f"250 2.0.0 Supported commands: {HELP_ALL}\r\n"),
            ("MAIL FROM:<alice@example.test>", "250 2.1.0 Sender OK\r\n"),
            ("QUIT", "221 2.0.0 Bye\r\n"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("role", "tls_mode", "steps"), CASES, ids=[f"{r}-{t}-{i}" for i, (r, t, _) in enumerate(CASES)]
)
async def test_every_reply_byte_for_byte(
    smtp_listener: StartSmtp, role: str, tls_mode: str, steps: list[tuple[str, str]]
) -> None:
    env = await smtp_listener(role, tls_mode=tls_mode)
    got = await dialogue(env, [s for s, _ in steps])
    assert got[0].startswith(f"220 {HOST} ")
    assert got[1:] == [r for s, r in steps if s != STARTTLS]
