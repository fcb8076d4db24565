"""SMTP service extensions: SIZE, PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES,
CHUNKING and DSN, each checked only where the server advertises it."""

from __future__ import annotations

import re

from conformance.plugin import SMTPConnector
from conformance.requirements import not_applicable, requirement
from conformance.smtp_client import Reply, SMTPClient, dot_stuff
from conformance.target import Target
from conformance.tests.support import (
    FOREIGN,
    body_of,
    delivered,
    fenced,
    marker,
    message,
    postmaster,
    require_extension,
    transaction,
)

# Sending a message of the advertised maximum takes time; past this the test is skipped.
MAX_SIZE_TO_SEND = 64 * 1024 * 1024


def session(smtp: SMTPConnector) -> SMTPClient:
    return smtp.session("smtp")


# -- RFC 1870 SIZE ----------------------------------------------------------------------------


def size_limit(client: SMTPClient) -> int:
    params = require_extension(client, "SIZE")
    if not params or not params[0].isdigit() or int(params[0]) == 0:
        not_applicable("SIZE is advertised without a fixed maximum")
    return int(params[0])


@requirement(
    "RFC1870", "6", "MUST", "MAIL declaring a SIZE over the fixed maximum gets 552, within it 250"
)
def test_declared_size(smtp: SMTPConnector) -> None:
    client = session(smtp)
    limit = size_limit(client)
    client.mail("", [f"SIZE={limit + 1}"]).expect(552, doing=f"MAIL with SIZE={limit + 1}")
    client.mail("", [f"SIZE={limit}"]).expect(250, doing=f"MAIL with SIZE={limit}")


