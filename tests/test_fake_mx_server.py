"""The fake MX over real sockets: recording, reputation by source, greylisting, faults, TLS."""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aiosmtplib
import pytest

from fakes.mx import Category, FakeMX, Greylist, HangUp, Policy, Rule, catalogue
from fakes.mx.fixtures import fake_mx  # noqa: F401 - the fixture under test
from reference.clock import ManualClock

MESSAGE = b"From: alice@example.test\r\nTo: bob@gmail.test\r\nSubject: hi\r\n\r\nHello.\r\n"
NO_VERIFY = ssl._create_unverified_context()  # the fake's certificate is self-signed


@contextmanager
def client(mx: FakeMX, source: str = "127.0.0.1") -> Iterator[smtplib.SMTP]:
    """An SMTP client connected from ``source`` (a loopback address) to ``mx``."""
    smtp = smtplib.SMTP(mx.host, mx.port, source_address=(source, 0), timeout=5)
    try:
        yield smtp
    finally:
        smtp.close()


def closed(n: int) -> Callable[[FakeMX], bool]:
    """A wait_for predicate: n sessions have ended."""
    return lambda mx: sum(a.closed for a in mx.attempts) >= n


def send(
    mx: FakeMX, source: str = "127.0.0.1", rcpt: str = "bob@gmail.test"
) -> dict[str, tuple[int, bytes]]:
    with client(mx, source) as smtp:
        refused = smtp.sendmail("alice@example.test", [rcpt], MESSAGE)
        smtp.quit()
    return refused


def test_delivery_is_recorded_with_envelope_parameters_and_tls(fake_mx: FakeMX) -> None:  # noqa: F811
    with client(fake_mx, "127.0.1.9") as smtp:
        smtp.ehlo("relay.example.test")
        assert smtp.has_extn("enhancedstatuscodes") and smtp.has_extn("pipelining")
        assert not smtp.has_extn("auth")
        smtp.starttls(context=NO_VERIFY)
        smtp.ehlo("relay.example.test")
        options = ["SIZE=77", "BODY=8BITMIME", "SMTPUTF8", "RET=HDRS", "ENVID=Q.x1"]
        assert smtp.mail("alice@example.test", options) == (250, b"2.1.0 OK")
        assert smtp.rcpt("bob@gmail.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;b@g"])[0] == 250
        assert smtp.rcpt("carol@gmail.test")[0] == 250
        code, text = smtp.data(MESSAGE + b".leading dot\r\n")
        smtp.quit()
    assert code == 250 and text.startswith(b"2.0.0 OK queued as ")
    [d] = fake_mx.deliveries
    assert (d.source, d.helo, d.tls, d.mail_from) == (
        "127.0.1.9",
        "relay.example.test",
        True,
        "alice@example.test",
    )
    assert d.rcpt_tos == ("bob@gmail.test", "carol@gmail.test")
    assert d.data == MESSAGE + b".leading dot\r\n"  # dot-stuffing undone (RFC 5321 4.5.2)
    assert d.mail_options == ("SIZE=77", "BODY=8BITMIME", "SMTPUTF8", "RET=HDRS", "ENVID=Q.x1")
    assert d.rcpt_options == {
        "bob@gmail.test": ("NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;b@g"),
        "carol@gmail.test": (),
    }
    assert text.decode().endswith(d.queue_id)
    assert d.message["Subject"] == "hi"
    fake_mx.wait_for(closed(1))
    [attempt] = fake_mx.attempts
    assert attempt.outcome == "delivered" and attempt.queue_ids == (d.queue_id,)
    assert attempt.tls and attempt.stage == "data" and not attempt.refusals


def test_null_sender_unknown_parameters_and_protocol_errors(fake_mx: FakeMX) -> None:  # noqa: F811
    with client(fake_mx) as smtp:
        smtp.ehlo("relay.example.test")
        assert smtp.docmd("DATA")[0] == 503
        assert smtp.mail("<>", ["XFOO=1"])[0] == 555
        assert smtp.docmd("RCPT TO:<bob@gmail.test>") == (503, b"5.5.1 Error: need MAIL command")
        assert smtp.mail("<>") == (250, b"2.1.0 OK")
        assert smtp.mail("<>")[0] == 503
        assert smtp.rcpt("bob@gmail.test", ["XBAR"])[0] == 555
        assert smtp.rcpt("bob@gmail.test")[0] == 250
        assert smtp.data(MESSAGE)[0] == 250
    assert fake_mx.deliveries[0].mail_from == ""


