"""The directory's tables, once for every database (SQLAlchemy spells them per dialect)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = ["ORDERED", "tables"]

# Tables whose rows are read back in the order they were written (an alias's first target
# reads its mail; forwarding targets; a domain's first account is its postmaster). SQLite
# keeps that order in its rowid; a server, in a "seq" column of its own.
ORDERED = ("accounts", "alias_targets", "forwards")

KEY = sa.String(255)  # addresses (RFC 5321 4.5.3.1.3: at most 254 octets), domains, names
# MariaDB: InnoDB for the foreign keys, and a binary collation so that keys compare as on
# SQLite and PostgreSQL (values are lower-cased before they are written).
MARIADB: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def tables(*, server: bool) -> sa.MetaData:
    """The schema; ``server``: a database without SQLite's rowid (MariaDB, PostgreSQL)."""
    md = sa.MetaData()

    def table(name: str, *items: sa.schema.SchemaItem, key: tuple[str, ...] = ()) -> None:
        """``key``: the primary key (a column may say it instead, as most do)."""
        if name in ORDERED and server:
            seq = sa.Column("seq", sa.BigInteger, primary_key=True)
            natural = key or tuple(
                c.name for c in items if isinstance(c, sa.Column) and c.primary_key
            )
            for c in items:
                if isinstance(c, sa.Column):
                    c.primary_key = False
            sa.Table(name, md, seq, *items, sa.UniqueConstraint(*natural), **MARIADB)
            return
        pk = [sa.PrimaryKeyConstraint(*key)] if key else []
        sa.Table(name, md, *items, *pk, **MARIADB)

    def ref(column: str) -> sa.ForeignKey:
        return sa.ForeignKey(column)

    table("domains", sa.Column("name", KEY, primary_key=True))
    table(
        "accounts",
        sa.Column("address", KEY, primary_key=True),
        sa.Column("domain", KEY, ref("domains.name"), nullable=False),
        sa.Column("password", sa.Text, nullable=False),
        sa.Column("enabled", sa.Integer, nullable=False, server_default="1"),
    )
    # Spam thresholds of a domain or an account (NULL: inherited from the domain, then config).
    table(
        "spam_settings",
        sa.Column("scope", KEY, primary_key=True),
        sa.Column("reject_score", sa.Double),
        sa.Column("junk_score", sa.Double),
    )
    # An account's allowed and blocked senders: a full address or @domain, one kind each.
    table(
        "spam_lists",
        sa.Column("address", KEY, ref("accounts.address"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pattern", KEY, nullable=False),
        sa.CheckConstraint("kind IN ('allow', 'block')"),
        key=("address", "pattern"),
    )
    # Aliases, one row per target: mail to an alias goes to every target (accounts, other
    # aliases, or addresses elsewhere), and a local target's user may send from it (MAIL FROM
    # and From:). "@domain" is the domain's catch-all. (Schema 1; schema 0 had one account
    # per alias in a table "aliases", moved here when an old database is opened.)
    table(
        "alias_targets",
        sa.Column("address", KEY, nullable=False),
        sa.Column("target", KEY, nullable=False),
        key=("address", "target"),
    )
    # Alias domains: mail to any address of "name" is delivered as if sent to "target".
    table(
        "alias_domains",
        sa.Column("name", KEY, primary_key=True),
        sa.Column("target", KEY, ref("domains.name"), nullable=False),
    )
    # An account's forwarding: each row one target; keep = 1 also files a copy in its mailbox.
    table(
        "forwards",
        sa.Column("address", KEY, ref("accounts.address"), nullable=False),
        sa.Column("target", KEY, nullable=False),
        sa.Column("keep", sa.Integer, nullable=False),
        key=("address", "target"),
    )
    # An account's own mailbox quota (NULL or absent: the platform's mailbox.quota_*).
    table(
        "quotas",
        sa.Column("address", KEY, ref("accounts.address"), primary_key=True),
        sa.Column("bytes", sa.BigInteger),
        sa.Column("messages", sa.BigInteger),
    )
    # Accounts that send newsletters: all their mail takes the queue's bulk lane.
    table("bulk_senders", sa.Column("address", KEY, ref("accounts.address"), primary_key=True))
    # Access lists (Postfix access maps): scope '' is the platform's, else a domain's; kind is
    # sender, client, helo or recipient; action reject, accept or restrict, with its text.
    table(
        "access_rules",
        sa.Column("scope", KEY, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pattern", KEY, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False, server_default=""),
        key=("scope", "kind", "pattern"),
    )
    # Classes of service: NULL settings are the platform's; the flags allow (1) or refuse (0).
    table(
        "classes_of_service",
        sa.Column("name", KEY, primary_key=True),
        sa.Column("quota_bytes", sa.BigInteger),
        sa.Column("quota_messages", sa.BigInteger),
        sa.Column("rate_recipients", sa.String(64)),
        sa.Column("rate_messages", sa.String(64)),
        sa.Column("rate_bytes", sa.String(64)),
        sa.Column("max_message_size", sa.BigInteger),
        sa.Column("forward_remote", sa.Integer, nullable=False, server_default="1"),
        sa.Column("lists", sa.Integer, nullable=False, server_default="1"),
        sa.Column("external", sa.Integer, nullable=False, server_default="1"),
    )
    # Which class an account (its address) or a domain (its name) has.
    table(
        "cos_assignments",
        sa.Column("scope", KEY, primary_key=True),
        sa.Column("cos", KEY, ref("classes_of_service.name"), nullable=False),
    )
    # Distribution lists and their members.
    table(
        "lists",
        sa.Column("address", KEY, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("owner", KEY, ref("accounts.address"), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.CheckConstraint("policy IN ('public', 'members', 'local')"),
    )
    table(
        "list_members",
        sa.Column("list", KEY, sa.ForeignKey("lists.address", ondelete="CASCADE"), nullable=False),
        sa.Column("member", KEY, nullable=False),
        key=("list", "member"),
    )
    # Archive-all: every message to or from an address (or any address of a domain) is also
    # copied into the archive account.
    table(
        "archive_rules",
        sa.Column("scope", KEY, primary_key=True),
        sa.Column("archive", KEY, ref("accounts.address"), nullable=False),
    )
    # Tokens of the admin API: only a hash of each secret is kept.
    table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("domain", KEY),
        sa.Column("user", KEY),
        sa.Column("created", sa.Double, nullable=False),
        sa.CheckConstraint("role IN ('admin', 'domain-admin', 'user')"),
    )
    # The platform's administrators who log into the panel with a password.
    table(
        "panel_admins",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("password", sa.String(255), nullable=False),
        sa.Column("created", sa.Double, nullable=False),
    )
    if server:
        # The schema version (SQLite keeps it in PRAGMA user_version), in its one row.
        table(
            "directory_schema",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("version", sa.Integer, nullable=False),
        )
    return md
