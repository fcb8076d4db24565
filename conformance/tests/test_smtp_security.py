"""Security as requirements: SMTP smuggling, bare CR and LF, and the open-relay probes."""

from __future__ import annotations

import pytest

from conformance.plugin import SMTPConnector
from conformance.requirements import requirement
from conformance.smtp_client import Reply, SMTPClient, SMTPProtocolError
from conformance.target import Target
from conformance.tests.support import FOREIGN, fenced, marker, message, postmaster, transaction

# Every end-of-data look-alike published for CVE-2023-51764 (Postfix), -51765 (Sendmail)
# and -51766 (Exim) by SEC Consult, and by the Postfix and Sendmail advisories: each must
# be data, never the end of it.
SMUGGLING_VARIANTS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.CR": b"\r.\r",
    "CR.LF": b"\r.\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "LF.CR": b"\n.\r",
    "CRLF-NUL.CRLF": b"\r\n\x00.\r\n",
}


def session(smtp: SMTPConnector) -> SMTPClient:
    return smtp.session("smtp")


def still_serving(client: SMTPClient, after: list[Reply]) -> None:
    """The session goes on, or was closed cleanly after a refusal."""
    if not client.closed:
        try:
            client.noop().expect(250, doing="NOOP after the message")
            return
        except SMTPProtocolError:
            if not client.closed:
                raise
    # Closed: fine after a refusal (Postfix hangs up on a bare LF), not after a 250.
    assert after and not after[-1].positive, "connection closed after a positive reply"


# -- smuggling --------------------------------------------------------------------------------


@requirement(
    "RFC5321",
    "4.1.1.4",
    "MUST",
    "only <CRLF>.<CRLF> ends mail data: no bare CR/LF variant ends it or smuggles a message",
)
@pytest.mark.parametrize("variant", SMUGGLING_VARIANTS.values(), ids=SMUGGLING_VARIANTS.keys())
def test_no_smuggling(smtp: SMTPConnector, target: Target, variant: bytes) -> None:
    # 4.1.1.4: "the sequence "<LF>.<LF>" ... MUST NOT be treated as equivalent to
    # <CRLF>.<CRLF> as the end of mail data indication." A server that ends the data early
    # reads the rest as a second transaction: the smuggled message, sent as anyone.
    pm = postmaster(target)
    smuggled = f"MAIL FROM:<ceo@{target.domain}>\r\nRCPT TO:<{pm}>\r\nDATA\r\n".encode() + message(
        marker(), sender=f"ceo@{target.domain}", subject="smuggled"
    )
    client = session(smtp)
    transaction(client, target)
    client.command("DATA").expect(354, doing="DATA")
    head = message(marker(), body=[b"The first message."])
    replies = fenced(client, target, head + b"the end?" + variant + smuggled + b".\r\n")
    assert len(replies) == 1, (
        f"{variant!r} ended the data: {len(replies)} replies to one message "
        f"({'; '.join(str(r) for r in replies)})"
    )
    assert replies[0].code in (250, 550, 554, 500, 552) or replies[0].permanent, (
        f"end of data: {replies[0]}"
    )
    still_serving(client, replies)


# -- bare LF and bare CR in mail data ---------------------------------------------------------


@requirement(
    "PLATFORM",
    "smtp.bare-lf",
    "MUST",
    "a message with a bare LF is refused with 5xx (Postfix's smtpd_forbid_bare_newline)",
)
@pytest.mark.parametrize("where", ["body", "header"])
def test_bare_lf_in_data_is_refused(smtp: SMTPConnector, target: Target, where: str) -> None:
    # RFC 5321 4.1.1.4: accepting lines ending in a bare LF "has proven to cause more
    # interoperability problems than it solves, and SMTP server systems MUST NOT do this".
    # Kept as content, such a line is passed on to the next hop: smuggling there.
    client = session(smtp)
    transaction(client, target)
    msg = message(marker(), body=[b"line one\nline two"])
    if where == "header":
        msg = b"X-Bare: lf\n" + msg
    reply = client.data(msg)
    assert reply.permanent, f"message with a bare LF in the {where}: {reply}"
    still_serving(client, [reply])


