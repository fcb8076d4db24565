"""The clamd client and the antivirus check against a real clamd with our own signatures."""

from __future__ import annotations

import logging
import smtplib
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from reference.policy import Action, Session, transaction
from reference.policy.antivirus import Antivirus, Unscanned
from reference.scan.clamd import ClamdClient
from reference.testing import EICAR, VIRUS_MARKER, ClamdServer, ReferenceServer


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    with ClamdServer(tmp_path_factory.mktemp("clamd")) as server:
        yield server


def mail_with(attachment: bytes) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "a@remote.test", "bob@example.test", "see attached"
    m.set_content("hello")
    m.add_attachment(
        attachment, maintype="application", subtype="octet-stream", filename="file.bin"
    )
    return m.as_bytes()


async def test_clean_and_infected(clamd: ClamdServer) -> None:
    client = ClamdClient(clamd.address)
    assert await client.ping()
    assert (await client.scan(b"just text")).status == "clean"
    found = await client.scan(mail_with(EICAR))  # base64 inside MIME: clamd decodes it
    assert found.infected and found.name.startswith("Mailspec.Test.EICAR")
    marker = await client.scan(b"plain " + VIRUS_MARKER + b" text")
    assert marker.infected and "Marker" in marker.name


async def test_large_input_streams_in_chunks(clamd: ClamdServer) -> None:
    client = ClamdClient(clamd.address)
    big = b"A" * (3 << 20) + VIRUS_MARKER
    assert (await client.scan(big)).infected
    assert (await ClamdClient(clamd.address, max_size=1024).scan(big)).status == "error"


async def test_dead_clamd_is_an_error_not_a_crash() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await ClamdClient(f"127.0.0.1:{port}", timeout=2).scan(b"x")
    assert result.status == "error" and "unreachable" in result.name


async def test_antivirus_check_replies(clamd: ClamdServer, tmp_path: Path) -> None:
    av = Antivirus(ClamdClient(clamd.address))
    mx = Session(role="mx", peer="203.0.113.5")
    sub = Session(role="submission", peer="127.0.0.1", user="alice@example.test")
    r = await av.data(transaction(mx, "a@remote.test", ["bob@example.test"], mail_with(EICAR)))
    assert r.action is Action.REJECT and r.reply is not None
    assert (r.reply.code, r.reply.enhanced) == (554, "5.7.1")
    assert "Mailspec.Test.EICAR" in r.reply.text
    r = await av.data(transaction(sub, "alice@example.test", ["x@y.test"], mail_with(EICAR)))
    assert r.reply is not None and r.reply.code == 550 and "virus" in r.reply.text
    clean = await av.data(
        transaction(mx, "a@remote.test", ["bob@example.test"], mail_with(b"hello"))
    )
    assert clean.action is Action.CONTINUE
    dead = Antivirus(ClamdClient(f"{tmp_path}/no.sock", timeout=1))
    r = await dead.data(transaction(mx, "a@remote.test", ["bob@example.test"], b"x"))
    assert r.action is Action.TEMPFAIL and r.reply is not None and r.reply.code == 451


# -- no scanner configured: nothing claimed, and said loudly --------------------------------


async def test_unscanned_flags_the_eicar_file_and_refuses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = Unscanned()
    mx = Session(role="mx", peer="203.0.113.5")
    raw = b"Subject: test\r\n\r\n" + EICAR + b"\r\n"  # typed by hand: the body is the file
    with caplog.at_level(logging.INFO, logger="mailspec.antivirus"):
        for msg in (mail_with(EICAR), raw):  # base64 attachment, then 7bit
            r = await check.data(
                transaction(mx, "a@remote.test", ["bob@example.test"], msg, qid="Q1")
            )
            # Refusing it here would look like a scan that catches viruses, while every
            # real one passes.
            assert r.action is Action.CONTINUE and not r.prepend_headers
        clean = await check.data(
            transaction(mx, "a@remote.test", ["bob@example.test"], mail_with(b"hi"))
        )
        assert clean.action is Action.CONTINUE
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for record in warnings:
        text = record.getMessage()
        assert "event=virus.unscanned" in text and "qid=Q1" in text
        assert "no scanner is configured (antivirus.clamd)" in text


def test_reference_without_a_scanner_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: 250, delivered to Junk as an executable attachment, and not a word about virus
    # scanning in the log.
    with (
        caplog.at_level(logging.INFO, logger="mailspec"),
        ReferenceServer(tmp_path) as server,
    ):
        server.add_domain("example.test")
        server.add_user("bob@example.test", "pw-bob-123456789")
        with smtplib.SMTP("127.0.0.1", server.port("mx"), timeout=10) as c:
            refused = c.sendmail(
                "a@remote.test", ["bob@example.test"], mail_with(EICAR).replace(b"\n", b"\r\n")
            )
        assert refused == {}
        server.wait_delivered()
        (stored,) = [
            m
            for folder in ("INBOX", "Junk")
            for m in server.mailbox_messages("bob@example.test", folder)
        ]
    # No header claims a virus scan that did not happen.
    head = stored.split(b"\r\n\r\n", 1)[0].lower()
    assert b"virus" not in head and b"clamav" not in head
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(
        level == logging.WARNING and "event=antivirus.off" in text for level, text in lines
    ), "start-up warning"
    unscanned = [text for level, text in lines if "event=virus.unscanned" in text]
    assert len(unscanned) == 1
    queued = next(text for _, text in lines if "event=queued" in text)
    qid = queued.split("qid=")[1].split()[0]
    assert f"qid={qid}" in unscanned[0]


async def test_scans_share_a_session_and_survive_a_clamd_restart(tmp_path: Path) -> None:
    """Scans reuse an IDSESSION connection; when clamd closed it meanwhile (a restart), the
    next scan opens a new one instead of failing."""
    with ClamdServer(tmp_path / "one") as first:
        client = ClamdClient(first.address)
        for _ in range(3):
            assert (await client.scan(b"plain " + VIRUS_MARKER)).infected
        assert len(client._idle) == 1  # one session served all three
        port = first.port
    with ClamdServer(tmp_path / "two", port=port):
        assert (await client.scan(b"just text")).status == "clean"
        assert (await client.scan(b"plain " + VIRUS_MARKER)).infected
    client.close()
    assert client._idle == []
