"""The mutation catalogue: for each requirement, a bug planted in a small server that the
conformance suite must catch (tests/test_mutation.py runs them; tests/broken_servers.py
plants them).

A mutant is caught when, run against the server with that one flaw, the suite fails the
requirement it names and no requirement the same server passes without the flaw (the
control): the failure lands where the bug is. Requirements are named by source and title,
which stay put when other requirements are added (ids with a suffix may not).

``DEFAULT`` are the mutants the default ``tox`` run plants: the bugs most often found in real
servers (smuggling, open relay, STARTTLS/STLS injection, transaction state, transparency
of the body, POP3's UPDATE state). ``pytest tests/test_mutation.py --mutants all`` plants
every one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT", "MUTANTS", "MUTATION_REPORT", "Mutant"]

# Where the last mutation run writes its results (read by `mailspec check --coverage`).
MUTATION_REPORT = "reports/mutation/mutation.json"

SMTP = (
    "conformance.tests.test_smtp_basics",
    "conformance.tests.test_smtp_rfc5321",
    "conformance.tests.test_smtp_extensions",
    "conformance.tests.test_smtp_security",
    "conformance.tests.test_smtp_control_chars",
    "conformance.tests.test_smtp_starttls_auth",
)
POP3 = ("conformance.tests.test_pop3_session", "conformance.tests.test_pop3_transaction")
IMAP = ("conformance.tests.test_imap_mailboxes", "conformance.tests.test_imap_concurrency")


@dataclass(frozen=True)
class Mutant:
    """One flaw of tests/broken_servers.py and the requirement it must make fail."""

    flaw: str
    source: str
    title: str
    modules: tuple[str, ...] = SMTP
    # Other requirements the flaw breaks too, by design (same behaviour, another angle).
    also: tuple[str, ...] = ()
    # Caught before any test runs: the endpoint probe refuses the target, naming the flaw.
    probe: bool = False
    # Why the suite cannot yet catch it where it is (reported as missed, an expected miss).
    gap: str = ""
    # Planted in the reference itself (a reference.faults switch), not in a small server.
    fault: bool = False


def _pop3(flaw: str, source: str, title: str, *also: str, probe: bool = False) -> Mutant:
    return Mutant(flaw, source, title, POP3, also, probe)


MUTANTS: tuple[Mutant, ...] = (
    # RFC 5321 4.1.1.4 / 2.3.8: the end of data, smuggling
    Mutant(
        "lf-dot-lf",
        "RFC5321",
        "only <CRLF>.<CRLF> ends mail data: no bare CR/LF variant ends it or smuggles a message",
    ),
    Mutant(
        "open-relay",
        "PLATFORM",
        "mail for other domains is refused without AUTH, whatever the address disguise",
    ),
    Mutant(
        "starttls-injection",
        "RFC3207",
        "commands pipelined behind STARTTLS in plaintext are discarded, never run inside TLS",
    ),
    Mutant(
        "control-characters",
        "RFC5321",
        "EHLO or HELO whose domain carries a NUL or other control character gets 5yz (501)",
        also=(
            "a MAIL FROM or RCPT TO path carrying a NUL gets a syntax refusal (501 or 553)",
            "a MAIL FROM or RCPT TO path carrying another control character (SOH, HT, VT, ESC, "
            "DEL) gets a syntax refusal (501 or 553)",
        ),
    ),
    # RFC 6152, RFC 5321 4.5.2, 4.5.3.1.6: what is stored is what was sent
    Mutant(
        "eight-bit-stripped",
        "RFC6152",
        "BODY=8BITMIME and BODY=7BIT are taken, 8-bit octets unchanged",
    ),
    Mutant(
        "dots-kept",
        "RFC5321",
        "dot-stuffing is removed: a sent '..' arrives as '.'",
        # That test's 1000-octet line is sent stuffed ("not counting the leading dot").
        also=("a text line of 1000 octets is accepted",),
    ),
    Mutant("long-lines-cut", "RFC5321", "a text line of 1000 octets is accepted"),
    # RFC 5321 4.1.4, 4.1.1.x: the transaction's state
    Mutant("rcpt-without-mail", "RFC5321", "commands out of order get 503 and change nothing"),
    Mutant(
        "rset-keeps-sender",
        "RFC5321",
        "RSET gets 250, discards the transaction, keeps the session",
    ),
    Mutant("noop-resets", "RFC5321", "NOOP leaves an open transaction as it was"),
    Mutant(
        "ehlo-keeps-transaction", "RFC5321", "EHLO during a transaction resets it, as RSET does"
    ),
    Mutant("quit-stays-open", "RFC5321", "QUIT gets 221 and the server closes the connection"),
    Mutant("unknown-hangs-up", "RFC5321", "an unknown command does not end the session"),
    Mutant("verbs-case-sensitive", "RFC5321", "command verbs are not case sensitive"),
    Mutant("one-transaction", "RFC5321", "a session carries several mail transactions in turn"),
    Mutant(
        "null-sender-refused",
        "RFC5321",
        "a message with the null reverse-path (MAIL FROM:<>) is accepted",
        gap="the suite sends as <> throughout (no sender domain for a target to look up), so "
        "a server that refuses <> fails most transaction requirements with it",
    ),
    Mutant(
        "no-bare-postmaster",
        "RFC5321",
        "postmaster is accepted: at the domain, without a domain, in any case",
    ),
    Mutant("few-recipients", "RFC5321", "a transaction takes at least 100 recipients"),
    Mutant("short-lines", "RFC5321", "a command line of 512 octets is accepted"),
    Mutant("short-local-part", "RFC5321", "a 64-octet local part is not refused as too long"),
    Mutant(
        "helo-refused",
        "RFC5321",
        "HELO is supported and gets 250",
        also=("EHLO or HELO without a domain gets 501",),
    ),
    Mutant("greeting-nameless", "RFC5321", "the greeting is 220 followed by the server's name"),
    Mutant("double-reply", "RFC5321", "every command gets exactly one reply"),
    Mutant(
        "source-route-refused",
        "RFC5321",
        "a source route is accepted and ignored: <@a,@b:user@d> is user@d",
    ),
    # RFC 3207
    Mutant("starttls-param", "RFC3207", "STARTTLS with a parameter gets 501"),
    Mutant(
        "starttls-readvertised",
        "RFC3207",
        "EHLO after the TLS handshake does not offer STARTTLS again",
    ),
    Mutant(
        "starttls-keeps-helo",
        "RFC3207",
        "after STARTTLS the server forgets the EHLO: MAIL before a new EHLO gets 503",
    ),
    Mutant(
        "starttls-keeps-transaction",
        "RFC3207",
        "a transaction begun before STARTTLS does not survive it",
    ),
    # RFC 1939, RFC 2449, RFC 2595: POP3
    _pop3("pop3-greeting-err", "RFC1939", "the greeting is a positive response (+OK)", probe=True),
    _pop3("pop3-noop-err", "RFC1939", "NOOP answers +OK"),
    _pop3(
        "pop3-stat-size",
        "RFC1939",
        "STAT answers +OK with the message count and the size in octets",
    ),
    _pop3(
        "pop3-list-one-wrong",
        "RFC1939",
        "LIST gives each message's number and size; LIST n one of them",
    ),
    _pop3(
        "pop3-no-byte-stuffing",
        "RFC1939",
        "multi-line responses byte-stuff lines that begin with '.' and end with '.'",
        # The unstuffed ".dot first" line reads back as "dot first" through TOP as well.
        "TOP n k returns the header, the blank line and k body lines",
    ),
    _pop3("pop3-retr-short", "RFC1939", "RETR returns the whole message"),
    _pop3(
        "pop3-top-whole", "RFC1939", "TOP n k returns the header, the blank line and k body lines"
    ),
    _pop3(
        "pop3-uidl-unstable",
        "RFC1939",
        "UIDL gives each message a unique id that stays the same across sessions",
    ),
    _pop3(
        "pop3-dele-ignored",
        "RFC1939",
        "a deleted message cannot be read or listed, and RSET undeletes it",
    ),
    _pop3(
        "pop3-rset-ignored",
        "RFC1939",
        "a deleted message cannot be read or listed, and RSET undeletes it",
    ),
    _pop3(
        "pop3-quit-keeps",
        "RFC1939",
        "QUIT enters UPDATE and removes the messages marked as deleted",
    ),
    _pop3(
        "pop3-drop-updates",
        "RFC1939",
        "a session that ends without QUIT removes nothing (no UPDATE)",
    ),
    _pop3(
        "pop3-control-user",
        "RFC1939",
        "a command whose argument carries a NUL or other control character gets -ERR "
        "(arguments are printable ASCII), and logs no one in",
    ),
    _pop3(
        "pop3-capa-err", "RFC2449", "CAPA answers a multi-line list of capabilities, in any state"
    ),
    _pop3(
        "pop3-stls-readvertised",
        "RFC2595",
        "STLS is advertised before TLS, starts TLS, and is no longer offered afterwards",
    ),
    _pop3(
        "pop3-plaintext-login",
        "PLATFORM",
        "USER/PASS and AUTH PLAIN are refused before TLS",
    ),
    _pop3(
        "pop3-stls-injection",
        "PLATFORM",
        "commands pipelined behind STLS are discarded, not run after the handshake",
    ),
    # RFC 3501: planted in the reference (reference/faults.py), read over its IMAP
    Mutant(
        "mailbox.recent-for-all",
        "RFC3501",
        "\\Recent is given to one session: the first SELECT reports the new message RECENT, "
        "a second session's SELECT does not",
        IMAP,
        fault=True,
    ),
    # RFC 3030 and RFC 4954: planted in the reference's SMTP server
    Mutant(
        "smtp.bdat-refused-chunk-unread",
        "RFC3030",
        "a refused BDAT still consumes its chunk: its octets never run as commands",
        fault=True,
    ),
    # RFC 5321 6.1: the 250 before the spool is written; the restart then loses the message
    Mutant(
        "smtp.ack-before-spool",
        "RFC5321",
        "a message answered 250 at the end of its data survives an abrupt restart of the server",
        ("conformance.tests.test_smtp_rfc5321",),
        fault=True,
    ),
    Mutant(
        "smtp.auth-bad-base64-535",
        "RFC4954",
        "an AUTH response that is not base64 gets 501",
        fault=True,
    ),
    Mutant(
        "mailbox.uidvalidity-from-clock",
        "RFC3501",
        "a mailbox deleted and created again under the same name gets a new UIDVALIDITY",
        IMAP,
        fault=True,
    ),
)

# The default run's mutants: the bugs real servers have had most (see the docstring).
DEFAULT = (
    "lf-dot-lf",
    "open-relay",
    "starttls-injection",
    "dots-kept",
    "rcpt-without-mail",
    "rset-keeps-sender",
    "pop3-stls-injection",
    "pop3-drop-updates",
    "pop3-no-byte-stuffing",
)
assert set(DEFAULT) <= {m.flaw for m in MUTANTS}
