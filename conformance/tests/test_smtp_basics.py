"""RFC 5321 basics on the inbound SMTP endpoint: greeting, EHLO, command order, RSET, NOOP, QUIT."""

from __future__ import annotations

from conformance.plugin import SMTPConnector
from conformance.requirements import requirement
from conformance.smtp_client import SMTPClient, is_address_literal, is_domain
from conformance.target import Target
from conformance.tests.support import no_transaction

# A verb no server can know: not X-prefixed, since RFC 5321 4.1.5 reserves X-verbs for
# private extensions that a server may well implement (XCLIENT, XFORWARD).
UNKNOWN_VERB = "QZVTFROB"


def postmaster(target: Target) -> str:
    # Every domain must accept mail for postmaster (RFC 5321 4.5.1), so a RCPT to it is a
    # valid recipient on any target without knowing its accounts.
    return f"postmaster@{target.domain}"


def ehlo_session(smtp: SMTPConnector) -> SMTPClient:
    return smtp.session("smtp")


# -- 4.2 greeting --------------------------------------------------------------------------


@requirement("RFC5321", "4.2", "MUST", "the greeting is 220 followed by the server's name")
def test_greeting_is_220_with_a_name(smtp: SMTPConnector, target: Target) -> None:
    client = smtp()
    assert client.greeting is not None
    client.greeting.expect(220, doing="greeting")
    # Greeting = "220 " (Domain / address-literal) [ SP textstring ] CRLF, or multiline.
    name = client.greeting.lines[0].split(" ", 1)[0]
    assert is_domain(name) or is_address_literal(name), (
        f"greeting does not start with a domain or address literal: {client.greeting}"
    )
    if target.hostname:
        assert name.lower() == target.hostname.lower(), (
            f"greeting names {name!r}, the target is {target.hostname!r}"
        )


# -- 4.1.1.1 EHLO and HELO -------------------------------------------------------------------


@requirement(
    "RFC5321",
    "4.1.1.1",
    "MUST",
    "EHLO gets 250 naming the server, then one well-formed extension per line",
)
def test_ehlo_answers_250_with_name_and_extensions(smtp: SMTPConnector, target: Target) -> None:
    client = smtp()
    reply = client.ehlo().expect(250, doing="EHLO")
    # ehlo-ok-rsp: the first line is the server's Domain; the others are ehlo-lines (the
    # client parses them and fails on one that is not an ehlo-keyword with parameters).
    assert client.ehlo_response is not None
    name = client.ehlo_response.domain
    assert is_domain(name), f"EHLO reply does not start with a domain: {reply}"
    if target.hostname:
        assert name.lower() == target.hostname.lower(), (
            f"EHLO reply names {name!r}, the target is {target.hostname!r}"
        )


@requirement("RFC5321", "4.1.1.1", "MUST", "HELO is supported and gets 250")
def test_helo_answers_250(smtp: SMTPConnector) -> None:
    client = smtp()
    client.helo().expect(250, doing="HELO")


@requirement("RFC5321", "2.4", "MUST", "command verbs are not case sensitive")
def test_lower_case_verbs_are_understood(smtp: SMTPConnector) -> None:
    client = smtp()
    client.command(f"ehlo {client.address_literal()}").expect(250, doing="ehlo (lower case)")
    client.command("noop").expect(250, doing="noop (lower case)")
    client.command("Mail From:<>").expect(250, doing="Mail From:<> (mixed case)")
    client.command("rset").expect(250, doing="rset (lower case)")


# -- 4.1.4 order of commands -----------------------------------------------------------------

OUT_OF_ORDER = ("RFC5321", "4.1.4", "MUST", "commands out of order get 503 and change nothing")


@requirement(*OUT_OF_ORDER)
def test_rcpt_before_mail_gets_503(smtp: SMTPConnector, target: Target) -> None:
    client = ehlo_session(smtp)
    # RFC 5321 3.3 says the same of RCPT in so many words: "MUST return a 503".
    client.rcpt(postmaster(target)).expect(503, doing="RCPT TO before MAIL FROM")
    # "... and the SMTP server MUST stay in the same state": a transaction can still begin.
    client.mail("").expect(250, doing="MAIL FROM:<> after the refused RCPT")


@requirement(*OUT_OF_ORDER)
def test_data_before_mail_gets_503(smtp: SMTPConnector) -> None:
    client = ehlo_session(smtp)
    # RFC 5321 3.3 also allows 554 ("no valid recipients") for a DATA without recipients.
    client.command("DATA").expect(503, 554, doing="DATA before MAIL FROM")
    client.mail("").expect(250, doing="MAIL FROM:<> after the refused DATA")


@requirement(*OUT_OF_ORDER)
def test_data_before_rcpt_gets_503(smtp: SMTPConnector) -> None:
    client = ehlo_session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.command("DATA").expect(503, 554, doing="DATA before any RCPT TO")
    client.noop().expect(250, doing="NOOP after the refused DATA")


@requirement("RFC5321", "4.1.4", "MUST", "EHLO during a transaction resets it, as RSET does")
def test_ehlo_resets_the_transaction(smtp: SMTPConnector, target: Target) -> None:
    client = ehlo_session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.ehlo().expect(250, doing="second EHLO")
    no_transaction(client, "after EHLO reset the transaction")


