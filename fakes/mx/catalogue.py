"""Named SMTP replies that large receivers really send, for fake MXs to answer with.

Each entry is a reply a receiver publicly documents or that is widely seen in bounces
(Gmail, Outlook/Exchange Online, Yahoo, DNS blocklists as rendered by Postfix, greylisting
daemons), with a category saying what kind of refusal it is, so a relay's reply
classifier can be tested against realistic text.

Names are ``<who>.<what>.<class>`` where class is ``4xx``/``5xx`` (or the exact code for
the generic tempfails). Texts may hold placeholders filled per session: ``{ip}`` (client
address), ``{helo}``, ``{hostname}`` (the fake MX's name), ``{sender}``,
``{sender_domain}``, ``{rcpt}``, ``{rcpt_domain}``. A ``\\n`` in a text starts a new
reply line, as Gmail wraps its replies. The fake MX advertises ENHANCEDSTATUSCODES, so
every entry carries an enhanced code (RFC 2034), even where a receiver omits one.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["ENTRIES", "Category", "Entry", "Reply", "get", "reply"]

_REPLY = re.compile(r"([2-5]\d\d)(?: ([2-5]\.\d{1,3}\.\d{1,3}))?(?: (.*))?", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Reply:
    """An SMTP reply as a value: ``Reply(550, "5.7.1", "text")``; ``\\n`` splits lines."""

    code: int
    enhanced: str = ""
    text: str = ""
    name: str = field(default="", compare=False)  # the catalogue entry it came from, if any

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if self.enhanced and self.enhanced[0] != str(self.code)[0]:
            # RFC 3463 2: the class digit of the enhanced code matches the reply's.
            raise ValueError(f"enhanced code {self.enhanced} does not match {self.code}")
        if "\r" in self.text:
            raise ValueError("reply text must not contain CR")

    @classmethod
    def parse(cls, text: str) -> Reply:
        """Parse ``"550 5.7.1 text"`` (our one-string form; ``\\n`` separates lines)."""
        m = _REPLY.fullmatch(text.strip())
        if not m:
            raise ValueError(f"not a reply (want 'CODE X.Y.Z text'): {text!r}")
        return cls(int(m[1]), m[2] or "", m[3] or "")

    @property
    def positive(self) -> bool:
        return self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def fill(self, values: Mapping[str, str]) -> Reply:
        """The reply with its ``{placeholders}`` replaced; unknown ones stay as they are."""
        text = _PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), self.text)
        return Reply(self.code, self.enhanced, text, self.name)

    def lines(self) -> list[str]:
        """The reply as it goes on the wire, one string per line, without CRLF."""
        parts = self.text.split("\n")
        head = f"{self.enhanced} " if self.enhanced else ""
        out = []
        for i, part in enumerate(parts):
            sep = " " if i == len(parts) - 1 else "-"  # RFC 5321 4.2.1 multiline replies
            out.append(f"{self.code}{sep}{head}{part}".rstrip())
        return out

    def wire(self) -> str:
        return "\r\n".join(self.lines())

    def __str__(self) -> str:
        return " ".join(str(p) for p in (self.code, self.enhanced, self.text) if p != "")


class Category(enum.StrEnum):
    """What kind of refusal a reply is: what a relay should do about it differs."""

    BLOCKLIST = "blocklist"  # the client IP is on a DNS blocklist
    REPUTATION = "reputation"  # the receiver's own judgement of the IP or domain
    RATE = "rate"  # too much, too fast: slow down
    GREYLIST = "greylist"  # retry later and it will pass
    SPAM = "spam"  # this message's content was judged spam
    AUTH = "auth"  # SPF, DKIM or DMARC did not pass
    POLICY = "policy"  # the receiver's local policy
    TLS = "tls"  # encryption required
    RECIPIENT = "recipient"  # no such mailbox
    CAPACITY = "capacity"  # mailbox or server full or busy
    SERVER = "server"  # the receiver's own trouble


@dataclass(frozen=True)
class Entry:
    """A named catalogue reply."""

    name: str
    code: int
    enhanced: str
    text: str
    category: Category

    @property
    def reply(self) -> Reply:
        return Reply(self.code, self.enhanced, self.text, name=self.name)


def _entries(*entries: Entry) -> Mapping[str, Entry]:
    table = {e.name: e for e in entries}
    assert len(table) == len(entries), "duplicate catalogue name"
    return MappingProxyType(table)


# fmt: off
ENTRIES: Mapping[str, Entry] = _entries(
    # Gmail (support.google.com/a/answer/3726730). Gmail wraps at about 70 columns.
    Entry(
        "gmail.reputation.4xx", 421, "4.7.0",
        "[{ip}] This message is suspicious due to the very low reputation of the\n"
        "sending IP address. To protect our users from spam, mail sent from your IP\n"
        "address has been temporarily rate limited. For more information, go to\n"
        "https://support.google.com/mail/answer/188131 to review our Bulk Email\n"
        "Senders Guidelines. - gsmtp",
        Category.REPUTATION,
    ),
    Entry(
        "gmail.reputation.5xx", 550, "5.7.1",
        "[{ip}] Our system has detected an unusual rate of unsolicited mail\n"
        "originating from your IP address. To protect our users from spam, mail sent\n"
        "from your IP address has been blocked. Please visit\n"
        "https://support.google.com/mail/?p=UnsolicitedIPError to review our Bulk\n"
        "Email Senders Guidelines. - gsmtp",
        Category.REPUTATION,
    ),
    Entry(
        "gmail.rate.4xx", 421, "4.7.28",
        "[{ip}] Our system has detected an unusual rate of unsolicited mail\n"
        "originating from your IP address. To protect our users from spam, mail sent\n"
        "from your IP address has been temporarily rate limited. Please visit\n"
        "https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our\n"
        "Bulk Email Senders Guidelines. - gsmtp",
        Category.RATE,
    ),
    Entry(
        "gmail.receiving-rate.4xx", 450, "4.2.1",
        "The user you are trying to contact is receiving mail too quickly. Please\n"
        "resend your message at a later time. If the user is able to receive mail at\n"
        "that time, your message will be delivered. For more information, go to\n"
        "https://support.google.com/mail/?p=ReceivingRate - gsmtp",
        Category.RATE,
    ),
    Entry(
        "gmail.spam.4xx", 421, "4.7.0",
        "[{ip}] This message is suspicious due to the nature of the content or the\n"
        "links within. To best protect our users from spam, the message has been\n"
        "blocked. For more information, go to\n"
        "https://support.google.com/mail/answer/188131 - gsmtp",
        Category.SPAM,
    ),
    Entry(
        "gmail.spam.5xx", 550, "5.7.1",
        "[{ip}] Our system has detected that this message is likely unsolicited\n"
        "mail. To reduce the amount of spam sent to Gmail, this message has been\n"
        "blocked. For more information, go to\n"
        "https://support.google.com/mail/?p=UnsolicitedMessageError - gsmtp",
        Category.SPAM,
    ),
    Entry(
        "gmail.nouser.5xx", 550, "5.1.1",
        "The email account that you tried to reach does not exist. Please try\n"
        "double-checking the recipient's email address for typos or unnecessary\n"
        "spaces. For more information, go to\n"
        "https://support.google.com/mail/?p=NoSuchUser - gsmtp",
        Category.RECIPIENT,
    ),
    Entry(
        "gmail.quota.4xx", 452, "4.2.2",
        "The recipient's inbox is out of storage space. Please direct the recipient\n"
        "to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
        Category.CAPACITY,
    ),
    Entry(
        "gmail.dmarc.5xx", 550, "5.7.26",
        "Unauthenticated email from {sender_domain} is not accepted due to domain's\n"
        "DMARC policy. Please contact the administrator of {sender_domain} domain if\n"
        "this was a legitimate mail. To learn about the DMARC initiative, go to\n"
        "https://support.google.com/mail/?p=DmarcRejection - gsmtp",
        Category.AUTH,
    ),
    Entry(
        "gmail.unauthenticated.5xx", 550, "5.7.26",
        "This mail has been blocked because the sender is unauthenticated. Gmail\n"
        "requires all senders to authenticate with either SPF or DKIM. For more\n"
        "information, go to https://support.google.com/mail/answer/81126 - gsmtp",
        Category.AUTH,
    ),
    Entry(
        "gmail.tls.5xx", 530, "5.7.0",
        "Must issue a STARTTLS command first. - gsmtp",
        Category.TLS,
    ),
    # Outlook.com and Exchange Online (learn.microsoft.com, "Email non-delivery reports and
    # SMTP errors"; sendersupport.olc.protection.outlook.com). Long single lines.
    Entry(
        "outlook.blocklist.5xx", 550, "5.7.1",
        "Unfortunately, messages from [{ip}] weren't sent. Please contact your Internet "
        "service provider since part of their network is on our block list (S3140). You "
        "can also refer your provider to "
        "http://mail.live.com/mail/troubleshooting.aspx#errors. [{hostname}]",
        Category.BLOCKLIST,
    ),
    Entry(
        "outlook.banned.5xx", 550, "5.7.606",
        "Access denied, banned sending IP [{ip}]. To request removal from this list "
        "please visit https://sender.office.com/ and follow the directions. For more "
        "information please go to http://go.microsoft.com/fwlink/?LinkID=526655 "
        "(AS16012609) [{hostname}]",
        Category.BLOCKLIST,
    ),
    Entry(
        "outlook.spamhaus.5xx", 550, "5.7.1",
        "Service unavailable, Client host [{ip}] blocked using Spamhaus. To request "
        "removal from this list see https://www.spamhaus.org/query/ip/{ip} (AS3130). "
        "[{hostname}]",
        Category.BLOCKLIST,
    ),
    Entry(
        "outlook.reputation.4xx", 451, "4.7.650",
        "The mail server [{ip}] has been temporarily rate limited due to IP reputation. "
        "For e-mail delivery information, see https://postmaster.live.com (S775) "
        "[{hostname}]",
        Category.REPUTATION,
    ),
    Entry(
        "outlook.rate.4xx", 451, "4.7.500",
        "Server busy. Please try again later from [{ip}]. (S77719) [{hostname}]",
        Category.RATE,
    ),
    Entry(
        "outlook.nouser.5xx", 550, "5.5.0",
        "Requested action not taken: mailbox unavailable (S2017062302). [{hostname}]",
        Category.RECIPIENT,
    ),
    Entry(
        "exchange.nouser.5xx", 550, "5.1.10",
        "RESOLVER.ADR.RecipientNotFound; Recipient {rcpt} not found by SMTP address "
        "lookup",
        Category.RECIPIENT,
    ),
    Entry(
        "outlook.dmarc.5xx", 550, "5.7.509",
        "Access denied, sending domain {sender_domain} does not pass DMARC verification "
        "and has a DMARC policy of reject. [{hostname}]",
        Category.AUTH,
    ),
    Entry(
        "outlook.authentication.5xx", 550, "5.7.515",
        "Access denied, sending domain {sender_domain} doesn't meet the required "
        "authentication level. [{hostname}]",
        Category.AUTH,
    ),
    # Yahoo (postmaster.yahooinc.com/error-codes).
    Entry(
        "yahoo.reputation.4xx", 421, "4.7.0",
        "[TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user "
        "complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        Category.REPUTATION,
    ),
    Entry(
        "yahoo.deferred.4xx", 421, "4.7.0",
        "[TSS09] All messages from {ip} will be permanently deferred; Retrying will NOT "
        "succeed. See https://postmaster.yahooinc.com/error-codes",
        Category.REPUTATION,
    ),
    Entry(
        "yahoo.spamhaus.5xx", 553, "5.7.1",
        "[BL21] Connections will not be accepted from {ip}, because the ip is in "
        "Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
        Category.BLOCKLIST,
    ),
    Entry(
        "yahoo.policy.5xx", 554, "5.7.9",
        "Message not accepted for policy reasons. See "
        "https://postmaster.yahooinc.com/error-codes",
        Category.POLICY,
    ),
    Entry(
        "yahoo.unauthenticated.5xx", 550, "5.7.9",
        "This mail has been blocked because the sender is unauthenticated. Yahoo requires "
        "all senders to authenticate with either SPF or DKIM.",
        Category.AUTH,
    ),
    Entry(
        # Yahoo sends this one without an enhanced code.
        "yahoo.nouser.5xx", 554, "5.1.1",
        "delivery error: dd This user doesn't have a {rcpt_domain} account ({rcpt}) [0] - "
        "{hostname}",
        Category.RECIPIENT,
    ),
    # DNS blocklists, in the reply Postfix's reject_rbl_client renders (its default
    # code 554; 450 when soft_bounce or a "defer" action is set).
    Entry(
        "spamhaus.zen.5xx", 554, "5.7.1",
        "Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org; "
        "https://www.spamhaus.org/query/ip/{ip}",
        Category.BLOCKLIST,
    ),
    Entry(
        "spamhaus.zen.4xx", 450, "4.7.1",
        "Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org; "
        "https://www.spamhaus.org/query/ip/{ip}",
        Category.BLOCKLIST,
    ),
    Entry(
        "spamhaus.listed.5xx", 550, "5.7.1",
        "Mail from {ip} rejected using zen.spamhaus.org. Please see "
        "https://www.spamhaus.org/query/ip/{ip}",
        Category.BLOCKLIST,
    ),
    Entry(
        "barracuda.5xx", 554, "5.7.1",
        "Service unavailable; Client host [{ip}] blocked using b.barracudacentral.org; "
        "http://www.barracudanetworks.com/reputation/?pr=1&ip={ip}",
        Category.BLOCKLIST,
    ),
    Entry(
        "spamcop.5xx", 550, "5.7.1",
        "Service unavailable; Client host [{ip}] blocked using bl.spamcop.net; Blocked - "
        "see https://www.spamcop.net/bl.shtml?{ip}",
        Category.BLOCKLIST,
    ),
    # Greylisting: postgrey through Postfix, rspamd, and the fake MX's own default.
    Entry(
        "greylist.postgrey.4xx", 450, "4.2.0",
        "<{rcpt}>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/{rcpt_domain}.html",
        Category.GREYLIST,
    ),
    Entry("greylist.rspamd.4xx", 451, "4.7.1", "Try again later", Category.GREYLIST),
    Entry(
        "greylist.generic.4xx", 451, "4.7.1",
        "Greylisted, please try again later",
        Category.GREYLIST,
    ),
    # Generic replies (RFC 5321 4.2.2 texts, Postfix wording).
    Entry(
        "tempfail.421", 421, "4.3.2",
        "{hostname} Service not available, closing transmission channel",
        Category.CAPACITY,
    ),
    Entry(
        "tempfail.450", 450, "4.2.1",
        "<{rcpt}>: Mailbox busy, try again later",
        Category.CAPACITY,
    ),
    Entry(
        "tempfail.451", 451, "4.3.0",
        "Requested action aborted: local error in processing",
        Category.SERVER,
    ),
    Entry("tempfail.452", 452, "4.3.1", "Insufficient system storage", Category.CAPACITY),
    Entry(
        "generic.nouser.5xx", 550, "5.1.1",
        "<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
        Category.RECIPIENT,
    ),
    Entry(
        "generic.relay.5xx", 554, "5.7.1",
        "<{rcpt}>: Relay access denied",
        Category.POLICY,
    ),
    Entry(
        "generic.size.5xx", 552, "5.3.4",
        "Message size exceeds fixed limit",
        Category.CAPACITY,
    ),
)
# fmt: on


def get(name: str) -> Entry:
    """The entry called ``name``; KeyError lists the names when it is unknown."""
    try:
        return ENTRIES[name]
    except KeyError:
        raise KeyError(f"no catalogue reply {name!r}; known: {', '.join(ENTRIES)}") from None


def reply(name: str) -> Reply:
    """The reply of the entry called ``name``."""
    return get(name).reply
