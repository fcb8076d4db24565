"""Safe mapping of addresses and folder names to Maildir++ directories."""

from __future__ import annotations

import re
from pathlib import Path

DELIMITER = "/"  # the IMAP hierarchy delimiter; on disk Maildir++ joins levels with "."

# RFC 6154 special-use folders, created with the account.
SPECIAL_USE: dict[str, str] = {
    "Archive": "\\Archive",
    "Drafts": "\\Drafts",
    "Junk": "\\Junk",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
}

# A dot-atom of characters that are also safe in a file name (no "/", "\", NUL, quotes).
_LOCAL = re.compile(r"[a-z0-9!#$%&'*+=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Folder name components: printable, no Maildir++ separator, no path or wildcard characters.
_BAD_FOLDER_CHARS = re.compile(r"[\x00-\x1f\x7f./\\*%]")


class InvalidAddress(ValueError):
    """The address cannot name a mailbox on disk."""


class InvalidFolder(ValueError):
    """The folder name cannot be stored (empty level, separator or control characters)."""


def account_dir(root: Path, address: str) -> Path:
    """``root/<domain>/<local>`` for a valid address; raises :class:`InvalidAddress`."""
    local, domain = split_address(address)
    return root / domain / local


def split_address(address: str) -> tuple[str, str]:
    """The lower-cased ``(local, domain)`` of ``address``, validated for use as path names."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress(f"not an address: {address!r}")
    if len(local) > 64 or not _LOCAL.fullmatch(local):  # RFC 5321 4.5.3.1.1
        raise InvalidAddress(f"unsupported local part: {local!r}")
    labels = domain.rstrip(".").split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels):
        raise InvalidAddress(f"unsupported domain: {domain!r}")
    return local, ".".join(labels)


def normalize_folder(name: str) -> str:
    """The canonical folder name: ``INBOX`` is case-insensitive (RFC 3501 5.1)."""
    if name.upper() == "INBOX":
        return "INBOX"
    parts = name.split(DELIMITER)
    bad = any(not p or p != p.strip() or _BAD_FOLDER_CHARS.search(p) for p in parts)
    if bad or len(name) > 200:
        raise InvalidFolder(f"unsupported folder name: {name!r}")
    if parts[0].upper() == "INBOX":
        raise InvalidFolder("INBOX has no children in this store")
    return name


def folder_dir(account: Path, folder: str) -> Path:
    """The Maildir of ``folder``: the account directory itself for INBOX, else ``.A.B``."""
    folder = normalize_folder(folder)
    if folder == "INBOX":
        return account
    return account / ("." + folder.replace(DELIMITER, "."))


def folder_name(dirname: str) -> str | None:
    """The folder named by a Maildir++ directory entry, or None when it is not one."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    try:
        return normalize_folder(dirname[1:].replace(".", DELIMITER))
    except InvalidFolder:
        return None