@requirement(
    "PLATFORM",
    "smtp.bare-cr",
    "MUST",
    "a message with a bare CR is refused with 5xx",
)
def test_bare_cr_in_data_is_refused(smtp: SMTPConnector, target: Target) -> None:
    # Sendmail's and Exim's smuggling fixes treat a bare CR as the same danger (CVE-2023-
    # 51765): some receivers end a line there. Postfix deviates: smtpd_forbid_bare_newline
    # is about LF, and a bare CR passes as data (conformance/peers/deviations.toml).
    client = session(smtp)
    transaction(client, target)
    reply = client.data(message(marker(), body=[b"line one\rline two"]))
    assert reply.permanent, f"message with a bare CR: {reply}"
    still_serving(client, [reply])


# -- bare LF and bare CR in commands ----------------------------------------------------------


@requirement(
    "RFC5321",
    "2.3.8",
    "MUST",
    "a command line ends only at CRLF: a command ended by a bare LF is not run",
)
def test_bare_lf_does_not_end_a_command(smtp: SMTPConnector, target: Target) -> None:
    # 2.3.8: lines are "terminated by the sequence ASCII character "CR" (hex value 0D)
    # followed immediately by ASCII character "LF"". A server may refuse the line or wait
    # for its CRLF; it must not run "MAIL FROM:<>" on the strength of a bare LF.
    client = session(smtp)
    line = f"MAIL FROM:<>\nRCPT TO:<{postmaster(target)}>\r\n".encode()
    replies = fenced(client, target, line)
    assert replies, "no reply at all to a line ended by a bare LF"
    assert not any(r.positive for r in replies), (
        "a command ended by a bare LF was run: " + "; ".join(str(r) for r in replies)
    )


@requirement(
    "RFC5321",
    "2.3.8",
    "MUST",
    "a bare CR does not split a command line: one line, one reply",
)
def test_bare_cr_does_not_split_a_command(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    replies = fenced(client, target, f"MAIL FROM:<>\rRCPT TO:<{postmaster(target)}>\r\n".encode())
    assert len(replies) == 1, "one command line got several replies: " + "; ".join(
        str(r) for r in replies
    )


# -- open relay -------------------------------------------------------------------------------

# The probe forms relay testers have used since the 1990s (RFC 2505 2.3; the
# Sendmail/abuse.net relay tests): each asks, in some disguise, for mail to FOREIGN.
RELAY_PROBES = {
    "plain": "<relay-probe@{foreign}>",
    "percent-hack": "<relay-probe%{foreign}@{domain}>",
    "bang-path": "<{foreign}!relay-probe@{domain}>",
    "source-route": "<@{domain}:relay-probe@{foreign}>",
    "quoted-local": '<"relay-probe@{foreign}"@{domain}>',
    "double-at": "<relay-probe@{foreign}@{domain}>",
    "literal-loopback": "<relay-probe-{token}@[127.0.0.1]>",
    "literal-foreign": "<relay-probe@[192.0.2.1]>",
    "percent-literal": "<relay-probe%{foreign}@[127.0.0.1]>",
}

NO_RELAY = (
    "PLATFORM",
    "inbound.no-open-relay",
    "MUST",
    "mail for other domains is refused without AUTH, whatever the address disguise",
)


@requirement(*NO_RELAY)
@pytest.mark.parametrize("probe", RELAY_PROBES.values(), ids=RELAY_PROBES.keys())
def test_no_open_relay(smtp: SMTPConnector, target: Target, probe: str) -> None:
    # RFC 5321 3.6.2 and 7.1, RFC 2505 2: relaying is for authorised clients only. A
    # refusal at RCPT may be 5yz or 4yz; what must not come is 250. (An address literal
    # naming the target itself is local: refused here because the mailbox is unknown.)
    path = probe.format(foreign=FOREIGN, domain=target.domain, token=marker())
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    reply = client.command(f"RCPT TO:{path}")
    assert not reply.positive, f"relay probe RCPT TO:{path} accepted: {reply}"


@requirement(*NO_RELAY)
def test_local_sender_does_not_open_the_relay(smtp: SMTPConnector, target: Target) -> None:
    # The oldest trick: claim to be one of the target's own users.
    client = session(smtp)
    client.mail(postmaster(target)).expect(250, 550, 553, doing="MAIL FROM a local address")
    reply = client.rcpt(f"relay-probe@{FOREIGN}")
    assert not reply.positive, f"relay for a local sender without AUTH: {reply}"
