"""The raw SMTP client: reply parsing, syntax helpers, and behaviour against scripted servers."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conformance.smtp_client import (
    EhloResponse,
    Reply,
    SMTPClient,
    SMTPProtocolError,
    SMTPTimeout,
    dot_stuff,
    is_address_literal,
    is_domain,
    proxy_v1_header,
)
from reference.tls import self_signed, server_context

# -- values and parsers ------------------------------------------------------------------------


def test_parse_single_and_multiline() -> None:
    r = Reply.parse(b"250 2.1.0 Sender OK\r\n")
    assert (r.code, r.enhanced, r.lines) == (250, "2.1.0", ("2.1.0 Sender OK",))
    m = Reply.parse(b"250-mx.example\r\n250-SIZE 100\r\n250 8BITMIME\r\n")
    assert m.lines == ("mx.example", "SIZE 100", "8BITMIME")
    assert m.enhanced is None
    assert str(m) == "250 mx.example (+2 lines)"
    assert Reply.parse(b"250\r\n").lines == ("",)
    assert str(Reply.parse(b"250\r\n")) == "250"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"250 ok\n", "not terminated by CRLF"),
        (b"250 ok", "not terminated by CRLF"),
        (b"250-a\r\n251 b\r\n", "changes code from 250 to 251"),
        (b"250-a\r\n", "ends with a continuation line"),
        (b"25 ok\r\n", "not an SMTP reply line"),
        (b"250x ok\r\n", "not an SMTP reply line"),
        (b"250 a\r\n250 b\r\n", "data after the last line"),
    ],
)
def test_parse_refuses_malformed_replies(data: bytes, message: str) -> None:
    with pytest.raises(SMTPProtocolError, match=message):
        Reply.parse(data)


def test_reply_classes_and_expect() -> None:
    assert Reply(250, ("ok",)).positive
    assert Reply(354, ("go",)).intermediate
    assert Reply(451, ("later",)).transient
    assert Reply(550, ("no",)).permanent
    assert Reply(250, ("ok",)).expect(250, 251, doing="RCPT").code == 250
    with pytest.raises(AssertionError, match=r"^RCPT: expected 250 or 251, got 550 5\.1\.1 no$"):
        Reply(550, ("5.1.1 no",), "5.1.1").expect(250, 251, doing="RCPT")


def test_enhanced_code_needs_a_valid_class() -> None:
    assert Reply.parse(b"550 5.7.1 no\r\n").enhanced == "5.7.1"
    assert Reply.parse(b"550 3.7.1 no\r\n").enhanced is None
    assert Reply.parse(b"550 5.7.1x no\r\n").enhanced is None
    assert Reply.parse(b"221 2.0.0\r\n").enhanced == "2.0.0"


def test_ehlo_response() -> None:
    ehlo = EhloResponse.parse(
        Reply.parse(b"250-mx.example.test hi there\r\n250-size 1000\r\n250 STARTTLS\r\n")
    )
    assert ehlo.domain == "mx.example.test"
    assert ehlo.greeting == "hi there"
    assert ehlo.extensions == {"SIZE": ("1000",), "STARTTLS": ()}
    with pytest.raises(SMTPProtocolError, match="not an ehlo-keyword"):
        EhloResponse.parse(Reply.parse(b"250-mx\r\n250 -BAD\r\n"))
    with pytest.raises(SMTPProtocolError, match="not a positive EHLO reply"):
        EhloResponse.parse(Reply.parse(b"550 no\r\n"))


@pytest.mark.parametrize(
    ("text", "domain", "literal"),
    [
        ("mx.example.test", True, False),
        ("localhost", True, False),
        ("a-1.b", True, False),
        ("mx.example.test.", False, False),
        ("-mx.example", False, False),
        ("mx-.example", False, False),
        ("under_score.example", False, False),
        ("", False, False),
        ("[192.0.2.1]", False, True),
        ("[192.0.2.256]", False, False),
        ("[IPv6:2001:db8::1]", False, True),
        ("[IPv6:2001:db8::g]", False, False),
        ("[x-tag:abc]", False, True),
        ("192.0.2.1", True, False),
    ],
)
def test_syntax_helpers(text: str, domain: bool, literal: bool) -> None:
    assert is_domain(text) is domain
    assert is_address_literal(text) is literal


def test_dot_stuff() -> None:
    assert dot_stuff(b"a\r\n.b\r\n..c\r\n") == b"a\r\n..b\r\n...c\r\n"
    assert dot_stuff(b"no newline") == b"no newline\r\n"
    assert dot_stuff(b".") == b"..\r\n"


def test_proxy_header() -> None:
    assert proxy_v1_header(("192.0.2.1", 4000), ("127.0.0.1", 25)) == (
        b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 25\r\n"
    )
    assert proxy_v1_header(("2001:db8::1", 1), ("::1", 25)).startswith(b"PROXY TCP6 ")
    with pytest.raises(ValueError, match="one family"):
        proxy_v1_header(("2001:db8::1", 1), ("127.0.0.1", 25))


# -- against scripted servers ---------------------------------------------------------------


Script = Callable[[socket.socket], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Script], int]]:
    """Run ``script(conn)`` for one connection on a loopback port; returns the port."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []
    errors: list[BaseException] = []

    def start(script: Script) -> int:
        lsock = socket.create_server(("127.0.0.1", 0))
        listeners.append(lsock)

        def run() -> None:
            conn, _ = lsock.accept()
            conn.settimeout(5)
            try:
                script(conn)
            except BaseException as e:  # reported after the test
                errors.append(e)
            finally:
                conn.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)
        port: int = lsock.getsockname()[1]
        return port

    yield start
    for t in threads:
        t.join(5)
    for lsock in listeners:
        lsock.close()
    assert not errors, errors


