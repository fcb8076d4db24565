"""NUL and control characters against the real SMTP listener: each command refused with its
named reply, nothing spooled, the session unchanged, the log line escaped."""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reference.log import FORMAT, EscapingFormatter
from reference.mail import replies
from reference.testing import ReferenceServer

if TYPE_CHECKING:
    from conftest import SmtpEnv, StartSmtp

ALICE, PW = "alice@example.test", "pw"
CONTROLS = ["\x00", "\x01", "\t", "\x0b", "\x0c", "\x1b", "\x7f"]


def reply_line(r: replies.Reply) -> str:
    return f"{r}\r\n"


@pytest.fixture
async def env(smtp_listener: StartSmtp) -> SmtpEnv:
    # Implicit TLS, so that AUTH is offered on the same listener as everything else.
    return await smtp_listener("mx", tls_mode="implicit")


@pytest.fixture
def smtp_log() -> Iterator[io.StringIO]:
    """What the listener logs, through the formatter ``log.setup`` installs."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(EscapingFormatter(FORMAT))
    logger = logging.getLogger("mailspec.smtp")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("ctl", CONTROLS)
async def test_every_command_refuses_a_control_character(env: SmtpEnv, ctl: str) -> None:
    arg = reply_line(replies.CONTROL_IN_ARGUMENT)
    c = await env.connect()
    # RFC 5321 4.1.2: the hello name, VRFY's and NOOP's strings, HELP's topic, the
    # parameters of MAIL and RCPT, AUTH's mechanism and response: 501 5.5.4.
    for line in (
        f"EHLO a{ctl}b.example.test",
        f"HELO a{ctl}b.example.test",
        f"EHLO client.example.test{ctl}",
        f"VRFY post{ctl}master",
        f"EXPN list{ctl}",
        f"HELP MAIL{ctl}",
        f"NOOP x{ctl}y",
        f"RSET {ctl}",
        f"STARTTLS {ctl}",
        f"AUTH PLAIN{ctl}",
        f"AUTH PLAIN {base64.b64encode(f'{chr(0)}{ALICE}{chr(0)}{PW}'.encode()).decode()}{ctl}",
        f"MAIL FROM:<> SIZE=10{ctl}",
    ):
        assert await c.cmd(line) == arg, repr(line)
    # The path of MAIL and of RCPT: 553 with the sender's or the recipient's enhanced code.
    sender = reply_line(replies.CONTROL_IN_SENDER)
    assert await c.cmd(f"MAIL FROM:<a{ctl}b@client.test>") == sender
    assert await c.cmd(f'MAIL FROM:<"a{ctl}b"@client.test>') == sender
    assert (await c.cmd("RCPT TO:<a@example.test>")).startswith("503 5.5.1")  # no MAIL took
    assert (await c.cmd("MAIL FROM:<s@client.test>")).startswith("250 ")
    assert await c.cmd(f"RCPT TO:<a{ctl}@example.test>") == reply_line(replies.CONTROL_IN_RECIPIENT)
    assert await c.cmd(f"RCPT TO:<a@example.test> NOTIFY=NEVER{ctl}") == arg
    assert (await c.cmd(f"DATA {ctl}")).startswith("501 5.5.4")
    assert (await c.cmd(f"BDAT 1{ctl}")).startswith("501 5.5.4")
    assert (await c.cmd(f"QUIT {ctl}")).startswith("501 5.5.4")
    assert (await c.cmd("NOOP")).startswith("250 ")  # the session goes on
    assert env.spool.entries() == []


async def test_refused_names_and_addresses_reach_no_envelope(env: SmtpEnv) -> None:
    c = await env.connect(ehlo="good.client.test")
    assert (await c.cmd("EHLO evil\x00.client.test")).startswith("501 ")
    assert (await c.cmd("MAIL FROM:<a\x00b@client.test>")).startswith("553 5.1.7 ")
    assert (await c.cmd("MAIL FROM:<s@client.test>")).startswith("250 ")
    assert (await c.cmd("RCPT TO:<a\x00b@example.test>")).startswith("553 5.1.3 ")
    assert (await c.cmd("RCPT TO:<a@example.test>")).startswith("250 ")
    assert (await c.cmd("DATA")).startswith("354")
    assert (await c.cmd("Subject: x\r\n\r\nbody\r\n.")).startswith("250 2.0.0 Ok: queued")
    (entry,) = env.spool.entries()
    assert entry.sender == "s@client.test"
    assert [r.address for r in entry.recipients] == ["a@example.test"]
    data = env.spool.read_message(entry.qid)
    # The refused EHLO left the session's name as it was: Received: carries the good one.
    assert b"Received: from good.client.test " in data
    assert b"\x00" not in data and b"evil" not in data


async def test_auth_identity_with_a_control_character_is_501(
    env: SmtpEnv, smtp_log: io.StringIO
) -> None:
    c = await env.connect()
    # In PLAIN a NUL is the separator (RFC 4616 2): one more does not split in three.
    token = base64.b64encode(f"\0ali\0ce@example.test\0{PW}".encode()).decode()
    assert (await c.cmd(f"AUTH PLAIN {token}")).startswith("501 5.5.2 ")
    for identity in ("ali\x01ce@example.test", "alice\x1b@example.test"):
        token = base64.b64encode(f"\0{identity}\0{PW}".encode()).decode()
        assert await c.cmd(f"AUTH PLAIN {token}") == reply_line(replies.CONTROL_IN_IDENTITY)
    token = base64.b64encode(f"\x7f\0{ALICE}\0{PW}".encode()).decode()  # in the authzid
    assert await c.cmd(f"AUTH PLAIN {token}") == reply_line(replies.CONTROL_IN_IDENTITY)
    login = base64.b64encode(b"alice\x01@example.test").decode()
    assert (await c.cmd(f"AUTH LOGIN {login}")).startswith("334 ")
    assert await c.cmd(base64.b64encode(PW.encode()).decode()) == reply_line(
        replies.CONTROL_IN_IDENTITY
    )
    token = base64.b64encode(f"\0{ALICE}\0{PW}".encode()).decode()
    assert (await c.cmd(f"AUTH PLAIN {token}")).startswith("235 2.7.0")
    log = smtp_log.getvalue()
    assert 'event=auth.refused mechanism=LOGIN user="alice\\x01@example.test"' in log
    assert "\x00" not in log and "\x01" not in log and "\x1b" not in log


async def test_the_refusal_is_logged_escaped_on_one_line(
    env: SmtpEnv, smtp_log: io.StringIO
) -> None:
    c = await env.connect()
    assert (await c.cmd("MAIL FROM:<a\x00b\x1b[2J@client.test>")).startswith("553 ")
    token = base64.b64encode(f"\0{ALICE}\0secret-{PW}".encode()).decode()
    assert (await c.cmd(f"AUTH PLAIN {token}\x0b")).startswith("501 ")
    lines = smtp_log.getvalue().splitlines()
    refused = [line for line in lines if "event=command.refused" in line]
    assert len(refused) == 2, lines
    assert refused[0].endswith('verb=MAIL arg="FROM:<a\\x00b\\x1b[2J@client.test>"')
    # An AUTH line carries credentials: which verb, never its argument.
    assert refused[1].endswith("verb=AUTH") and token not in smtp_log.getvalue()


def test_nothing_with_a_nul_is_delivered(tmp_path: Path) -> None:
    # End to end through the whole reference: the refused MAIL leaves no trace, and the
    # message that follows is delivered with a clean Return-Path.
    import socket

    with ReferenceServer(tmp_path / "var", overrides={"greylist.enabled": False}) as ref:
        ref.add_domain("example.test")
        ref.add_user(ALICE, PW)
        s = socket.create_connection(("127.0.0.1", ref.port("mx")), timeout=10)
        f = s.makefile("rb")

        def cmd(line: bytes) -> bytes:
            s.sendall(line + b"\r\n")
            reply = f.readline()
            while reply[3:4] == b"-":
                reply = f.readline()
            return reply

        assert f.readline().startswith(b"220 ")
        assert cmd(b"EHLO a\x00b.client.test").startswith(b"501 5.5.4 ")
        assert cmd(b"EHLO client.test").startswith(b"250 ")
        assert cmd(b"MAIL FROM:<a\x00b@client.test>").startswith(b"553 5.1.7 ")
        assert cmd(b"MAIL FROM:<ab@client.test>").startswith(b"250 ")
        assert cmd(b"RCPT TO:<alice@example.test>").startswith(b"250 ")
        assert cmd(b"DATA").startswith(b"354")
        assert cmd(b"Subject: nul\r\n\r\nbody\r\n.").startswith(b"250 ")
        cmd(b"QUIT")
        s.close()
        deadline = time.monotonic() + 10
        while not (messages := ref.mailbox_messages(ALICE)) and time.monotonic() < deadline:
            time.sleep(0.02)
        (msg,) = messages
        assert msg.startswith(b"Return-Path: <ab@client.test>\r\n")
        assert b"\x00" not in msg and b"a\x00b" not in msg


async def test_bytes_that_are_not_utf8_get_one_clean_reply(env: SmtpEnv) -> None:
    # Found by the fuzzed-command requirement: VRFY echoes its argument, and a byte that is
    # not UTF-8 (kept as a lone surrogate) broke the reply: 451 and a dropped session.
    c = await env.connect()
    for raw in (b"VRFY [\xa2", b"HELP \xff\xfe", b"NOOP \xc3"):
        c.writer.write(raw + b"\r\n")
        await c.writer.drain()
        reply = await c.reply()
        assert reply[:1] in ("2", "5") and reply.count("\r\n") == 1, (raw, reply)
    assert (await c.cmd("NOOP")).startswith("250 ")
