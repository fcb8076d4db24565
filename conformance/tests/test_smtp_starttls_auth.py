"""STARTTLS (RFC 3207), AUTH (RFC 4954), submission (RFC 6409) and implicit TLS (RFC 8314)."""

from __future__ import annotations

import base64
import ssl

from conformance.plugin import SMTPConnector
from conformance.requirements import requirement
from conformance.smtp_client import Reply, SMTPClient, SMTPProtocolError
from conformance.target import Target
from conformance.tests.support import (
    QUIET,
    login,
    marker,
    message,
    no_transaction,
    postmaster,
    require_extension,
)


def with_starttls(smtp: SMTPConnector, role: str = "smtp") -> SMTPClient:
    """A session past EHLO on ``role``; not applicable unless STARTTLS is offered."""
    client = smtp.session(role)
    require_extension(client, "STARTTLS")
    return client


def tls_handshake(target: Target, client: SMTPClient, pipelined: bytes = b"") -> Reply:
    """STARTTLS on ``client`` and, on 220, the handshake (the certificate is verified)."""
    ep = target.endpoint(client.name)
    return client.starttls(target.ssl_context(), target.server_name(ep), pipelined=pipelined)


# -- RFC 3207 STARTTLS ------------------------------------------------------------------------


@requirement("RFC3207", "4", "MUST", "STARTTLS with a parameter gets 501")
def test_starttls_takes_no_parameter(smtp: SMTPConnector) -> None:
    client = with_starttls(smtp)
    # RFC 3207 4: "501 Syntax error (no parameters allowed)".
    client.command("STARTTLS now").expect(501, doing="STARTTLS with a parameter")
    client.noop().expect(250, doing="NOOP in plaintext after the refusal")


@requirement(
    "RFC3207",
    "4.2",
    "MUST",
    "after STARTTLS the server forgets the EHLO: MAIL before a new EHLO gets 503",
)
def test_ehlo_is_forgotten_after_tls(smtp: SMTPConnector, target: Target) -> None:
    # "The server MUST discard any knowledge obtained from the client, such as the
    # argument to the EHLO command, which was not obtained from the TLS negotiation."
    client = with_starttls(smtp)
    tls_handshake(target, client).expect(220, doing="STARTTLS")
    client.mail("").expect(503, doing="MAIL FROM before EHLO inside TLS")
    client.ehlo().expect(250, doing="EHLO inside TLS")
    client.mail("").expect(250, doing="MAIL FROM after EHLO inside TLS")


