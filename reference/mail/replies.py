"""SMTP replies as values: a frozen Reply and the named constants the platform sends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: basic code (RFC 5321 4.2), enhanced code (RFC 3463), text."""

    code: int
    enhanced: str
    text: str

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text)

    def format(self, **values: object) -> Reply:
        """The reply with its ``{placeholders}`` filled in."""
        return Reply(self.code, self.enhanced, self.text.format(**values))

    def __str__(self) -> str:
        lines = self.text.split("\n")
        head = f"{self.code} {self.enhanced}" if self.enhanced else f"{self.code}"
        # RFC 5321 4.2.1: every line but the last carries a hyphen right after the code.
        out = [f"{self.code}-{head[4:]} {line}".replace("- ", "-", 1) for line in lines[:-1]]
        out.append(f"{head} {lines[-1]}")
        return "\r\n".join(out)


# Positive
OK = Reply(250, "2.0.0", "OK")
TLS_READY = Reply(220, "2.0.0", "Ready to start TLS")
BYE = Reply(221, "2.0.0", "Bye")
CHUNK_RECEIVED = Reply(250, "2.0.0", "{size} octets received")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
QUEUED = Reply(250, "2.0.0", "Ok: queued as {qid}")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")

# Intermediate (RFC 5321 4.2: 3yz replies carry no enhanced code, RFC 2034 3)
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")

# Transient
TIMEOUT = Reply(421, "4.4.2", "Error: timeout exceeded")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Error: too many errors")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
TEMP_LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")
SPOOL_FULL = Reply(452, "4.3.1", "Insufficient system storage, try again later")
# RFC 4954 6: 454 4.7.0 is the temporary authentication failure. A lockout ends on its own,
# and a 535 would tell the client its (maybe right) password is wrong.
AUTH_LOCKED = Reply(454, "4.7.0", "Too many failed logins: temporarily locked, try again later")
# The directory's database is down (a MariaDB restarting): the client tries again later, as
# it would for any 4xx; never a 5xx, which would bounce mail or make a user retype a password.
DIRECTORY_UNAVAILABLE = Reply(451, "4.3.0", "Directory temporarily unavailable, try again later")
STATE_UNAVAILABLE = Reply(451, "4.3.0", "Policy state temporarily unavailable, try again later")
AUTH_UNAVAILABLE = Reply(
    454, "4.7.0", "Temporary authentication failure: directory unavailable, try again later"
)

TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_FROM_CLIENT = Reply(
    421, "4.7.0", "Too many connections from your address, try again later"
)

# The PROXY header (v1 or v2) from a trusted network did not parse: hang up.
BAD_PROXY_HEADER = Reply(421, "4.7.0", "Error: malformed PROXY header")