def test_same_message_rejected_by_reputation_from_one_source_and_accepted_from_another() -> None:
    policy = Policy([Rule("rcpt", "gmail.reputation.5xx", source="127.0.1.0/28", name="bad ips")])
    with FakeMX("127.0.2.1", 0, policy, name="gmail", hostname="mx.gmail.test") as mx:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(mx, "127.0.1.5")
        assert send(mx, "127.0.1.77") == {}
        mx.wait_for(closed(2))
        code, text = refused.value.recipients["bob@gmail.test"]
        assert code == 550 and text.startswith(b"5.7.1 [127.0.1.5] Our system has detected")
        assert [(d.source, d.rcpt_tos) for d in mx.deliveries] == [
            ("127.0.1.77", ("bob@gmail.test",))
        ]
        bad, good = mx.attempts
        assert (bad.source, bad.outcome, bad.stage) == ("127.0.1.5", "rejected", "rcpt")
        assert (good.source, good.outcome) == ("127.0.1.77", "delivered")
        [refusal] = bad.refusals
        assert refusal.rule == "bad ips" and refusal.argument == "bob@gmail.test"
        assert refusal.reply is not None and refusal.reply.name == "gmail.reputation.5xx"
        assert (refusal.reply.code, refusal.reply.enhanced) == (550, "5.7.1")
        assert catalogue.get(refusal.reply.name).category is Category.REPUTATION


def test_greylisting_passes_after_the_delay_on_the_injected_clock() -> None:
    clock = ManualClock()
    with FakeMX("127.0.0.1", 0, Policy([Rule("rcpt", Greylist(300))]), clock) as mx:
        for wait in (0, 299):
            clock.advance(wait)
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                send(mx)
            assert refused.value.recipients["bob@gmail.test"][0] == 451
            assert refused.value.recipients["bob@gmail.test"][1].startswith(b"4.7.1 ")
        clock.advance(1)
        assert send(mx) == {}
        assert mx.deliveries[0].time == clock.now()
        with pytest.raises(smtplib.SMTPRecipientsRefused):  # a new triplet starts again
            send(mx, rcpt="carol@gmail.test")
        mx.clear()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(mx)
        assert mx.deliveries == []


@pytest.mark.parametrize("name", ["tempfail.421", "tempfail.450", "tempfail.451", "tempfail.452"])
def test_tempfail_at_rcpt_and_421_closes_the_connection(name: str) -> None:
    entry = catalogue.get(name)
    with FakeMX("127.0.0.1", 0, Policy([Rule("rcpt", name)])) as mx, client(mx) as smtp:
        smtp.ehlo("relay.example.test")
        smtp.mail("alice@example.test")
        code, text = smtp.rcpt("bob@gmail.test")
        assert (code, text.split()[0].decode()) == (entry.code, entry.enhanced)
        if entry.code == 421:  # RFC 5321 3.8
            with pytest.raises(smtplib.SMTPServerDisconnected):
                smtp.rset()
        else:
            assert smtp.rset()[0] == 250
        mx.wait_for(lambda mx: mx.attempts[0].outcome == "tempfailed")


def test_connect_rejection_answers_503_until_quit() -> None:
    policy = Policy([Rule("connect", "spamhaus.zen.5xx", source="127.0.1.66")])
    with FakeMX("127.0.0.1", 0, policy) as mx:
        with pytest.raises(smtplib.SMTPConnectError) as error:
            smtplib.SMTP(mx.host, mx.port, source_address=("127.0.1.66", 0), timeout=5)
        assert error.value.smtp_code == 554 and b"zen.spamhaus.org" in error.value.smtp_error
        with socket.create_connection((mx.host, mx.port), 5, ("127.0.1.66", 0)) as raw:
            reader = raw.makefile("rb")
            assert reader.readline().startswith(b"554 5.7.1 Service unavailable; Client host")
            raw.sendall(b"EHLO relay.example.test\r\nQUIT\r\n")
            assert reader.readline().startswith(b"503 5.5.1 ")
            assert reader.readline().startswith(b"221 ")
            assert reader.readline() == b""
            reader.close()
        assert send(mx, "127.0.1.67") == {}
        mx.wait_for(closed(3))
        assert [a.outcome for a in mx.attempts] == ["rejected", "rejected", "delivered"]
        assert mx.attempts[0].stage == "connect"