@requirement(
    "RFC1870",
    "6",
    "MUST",
    "a message larger than the fixed maximum gets 552 after its data, and the session goes on",
)
def test_actual_size_over_the_limit(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    limit = size_limit(client)
    if limit > MAX_SIZE_TO_SEND:
        not_applicable(f"SIZE {limit} is too large to send in a test")
    transaction(client, target)
    client.command("DATA").expect(354, doing="DATA")
    line = b"x" * 998 + b"\r\n"
    head = message(marker(), body=())
    count = (limit - len(head)) // len(line) + 2  # over the limit by at least a line
    client.send(head + line * count + b".\r\n")
    client.read_reply(timeout=max(target.timeout, 60)).expect(
        552, doing=f"end of data of a {len(head) + len(line) * count}-octet message"
    )
    client.noop().expect(250, doing="NOOP after the oversized message")


# -- RFC 2920 PIPELINING ----------------------------------------------------------------------


@requirement(
    "RFC2920",
    "3.2",
    "MUST",
    "pipelined commands are answered in order, an error among them losing none",
)
def test_pipelined_replies_in_order(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    require_extension(client, "PIPELINING")
    pm = postmaster(target)
    # One write: a good RCPT, a malformed one, a good one, then DATA (last in a group).
    client.send(
        f"MAIL FROM:<>\r\nRCPT TO:<{pm}>\r\nRCPT TO:<no closing bracket\r\n"
        f"RCPT TO:<{pm}>\r\nDATA\r\n".encode()
    )
    codes = [client.read_reply().code for _ in range(5)]
    assert codes[0] == 250 and codes[1] == 250, f"MAIL, RCPT: {codes}"
    assert codes[2] in (501, 553), f"the malformed RCPT, third in the group: {codes}"
    assert codes[3:] == [250, 354], f"the RCPT and DATA after the error: {codes}"
    client.send(dot_stuff(message(marker())) + b".\r\n")
    client.read_reply().expect(250, doing="end of pipelined data")


@requirement(
    "RFC2920",
    "3.2",
    "MUST",
    "a transaction pipelined behind the end of the previous message is served in order",
)
def test_next_transaction_pipelined_after_data(smtp: SMTPConnector, target: Target) -> None:
    # RFC 2920 3.1's own example: the final "." is followed at once by the next MAIL.
    client = session(smtp)
    require_extension(client, "PIPELINING")
    pm = postmaster(target)
    client.send(f"MAIL FROM:<>\r\nRCPT TO:<{pm}>\r\nDATA\r\n".encode())
    assert [client.read_reply().code for _ in range(3)] == [250, 250, 354]
    client.send(
        dot_stuff(message(marker(), subject="first"))
        + f".\r\nMAIL FROM:<>\r\nRCPT TO:<{pm}>\r\nDATA\r\n".encode()
    )
    codes = [client.read_reply().code for _ in range(4)]
    assert codes == [250, 250, 250, 354], f"end of data, MAIL, RCPT, DATA: {codes}"
    client.send(dot_stuff(message(marker(), subject="second")) + b".\r\n")
    client.read_reply().expect(250, doing="end of data of the second message")


# -- RFC 6152 8BITMIME ------------------------------------------------------------------------

EIGHT_BIT = "Grüße aus Köln, ½ €, déjà vu".encode()


@requirement(
    "RFC6152", "3", "MUST", "BODY=8BITMIME and BODY=7BIT are taken, 8-bit octets unchanged"
)
def test_8bitmime(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    require_extension(client, "8BITMIME")
    client.mail("", ["BODY=7BIT"]).expect(250, doing="MAIL FROM:<> BODY=7BIT")
    # A session of its own for the 8-bit message: after RSET it would depend on RSET too.
    client = session(smtp)
    token = marker()
    client.mail("", ["BODY=8BITMIME"]).expect(250, doing="MAIL FROM:<> BODY=8BITMIME")
    client.rcpt(target.account.address).expect(250, doing="RCPT TO the test account")
    mime = [b"MIME-Version: 1.0", b"Content-Type: text/plain; charset=utf-8"]
    mime.append(b"Content-Transfer-Encoding: 8bit")
    client.data(message(token, body=[EIGHT_BIT], headers=mime)).expect(
        250, doing="end of data of an 8-bit message"
    )
    body = body_of(delivered(target, target.account.address, token))
    assert EIGHT_BIT in body, f"8-bit text altered on the way: {body[:200]!r}"


# -- RFC 6531 SMTPUTF8 ------------------------------------------------------------------------


@requirement("RFC6531", "3.1", "MUST", "a server offering SMTPUTF8 also offers 8BITMIME")
def test_smtputf8_comes_with_8bitmime(smtp: SMTPConnector) -> None:
    client = session(smtp)
    require_extension(client, "SMTPUTF8")
    assert "8BITMIME" in client.extensions, f"SMTPUTF8 without 8BITMIME: {client.extensions}"


@requirement(
    "RFC6531",
    "3.4",
    "MUST",
    "MAIL with SMTPUTF8 takes a UTF-8 reverse-path, and a UTF-8 message is accepted",
)
def test_smtputf8_transaction(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    require_extension(client, "SMTPUTF8")
    sender = "grüße@bücher.example"
    client.mail(sender, ["SMTPUTF8", "BODY=8BITMIME"]).expect(250, doing=f"MAIL FROM:<{sender}>")
    client.rcpt(postmaster(target)).expect(250, doing="RCPT TO postmaster")
    token = marker()
    msg = message(token, sender=sender, subject="Grüße", body=["Ünïcödé".encode()])
    client.data(msg).expect(250, doing="end of data of a UTF-8 message")


# -- RFC 2034 / RFC 3463 enhanced status codes ------------------------------------------------


def _check_enhanced(reply: Reply, doing: str) -> None:
    # RFC 3463 has classes 2, 4 and 5 only: 3yz replies (354, AUTH's 334) carry none.
    if reply.code // 100 == 3:
        return
    for line in reply.lines:
        m = re.match(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)", line)
        assert m, f"{doing}: reply line without an enhanced status code: {reply.code} {line}"
        assert m.group(1) == str(reply.code)[0], (
            f"{doing}: enhanced code class {m.group(1)} does not match reply {reply.code}"
        )


@requirement(
    "RFC2034",
    "3",
    "MUST",
    "after EHLO, every reply but the 3yz intermediates begins with an enhanced status code",
)
@requirement(
    "RFC3463", "2", "MUST", "an enhanced status code's class is the reply code's first digit"
)
def test_every_reply_carries_an_enhanced_code(smtp: SMTPConnector, target: Target) -> None:
    client = session(smtp)
    require_extension(client, "ENHANCEDSTATUSCODES")
    pm = postmaster(target)
    steps = [
        "NOOP",
        "RSET",
        f"VRFY {pm}",
        "QZVTFROB",  # unknown command
        f"RCPT TO:<{pm}>",  # out of order
        "MAIL FROM:<> QZVT-UNKNOWN=1",
        "MAIL FROM:",
        "MAIL FROM:<>",
        "MAIL FROM:<>",  # nested
        f"RCPT TO:<{pm}>",
        f"RCPT TO:<nobody-{marker()}@{target.domain}>",
        f"RCPT TO:<probe@{FOREIGN}>",
        "RCPT TO:<no closing bracket",
        "DATA",
    ]
    for line in steps:
        _check_enhanced(client.command(line), line)
    client.send(dot_stuff(message(marker())) + b".\r\n")
    _check_enhanced(client.read_reply(), "end of data")
    _check_enhanced(client.command("DATA"), "DATA without a transaction")
    _check_enhanced(client.quit(), "QUIT")


# -- RFC 3030 CHUNKING ------------------------------------------------------------------------


def chunking(smtp: SMTPConnector) -> SMTPClient:
    client = session(smtp)
    require_extension(client, "CHUNKING")
    return client


@requirement(
    "RFC3030", "2", "MUST", "BDAT chunks make a message; BDAT LAST (even of 0 octets) ends it"
)
def test_bdat_message(smtp: SMTPConnector, target: Target) -> None:
    client = chunking(smtp)
    transaction(client, target)
    msg = message(marker())
    half = len(msg) // 2
    client.bdat(msg[:half]).expect(250, doing="BDAT first chunk")
    client.bdat(msg[half:], last=True).expect(250, doing="BDAT LAST")
    transaction(client, target)
    client.bdat(message(marker())).expect(250, doing="BDAT the whole message")
    client.bdat(b"", last=True).expect(250, doing="BDAT 0 LAST")


@requirement(
    "RFC3030",
    "2",
    "MUST",
    "BDAT octets are data, never commands: no dot-stuffing, and '.' alone does not end it",
)
def test_bdat_is_binary_transparent(smtp: SMTPConnector, target: Target) -> None:
    token = marker()
    lines = [b"..two dots stay two", b".", b"MAIL FROM:<smuggled@client.test>", b"last"]
    client = chunking(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    client.rcpt(target.account.address).expect(250, doing="RCPT TO the test account")
    chunk = message(token, body=lines)
    replies = fenced(client, target, f"BDAT {len(chunk)} LAST\r\n".encode() + chunk)
    assert [r.code for r in replies] == [250], f"BDAT LAST: {[str(r) for r in replies]}"
    body = body_of(delivered(target, target.account.address, token))
    assert body.split(b"\r\n")[: len(lines)] == lines, f"chunk altered: {body[:300]!r}"


@requirement(
    "RFC3030",
    "2",
    "MUST",
    "a refused BDAT still consumes its chunk: its octets never run as commands",
)
def test_refused_bdat_consumes_its_chunk(smtp: SMTPConnector, target: Target) -> None:
    client = chunking(smtp)
    chunk = b"MAIL FROM:<>\r\nNOOP\r\n"
    # No transaction: BDAT is out of order, but its 20 octets follow all the same.
    replies = fenced(client, target, f"BDAT {len(chunk)}\r\n".encode() + chunk)
    assert len(replies) == 1, f"the chunk's octets ran as commands: {[str(r) for r in replies]}"
    assert replies[0].code in (503, 554), f"BDAT without MAIL: expected 503, got {replies[0]}"
    client.noop().expect(250, doing="NOOP after the refused chunk")


@requirement("RFC3030", "2", "MUST", "DATA after BDAT in one transaction gets 503")
def test_data_after_bdat(smtp: SMTPConnector, target: Target) -> None:
    client = chunking(smtp)
    transaction(client, target)
    client.bdat(b"Subject: half\r\n").expect(250, doing="BDAT a first chunk")
    client.command("DATA").expect(503, doing="DATA after BDAT")
    client.rset().expect(250, doing="RSET")


@requirement("RFC3030", "2", "MUST", "BDAT over the SIZE maximum gets 552")
def test_bdat_over_the_size_limit(smtp: SMTPConnector, target: Target) -> None:
    client = chunking(smtp)
    limit = size_limit(client)
    if limit > MAX_SIZE_TO_SEND:
        not_applicable(f"SIZE {limit} is too large to send in a test")
    transaction(client, target)
    chunk = message(marker()) + b"x" * limit
    client.send(f"BDAT {len(chunk)} LAST\r\n".encode() + chunk)
    client.read_reply(timeout=max(target.timeout, 60)).expect(
        552, doing=f"BDAT LAST of {len(chunk)} octets"
    )
    client.noop().expect(250, doing="NOOP after the oversized chunk")


# -- RFC 3461 DSN -----------------------------------------------------------------------------


def dsn(smtp: SMTPConnector) -> SMTPClient:
    client = session(smtp)
    require_extension(client, "DSN")
    return client


@requirement("RFC3461", "4", "MUST", "MAIL takes RET=FULL|HDRS and ENVID=xtext")
def test_dsn_mail_parameters(smtp: SMTPConnector, target: Target) -> None:
    client = dsn(smtp)
    for params in (["RET=FULL"], ["RET=HDRS", "ENVID=QQ+2Bid-1"], ["ENVID=env.id.2"]):
        client.mail("", params).expect(250, doing=f"MAIL FROM:<> {' '.join(params)}")
        client.rset().expect(250, doing="RSET")


@requirement("RFC3461", "4", "MUST", "RCPT takes NOTIFY=NEVER or SUCCESS,FAILURE,DELAY and ORCPT")
def test_dsn_rcpt_parameters(smtp: SMTPConnector, target: Target) -> None:
    client = dsn(smtp)
    pm = postmaster(target)
    client.mail("", ["RET=HDRS", "ENVID=conformance-1"]).expect(250, doing="MAIL with DSN")
    for params in (
        ["NOTIFY=NEVER"],
        ["NOTIFY=SUCCESS,FAILURE,DELAY"],
        [f"ORCPT=rfc822;{pm}"],
        ["NOTIFY=FAILURE", f"ORCPT=rfc822;{pm.replace('@', '+40')}"],
    ):
        client.rcpt(pm, params).expect(250, doing=f"RCPT TO:<{pm}> {' '.join(params)}")
    client.data(message(marker())).expect(250, doing="end of data with DSN parameters")


@requirement("RFC3461", "4.1", "MUST", "NOTIFY=NEVER combined with another value gets 501")
def test_notify_never_is_alone(smtp: SMTPConnector, target: Target) -> None:
    # "NEVER ... MUST NOT be combined with any other keyword"; a malformed parameter is a
    # syntax error (501).
    client = dsn(smtp)
    client.mail("").expect(250, doing="MAIL FROM:<>")
    pm = postmaster(target)
    client.rcpt(pm, ["NOTIFY=NEVER,SUCCESS"]).expect(501, doing="NOTIFY=NEVER,SUCCESS")
    client.rcpt(pm).expect(250, doing="RCPT without it")
