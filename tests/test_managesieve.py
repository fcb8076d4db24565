"""ManageSieve (RFC 5804) against sievelib's own client, and the wire details it hides."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from sievelib.managesieve import Client

from reference.testing import ReferenceServer

SCRIPT = 'require "fileinto";\r\nif header :contains "subject" "report" { fileinto "Reports"; }\r\n'


@pytest.fixture
def ref(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReferenceServer]:
    with ReferenceServer(tmp_path / "var") as server:
        server.add_domain("example.test")
        server.add_user("bob@example.test", "secret")
        # sievelib verifies the certificate with the default store: ours is self-signed.
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cafile))
        yield server


def client(ref: ReferenceServer) -> Client:
    c = Client("127.0.0.1", ref.port("managesieve"))
    assert c.connect("bob@example.test", "secret", starttls=True, authmech="PLAIN")
    return c


def test_sievelib_client_manages_scripts(ref: ReferenceServer) -> None:
    c = client(ref)
    assert "fileinto" in c.get_sieve_capabilities()
    assert c.havespace("filters", len(SCRIPT))
    assert c.checkscript(SCRIPT)
    assert not c.checkscript('fileinto "x";')  # fileinto not required
    assert c.putscript("filters", SCRIPT)
    assert c.putscript("other", "keep;")
    assert c.setactive("filters")
    assert c.listscripts() == ("filters", ["other"])
    assert c.getscript("filters").splitlines() == SCRIPT.splitlines()  # sievelib joins with LF
    assert ref.app.scripts.get("bob@example.test", "filters") == SCRIPT
    assert not c.deletescript("filters")  # RFC 5804 2.10: the active one stays
    assert c.renamescript("filters", "main")
    assert c.listscripts() == ("main", ["other"])
    assert c.deletescript("other")
    assert c.setactive("")
    assert c.listscripts() == (None, ["main"])
    c.logout()
    assert ref.app.scripts.names("bob@example.test") == ["main"]


def test_a_wrong_password_is_refused(ref: ReferenceServer) -> None:
    c = Client("127.0.0.1", ref.port("managesieve"))
    assert not c.connect("bob@example.test", "wrong", starttls=True, authmech="PLAIN")


def _lines(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """Up to and with the final OK, NO or BYE line; that line first, then the rest."""
    data = b""
    while True:
        lines = data.split(b"\r\n")
        for i, line in enumerate(lines[:-1]):
            if line[:2] in (b"OK", b"NO") or line[:3] == b"BYE":
                return b"\r\n".join([line, *lines[:i]])
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def test_authenticate_before_starttls_is_refused(ref: ReferenceServer) -> None:
    with socket.create_connection(("127.0.0.1", ref.port("managesieve")), timeout=5) as s:
        greeting = _lines(s)
        assert b'"STARTTLS"' in greeting and b'"SASL" ""' in greeting
        s.sendall(b'AUTHENTICATE "PLAIN" "AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0"\r\n')
        assert _lines(s).startswith(b"NO (ENCRYPT-NEEDED)")
        s.sendall(b'PUTSCRIPT "x" {5+}\r\nkeep;\r\n')
        assert _lines(s).startswith(b"NO")
        s.sendall(b"STARTTLS\r\n")
        assert _lines(s).startswith(b"OK")
        ctx = ssl.create_default_context(cafile=str(ref.cafile))
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            caps = _lines(t)  # RFC 5804 2.2: capabilities again, with SASL now
            assert b'"SASL" "PLAIN"' in caps and b"STARTTLS" not in caps
            t.sendall(b'AUTHENTICATE "PLAIN" "AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0"\r\n')
            assert _lines(t).startswith(b"OK")
            t.sendall(b'PUTSCRIPT "big" {70000+}\r\n' + b"#" * 70000 + b"\r\n")
            assert _lines(t).startswith(b"NO (QUOTA/MAXSIZE)")
            t.sendall(b'NOOP "tag1"\r\n')
            assert _lines(t).startswith(b'OK (TAG "tag1")')
            t.sendall(b"LOGOUT\r\n")
            assert _lines(t).startswith(b"OK")
