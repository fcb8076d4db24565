"""RFC 5321 beyond the basics: paths, postmaster, transparency, limits, replies, timeouts."""

from __future__ import annotations

import re

from conformance import not_applicable
from conformance.plugin import SMTPConnector
from conformance.requirements import requirement
from conformance.smtp_client import SMTPClient
from conformance.target import ClockControl, Target
from conformance.tests.support import (
    body_of,
    delivered,
    fenced,
    marker,
    message,
    no_transaction,
    postmaster,
    transaction,
)


def session(smtp: SMTPConnector) -> SMTPClient:
    return smtp.session("smtp")


# -- 4.1.1.1 HELO/EHLO need a domain ----------------------------------------------------------


@requirement("RFC5321", "4.1.1.1", "MUST", "EHLO or HELO without a domain gets 501")
def test_ehlo_and_helo_need_an_argument(smtp: SMTPConnector) -> None:
    client = smtp()
    # ehlo = "EHLO" SP ( Domain / address-literal ) CRLF: the argument is not optional.
    client.command("EHLO").expect(501, doing="EHLO without a domain")
    client.command("HELO").expect(501, doing="HELO without a domain")
    client.ehlo().expect(250, doing="EHLO with an address literal after the refusals")


# -- 3.3 several transactions per session -----------------------------------------------------


