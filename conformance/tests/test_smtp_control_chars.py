"""NUL and control characters in SMTP commands: refused, never taken for a name or an address.

No SMTP argument may carry one: RFC 5321 4.1.2 builds paths, domains and ESMTP values from
printable ASCII (and, with SMTPUTF8, UTF-8 beyond it), and a quoted string takes neither
CTLs nor NUL. A server that accepts ``EHLO a<NUL>b`` or ``MAIL FROM:<a<NUL>b@...>`` writes the
octet into Received:, Return-Path: and its log (grep then takes the log for binary; an ESC
drives the terminal of whoever reads it).

Each refusal is checked against a twin: the same command without the control character must
be accepted first, or the refusal would say nothing about the character (a VRFY that is
disabled refuses everything): such a case is not applicable.
"""

from __future__ import annotations

import base64

import pytest

from conformance.plugin import SMTPConnector
from conformance.requirements import not_applicable, requirement
from conformance.smtp_client import CLIENT_NAME, Reply, SMTPClient
from conformance.target import Target
from conformance.tests.support import no_transaction, postmaster, require_extension

# Control characters other than CR and LF (which end lines: see test_smtp_security.py).
# HT and VT are white space to many parsers (Python's bytes.strip, C's isspace), so a server
# may lose them at the edge of an argument instead of refusing them.
NUL = {"NUL": "\x00"}
OTHER_CONTROLS = {"SOH": "\x01", "HT": "\t", "VT": "\x0b", "ESC": "\x1b", "DEL": "\x7f"}
CONTROLS = {**NUL, **OTHER_CONTROLS}

# What refuses an address for its syntax (RFC 5321 4.2.2: 553 "mailbox name not allowed
# (e.g., mailbox syntax incorrect)", 501 "syntax error in parameters or arguments", 500
# "syntax error"), as opposed to a look-up that found no such mailbox (550).
SYNTAX_REFUSALS = (500, 501, 553)


def refused(reply: Reply, doing: str) -> None:
    assert reply.permanent, f"{doing}: expected a 5yz refusal, got {reply}"


def twin_accepted(reply: Reply, doing: str) -> None:
    """The control-free twin must be accepted, or the refusal is not observable here."""
    if not (reply.positive or reply.intermediate):
        not_applicable(f"{doing} without the control character is refused already ({reply})")


# -- EHLO and HELO ----------------------------------------------------------------------------


@requirement(
    "RFC5321",
    "4.1.1.1",
    "MUST",
    "EHLO or HELO whose domain carries a NUL or other control character gets 5yz (501)",
)
@pytest.mark.parametrize("ctl", CONTROLS.values(), ids=CONTROLS.keys())
@pytest.mark.parametrize("verb", ["EHLO", "HELO"])
def test_hello_with_a_control_character(smtp: SMTPConnector, verb: str, ctl: str) -> None:
    # ehlo = "EHLO" SP ( Domain / address-literal ); Domain is letters, digits, hyphens and
    # dots (4.1.2). The name goes into the Received: trace field (4.4) as it was given.
    client = smtp()
    twin_accepted(client.command(f"{verb} {CLIENT_NAME}"), f"{verb} {CLIENT_NAME}")
    name = f"conformance{ctl}.mailspec.test"
    refused(client.command(f"{verb} {name}"), f"{verb} {name!r}")
    client.noop().expect(250, doing=f"NOOP after the refused {verb}")


# -- paths of MAIL and RCPT -------------------------------------------------------------------


def path_case(smtp: SMTPConnector, target: Target, command: str, ctl: str) -> None:
    client = smtp.session("smtp")
    sender = f"conformance@{CLIENT_NAME}"
    twin_accepted(client.mail(sender), f"MAIL FROM:<{sender}>")
    if command == "MAIL":
        # A session of its own: after RSET this would test RSET too (RFC 5321 4.1.1.5).
        client = smtp.session("smtp")
        bad = f"confor{ctl}mance@{CLIENT_NAME}"
        reply = client.mail(bad)
        assert reply.code in SYNTAX_REFUSALS, f"MAIL FROM {bad!r}: expected 501/553, got {reply}"
        # Refused means no transaction.
        no_transaction(client, "after the refused MAIL")
        return
    twin_accepted(client.rcpt(postmaster(target)), f"RCPT TO:<{postmaster(target)}>")
    bad = f"post{ctl}master@{target.domain}"
    reply = client.rcpt(bad)
    # 550 would say the address was looked up as a mailbox name: its syntax was accepted.
    assert reply.code in SYNTAX_REFUSALS, f"RCPT TO {bad!r}: expected 501/553, got {reply}"


