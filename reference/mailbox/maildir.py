"""Maildir files: unique names, new/ or cur/ with the flags in the name, locks, fsyncs."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

TMP_MAX_AGE = 36 * 3600  # Maildir: files left in tmp/ this long are debris

# Maildir info letters (written in ASCII order, as the spec asks).
_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "$Forwarded": "P", "\\Answered": "R"}
_LETTERS |= {"\\Seen": "S", "\\Deleted": "T"}
_FROM_LETTER = {v: k for k, v in _LETTERS.items()}


# A delivery key (see :func:`delivery_key_of`) as it is written into a base name.
_KEY = re.compile(r"R[0-9a-f]+K([0-9a-f]{8,64})\.")


class FileNames:
    """Unique Maildir base names for one process: time, pid, a counter, randomness, host,
    and the delivery's key when it has one."""

    def __init__(self) -> None:
        host = socket.gethostname() or "localhost"
        # Maildir: "/" and ":" in the host part are written as octal escapes.
        self._host = host.replace("/", "\\057").replace(":", "\\072")
        self._seq = count(1)

    def __call__(self, when: float, key: str | None = None) -> str:
        seconds, micros = divmod(round(when * 1_000_000), 1_000_000)
        token = secrets.token_hex(4)
        # The key rides in the name so that a file renamed into new/ by a process killed
        # before its index committed still says which delivery it was (the index adopts it
        # with its key): the delivery is then found, not made again.
        mark = f"K{key}" if key else ""
        return f"{seconds}.M{micros}P{os.getpid()}Q{next(self._seq)}R{token}{mark}.{self._host}"


def delivery_key_of(base: str) -> str | None:
    """The delivery key a base name made by :class:`FileNames` carries, if any."""
    m = _KEY.search(base)
    return m.group(1) if m else None


def valid_key(key: str) -> bool:
    """A delivery key: 8 to 64 lowercase hex digits (it becomes part of a file name)."""
    return 8 <= len(key) <= 64 and all(c in "0123456789abcdef" for c in key)


@contextmanager
def flock(path: str | Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def make_maildir(path: Path, *, subfolder: bool) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    if subfolder:
        (path / "maildirfolder").touch(mode=0o600)  # Maildir++ marks subfolders so


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def link_or_copy(source: Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise
        shutil.copyfile(source, target)  # no hard links here (another file system, say)


def move_file(source: Path, target: str | Path) -> None:
    try:
        os.rename(source, target)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.copyfile(source, target)
        os.unlink(source)


def fsync_dir(path: str | Path) -> None:
    """Make the names made, renamed or removed in the directory ``path`` durable (a file's
    own fsync does not cover its directory entry)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def base_of(file: str) -> str:
    return file.split(":", 1)[0]


def placement(base: str, flags: frozenset[str]) -> tuple[str, str]:
    """Maildir: unflagged mail waits in new/; once flagged it lives in cur/ with info."""
    if not flags:
        return "new", base
    return "cur", base + ":2," + "".join(sorted(_LETTERS[f] for f in flags if f in _LETTERS))


def info_flags(file: str) -> frozenset[str]:
    _, sep, info = file.partition(":2,")
    return frozenset(_FROM_LETTER[c] for c in info if c in _FROM_LETTER) if sep else frozenset()
