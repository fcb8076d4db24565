"""Deleting accounts and domains, with their mail removed or moved into an archive account.

The directory rows go first, so no new mail is accepted for the account (550 5.1.1 at RCPT;
mail already queued for it bounces to its sender); then the mail is copied into the archive
account, folder by folder, with its flags and dates; only then is the mailbox removed. A
copy that fails (the archive over its quota, a disk error) leaves the mailbox where it was
and says so: nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference.directory import Directory, DirectoryError, normalize_domain
from reference.mailbox import MailStore, QuotaExceeded

__all__ = ["Retired", "archive_folder", "delete_domain", "delete_user"]


@dataclass(frozen=True)
class Retired:
    """What happened to one account's mail."""

    address: str
    messages: int  # how many messages it had
    archived_in: str | None  # the archive account's folder holding them, or None (removed)


def archive_folder(address: str) -> str:
    """Where an account's mail goes in the archive account ("Archive/alice@example_test"):
    a folder level may not contain the Maildir++ separator "."."""
    return "Archive/" + address.replace(".", "_")


def _archive_account(directory: Directory, archive: str | None, leaving: set[str]) -> str | None:
    if archive is None:
        return None
    account = directory.lookup(archive)
    if account is None:
        raise DirectoryError("no such archive account: %(archive)s", archive=archive)
    if account.address in leaving:
        raise DirectoryError(
            "the archive account %(address)s is being deleted itself", address=account.address
        )
    return account.address


def _move_mail(store: MailStore, address: str, archive: str | None) -> Retired:
    where = archive_folder(address) if archive else None
    if not store.has_account(address):
        return Retired(address, 0, where)
    used = store.usage(address)
    if archive is not None:
        try:
            # The whole account must fit: a full archive moves nothing and removes nothing.
            store.check_quota(archive, used.bytes, used.messages)
        except QuotaExceeded as e:
            raise DirectoryError(
                "%(address)s: its mail stays in its mailbox, the archive %(archive)s is full "
                "(%(reason)s); make room and delete it again",
                address=address,
                archive=archive,
                reason=str(e),
            ) from None
        for folder in store.folders(address):
            with (
                store.open(address, folder) as source,
                store.open(archive, f"{where}/{folder}", create=True) as target,
            ):
                # A rename of each file: a repeated run after a failure moves what is left.
                source.move_to(target, source.uids())
    store.remove_account(address)
    return Retired(address, used.messages, where)


def delete_user(
    directory: Directory, store: MailStore, address: str, *, archive: str | None
) -> Retired:
    """Delete an account; its mail is moved into ``archive`` (an account), or removed.

    An address no longer in the directory whose mailbox is still on disk (a run that
    stopped half way) has its mail handled the same way.
    """
    account = directory.lookup(address)
    canonical = account.address if account is not None else address.strip().lower()
    if account is None and not store.has_account(canonical):
        raise DirectoryError("no such account: %(address)s", address=address)
    keeper = _archive_account(directory, archive, {canonical})
    if account is not None:
        directory.delete_user(canonical)
    return _move_mail(store, canonical, keeper)


def delete_domain(
    directory: Directory, store: MailStore, name: str, *, archive: str | None
) -> list[Retired]:
    """Delete a domain with its accounts and aliases (an alias domain: only itself); the
    accounts' mail is moved into ``archive`` (an account of another domain), or removed."""
    domain = normalize_domain(name)
    if any(alias == domain for alias, _ in directory.alias_domains()):
        directory.delete_domain(domain)
        return []
    directory.own_domain(domain)
    accounts = [a.address for a in directory.users(domain)]
    keeper = _archive_account(directory, archive, set(accounts))
    # Refused before any account goes (nothing half-done): what the directory would refuse
    # on the way (alias domains, lists, an account that owns a list or keeps an archive).
    directory.check_domain_deletable(domain)
    leaving = {*accounts, domain}
    for address in accounts:
        directory.check_deletable(address, leaving=leaving)
    for rule in directory.archive_rules():
        if rule.scope in leaving:  # an archive of what is going goes first
            directory.clear_archive(rule.scope)
    done = []
    for address in accounts:
        directory.delete_user(address)
        done.append(_move_mail(store, address, keeper))
    directory.delete_domain(domain)
    return done