@requirement("RFC5321", "3.3", "MUST", "a session carries several mail transactions in turn")
def test_two_transactions_in_one_session(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    for n in (1, 2):
        transaction(client, target)
        client.data(message(marker(), subject=f"transaction {n}")).expect(
            250, doing=f"end of data of transaction {n}"
        )


# -- 4.5.5 the null reverse-path --------------------------------------------------------------


@requirement(
    "RFC5321", "4.5.5", "MUST", "a message with the null reverse-path (MAIL FROM:<>) is accepted"
)
def test_null_reverse_path(smtp: SMTPConnector, target: Target) -> None:
    # Delivery status notifications are sent with "MAIL FROM:<>" (RFC 5321 4.5.5, 6.1); a
    # server that refuses them loses every bounce.
    client = session(smtp)
    transaction(client, target, sender="")
    client.data(message(marker(), sender=f"mailer-daemon@{target.domain}")).expect(
        250, doing="end of data of a message from <>"
    )


# -- 4.5.1 postmaster -------------------------------------------------------------------------

POSTMASTER = (
    "RFC5321",
    "4.5.1",
    "MUST",
    "postmaster is accepted: at the domain, without a domain, in any case",
)


@requirement(*POSTMASTER)
def test_postmaster_at_the_domain(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.rcpt(postmaster(target)).expect(250, doing=f"RCPT TO:<{postmaster(target)}>")


@requirement(*POSTMASTER)
def test_postmaster_without_a_domain(smtp: SMTPConnector) -> None:
    # 4.5.1: '... as well as the special case of "RCPT TO:<Postmaster>" (with no domain
    # specification), MUST be supported.'
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.command("RCPT TO:<Postmaster>").expect(250, doing="RCPT TO:<Postmaster>")


@requirement(*POSTMASTER)
def test_postmaster_in_any_case(smtp: SMTPConnector, target: Target) -> None:
    # "postmaster" is a case-insensitive local name (4.5.1), and domains are always
    # case-insensitive (2.4).
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    shouted = f"POSTMASTER@{target.domain.upper()}"
    client.rcpt(shouted).expect(250, doing=f"RCPT TO:<{shouted}>")


# -- Appendix C source routes -----------------------------------------------------------------


@requirement(
    "RFC5321",
    "C",
    "MUST",
    "a source route is accepted and ignored: <@a,@b:user@d> is user@d",
)
def test_source_route_is_ignored(smtp: SMTPConnector, target: Target) -> None:
    # "SMTP servers MUST continue to accept source route syntax ... They SHOULD, if
    # necessary, ignore the routes and utilize only the target domain in the address."
    client = session(smtp)
    client.command("MAIL FROM:<@hop.one.test,@hop.two.test:sender@client.test>").expect(
        250, doing="MAIL FROM with a source route"
    )
    route = f"<@hop.one.test,@hop.two.test:{postmaster(target)}>"
    client.command(f"RCPT TO:{route}").expect(250, doing=f"RCPT TO:{route}")
    client.data(message(marker())).expect(250, doing="end of data for a source-routed RCPT")


# -- 4.5.2 transparency -----------------------------------------------------------------------


@requirement("RFC5321", "4.5.2", "MUST", "dot-stuffing is removed: a sent '..' arrives as '.'")
def test_dot_stuffing_is_removed(smtp: SMTPConnector, target: Target) -> None:
    token = marker()
    lines = [b".", b"..", b".leading dot", b"...three", b"a. not at the start", b"end"]
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.rcpt(target.account.address).expect(250, doing="RCPT TO the test account")
    # SMTPClient.data stuffs: each line above starting with "." goes out with one more.
    client.data(message(token, body=lines)).expect(250, doing="end of data")
    body = body_of(delivered(target, target.account.address, token))
    assert body.split(b"\r\n")[: len(lines)] == lines, (
        f"delivered body differs from what was sent before stuffing: {body[:300]!r}"
    )


# -- 4.5.3.1 size limits ----------------------------------------------------------------------


@requirement("RFC5321", "4.5.3.1.8", "MUST", "a transaction takes at least 100 recipients")
def test_one_hundred_recipients(smtp: SMTPConnector, target: Target) -> None:
    # "The minimum total number of recipients that MUST be buffered is 100 recipients."
    # The same postmaster a hundred times: every target has it, and each RCPT counts.
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    for n in range(1, 101):
        client.rcpt(postmaster(target)).expect(250, doing=f"RCPT number {n}")
    client.rset().expect(250, doing="RSET after 100 recipients")


@requirement("RFC5321", "4.5.3.1.4", "MUST", "a command line of 512 octets is accepted")
def test_512_octet_command_line(smtp: SMTPConnector) -> None:
    client = session(smtp)
    line = "NOOP " + "x" * (512 - len("NOOP ") - 2)
    assert len(line) + 2 == 512
    # NOOP's parameter is a String (4.1.1.9) that the server ignores.
    client.command(line).expect(250, doing="NOOP as a 512-octet line")


@requirement(
    "RFC5321",
    "4.5.3.1.4",
    "SHOULD",
    "an over-long command line gets one reply, and no part of it runs as a command",
)
def test_over_long_command_line(smtp: SMTPConnector, target: Target) -> None:
    # "500 Line too long" is the expected answer (4.5.3.1.10); a server may also take the
    # line. What must not happen is a cut: the tail taken for a command of its own.
    client = session(smtp)
    replies = fenced(client, target, ("NOOP " + "x" * 3000 + " QUIT\r\n").encode())
    assert len(replies) == 1, f"one over-long line got replies {[str(r) for r in replies]}"
    client.noop().expect(250, doing="NOOP after the over-long line")


@requirement("RFC5321", "4.5.3.1.6", "MUST", "a text line of 1000 octets is accepted")
def test_1000_octet_text_line(smtp: SMTPConnector, target: Target) -> None:
    # 1000 octets with the CRLF, "not counting the leading dot duplicated for
    # transparency": the dotted line goes out as 1001.
    token = marker()
    plain = b"x" * 998
    dotted = b"." + b"y" * 997
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.rcpt(target.account.address).expect(250, doing="RCPT TO the test account")
    client.data(message(token, body=[plain, dotted])).expect(
        250, doing="end of data of a message with 1000-octet lines"
    )
    body = body_of(delivered(target, target.account.address, token))
    assert body.split(b"\r\n")[:2] == [plain, dotted], "the long lines were altered"


@requirement(
    "RFC5321",
    "4.5.3.1.1",
    "MUST",
    "a 64-octet local part is not refused as too long",
)
def test_64_octet_local_part(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    local = "l" * 64
    reply = client.rcpt(f"{local}@{target.domain}")
    # No such mailbox (550 5.1.1) is a fine answer; a syntax or length error is not.
    assert reply.code not in (500, 501) and not (reply.enhanced or "").startswith(
        ("5.1.3", "5.5.")
    ), f"RCPT with a 64-octet local part: {reply}"


@requirement("RFC5321", "4.5.3.1.3", "MUST", "a 256-octet path is not refused as too long")
def test_256_octet_path(smtp: SMTPConnector) -> None:
    # Path = "<" Mailbox ">": 256 octets with the brackets, here in MAIL FROM.
    labels = ["a" * 63, "b" * 63, "c" * 63]
    domain = ".".join([*labels, "d" * (256 - 2 - len("s@") - 3 * 64 - len(".test")), "test"])
    path = f"<s@{domain}>"
    assert len(path) == 256, len(path)
    client = session(smtp)
    client.command(f"MAIL FROM:{path}").expect(250, doing="MAIL FROM with a 256-octet path")


# -- 4.3.2 syntax errors ----------------------------------------------------------------------


@requirement(
    "RFC5321",
    "4.3.2",
    "MUST",
    "MAIL or RCPT with a missing or malformed path gets 501 (or 553), and no transaction",
)
def test_bad_paths_get_501(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    for line in ("MAIL FROM:", "MAIL FROM:<unterminated@client.test", "MAIL TO:<x@client.test>"):
        client.command(line).expect(501, 553, doing=line)
    no_transaction(client, "after only refused MAILs")
    for line in ("RCPT TO:", "RCPT TO:<unterminated@client.test", "RCPT FROM:<x@client.test>"):
        client.command(line).expect(501, 553, doing=line)


@requirement("RFC5321", "4.1.1.11", "MUST", "an unrecognised MAIL or RCPT parameter gets 555")
def test_unknown_parameters_get_555(smtp: SMTPConnector, target: Target) -> None:
    # "If the server SMTP does not recognize or cannot implement one or more of the
    # parameters associated with a particular MAIL FROM or RCPT TO command, it will return
    # code 555."
    client = session(smtp)
    client.command("MAIL FROM:<> QZVT-UNKNOWN=1").expect(555, doing="MAIL with a parameter")
    client.mail("").expect(250, doing="MAIL FROM:<> without it")
    line = f"RCPT TO:<{postmaster(target)}> QZVT-UNKNOWN=1"
    client.command(line).expect(555, doing="RCPT with an unknown parameter")
    client.rcpt(postmaster(target)).expect(250, doing="RCPT without it")


# -- 3.5.3 / 7.3 VRFY -------------------------------------------------------------------------


@requirement(
    "RFC5321",
    "3.5.3",
    "MUST",
    "VRFY answers 250/251 (verified), 252 (cannot verify), 550/551/553, or 502 (disabled)",
)
def test_vrfy_answers(smtp: SMTPConnector, target: Target) -> None:
    # 7.3 lets a site turn VRFY off (502) or answer 252 to every request; 3.5.3 forbids a
    # 250 that was not actually verified, so an unknown user never gets 250 or 251.
    client = session(smtp)
    allowed = (250, 251, 252, 550, 551, 553, 502)
    client.command(f"VRFY {postmaster(target)}").expect(*allowed, doing="VRFY postmaster")
    nobody = f"nobody-{marker()}@{target.domain}"
    reply = client.command(f"VRFY {nobody}")
    reply.expect(252, 550, 551, 553, 502, doing="VRFY of a mailbox that does not exist")
    client.noop().expect(250, doing="NOOP after VRFY")


# -- 4.2.1 multiline replies ------------------------------------------------------------------


@requirement(
    "RFC5321",
    "4.2.1",
    "MUST",
    "a multiline reply has code and hyphen on every line but the last (code and space)",
)
def test_multiline_reply_format(smtp: SMTPConnector) -> None:
    client = smtp()
    reply = client.ehlo().expect(250, doing="EHLO")
    lines = reply.raw.split(b"\r\n")[:-1]
    assert len(lines) > 1, "EHLO reply is a single line: nothing to check"
    for line in lines[:-1]:
        assert re.match(rb"^250-", line), f"continuation line without '250-': {line!r}"
    assert re.match(rb"^250( |$)", lines[-1]), f"last line not '250 ': {lines[-1]!r}"


# -- 4.5.3.2 timeouts -------------------------------------------------------------------------


@requirement(
    "RFC5321",
    "4.5.3.2.7",
    "SHOULD",
    "the server waits at least 5 minutes for the next command",
    needs=("clock",),
)
def test_server_waits_five_minutes(smtp: SMTPConnector, clock: ClockControl) -> None:
    # "An SMTP server SHOULD have a timeout of at least 5 minutes while it is awaiting the
    # next command from the sender." The target's clock moves; no test waits 5 minutes.
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    clock.advance(299)
    assert not client.closed_by_peer(timeout=0.2), "the server hung up before 5 minutes idle"
    client.noop().expect(250, doing="NOOP after 299 s idle")


@requirement(
    "PLATFORM",
    "smtp.idle-timeout",
    "MUST",
    "a session idle for the configured time (5 minutes) is closed with 421",
    needs=("clock",),
)
def test_idle_session_is_closed_with_421(smtp: SMTPConnector, clock: ClockControl) -> None:
    # RFC 5321 4.5.3.2 lets the server close an idle session; the platform does so after
    # 5 minutes (smtp.timeout) and says why, rather than holding sockets for ever.
    client = session(smtp)
    clock.advance(301)
    reply = client.read_reply()
    assert reply.code == 421, f"after 301 s idle: expected 421, got {reply}"
    assert client.closed_by_peer(timeout=5.0), "421 sent but the connection stayed open"


# -- MUST clauses the index (conformance/clauses.toml) had left unchecked -----------------------


@requirement(
    "RFC5321",
    "4.1.4",
    "MUST",
    "an unacceptable EHLO gets 501, 500, 502 or 550 and leaves the state as it was",
)
def test_unacceptable_ehlo_keeps_the_state(smtp: SMTPConnector, target: Target) -> None:
    # "If the EHLO command is not acceptable to the SMTP server, 501, 500, 502, or 550
    # failure replies MUST be returned as appropriate. The SMTP server MUST stay in the same
    # state after transmitting these replies that it was in before the EHLO was received."
    client = session(smtp)
    transaction(client, target)
    client.command("EHLO").expect(501, 500, 502, 550, doing="EHLO without a domain")
    # The open transaction survived: a further RCPT is taken and DATA is possible.
    client.rcpt(postmaster(target)).expect(250, doing="RCPT after the refused EHLO")
    client.data(message(marker())).expect(250, doing="end of data after the refused EHLO")


def _domain_of(octets: int) -> str:
    """A syntactically valid domain of exactly ``octets`` octets (labels of 63 at most)."""
    labels: list[str] = []
    left = octets
    while left > 0:
        size = min(63, left if not labels else left - 1)
        labels.append(chr(ord("a") + len(labels)) * size)
        left -= size + (1 if len(labels) > 1 else 0)
    domain = ".".join(labels)
    assert len(domain) == octets, (len(domain), octets)
    return domain


@requirement("RFC5321", "4.5.3.1.2", "MUST", "a domain of 255 octets is not refused as too long")
def test_255_octet_domain(smtp: SMTPConnector) -> None:
    # "The maximum total length of a domain name or number is 255 octets." A path cannot
    # carry one (256 octets with the local part and brackets), so EHLO does.
    client = smtp()
    client.ehlo(_domain_of(255)).expect(250, doing="EHLO with a 255-octet domain")


@requirement("RFC5321", "4.5.3.1.5", "MUST", "no reply line is longer than 512 octets")
def test_reply_lines_fit_512_octets(smtp: SMTPConnector, target: Target) -> None:
    # "The maximum total length of a reply line including the reply code and the <CRLF>
    # is 512 octets." Servers that echo what they were sent overrun it on long input.
    client = smtp()
    replies = [
        client.ehlo(_domain_of(255)),
        client.command("VRFY " + "v" * 500),
        client.mail("s@" + _domain_of(251)),
        client.rcpt("r" * 64 + "@" + _domain_of(189)),
        client.command("MAIL FROM:<> " + "P" * 490),
        # Last: what a server does after an unknown command is another requirement's.
        client.command("XQZV " + "q" * 500),
    ]
    for reply in replies:
        for line in reply.raw.split(b"\r\n")[:-1]:
            assert len(line) + 2 <= 512, f"a reply line of {len(line) + 2} octets: {line[:80]!r}"


@requirement(
    "RFC5321",
    "3.3",
    "MUST",
    "a refused recipient's reply says whether the failure is permanent or temporary "
    "(5yz or 4yz, the enhanced code of the same class)",
)
def test_refused_recipient_says_permanent_or_temporary(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    reply = client.rcpt(f"no-such-user-{marker()}@{target.domain}")
    if reply.positive:
        not_applicable("the server takes an unknown local address at RCPT (it bounces later)")
    assert reply.transient or reply.permanent, f"RCPT of an unknown user: {reply}"
    if reply.enhanced:
        # RFC 3463 2: the class digit says the same as the basic code's first digit.
        assert reply.enhanced[0] == str(reply.code)[0], f"RCPT of an unknown user: {reply}"


@requirement(
    "RFC5321",
    "4.5.2",
    "MUST",
    "every ASCII character of the data is delivered as sent, control characters included",
)
def test_every_ascii_character_is_delivered(smtp: SMTPConnector, target: Target) -> None:
    # "the mail data may contain any of the 128 ASCII characters. All characters are to be
    # delivered to the recipient's mailbox, including spaces, vertical and horizontal tabs,
    # and other control characters." CR and LF travel as the line end; NUL is left out, as
    # the suite reads the mailbox over IMAP or POP3, neither of which can carry it in text.
    token = marker()
    line = bytes(c for c in range(1, 128) if c not in (0x0A, 0x0D))
    client = session(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.rcpt(target.account.address).expect(250, doing="RCPT TO the test account")
    client.data(message(token, body=[line, b"end"])).expect(250, doing="end of data")
    body = body_of(delivered(target, target.account.address, token))
    assert body.split(b"\r\n")[0] == line, f"delivered {body[:200]!r}, sent {line!r}"


# -- 6.1 reliable delivery --------------------------------------------------------------------


@requirement(
    "RFC5321",
    "6.1",
    "MUST",
    "a message answered 250 at the end of its data survives an abrupt restart of the server",
    needs=("restart",),
)
def test_accepted_mail_survives_a_restart(smtp: SMTPConnector, target: Target) -> None:
    # "When the receiver-SMTP accepts a piece of mail (by sending a '250 OK' message in
    # response to DATA), it is accepting responsibility for delivering or relaying the
    # message. [...] It MUST NOT lose the message for frivolous reasons, such as because
    # the host later crashes": the restart comes right after the last 250, no QUIT, as
    # abruptly as the target allows (the reference: its tasks cancelled, nothing flushed).
    assert target.restarter is not None
    client = session(smtp)
    rcpt = target.account.address
    tokens = [marker() for _ in range(3)]
    for n, token in enumerate(tokens, 1):
        client.mail("").expect(250, doing=f"MAIL FROM:<> of message {n}")
        client.rcpt(rcpt).expect(250, doing=f"RCPT TO:<{rcpt}> of message {n}")
        client.data(message(token, to=rcpt, subject=f"restart {n}")).expect(
            250, doing=f"end of data of message {n}"
        )
    target.restarter.restart()
    for token in tokens:
        delivered(target, rcpt, token)
