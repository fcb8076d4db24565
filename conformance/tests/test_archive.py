"""PLATFORM archive-all accounts: mail to and from an account (or every account of a domain)
is copied into an archive account as it was accepted or sent, the original delivery
untouched; the archive is read over IMAP and cannot be changed there.

The rules are the target admin's ``set_archive`` (not applicable on a target without it).
Where in the archive the copies land is the target's choice: the tests look in every
folder of the archive account.
"""

from __future__ import annotations

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.target import Account, Target
from conformance.tests.outbound_support import (
    admin_op,
    fresh_user,
    inbox,
    submission,
    submit,
    token,
    wait_until,
)
from conformance.tests.test_imap_support import RawImap, imap, quote, tagged

SENDER = "someone@sender.example"


def archived(target: Target, archive: Account, subject: str) -> dict[str, int]:
    """Folder -> how many messages with ``subject`` the archive account holds there."""
    found: dict[str, int] = {}
    with imap(target, archive) as client:
        for flags, _, name in client.list_folders():
            if any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags):
                continue  # a level of the hierarchy that holds no messages
            client.select_folder(name, readonly=True)
            hits = client.search(["SUBJECT", subject])
            if hits:
                found[str(name)] = len(hits)
    return found


def wait_archived(target: Target, archive: Account, subject: str) -> dict[str, int]:
    found: dict[str, int] = wait_until(
        lambda: archived(target, archive, subject), 10, f"{subject!r} in {archive.address}"
    )
    return found


@requirement(
    "PLATFORM",
    "archive.account",
    "MUST",
    "with an account archived, every message it receives and every message it sends is also "
    "copied into the archive account, and still reaches its own destination",
    needs=("admin", "fake-dns"),
)
def test_account_archive_copies_in_and_out(smtp: SMTPConnector, target: Target) -> None:
    user = fresh_user(target, "kept")
    vault = fresh_user(target, "vault")
    admin_op(target, "set_archive")(user.address, vault.address)
    received = f"inbound {token()}"
    submit(smtp.session("smtp"), SENDER, [user.address], received)
    wait_until(lambda: any(received.encode() in m for m in inbox(target, user)), 10, "INBOX")
    assert sum(wait_archived(target, vault, received).values()) == 1
    net = target.fake_internet
    assert net is not None
    remote = f"friend-{token()}@{net.providers['gmail'].domain}"
    sent = f"outbound {token()}"
    submit(submission(target, user), user.address, [remote], sent)
    wait_until(
        lambda: [d for d in net.mx["gmail"].deliveries if sent.encode() in d.data],
        10,
        f"{sent!r} at {remote}",
    )
    assert sum(wait_archived(target, vault, sent).values()) == 1


@requirement(
    "PLATFORM",
    "archive.domain",
    "MUST",
    "with a domain archived, mail to each of its accounts is also copied into the archive "
    "account, and the archive's own mail is not copied into itself",
    needs=("admin",),
)
def test_domain_archive(smtp: SMTPConnector, target: Target) -> None:
    assert target.admin is not None
    domain = f"kept-{token()}.test"
    target.admin.add_domain(domain)
    users = [Account(f"{n}-{token()}@{domain}", token() + "Aa1!") for n in ("ann", "vault")]
    for a in users:
        target.admin.add_user(a.address, a.password)
    user, vault = users
    admin_op(target, "set_archive")(domain, vault.address)
    subject = f"to the domain {token()}"
    submit(smtp.session("smtp"), SENDER, [user.address, vault.address], subject)
    wait_until(lambda: any(subject.encode() in m for m in inbox(target, user)), 10, "INBOX")
    found = wait_archived(target, vault, subject)
    # Its own INBOX copy (it was a recipient too) and the archived copy of the user's: two.
    assert sum(found.values()) == 2, found


@requirement(
    "PLATFORM",
    "archive.read-only",
    "MUST",
    "an archive account is read-only over IMAP for its user: STORE, EXPUNGE, APPEND and "
    "DELETE are refused with NO (RFC 5530 NOPERM), the messages stay as they were",
    needs=("admin",),
)
def test_archive_is_read_only(smtp: SMTPConnector, target: Target) -> None:
    user = fresh_user(target, "kept")
    vault = fresh_user(target, "vault")
    admin_op(target, "set_archive")(user.address, vault.address)
    subject = f"keep me {token()}"
    submit(smtp.session("smtp"), SENDER, [user.address], subject)
    (folder,) = wait_archived(target, vault, subject)
    raw = RawImap(target)
    try:
        raw.login(vault)
        assert tagged(raw.command(b"SELECT " + quote(folder))).startswith(b"OK")
        refused = {
            "STORE": b"STORE 1 +FLAGS (\\Deleted)",
            "EXPUNGE": b"EXPUNGE",
            "APPEND": b"APPEND " + quote(folder) + b" {3+}\r\nabc",
            "DELETE": b"DELETE " + quote(folder),
        }
        for name, command in refused.items():
            reply = tagged(raw.command(command))
            assert reply.startswith(b"NO") and b"NOPERM" in reply, (name, reply)
        fetched = b"".join(raw.command(b"FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
        assert subject.encode() in fetched and b"\\Deleted" not in fetched
    finally:
        raw.close()
    assert sum(archived(target, vault, subject).values()) == 1
