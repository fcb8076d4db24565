"""Walking skeleton: submission and MX mail land in bob's INBOX and are read over IMAP."""

from __future__ import annotations

import signal
import smtplib
import socket
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from imapclient import IMAPClient

from fakes.internet import FakeInternet
from fakes.mx import Policy, Rule
from reference.testing import write_config
from scenarios.conftest import Served, mailspec, serve


def message(sender: str, rcpt: str, subject: str) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, rcpt, subject
    m.set_content(f"{subject}\n")
    return m


def submit(served: Served, subject: str, rcpt: str = "bob@example.test") -> None:
    with smtplib.SMTP("127.0.0.1", served.ports["submission"], timeout=10) as s:
        s.ehlo("client.example.test")
        s.starttls(context=served.tls_context())
        s.ehlo("client.example.test")
        s.login("alice@example.test", "alice-pw")
        s.send_message(message("alice@example.test", rcpt, subject))


def fetch_inbox(served: Served, user: str, password: str, want: int) -> list[bytes]:
    deadline = time.monotonic() + 10
    while True:
        with IMAPClient("127.0.0.1", port=served.ports["imap"], ssl=False, timeout=10) as c:
            c.starttls(ssl_context=served.tls_context())
            c.login(user, password)
            c.select_folder("INBOX")
            ids = c.search("ALL")
            bodies = [d[b"RFC822"] for d in c.fetch(ids, ["RFC822"]).values()] if ids else []
        if len(bodies) >= want or time.monotonic() > deadline:
            return bodies
        time.sleep(0.05)


def test_submission_and_mx_mail_reach_imap(served: Served) -> None:
    # (a) submission: STARTTLS + AUTH PLAIN, 250 carries the queue id.
    with smtplib.SMTP("127.0.0.1", served.ports["submission"], timeout=10) as s:
        s.ehlo("client.example.test")
        s.starttls(context=served.tls_context())
        s.ehlo("client.example.test")
        s.login("alice@example.test", "alice-pw")
        s.mail("alice@example.test")
        s.rcpt("bob@example.test")
        code, reply = s.data(
            message("alice@example.test", "bob@example.test", "via submission").as_bytes(
                policy=SMTP
            )
        )
        assert code == 250
        assert b"queued as" in reply
    # (b) MX: a remote MTA delivers without AUTH.
    with smtplib.SMTP("127.0.0.1", served.ports["mx"], timeout=10) as s:
        s.ehlo("mta.remote.test")
        s.starttls(context=served.tls_context())
        s.ehlo("mta.remote.test")
        s.mail("carol@remote.test")
        code, _ = s.rcpt("bob@example.test")
        assert code == 250
        code, reply = s.data(
            message("carol@remote.test", "bob@example.test", "via mx").as_bytes(policy=SMTP)
        )
        assert code == 250 and b"queued as" in reply

    bodies = fetch_inbox(served, "bob@example.test", "bob-pw", want=2)
    subjects = sorted(b.split(b"Subject: ")[1].split(b"\r\n")[0] for b in bodies)
    assert subjects == [b"via mx", b"via submission"]
    for b in bodies:
        assert b.startswith(b"Return-Path: <")
        assert b"Received: from " in b
    assert served.stop() == 0


def test_unknown_user_and_open_relay_are_refused(served: Served) -> None:
    with smtplib.SMTP("127.0.0.1", served.ports["mx"], timeout=10) as s:
        s.ehlo("mta.remote.test")
        s.mail("carol@remote.test")
        code, text = s.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = s.rcpt("victim@elsewhere.test")
        assert (code, text[:5]) == (554, b"5.7.1")


def test_submission_needs_tls_and_auth(served: Served) -> None:
    with smtplib.SMTP("127.0.0.1", served.ports["submission"], timeout=10) as s:
        s.ehlo("client.example.test")
        assert not s.has_extn("auth")  # no AUTH offered before TLS
        code, _ = s.mail("alice@example.test")
        assert code == 530
        s.starttls(context=served.tls_context())
        s.ehlo("client.example.test")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("alice@example.test", "wrong")
        assert e.value.smtp_code == 535
        s.login("alice@example.test", "alice-pw")
        code, text = s.mail("bob@example.test")
        assert (code, text[:5]) == (553, b"5.7.1")


def test_implicit_tls_submission(served: Served) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", served.ports["submissions"], timeout=10, context=served.tls_context()
    ) as s:
        s.ehlo("client.example.test")
        s.login("bob@example.test", "bob-pw")
        s.send_message(message("bob@example.test", "alice@example.test", "over 465"))
    assert len(fetch_inbox(served, "alice@example.test", "alice-pw", want=1)) == 1


def test_every_port_greets(served: Served) -> None:
    ctx = served.tls_context()
    greetings = {"mx": b"220 ", "submission": b"220 ", "imap": b"* OK", "pop3": b"+OK"}
    for name, prefix in greetings.items():
        with socket.create_connection(("127.0.0.1", served.ports[name]), timeout=5) as sock:
            assert sock.recv(512).startswith(prefix), name
    tls_greetings = {"submissions": b"220 ", "imaps": b"* OK", "pop3s": b"+OK"}
    for name, prefix in tls_greetings.items():
        raw = socket.create_connection(("127.0.0.1", served.ports[name]), timeout=5)
        with ctx.wrap_socket(raw, server_hostname="mail.example.test") as sock:
            assert sock.recv(512).startswith(prefix), name
    print(f"startup took {served.startup_seconds:.2f}s")


def test_restart_delivers_what_was_queued(tmp_path: Path, data_dir: Path) -> None:
    # A remote MX tempfails, the server is stopped with the message queued, the MX heals,
    # and the restarted server delivers it: nothing queued is lost across a restart.
    with FakeInternet(providers=["gmail"]) as internet:
        gmail = internet.mx["gmail"]
        gmail.policy = Policy(rules=[Rule(stage="rcpt", action="451 4.3.0 try again later")])
        config = write_config(
            tmp_path / "relay.toml",
            dns={"nameservers": [internet.nameserver]},
            relay={"port": internet.smtp_port, "source_addresses": ["127.0.1.0/24"]},
            queue={"retry": ["1s"]},
        )
        mailspec("domain", "add", "example.test", data_dir=data_dir)
        mailspec("user", "add", "alice@example.test", "--password", "alice-pw", data_dir=data_dir)
        first = serve(data_dir, config)
        submit(first, "queued across a restart", rcpt="dave@gmail.test")
        gmail.wait_for(lambda m: len(m.attempts) >= 1)
        assert first.stop(signal.SIGINT) == 0
        spooled = list((data_dir / "spool").glob("*.json"))
        assert len(spooled) == 1
        gmail.policy = Policy.accept_all()
        again = serve(data_dir, config)
        try:
            gmail.wait_for(lambda m: len(m.deliveries) == 1, timeout=15)
            assert list(gmail.deliveries[0].rcpt_tos) == ["dave@gmail.test"]
            assert b"queued across a restart" in gmail.deliveries[0].data
            shown = mailspec("config", "show", data_dir=data_dir, config=config)
            assert 'hostname = "mail.example.test"' in shown
        finally:
            assert again.stop() == 0
