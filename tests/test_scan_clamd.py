"""The clamd client and the antivirus check against a real clamd with our own signatures."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from reference.policy import Action, Session
from reference.policy.antivirus import Antivirus
from reference.scan.clamd import ClamdClient
from reference.testing import EICAR, VIRUS_MARKER, ClamdServer


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
    r = await av.data(mx, "a@remote.test", ["bob@example.test"], mail_with(EICAR))
    assert r.action is Action.REJECT and r.reply is not None
    assert (r.reply.code, r.reply.enhanced) == (554, "5.7.1")
    assert "Mailspec.Test.EICAR" in r.reply.text
    r = await av.data(sub, "alice@example.test", ["x@y.test"], mail_with(EICAR))
    assert r.reply is not None and r.reply.code == 550 and "virus" in r.reply.text
    clean = await av.data(mx, "a@remote.test", ["bob@example.test"], mail_with(b"hello"))
    assert clean.action is Action.CONTINUE
    dead = Antivirus(ClamdClient(f"{tmp_path}/no.sock", timeout=1))
    r = await dead.data(mx, "a@remote.test", ["bob@example.test"], b"x")
    assert r.action is Action.TEMPFAIL and r.reply is not None and r.reply.code == 451
