-- The directory schema before alias targets (schema 0: PRAGMA user_version 0), as it was
-- written by mailspec until alias_targets replaced aliases; a fixture for the migration test.
CREATE TABLE IF NOT EXISTS domains (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    password TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1
);
-- Spam thresholds of a domain or an account (NULL: inherited from the domain, then config).
CREATE TABLE IF NOT EXISTS spam_settings (
    scope TEXT PRIMARY KEY,
    reject_score REAL,
    junk_score REAL
);
-- An account's allowed and blocked senders: a full address or @domain, one kind each.
CREATE TABLE IF NOT EXISTS spam_lists (
    address TEXT NOT NULL REFERENCES accounts(address),
    kind TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
    pattern TEXT NOT NULL,
    PRIMARY KEY (address, pattern)
);
-- Other addresses of an account: mail to an alias is delivered to its target, and the
-- target's user may send from it (MAIL FROM and From:).
CREATE TABLE IF NOT EXISTS aliases (
    address TEXT PRIMARY KEY,
    target TEXT NOT NULL REFERENCES accounts(address)
);
-- An account's own mailbox quota (NULL or absent: the platform's mailbox.quota_*).
CREATE TABLE IF NOT EXISTS quotas (
    address TEXT PRIMARY KEY REFERENCES accounts(address),
    bytes INTEGER,
    messages INTEGER
);
-- Accounts that send newsletters: all their mail takes the queue's bulk lane.
CREATE TABLE IF NOT EXISTS bulk_senders (
    address TEXT PRIMARY KEY REFERENCES accounts(address)
);
