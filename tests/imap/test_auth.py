"""STARTTLS, LOGIN and AUTHENTICATE: TLS first, SASL PLAIN and LOGIN, failures and lockout."""

from __future__ import annotations

import base64

from .support import ALICE, Raw, Start


async def test_plaintext_login_and_authenticate_refused_before_tls(start: Start) -> None:
    raw = await Raw.connect(await start())
    assert (await raw.command(b"LOGIN alice@example.org x"))[-1].startswith(
        b"t NO [PRIVACYREQUIRED]"
    )
    plain = base64.b64encode(b"\0alice@example.org\0correct horse")
    assert (await raw.command(b"AUTHENTICATE PLAIN " + plain))[-1].startswith(
        b"t NO [PRIVACYREQUIRED]"
    )
    assert (await raw.command(b"SELECT INBOX"))[-1].startswith(b"t BAD")


async def test_starttls_discards_pipelined_commands(start: Start) -> None:
    """RFC 3501 6.2.1: commands injected behind STARTTLS must not run after the handshake."""
    env = await start()
    raw = await Raw.connect(env)
    await raw.send(b's STARTTLS\r\ni1 LOGIN alice@example.org "correct horse"\r\ni2 CAPABILITY\r\n')
    assert (await raw.line()).startswith(b"s OK")
    await raw.writer.start_tls(env.client_context(), server_hostname="localhost")
    lines = await raw.command(b"NOOP", b"n")
    assert lines == [b"n OK NOOP completed\r\n"]  # nothing for i1 or i2
    assert (await raw.command(b"SELECT INBOX"))[-1].startswith(b"t BAD")  # not logged in


async def test_starttls_twice_is_refused(start: Start) -> None:
    env = await start()
    raw = await Raw.connect(env)
    await raw.starttls(env)
    caps = await raw.command(b"CAPABILITY")
    assert caps[0] == (
        b"* CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE AUTH=PLAIN"
        b" AUTH=LOGIN\r\n"
    )
    assert (await raw.command(b"STARTTLS"))[-1].startswith(b"t BAD")


async def test_authenticate_plain_initial_response_and_continuation(start: Start) -> None:
    env = await start()
    raw = await Raw.connect(env)
    await raw.starttls(env)
    wrong = base64.b64encode(b"\0alice@example.org\0nope")
    assert (await raw.command(b"AUTHENTICATE PLAIN " + wrong))[-1].startswith(
        b"t NO [AUTHENTICATIONFAILED]"
    )
    await raw.send(b"c AUTHENTICATE PLAIN\r\n")
    assert await raw.line() == b"+ \r\n"
    await raw.send(b"*\r\n")
    assert (await raw.line()).startswith(b"c BAD")
    await raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert await raw.line() == b"+ \r\n"
    await raw.send(base64.b64encode(b"alice@example.org\0Alice@Example.org\0correct horse"))
    await raw.send(b"\r\n")
    assert (await raw.line()).startswith(b"a OK [CAPABILITY IMAP4rev1")


async def test_authenticate_refuses_another_authorization_identity(start: Start) -> None:
    env = await start()
    raw = await Raw.connect(env)
    await raw.starttls(env)
    other = base64.b64encode(b"bob@example.org\0alice@example.org\0correct horse")
    assert (await raw.command(b"AUTHENTICATE PLAIN " + other))[-1].startswith(
        b"t NO [AUTHORIZATIONFAILED]"
    )


async def test_three_failed_logins_end_the_session(start: Start) -> None:
    raw = await Raw.connect(await start(allow_plaintext=True))
    for _ in range(2):
        assert (await raw.command(b"LOGIN alice@example.org x"))[-1].startswith(b"t NO")
    lines = [(await raw.command(b"LOGIN alice@example.org x"))[-1], await raw.line()]
    assert lines[0].startswith(b"t NO [AUTHENTICATIONFAILED]") and lines[1].startswith(b"* BYE")
    assert await raw.closed()


async def test_authenticate_login(start: Start) -> None:
    env = await start(allow_plaintext=True)
    raw = await Raw.connect(env)
    await raw.send(b"a AUTHENTICATE LOGIN\r\n")
    assert await raw.line() == b"+ " + base64.b64encode(b"Username:") + b"\r\n"
    await raw.send(base64.b64encode(ALICE.encode()) + b"\r\n")
    assert await raw.line() == b"+ " + base64.b64encode(b"Password:") + b"\r\n"
    await raw.send(base64.b64encode(b"correct horse") + b"\r\n")
    assert (await raw.line()).startswith(b"a OK [CAPABILITY ")