# Permanent
UNKNOWN_COMMAND = Reply(500, "5.5.2", "Error: command not recognized")
EMPTY_COMMAND = Reply(500, "5.5.2", "Error: bad syntax")
LINE_TOO_LONG = Reply(500, "5.5.2", "Error: line too long")
DATA_LINE_TOO_LONG = Reply(
    500, "5.5.2", "Message refused: a line is longer than 1000 octets (RFC 5321 4.5.3.1.6)"
)
# SMTP smuggling (CVE-2023-51764 and relatives): a line ends only at CRLF, in commands and
# in mail data; refusing bare LF and bare CR is what Postfix's smtpd_forbid_bare_newline does.
BARE_LF_COMMAND = Reply(
    500, "5.5.2", "Error: bare LF received (see https://www.postfix.org/smtp-smuggling.html)"
)
BARE_CR_COMMAND = Reply(
    500, "5.5.2", "Error: bare CR received (see https://www.postfix.org/smtp-smuggling.html)"
)
BARE_NEWLINE_DATA = Reply(
    550,
    "5.5.2",
    "Message refused: bare LF or CR not allowed (see https://www.postfix.org/smtp-smuggling.html)",
)
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
NESTED_MAIL = Reply(503, "5.5.1", "Error: nested MAIL command")
NEED_MAIL = Reply(503, "5.5.1", "Error: need MAIL command")
NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
DATA_AFTER_BDAT = Reply(503, "5.5.1", "Error: DATA in a BDAT transaction (RFC 3030 2)")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "Error: AUTH not allowed during a mail transaction")
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1", "Error: TLS already active")
SYNTAX_ERROR = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
NO_SUCH_USER = Reply(550, "5.1.1", "No such user here")
MAILBOX_DISABLED = Reply(550, "5.2.1", "Mailbox disabled")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
# A bounce to a rewritten return path (SRS) that we did not sign, or signed too long ago.
SRS_FORGED = Reply(550, "5.7.1", "Invalid bounce address: not one this server made (SRS)")
SRS_EXPIRED = Reply(550, "5.1.1", "Bounce address expired: the forwarded mail is too old (SRS)")
# A private distribution list: posts only from its members, or from users signed in here.
LIST_POLICY = Reply(550, "5.7.1", "List {address} accepts posts only from {who} (list policy)")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")
# RFC 6409 6.3: a message refused after DATA for what the submitting user may do is 550 5.7.1.
FROM_NOT_OWNED = Reply(550, "5.7.1", "From: address not owned by the authenticated user")
BAD_ADDRESS = Reply(553, "5.1.3", "Bad address syntax")
# RFC 5321 4.1.2: no argument of any command carries a control character (NUL, the other
# CTLs, DEL): paths, domains, ESMTP values and strings are built from printable characters.
# Refused before the octet can reach a Received: field, an envelope or a log line.
CONTROL_IN_ARGUMENT = Reply(501, "5.5.4", "Error: control character in command arguments")
# RFC 5321 4.2.2: 553, "mailbox name not allowed (e.g., mailbox syntax incorrect)"; RFC 3463
# 3.2: X.1.7 is the sender's address syntax, X.1.3 the recipient's.
CONTROL_IN_SENDER = Reply(553, "5.1.7", "Sender address contains a control character")
CONTROL_IN_RECIPIENT = Reply(553, "5.1.3", "Recipient address contains a control character")
# RFC 4616 2 and SASLprep (RFC 4013 2.3): no control character in an identity; a response
# that is not a well-formed PLAIN or LOGIN answer is 501 5.5.2, as an undecodable one is
# (RFC 4954 4).
CONTROL_IN_IDENTITY = Reply(501, "5.5.2", "Error: control character in the authentication identity")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message too big")
# What the MAIL and RCPT parsers refuse (RFC 5321 4.1.2, RFC 1869 6, RFC 6531 3.4).
BAD_ARGUMENTS = Reply(501, "5.5.4", "{detail}")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
NEEDS_SMTPUTF8 = Reply(553, "5.6.7", "Non-ASCII address {address} needs SMTPUTF8")
UNSUPPORTED_PARAMETER = Reply(555, "5.5.4", "Unsupported parameter {key}")
# Syntax of the commands the session handles itself (the texts aiosmtpd used, kept).
SYNTAX_EHLO = Reply(501, "5.5.4", "Syntax: EHLO hostname")
SYNTAX_HELO = Reply(501, "5.5.4", "Syntax: HELO hostname")
SYNTAX_STARTTLS = Reply(501, "5.5.4", "Syntax: STARTTLS")
SYNTAX_DATA = Reply(501, "5.5.4", "Syntax: DATA")
SYNTAX_RSET = Reply(501, "5.5.4", "Syntax: RSET")
SYNTAX_QUIT = Reply(501, "5.5.4", "Syntax: QUIT")
SYNTAX_VRFY = Reply(501, "5.5.4", "Syntax: VRFY <address>")
SEND_HELO_FIRST = Reply(503, "5.5.1", "Error: send HELO first")
SEND_EHLO_FIRST = Reply(503, "5.5.1", "Error: send EHLO first")
SEND_HELO_EHLO_FIRST = Reply(503, "5.5.1", "Error: send HELO/EHLO first")
# RFC 5321 3.5.3: VRFY answers 252 (it neither confirms nor denies a mailbox), EXPN 502.
CANNOT_VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
VRFY_UNPARSABLE = Reply(502, "5.5.1", "Could not VRFY {arg}")
EXPN_NOT_IMPLEMENTED = Reply(502, "5.5.1", "EXPN not implemented")
# RFC 5321 4.1.1.8: HELP lists the commands, or gives one's syntax.
HELP = Reply(250, "2.0.0", "Supported commands: {commands}")
HELP_SYNTAX = Reply(250, "2.0.0", "Syntax: {syntax}")
HELP_UNKNOWN = Reply(501, "5.5.4", "Supported commands: {commands}")
# AUTH (RFC 4954): after HELO the verb is unknown; then the checks of its arguments.
AUTH_UNKNOWN = Reply(500, "5.5.2", "Error: command 'AUTH' not recognized")
AUTH_NEEDS_TLS = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_ALREADY = Reply(503, "5.5.1", "Already authenticated")
AUTH_NO_MECHANISM = Reply(501, "5.5.4", "Not enough value")
AUTH_TOO_MANY_VALUES = Reply(501, "5.5.4", "Too many values")
AUTH_UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_BAD_BASE64 = Reply(501, "5.5.2", "Can't decode base64")
AUTH_BAD_PLAIN = Reply(501, "5.5.2", "Can't split auth value")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_ABORTED = Reply(501, "5.7.0", "Auth aborted")  # RFC 4954 4: the client sent "*"
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")