@requirement(
    "RFC5321",
    "4.1.2",
    "MUST",
    "a MAIL FROM or RCPT TO path carrying a NUL gets a syntax refusal (501 or 553)",
)
@pytest.mark.parametrize("ctl", NUL.values(), ids=NUL.keys())
@pytest.mark.parametrize("command", ["MAIL", "RCPT"])
def test_path_with_nul(smtp: SMTPConnector, target: Target, command: str, ctl: str) -> None:
    path_case(smtp, target, command, ctl)


@requirement(
    "RFC5321",
    "4.1.2",
    "MUST",
    "a MAIL FROM or RCPT TO path carrying another control character (SOH, HT, VT, ESC, DEL) "
    "gets a syntax refusal (501 or 553)",
)
@pytest.mark.parametrize("ctl", OTHER_CONTROLS.values(), ids=OTHER_CONTROLS.keys())
@pytest.mark.parametrize("command", ["MAIL", "RCPT"])
def test_path_with_control(smtp: SMTPConnector, target: Target, command: str, ctl: str) -> None:
    # Postfix refuses NUL and HT here, and takes SOH, ESC and DEL into the envelope (printed
    # as a space in its log); conformance/peers/deviations.toml.
    path_case(smtp, target, command, ctl)


# -- every other argument ---------------------------------------------------------------------

CONTROLLED = (
    "PLATFORM",
    "smtp.control-characters",
    "MUST",
    "a NUL or control character in any other SMTP argument (ESMTP parameters, VRFY, NOOP, "
    "AUTH) is refused with 5yz",
)


def auth_session(smtp: SMTPConnector) -> SMTPClient:
    client = smtp.session("submission", tls=True)
    require_extension(client, "AUTH")
    return client


def plain(identity: str, password: str) -> str:
    return base64.b64encode(f"\0{identity}\0{password}".encode()).decode()


@requirement(*CONTROLLED)
@pytest.mark.parametrize("ctl", CONTROLS.values(), ids=CONTROLS.keys())
@pytest.mark.parametrize("command", ["NOOP", "VRFY"])
def test_argument_with_control(smtp: SMTPConnector, command: str, ctl: str) -> None:
    # RFC 5321 4.1.1.9 and 4.1.1.6: NOOP [ SP String ], VRFY SP String, String = Atom /
    # Quoted-string: no CTL in either. "A server SHOULD ignore" NOOP's string only once it
    # is one.
    client = smtp.session("smtp")
    twin_accepted(client.command(f"{command} postmaster"), f"{command} postmaster")
    line = f"{command} post{ctl}master"
    refused(client.command(line), repr(line))
    client.noop().expect(250, doing=f"NOOP after the refused {command}")


@requirement(*CONTROLLED)
@pytest.mark.parametrize("ctl", CONTROLS.values(), ids=CONTROLS.keys())
@pytest.mark.parametrize("where", ["end", "inside"])
@pytest.mark.parametrize("command", ["MAIL", "RCPT"])
def test_parameter_with_control(
    smtp: SMTPConnector, target: Target, command: str, where: str, ctl: str
) -> None:
    # RFC 5321 4.1.2: esmtp-value = 1*(%d33-60 / %d62-126): no CTL, no space.
    client = smtp.session("smtp")
    if command == "MAIL":
        require_extension(client, "SIZE")  # RFC 1870
        line, value = "MAIL FROM:<> SIZE={}", "1000"
    else:
        require_extension(client, "DSN")  # RFC 3461 4.1
        client.mail("").expect(250, doing="MAIL FROM:<>")
        line, value = f"RCPT TO:<{postmaster(target)}> NOTIFY={{}}", "NEVER"
    twin_accepted(client.command(line.format(value)), line.format(value))
    if command == "MAIL":
        client.rset().expect(250, doing="RSET")
    bad = line.format(value + ctl if where == "end" else value[:2] + ctl + value[2:])
    refused(client.command(bad), repr(bad))


@requirement(*CONTROLLED)
@pytest.mark.parametrize("ctl", CONTROLS.values(), ids=CONTROLS.keys())
@pytest.mark.parametrize("where", ["response", "identity"])
def test_auth_with_control(smtp: SMTPConnector, target: Target, where: str, ctl: str) -> None:
    # RFC 4954 4: AUTH mechanism [SP initial-response], the response base64 (no CTL); RFC
    # 4616 2: the identities are UTF-8 without NUL, and SASLprep (RFC 4013 2.3) prohibits
    # every control character in them. The session must stay unauthenticated.
    account = target.account
    twin = auth_session(smtp)
    twin_accepted(twin.auth_plain(account.address, account.password), "AUTH PLAIN")
    client = auth_session(smtp)
    if where == "response":
        line = f"AUTH PLAIN {plain(account.address, account.password)}{ctl}"
    else:
        local, _, domain = account.address.partition("@")
        line = f"AUTH PLAIN {plain(f'{local}{ctl}@{domain}', account.password)}"
    reply = client.command(line)
    refused(reply, f"{line!r} ({where} with a control character)")