def readline(conn: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf


def test_reply_split_across_packets(serve: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        for b in b"220-mx.example.test ESMTP\r\n220 ready\r\n":
            conn.sendall(bytes([b]))
        assert readline(conn) == b"NOOP\r\n"
        conn.sendall(b"250 2.0.0 OK\r\n")
        readline(conn)

    with SMTPClient.connect("127.0.0.1", serve(script), timeout=2) as client:
        assert client.greeting is not None
        assert client.greeting.lines == ("mx.example.test ESMTP", "ready")
        assert client.noop().enhanced == "2.0.0"
        assert client.transcript_text().splitlines() == [
            "S: 220-mx.example.test ESMTP",
            "S: 220 ready",
            "C: NOOP",
            "S: 250 2.0.0 OK",
        ]


def test_transcript_escapes_control_characters(serve: Callable[[Script], int]) -> None:
    # A test that sends a NUL must not make its own failure report binary (or an ESC drive
    # the terminal that shows it).
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx.example.test\r\n")
        readline(conn)
        conn.sendall(b"501 5.5.4 bad \x1b[2J\r\n")

    with SMTPClient.connect("127.0.0.1", serve(script), timeout=2) as client:
        client.command("NOOP a\x00b\tc")
        assert client.transcript_text().splitlines() == [
            "S: 220 mx.example.test",
            "C: NOOP a\\x00b\\x09c",
            "S: 501 5.5.4 bad \\x1b[2J",
        ]


def test_timeout_names_the_command(serve: Callable[[Script], int]) -> None:
    done = threading.Event()

    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx\r\n")
        readline(conn)
        done.wait(5)

    with SMTPClient.connect("127.0.0.1", serve(script), timeout=0.2) as client:
        with pytest.raises(SMTPTimeout, match=r"no reply to 'NOOP' within 0.2s"):
            client.noop()
        done.set()


def test_close_mid_reply_is_a_protocol_error(serve: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx\r\n")
        readline(conn)
        conn.sendall(b"250-partial\r\n")

    client = SMTPClient.connect("127.0.0.1", serve(script), timeout=2)
    with client, pytest.raises(SMTPProtocolError, match="connection closed while awaiting"):
        client.noop()


def test_bare_lf_reply_is_refused(serve: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx\n")

    with pytest.raises(SMTPProtocolError, match="not terminated by CRLF"):
        SMTPClient.connect("127.0.0.1", serve(script), timeout=2)


def test_overlong_line_is_bounded(serve: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        # The client may give up (and close) before all is sent, as it should.
        with contextlib.suppress(OSError):
            conn.sendall(b"220 " + b"x" * 200_000)

    with pytest.raises(SMTPProtocolError, match="longer than"):
        SMTPClient.connect("127.0.0.1", serve(script), timeout=2)


def test_quit_and_close_detection(serve: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx\r\n")
        assert readline(conn) == b"QUIT\r\n"
        conn.sendall(b"221 2.0.0 bye\r\n")

    with SMTPClient.connect("127.0.0.1", serve(script), timeout=2) as client:
        client.quit().expect(221, doing="QUIT")
        assert client.closed_by_peer(timeout=2)


def test_open_connection_is_not_closed(serve: Callable[[Script], int]) -> None:
    done = threading.Event()

    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx\r\n")
        done.wait(5)

    with SMTPClient.connect("127.0.0.1", serve(script), timeout=2) as client:
        assert not client.closed_by_peer(timeout=0.1)
        done.set()


def test_pending_shows_unrequested_data(serve: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx\r\n")
        readline(conn)
        conn.sendall(b"250 ok\r\n250 again\r\n")
        readline(conn)

    with SMTPClient.connect("127.0.0.1", serve(script), timeout=2) as client:
        client.noop().expect(250, doing="NOOP")
        assert client.pending(wait=1) == b"250 again\r\n"
        assert client.pending(wait=0.05) == b""
        client.send_line("QUIT")


def test_data_dot_stuffs_and_terminates(serve: Callable[[Script], int]) -> None:
    received: list[bytes] = []

    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx\r\n")
        assert readline(conn) == b"DATA\r\n"
        conn.sendall(b"354 go\r\n")
        while (line := readline(conn)) != b".\r\n":
            received.append(line)
        conn.sendall(b"250 2.0.0 queued as ABC\r\n")

    with SMTPClient.connect("127.0.0.1", serve(script), timeout=2) as client:
        reply = client.data(b"Subject: x\r\n\r\n.hidden\r\n")
        assert reply.code == 250
    assert received == [b"Subject: x\r\n", b"\r\n", b"..hidden\r\n"]


def test_preamble_goes_before_the_greeting(serve: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        assert readline(conn) == b"PROXY TCP4 192.0.2.9 127.0.0.1 1 25\r\n"
        conn.sendall(b"220 mx\r\n")

    header = proxy_v1_header(("192.0.2.9", 1), ("127.0.0.1", 25))
    with SMTPClient.connect("127.0.0.1", serve(script), timeout=2, preamble=header) as client:
        assert client.greeting is not None and client.greeting.code == 220


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    self_signed("mx.example.test", d / "cert.pem", d / "key.pem")
    return d / "cert.pem", d / "key.pem"


def test_starttls_upgrades_the_same_connection(
    serve: Callable[[Script], int], tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    server_ctx = server_context(cert, key)

    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx\r\n")
        assert readline(conn) == b"STARTTLS\r\n"
        conn.sendall(b"220 2.0.0 go ahead\r\n")
        tls = server_ctx.wrap_socket(conn, server_side=True)
        assert readline(tls) == b"EHLO [127.0.0.1]\r\n"
        tls.sendall(b"250-mx.example.test\r\n250 AUTH PLAIN\r\n")
        readline(tls)
        tls.close()

    client_ctx = ssl.create_default_context(cafile=str(cert))
    with SMTPClient.connect("127.0.0.1", serve(script), timeout=2) as client:
        client.starttls(client_ctx, "mx.example.test").expect(220, doing="STARTTLS")
        assert client.tls_active
        client.ehlo().expect(250, doing="EHLO")
        assert "AUTH" in client.extensions
        client.send_line("QUIT")


def test_starttls_injection_is_detected(serve: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx\r\n")
        readline(conn)
        # A reply smuggled before the handshake, as a vulnerable server would let through.
        conn.sendall(b"220 go ahead\r\n250 injected\r\n")

    client = SMTPClient.connect("127.0.0.1", serve(script), timeout=2)
    with client, pytest.raises(SMTPProtocolError, match="data after its 220 to STARTTLS"):
        client.starttls(ssl.create_default_context())