def test_ehlo_refusal_keeps_mail_out() -> None:
    policy = Policy([Rule("ehlo", "550 5.7.1 Go away")])
    with FakeMX("127.0.0.1", 0, policy) as mx, client(mx) as smtp:
        assert smtp.ehlo("relay.example.test") == (550, b"5.7.1 Go away")
        assert smtp.helo("relay.example.test") == (550, b"5.7.1 Go away")
        assert smtp.docmd("MAIL FROM:<a@b.test>")[0] == 503


@pytest.mark.parametrize(
    ("stage", "after"), [("data", 100), ("data", 0), ("rcpt", 0), ("connect", 0)]
)
def test_hang_up_without_a_reply(stage: str, after: int) -> None:
    big = MESSAGE + b"x" * 5000 + b"\r\n"
    policy = Policy([Rule(stage, HangUp(after))])  # type: ignore[arg-type]
    with FakeMX("127.0.0.1", 0, policy) as mx:
        with pytest.raises(smtplib.SMTPServerDisconnected), client(mx) as smtp:
            smtp.sendmail("alice@example.test", ["bob@gmail.test"], big)
        mx.wait_for(closed(1))
        [attempt] = mx.attempts
        assert attempt.outcome == "hangup" and attempt.stage == stage
        assert attempt.events[-1].reply is None and mx.deliveries == []


def test_starttls_can_be_withheld_and_required() -> None:
    policy = Policy([Rule("mail", "gmail.tls.5xx", tls=False)])
    with FakeMX("127.0.0.1", 0, policy) as with_tls, client(with_tls) as smtp:
        smtp.ehlo("relay.example.test")
        assert smtp.mail("alice@example.test")[0] == 530
        smtp.starttls(context=NO_VERIFY)
        smtp.ehlo("relay.example.test")
        assert not smtp.has_extn("starttls")
        assert smtp.mail("alice@example.test")[0] == 250
    with FakeMX("127.0.0.1", 0, starttls=False) as plain, client(plain) as smtp:
        smtp.ehlo("relay.example.test")
        assert not smtp.has_extn("starttls")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.starttls()
        smtp.sendmail("alice@example.test", ["bob@gmail.test"], MESSAGE)
        assert plain.deliveries[0].tls is False


def test_two_fake_mxs_share_one_port_on_different_addresses() -> None:
    gmail = FakeMX("127.0.2.1", 0, name="gmail").start()
    with gmail, FakeMX("127.0.2.2", gmail.port, name="outlook") as outlook:
        assert outlook.port == gmail.port
        send(gmail, rcpt="bob@gmail.test")
        send(outlook, rcpt="bob@outlook.test")
        assert [d.rcpt_tos for d in gmail.deliveries] == [("bob@gmail.test",)]
        assert [d.rcpt_tos for d in outlook.deliveries] == [("bob@outlook.test",)]
        assert {d.mx for d in gmail.deliveries + outlook.deliveries} == {"gmail", "outlook"}


def test_smarthost_requires_auth() -> None:
    with FakeMX("127.0.0.1", 0, Policy.accept_all({"relay": "secret"})) as smarthost:
        with client(smarthost) as smtp:
            smtp.ehlo("relay.example.test")
            assert smtp.mail("alice@example.test")[0] == 530
            smtp.starttls(context=NO_VERIFY)
            smtp.ehlo("relay.example.test")
            with pytest.raises(smtplib.SMTPAuthenticationError):
                smtp.login("relay", "wrong")
            smtp.login("relay", "secret")
            smtp.sendmail("alice@example.test", ["bob@yahoo.test"], MESSAGE)
        assert smarthost.deliveries[0].auth_user == "relay"
        smarthost.policy = Policy(auth={"relay": "secret"}, auth_require_tls=False)
        with client(smarthost) as smtp:
            smtp.ehlo("relay.example.test")
            assert smtp.has_extn("auth")
            smtp.login("relay", "secret")
            assert smtp.mail("alice@example.test")[0] == 250