@requirement("RFC3207", "4.2", "MUST", "a transaction begun before STARTTLS does not survive it")
def test_transaction_is_forgotten_after_tls(smtp: SMTPConnector, target: Target) -> None:
    client = with_starttls(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<> in plaintext")
    reply = tls_handshake(target, client)
    if reply.code == 503:
        return  # refusing STARTTLS inside a transaction is one way to forget nothing
    reply.expect(220, doing="STARTTLS during a transaction")
    client.ehlo().expect(250, doing="EHLO inside TLS")
    no_transaction(client, "inside TLS, the MAIL given in plaintext forgotten")


@requirement("RFC3207", "4.2", "MUST", "EHLO after the TLS handshake does not offer STARTTLS again")
def test_no_starttls_inside_tls(smtp: SMTPConnector, target: Target) -> None:
    client = with_starttls(smtp)
    tls_handshake(target, client).expect(220, doing="STARTTLS")
    client.ehlo().expect(250, doing="EHLO inside TLS")
    assert "STARTTLS" not in client.extensions, f"STARTTLS offered inside TLS: {client.extensions}"


@requirement(
    "RFC3207",
    "4.2",
    "MUST",
    "commands pipelined behind STARTTLS in plaintext are discarded, never run inside TLS",
)
def test_no_plaintext_command_injection(smtp: SMTPConnector, target: Target) -> None:
    # CVE-2011-0411 and its many relatives: a man in the middle appends commands to the
    # client's STARTTLS; a server that keeps them runs them as if they came through TLS.
    client = with_starttls(smtp)
    injected = f"MAIL FROM:<injected@attacker.test>\r\nRCPT TO:<{postmaster(target)}>\r\n"
    try:
        tls_handshake(target, client, injected.encode()).expect(220, doing="STARTTLS")
    except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
        # The server hung up rather than start TLS with plaintext queued behind STARTTLS:
        # nothing injected can run, which is all this requirement asks.
        return
    except (SMTPProtocolError, ssl.SSLError) as e:
        raise AssertionError(
            f"the server answered commands sent behind STARTTLS in plaintext: {e}"
        ) from None
    unsolicited = client.read_replies(quiet=QUIET)
    assert not unsolicited, (
        "replies inside TLS to commands sent in plaintext behind STARTTLS: "
        + "; ".join(str(r) for r in unsolicited)
    )
    client.ehlo().expect(250, doing="EHLO inside TLS")
    no_transaction(client, "inside TLS (no MAIL was given there)")


# -- RFC 4954 AUTH ---------------------------------------------------------------------------


def plain_token(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


@requirement(
    "RFC4954",
    "4",
    "MUST",
    "on submission, plaintext AUTH mechanisms are neither offered nor accepted before TLS",
)
def test_no_plaintext_auth_before_tls(smtp: SMTPConnector, target: Target) -> None:
    # "A server implementation MUST implement a configuration in which it does NOT permit
    # any plaintext password mechanisms, unless either the STARTTLS command has been
    # negotiated or some other mechanism that protects the session ..." (RFC 8314 and the
    # platform require that configuration on submission.)
    account = target.account
    client = smtp.session("submission")
    mechanisms = {m.upper() for m in client.extensions.get("AUTH", ())}
    assert not mechanisms & {"PLAIN", "LOGIN"}, f"AUTH {mechanisms} offered without TLS"
    reply = client.auth_plain(account.address, account.password)
    assert reply.code != 235 and reply.permanent, f"AUTH PLAIN without TLS: {reply}"


@requirement("RFC4954", "6", "MUST", "correct credentials get 235")
def test_auth_success(smtp: SMTPConnector, target: Target) -> None:
    login(smtp, target)


@requirement("RFC4954", "6", "MUST", "wrong credentials get 535 5.7.8")
def test_wrong_password(smtp: SMTPConnector, target: Target) -> None:
    account = target.account
    client = smtp.session("submission", tls=True)
    require_extension(client, "AUTH")
    reply = client.auth_plain(account.address, account.password + "-wrong")
    assert (reply.code, reply.enhanced) == (535, "5.7.8"), f"AUTH with a wrong password: {reply}"
    client.auth_plain(account.address, account.password).expect(
        235, doing="AUTH with the right password after a wrong one"
    )


@requirement(
    "RFC4954",
    "6",
    "SHOULD",
    "MAIL from an unauthenticated client where AUTH is required gets 530 5.7.0",
)
def test_auth_required_reply(smtp: SMTPConnector) -> None:
    # Postfix deviates (conformance/peers/deviations.toml): its submission policy
    # is smtpd_*_restrictions, which take MAIL and refuse at RCPT with 554 5.7.1.
    client = smtp.session("submission", tls=True)
    require_extension(client, "AUTH")
    reply = client.mail("")
    assert (reply.code, reply.enhanced) == (530, "5.7.0"), f"MAIL before AUTH: {reply}"


@requirement("RFC4954", "4", "MUST", "AUTH after a successful AUTH gets 503")
def test_second_auth(smtp: SMTPConnector, target: Target) -> None:
    client = login(smtp, target)
    account = target.account
    client.auth_plain(account.address, account.password).expect(503, doing="a second AUTH")


@requirement("RFC4954", "4", "MUST", "AUTH during a mail transaction gets 503")
def test_auth_in_a_transaction(smtp: SMTPConnector, target: Target) -> None:
    # Only where a transaction can start unauthenticated and AUTH is offered: the MX.
    client = with_starttls(smtp)
    tls_handshake(target, client).expect(220, doing="STARTTLS")
    client.ehlo().expect(250, doing="EHLO inside TLS")
    require_extension(client, "AUTH")
    client.mail("").expect(250, doing="MAIL FROM:<>")
    account = target.account
    client.auth_plain(account.address, account.password).expect(
        503, doing="AUTH during a transaction"
    )


@requirement("RFC4954", "4", "MUST", "an AUTH exchange cancelled with '*' gets 501")
def test_auth_cancel(smtp: SMTPConnector) -> None:
    client = smtp.session("submission", tls=True)
    require_extension(client, "AUTH")
    client.command("AUTH PLAIN").expect(334, doing="AUTH PLAIN without an initial response")
    client.command("*").expect(501, doing="'*' to cancel")
    client.noop().expect(250, doing="NOOP after the cancelled AUTH")


@requirement("RFC4954", "4", "MUST", "an AUTH response that is not base64 gets 501")
def test_auth_bad_base64(smtp: SMTPConnector) -> None:
    # "If the client ... cannot be BASE64 decoded, the server MUST reject the AUTH command
    # with a 501." Postfix deviates: Cyrus SASL's failure comes out as 535 5.7.8.
    client = smtp.session("submission", tls=True)
    require_extension(client, "AUTH")
    client.command("AUTH PLAIN").expect(334, doing="AUTH PLAIN without an initial response")
    client.command("!!not*base64!!").expect(501, doing="a response that is not base64")
    client.noop().expect(250, doing="NOOP after the refused response")


@requirement("RFC4954", "4", "MUST", "AUTH with a mechanism the server lacks gets 504")
def test_auth_unknown_mechanism(smtp: SMTPConnector) -> None:
    # "If the requested authentication mechanism is invalid (e.g., is not supported ...),
    # the server rejects the AUTH command with a 504 reply." Postfix deviates: 535 5.7.8.
    client = smtp.session("submission", tls=True)
    require_extension(client, "AUTH")
    client.command("AUTH QZVT-MECHANISM").expect(504, doing="AUTH with an unknown mechanism")


@requirement("RFC4954", "5", "MUST", "MAIL takes the AUTH= parameter")
def test_mail_auth_parameter(smtp: SMTPConnector, target: Target) -> None:
    client = login(smtp, target)
    address = target.account.address
    client.mail(address, ["AUTH=<>"]).expect(250, doing=f"MAIL FROM:<{address}> AUTH=<>")
    client.rset().expect(250, doing="RSET")
    xtext = address.replace("+", "+2B")
    client.mail(address, [f"AUTH={xtext}"]).expect(250, doing=f"MAIL FROM AUTH={xtext}")


# -- RFC 6409 submission, RFC 8314 implicit TLS -----------------------------------------------


@requirement(
    "RFC6409",
    "4.3",
    "MUST",
    "submission takes no message from an unauthenticated client",
)
def test_submission_needs_auth(smtp: SMTPConnector, target: Target) -> None:
    client = smtp.session("submission", tls=True)
    mail = client.mail("")
    if mail.positive:
        # Refusing at RCPT (Postfix's smtpd_recipient_restrictions) keeps the promise too.
        rcpt = client.rcpt(postmaster(target))
        assert not rcpt.positive, f"submission accepted MAIL and RCPT without AUTH: {rcpt}"


@requirement(
    "RFC8314",
    "3.3",
    "MUST",
    "implicit TLS: the handshake comes first, then the 220 greeting inside TLS",
)
def test_implicit_tls_greeting(smtp: SMTPConnector) -> None:
    client = smtp("submissions")
    assert client.tls_active
    assert client.greeting is not None
    client.greeting.expect(220, doing="greeting inside TLS")
    client.ehlo().expect(250, doing="EHLO inside TLS")
    assert "STARTTLS" not in client.extensions, "STARTTLS offered on an implicit-TLS connection"


@requirement("RFC8314", "3.3", "MUST", "implicit TLS submission takes AUTH and then the message")
def test_implicit_tls_submission(smtp: SMTPConnector, target: Target) -> None:
    client = login(smtp, target, "submissions")
    address = target.account.address
    client.mail(address).expect(250, doing=f"MAIL FROM:<{address}>")
    client.rcpt(address).expect(250, doing=f"RCPT TO:<{address}>")
    client.data(message(marker(), sender=address, to=address)).expect(
        250, doing="end of data over implicit TLS"
    )
