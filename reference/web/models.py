"""The admin API's request and response bodies: typed, validated, and the OpenAPI schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from reference.service import QUEUE_ID_PATTERN, Invalid, canonical_address

__all__ = [
    "AccessKeyIn",
    "AccessRuleIn",
    "AccessRuleOut",
    "AccountChange",
    "AccountIn",
    "AccountOut",
    "AliasIn",
    "AliasMade",
    "AliasOut",
    "CosAssignIn",
    "CosChange",
    "CosEffective",
    "CosIn",
    "CosOut",
    "DkimIn",
    "DkimOut",
    "DmarcDestinationOut",
    "DmarcPendingOut",
    "DmarcReportOut",
    "DmarcSentOut",
    "DmarcSentQuery",
    "DmarcSentXmlOut",
    "DnsRecordOut",
    "DomainDeleted",
    "DomainIn",
    "DomainOut",
    "FieldError",
    "ForwardingIn",
    "ForwardingOut",
    "MailChoiceQuery",
    "Me",
    "PasswordIn",
    "Problem",
    "QueueChangeIn",
    "QueueChangeOut",
    "QueueEntryDetail",
    "QueueEntryOut",
    "QueueRecipientOut",
    "RetiredOut",
    "SenderIn",
    "SenderOut",
    "SieveActiveIn",
    "SieveEntryOut",
    "SieveListOut",
    "SieveScriptIn",
    "SieveScriptOut",
    "SpamIn",
    "SpamOut",
    "UsageDayOut",
    "UsageOut",
    "UsageQuery",
    "VacationIn",
    "VacationOut",
]


def _address(value: str) -> str:
    try:
        return canonical_address(value)
    except Invalid as e:
        raise ValueError(str(e)) from None


Address = Annotated[str, Field(min_length=3, max_length=320), AfterValidator(_address)]
# Names are checked again (IDNA, labels) by the service; here only their shape and size.
DomainName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^\s@/]+$")]
Password = Annotated[str, Field(min_length=1, max_length=1024)]
Quota = Annotated[int, Field(ge=0, le=2**62)]
QueueId = Annotated[str, Field(pattern=QUEUE_ID_PATTERN)]


class _In(BaseModel):
    """A request body: exactly the documented fields, of exactly their types."""

    model_config = ConfigDict(extra="forbid", strict=True)


class DomainIn(_In):
    name: DomainName


class DomainOut(BaseModel):
    name: str


class AccountIn(_In):
    address: Address
    password: Password
    quota_bytes: Quota | None = None
    quota_messages: Quota | None = None


class AccountOut(BaseModel):
    address: str
    domain: str
    enabled: bool
    quota_bytes: int | None = Field(description="null: the platform's default; 0: unlimited")
    quota_messages: int | None
    bulk: bool = Field(description="a sender of newsletters: its mail takes the bulk lane")
    aliases: list[str]


class AccountChange(_In):
    """The fields to change; a quota given as null goes back to the platform's default."""

    enabled: bool | None = None
    quota_bytes: Quota | None = None
    quota_messages: Quota | None = None
    bulk: bool | None = None


class PasswordIn(_In):
    password: Password


class AliasIn(_In):
    alias: Address
    targets: list[Address] = Field(
        min_length=1,
        max_length=100,
        description="accounts or aliases here, or addresses elsewhere (forwarded)",
    )


class AliasOut(BaseModel):
    """One target of an alias (an alias with several has a row for each)."""

    alias: str
    target: str


class AliasMade(BaseModel):
    alias: str
    targets: list[str]


AccessKind = Literal["sender", "client", "helo", "recipient"]
AccessPattern = Annotated[str, Field(min_length=1, max_length=320)]


class AccessKeyIn(_In):
    """Which rule: its kind and pattern (the domain is in the path, or none: global)."""

    kind: AccessKind
    pattern: AccessPattern = Field(
        description="sender/recipient: user@domain or domain; client: address or CIDR network; "
        "helo: a host name (a domain matches its subdomains too)"
    )