@requirement("RFC5321", "4.1.4", "SHOULD", "NOOP and RSET work before EHLO (no 503)")
def test_noop_and_rset_before_ehlo(smtp: SMTPConnector) -> None:
    client = smtp()
    client.noop().expect(250, doing="NOOP before EHLO")
    client.rset().expect(250, doing="RSET before EHLO")


@requirement("PLATFORM", "smtp.helo-required", "MUST", "MAIL before EHLO or HELO gets 503")
def test_mail_before_ehlo_gets_503(smtp: SMTPConnector) -> None:
    # RFC 5321 puts this on the client (4.1.1.1: "a client MUST issue HELO or EHLO before
    # starting a mail transaction") and lets a server accept such a MAIL; the platform
    # refuses it, as providers do against ratware.
    client = smtp()
    client.mail("").expect(503, doing="MAIL FROM before EHLO")
    client.ehlo().expect(250, doing="EHLO after the refused MAIL")
    client.mail("").expect(250, doing="MAIL FROM after EHLO")


# -- 4.2.4 / 3.8 unknown commands ------------------------------------------------------------


@requirement("RFC5321", "4.2.4", "SHOULD", "an unrecognised command gets 500")
def test_unknown_command_gets_500(smtp: SMTPConnector) -> None:
    client = ehlo_session(smtp)
    client.command(UNKNOWN_VERB).expect(500, doing=f"unknown command {UNKNOWN_VERB}")


@requirement("RFC5321", "3.8", "MUST", "an unknown command does not end the session")
def test_unknown_command_keeps_the_session(smtp: SMTPConnector) -> None:
    client = ehlo_session(smtp)
    reply = client.command(UNKNOWN_VERB)
    assert reply.permanent, f"unknown command {UNKNOWN_VERB}: expected a 5yz reply, got {reply}"
    client.noop().expect(250, doing="NOOP after an unknown command")


# -- 4.1.1.9 NOOP -----------------------------------------------------------------------------


@requirement("RFC5321", "4.1.1.9", "MUST", "NOOP gets 250")
def test_noop_answers_250(smtp: SMTPConnector) -> None:
    client = ehlo_session(smtp)
    client.noop().expect(250, doing="NOOP")


@requirement("RFC5321", "4.1.1.9", "SHOULD", "NOOP ignores a parameter")
def test_noop_with_parameter_answers_250(smtp: SMTPConnector) -> None:
    client = ehlo_session(smtp)
    client.command("NOOP conformance-check").expect(250, doing="NOOP with a parameter")


@requirement("RFC5321", "4.1.1.9", "MUST", "NOOP leaves an open transaction as it was")
def test_noop_keeps_the_transaction(smtp: SMTPConnector, target: Target) -> None:
    client = ehlo_session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.noop().expect(250, doing="NOOP during a transaction")
    reply = client.rcpt(postmaster(target))
    # Any answer but 503 shows the sender is still there; whether postmaster is accepted at
    # once (or greylisted, say) is not this requirement's business.
    assert reply.code != 503, f"RCPT TO after NOOP: the transaction was lost: {reply}"


# -- 4.1.1.5 RSET -----------------------------------------------------------------------------

RSET = ("RFC5321", "4.1.1.5", "MUST", "RSET gets 250, discards the transaction, keeps the session")


@requirement(*RSET)
def test_rset_answers_250(smtp: SMTPConnector) -> None:
    client = ehlo_session(smtp)
    client.rset().expect(250, doing="RSET")


@requirement(*RSET)
def test_rset_discards_the_sender(smtp: SMTPConnector, target: Target) -> None:
    client = ehlo_session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.rset().expect(250, doing="RSET during a transaction")
    no_transaction(client, "after RSET discarded the sender")


@requirement(*RSET)
def test_rset_keeps_the_connection(smtp: SMTPConnector) -> None:
    client = ehlo_session(smtp)
    client.rset().expect(250, doing="RSET")
    assert not client.closed_by_peer(timeout=0.3), "the server closed the connection after RSET"
    client.noop().expect(250, doing="NOOP after RSET")


# -- 4.1.1.10 QUIT ----------------------------------------------------------------------------

QUIT = ("RFC5321", "4.1.1.10", "MUST", "QUIT gets 221 and the server closes the connection")


@requirement(*QUIT)
def test_quit_answers_221_and_closes(smtp: SMTPConnector, target: Target) -> None:
    client = ehlo_session(smtp)
    client.quit().expect(221, doing="QUIT")
    assert client.closed_by_peer(timeout=target.timeout), (
        f"the server kept the connection open {target.timeout}s after 221"
    )


@requirement(*QUIT)
def test_quit_during_a_transaction(smtp: SMTPConnector, target: Target) -> None:
    client = ehlo_session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.quit().expect(221, doing="QUIT during a transaction")
    assert client.closed_by_peer(timeout=target.timeout), "connection still open after 221"


# -- 4.2 one reply per command -----------------------------------------------------------------


@requirement("RFC5321", "4.2", "MUST", "every command gets exactly one reply")
def test_one_reply_per_command(smtp: SMTPConnector, target: Target) -> None:
    client = smtp()
    assert not client.pending(), "data after the greeting"
    for command in ("EHLO " + client.address_literal(), "NOOP", "MAIL FROM:<>", "RSET", "NOOP"):
        client.command(command)
        extra = client.pending(wait=0.1)
        assert not extra, f"a second reply after {command!r}: {extra!r}"