def test_pipelined_commands_and_utf8_addresses_are_answered_in_order(
    fake_mx: FakeMX,  # noqa: F811
) -> None:
    with socket.create_connection((fake_mx.host, fake_mx.port), 5) as raw:
        reader = raw.makefile("rb")
        reader.readline()
        raw.sendall(b"EHLO relay.example.test\r\n")
        while reader.readline()[3:4] == b"-":
            pass
        raw.sendall(
            "MAIL FROM:<jörg@example.test> SMTPUTF8\r\nRCPT TO:<bob@gmail.test>\r\n"
            "RCPT TO:<ünï@gmail.test>\r\nDATA\r\n".encode()
        )
        replies = [reader.readline()[:3] for _ in range(4)]
        assert replies == [b"250", b"250", b"250", b"354"]
        raw.sendall(b"Subject: hi\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        assert reader.readline().startswith(b"250 2.0.0 ")
        assert reader.readline().startswith(b"221")
        reader.close()
    [d] = fake_mx.deliveries
    assert d.mail_from == "jörg@example.test" and d.rcpt_tos[1] == "ünï@gmail.test"
    assert d.mail_options == ("SMTPUTF8",)


def test_slow_reply_and_policy_swapped_while_running(fake_mx: FakeMX) -> None:  # noqa: F811
    # Real delay: it stands for network latency, which clients time in real time.
    fake_mx.policy = Policy([Rule("rcpt", "accept", delay=0.3)])
    with client(fake_mx) as smtp:
        smtp.ehlo("relay.example.test")
        smtp.mail("alice@example.test")
        started = time.monotonic()
        assert smtp.rcpt("bob@gmail.test")[0] == 250
        assert time.monotonic() - started >= 0.3
        fake_mx.policy = Policy([Rule("rcpt", "gmail.nouser.5xx")])
        assert smtp.rcpt("carol@gmail.test")[:1] == (550,)
    with pytest.raises(TypeError):
        fake_mx.policy = "accept"  # type: ignore[assignment]


def test_a_2xx_rule_reply_replaces_the_text() -> None:
    policy = Policy([Rule("data", "250 2.0.0 OK 1767225600 x1si - gsmtp")])
    with FakeMX("127.0.0.1", 0, policy) as mx, client(mx) as smtp:
        smtp.ehlo("relay.example.test")
        smtp.mail("alice@example.test")
        smtp.rcpt("bob@gmail.test")
        assert smtp.data(MESSAGE) == (250, b"2.0.0 OK 1767225600 x1si - gsmtp")
        assert len(mx.deliveries) == 1


async def test_usable_from_async_tests_with_aiosmtplib() -> None:
    policy = Policy([Rule("rcpt", "yahoo.reputation.4xx", source="127.0.1.5")])
    with FakeMX("127.0.2.3", 0, policy, name="yahoo", hostname="mx.yahoo.test") as mx:
        smtp = aiosmtplib.SMTP(
            hostname=mx.host,
            port=mx.port,
            source_address=("127.0.1.5", 0),
            local_hostname="relay.example.test",
            start_tls=False,
            timeout=5,
        )
        await smtp.connect()
        await smtp.ehlo()
        await smtp.starttls(tls_context=NO_VERIFY)
        await smtp.ehlo()
        await smtp.mail("alice@example.test")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await smtp.rcpt("bob@yahoo.test")
        smtp.close()  # the 421 closed the connection (RFC 5321 3.8)
        assert (
            refused.value.code == 421 and "[TSS04] Messages from 127.0.1.5" in refused.value.message
        )
        await mx.wait_for_async(closed(1))
        assert mx.attempts[0].tls and mx.attempts[0].outcome == "tempfailed"


def test_start_errors_and_stop_leak_nothing() -> None:
    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    mx = FakeMX("127.0.0.1", 0).start()
    with pytest.raises(RuntimeError, match="already started"):
        mx.start()
    with pytest.raises(OSError):
        FakeMX("127.0.0.1", mx.port).start()
    idle = socket.create_connection((mx.host, mx.port), 5)  # a session left open by a client
    idle.recv(100)
    mx.stop()
    mx.stop()  # twice is fine
    assert idle.recv(100) == b""  # the server closed it
    idle.close()
    assert threading.active_count() == threads
    assert len(os.listdir("/proc/self/fd")) == fds
    with pytest.raises(TimeoutError):
        mx.wait_for(lambda mx: bool(mx.deliveries), timeout=0.01)