class AccessRuleIn(AccessKeyIn):
    action: Literal["reject", "accept", "restrict"] = Field(
        description="reject: refused with the text; accept: not greylisted; restrict (a "
        "recipient): only this platform's authenticated users may write to it"
    )
    text: str = Field(default="", max_length=200, description="the refusal's text")


class AccessRuleOut(BaseModel):
    domain: str | None = Field(description="null: a rule of the platform's (global)")
    kind: str
    pattern: str
    action: str
    text: str


CosName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]
Rate = Annotated[str, Field(min_length=1, max_length=40, description="COUNT/DURATION or none")]


class CosChange(_In):
    """Settings of a class of service; null (or left out, at creation) is the platform's."""

    quota_bytes: Quota | None = None
    quota_messages: Quota | None = None
    rate_recipients: Rate | None = None
    rate_messages: Rate | None = None
    rate_bytes: Rate | None = None
    max_message_size: Quota | None = None
    forward_remote: bool | None = None
    lists: bool | None = None
    external: bool | None = None


class CosIn(CosChange):
    name: CosName


class CosOut(BaseModel):
    name: str
    quota_bytes: int | None
    quota_messages: int | None
    rate_recipients: str | None
    rate_messages: str | None
    rate_bytes: str | None
    max_message_size: int | None
    forward_remote: bool
    lists: bool
    external: bool


class CosAssignIn(_In):
    cos: CosName | None = Field(description="the class; null: none of its own")


class CosEffective(BaseModel):
    cos: CosOut | None
    source: str = Field(description="account, domain, default, or platform (no class)")


class DnsRecordOut(BaseModel):
    name: str
    type: str
    value: str
    purpose: str
    zone_line: str = Field(description="the record as a zone-file line")


class DkimIn(_In):
    selector: str | None = Field(
        default=None, max_length=42, pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]{0,40}[A-Za-z0-9])?$"
    )


class DkimOut(BaseModel):
    domain: str
    made: bool = Field(description="whether keys were made by this request")
    records: list[DnsRecordOut]


class QueueRecipientOut(BaseModel):
    address: str
    status: str
    attempts: int
    reply: str


class QueueEntryOut(BaseModel):
    qid: str
    sender: str
    recipients: list[QueueRecipientOut]
    created: float
    next_attempt: float
    size: int
    lane: str
    held: bool
    attempts: int
    kind: str


class QueueEntryDetail(QueueEntryOut):
    headers: str


class QueueChangeIn(_In):
    qids: list[QueueId] = Field(default_factory=list, max_length=10_000)


class QueueChangeOut(BaseModel):
    done: list[str]
    missing: list[str]


class Me(BaseModel):
    role: str
    domain: str | None
    user: str | None


class FieldError(BaseModel):
    field: str
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details; ``field`` names the input at fault, ``errors`` each one."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    field: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class UsageQuery(BaseModel):
    """The query string of GET /api/v1/usage (every value arrives as text)."""

    model_config = ConfigDict(extra="forbid")

    domain: DomainName | None = Field(default=None, description="one domain's accounts")
    account: Address | None = Field(default=None, description="one account")
    since: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="from this day on (UTC)"
    )


class DomainUsageDayOut(BaseModel):
    """A domain's day: its accounts' sums and its own refusals (for addresses not there)."""

    day: str = Field(description="YYYY-MM-DD, UTC")
    domain: str
    messages_in: int = Field(description="messages delivered into its mailboxes")
    bytes_in: int
    messages_out: int = Field(description="messages its users sent (accepted at submission)")
    bytes_out: int
    refused: dict[str, int] = Field(description="refusals of its mail, by reason")
    storage_bytes: int | None = Field(description="what its mailboxes held, last seen that day")


class UsageDayOut(DomainUsageDayOut):
    account: str


class UsageOut(BaseModel):
    accounts: list[UsageDayOut]
    domains: list[DomainUsageDayOut]


class MailChoiceQuery(BaseModel):
    """What happens to the mail of an account being deleted (or of a domain's accounts):
    one of the two is required where there are accounts."""

    model_config = ConfigDict(extra="forbid")

    archive_to: Address | None = Field(default=None, description="move it into this account")
    remove_mail: bool = Field(default=False, description="remove it")