# -- what the policy answers (reference.policy): refusals name the reason, the detail is
# logged with the queue id (STYLE: tell the client what happened, keep internals in the log)

# MAIL
QUEUE_FULL = Reply(451, "4.3.2", "System busy: too much mail waiting here, please try again later")
HELO_BAD_LITERAL = Reply(501, "5.5.2", "Invalid address literal in HELO: {helo}")
HELO_BAD_NAME = Reply(501, "5.5.2", "Invalid HELO name: {helo}")
HELO_OUR_ADDRESS = Reply(550, "5.7.1", "HELO {helo} is our address, not yours")
HELO_OUR_NAME = Reply(550, "5.7.1", "HELO {helo} is our own name, not yours")
# RCPT
GREYLISTED = Reply(451, "4.7.1", "Greylisted, please try again in {wait} seconds")
DNSBL_LISTED = Reply(554, "5.7.1", "{text}")
MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full, please try again later")
SENDER_BLOCKED = Reply(550, "5.7.1", "Sender blocked by recipient")
# An administrator's access list, worded as Postfix's (whose access_map_reject_code is 554
# too) with the rule's own text; a restricted recipient takes mail from our own
# authenticated users only.
ACCESS_DENIED = Reply(554, "5.7.1", "<{value}>: {what} rejected: {text}")
ACCESS_RESTRICTED = Reply(550, "5.7.1", "<{value}>: Recipient address rejected: {text}")
# A class of service: no mail to other domains; a smaller largest message than the server's.
COS_NO_EXTERNAL = Reply(
    550, "5.7.1", "Your class of service ({cos}) does not send to other domains"
)
COS_TOO_BIG = Reply(
    552, "5.3.4", "Message too big for the class of service (at most {limit} bytes)"
)
# A class of service without lists: its users post to none, and a list it owns takes nothing.
COS_NO_LISTS = Reply(550, "5.7.1", "Your class of service ({cos}) does not post to lists")
COS_LIST_CLOSED = Reply(
    550, "5.7.1", "List {address} is closed: its owner's class of service ({cos}) runs no lists"
)
# RFC 5429 2.1: the recipient's own Sieve script rejected the message: its reason.
SIEVE_REJECTED = Reply(550, "5.7.1", "{reason}")
# RFC 4954-style rate limits: a request over the limit by itself, and a full window.
OVER_RATE_LIMIT = Reply(552, "5.3.4", "Over the rate limit of {limit} {kind}")
RATE_LIMITED = Reply(
    450, "4.7.1", "Rate limit reached: {limit} {kind}; try again after {when} (in {wait} s)"
)
# DATA
VIRUS_REFUSED = Reply(554, "5.7.1", "Message refused: virus {virus} found")
VIRUS_NOT_SENT = Reply(
    550,
    "5.7.1",
    "Your message was not sent: it contains a virus ({virus}). Remove the infected attachment "
    "and send it again.",
)
SCANNER_UNAVAILABLE = Reply(451, "4.7.0", "Virus scanner unavailable, please try again later")
SPAM_REFUSED = Reply(550, "5.7.1", "Message refused as spam (score {score}, threshold {threshold})")
SPAM_NOT_SENT = Reply(
    550,
    "5.7.1",
    "Your message was not sent because it looks like spam (score {score}, threshold "
    "{threshold}). Check its links and attachments, or ask your administrator",
)
# RFC 7489 6.6.3/10.3 wants the refusal to say why; the detail stays in the log.
DMARC_REJECTED = Reply(
    550, "5.7.1", "Message refused: not authenticated for {domain}, whose DMARC policy is reject"
)
DNS_TEMPFAIL = Reply(
    451, "4.4.3", "Temporary DNS failure authenticating the sender, try again later"
)
DKIM_SIGNING_FAILED = Reply(451, "4.3.0", "Cannot DKIM-sign the message now, try again later")