class RetiredOut(BaseModel):
    address: str
    messages: int
    archived_in: str | None = Field(description="the archive folder it was moved to, if kept")


class DomainDeleted(BaseModel):
    name: str
    accounts: list[RetiredOut] = Field(description="its accounts, and where their mail went")


class ForwardingIn(_In):
    targets: list[Address] = Field(max_length=100, description="none: stop forwarding")
    keep: bool = Field(default=False, description="file a copy here too")


class ForwardingOut(BaseModel):
    address: str
    targets: list[str]
    keep: bool


Score = Annotated[float, Field(gt=0, le=1000)]


class SpamIn(_In):
    """Scores to set; one not given is kept."""

    model_config = ConfigDict(extra="forbid", strict=False)  # 5 as well as 5.0

    reject_score: Score | None = None
    junk_score: Score | None = None


class SpamOut(BaseModel):
    scope: str
    own_reject: float | None
    own_junk: float | None
    reject_score: float = Field(description="in force")
    junk_score: float = Field(description="in force")
    reject_from: str = Field(description="config, domain or user")
    junk_from: str


class SenderIn(_In):
    kind: Literal["allow", "block"]
    pattern: str = Field(min_length=2, max_length=320, description="sender@domain or @domain")


class SenderOut(BaseModel):
    kind: str
    pattern: str


ScriptName = Annotated[str, Field(min_length=1, max_length=128)]


class SieveEntryOut(BaseModel):
    name: str
    active: bool


class SieveListOut(BaseModel):
    scripts: list[SieveEntryOut]
    errors: list[str] = Field(description="the active script's recent errors")


class SieveScriptIn(_In):
    script: str = Field(max_length=1_000_000)
    activate: bool = False


class SieveScriptOut(BaseModel):
    name: str
    script: str


class SieveActiveIn(_In):
    name: ScriptName | None = Field(description="null: run no script")


Day = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]


class VacationIn(_In):
    subject: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=20_000)
    start: Day | None = Field(default=None, description="first day away (UTC); null: now")
    end: Day | None = Field(default=None, description="last day away; null: until cleared")
    days: int = Field(default=7, ge=1, le=30, description="days between replies to one sender")
    from_address: Address | None = Field(default=None, description="the reply's From")
    addresses: list[Address] = Field(default_factory=list, max_length=50)


class VacationOut(BaseModel):
    enabled: bool
    subject: str | None = None
    text: str | None = None
    start: str | None = None
    end: str | None = None
    days: int | None = None
    from_address: str | None = None
    addresses: list[str] = Field(default_factory=list)
    beside: str | None = Field(
        default=None, description="the account's own active script, which applies beside it"
    )


class DmarcReportOut(BaseModel):
    org_name: str
    report_id: str
    begin: int
    end: int
    messages: int
    aligned: int = Field(description="messages with aligned SPF or DKIM")
    report: dict[str, Any] = Field(description="the whole report (RFC 7489 appendix C, as JSON)")


class DmarcPendingOut(BaseModel):
    domain: str
    evaluations: int


class DmarcSentQuery(BaseModel):
    """The query string of GET /api/v1/dmarc/sent."""

    model_config = ConfigDict(extra="forbid")

    domain: DomainName | None = Field(
        default=None, description="reports about this domain (and its subdomains) only"
    )


class DmarcDestinationOut(BaseModel):
    rua: str = Field(description="the rua= address")
    qid: str = Field(description="the queue id of the report sent there (empty: not sent)")
    skipped: str = Field(description="why it was not sent there (empty: it was)")


class DmarcSentOut(BaseModel):
    report_id: str
    domain: str = Field(description="the policy domain the report is about")
    begin: int
    end: int
    sent_at: float
    messages: int
    passed: int = Field(description="messages with aligned SPF or DKIM")
    failed: int
    destinations: list[DmarcDestinationOut]


class DmarcSentXmlOut(BaseModel):
    report_id: str
    domain: str
    xml: str = Field(description="the report as sent (RFC 7489 appendix C), before gzip")
