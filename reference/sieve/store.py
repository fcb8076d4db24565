"""Per-user Sieve scripts on disk (one active at a time) and the vacation reply log."""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from pathlib import Path

from reference.sieve.grammar import MAX_SCRIPT_SIZE, Script, compile_script
from reference.sqlite import connect

__all__ = ["ReplyLog", "ScriptError", "ScriptStore", "valid_name"]

MAX_SCRIPTS = 20  # per user
MAX_NAME = 128  # characters in a script name
MAX_ERRORS = 20  # errors kept per user
MAX_KEPT = 10_000  # users whose folder name and active script name are remembered


class ScriptError(ValueError):
    """A refused script operation; ``code`` is the RFC 5804 response code, if one fits."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def valid_name(name: str) -> bool:
    """RFC 5804 1.6: a non-empty name without control characters."""
    return (
        0 < len(name) <= MAX_NAME
        and all(ord(c) >= 0x20 and c not in "\x7f\u2028\u2029" for c in name)
        and name not in (".", "..")
    )


def _file(name: str) -> str:
    return urllib.parse.quote(name, safe="") + ".sieve"


def _write(path: Path, data: bytes) -> None:
    """Written in full, then renamed into place: a reader sees the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ScriptStore:
    """``root/<account>/<name>.sieve``, and ``active`` naming the script that runs."""

    def __init__(
        self, root: Path, *, max_scripts: int = MAX_SCRIPTS, max_size: int = MAX_SCRIPT_SIZE
    ) -> None:
        self.root = root
        self.max_scripts = max_scripts
        self.max_size = max_size
        self._cache: dict[Path, tuple[float, Script]] = {}
        self._lock = threading.Lock()
        self._folders: dict[str, str] = {}
        # The "active" file's contents by path, with the (inode, mtime, size) they were read
        # at: DATA and delivery ask for every message; a change (written whole and renamed
        # into place, so a new inode) shows in one stat.
        self._actives: dict[str, tuple[tuple[int, int, int], str]] = {}

    def _dir(self, user: str) -> Path:
        return Path(self._folder(user))

    def _folder(self, user: str) -> str:
        folder = self._folders.get(user)
        if folder is None:
            if len(self._folders) >= MAX_KEPT:
                self._folders.clear()
            quoted = urllib.parse.quote(user.lower(), safe="@.+-_")
            folder = self._folders[user] = os.path.join(self.root, quoted)
        return folder

    def _path(self, user: str, name: str) -> Path:
        if not valid_name(name):
            raise ScriptError(f"invalid script name {name!r}")
        return self._dir(user) / _file(name)

    def names(self, user: str) -> list[str]:
        folder = self._dir(user)
        if not folder.is_dir():
            return []
        return sorted(
            urllib.parse.unquote(p.name[: -len(".sieve")])
            for p in folder.iterdir()
            if p.name.endswith(".sieve")  # (files being written end in .tmp)
        )

    def active_name(self, user: str) -> str | None:
        marker = os.path.join(self._folder(user), "active")
        try:
            st = os.stat(marker)
            version = (st.st_ino, st.st_mtime_ns, st.st_size)
            kept = self._actives.get(marker)
            if kept is not None and kept[0] == version:
                name = kept[1]
            else:
                with open(marker, encoding="utf-8") as f:
                    name = f.read().strip()
                if len(self._actives) >= MAX_KEPT:
                    self._actives.clear()
                # Read after the stat: a newer file read under the older version is
                # read again on the next call, whose stat differs.
                self._actives[marker] = (version, name)
        except FileNotFoundError:
            return None
        return name if name and self._path(user, name).exists() else None

    def listing(self, user: str) -> list[tuple[str, bool]]:
        active = self.active_name(user)
        return [(n, n == active) for n in self.names(user)]

    def get(self, user: str, name: str) -> str | None:
        try:
            # As stored: read_text would turn the script's CRLF into LF.
            return self._path(user, name).read_bytes().decode("utf-8")
        except FileNotFoundError:
            return None

    def check(self, text: str | bytes) -> Script:
        """Compile; :class:`SieveError` says why a script is refused."""
        return compile_script(text, max_size=self.max_size)

    def has_space(self, user: str, name: str, size: int) -> None:
        """RFC 5804 2.5: raise :class:`ScriptError` (QUOTA/…) unless the script would fit."""
        if size > self.max_size:
            raise ScriptError(
                f"script of {size} bytes over the limit of {self.max_size}", "QUOTA/MAXSIZE"
            )
        if name not in self.names(user) and len(self.names(user)) >= self.max_scripts:
            raise ScriptError(f"at most {self.max_scripts} scripts", "QUOTA/MAXSCRIPTS")

    def put(self, user: str, name: str, text: str | bytes) -> None:
        raw = text.encode("utf-8") if isinstance(text, str) else text
        path = self._path(user, name)
        self.has_space(user, name, len(raw))
        self.check(raw)  # RFC 5804 2.6: a script that does not compile is not stored
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, raw)

    def delete(self, user: str, name: str) -> None:
        path = self._path(user, name)
        if not path.exists():
            raise ScriptError(f"no script named {name!r}", "NONEXISTENT")
        if self.active_name(user) == name:
            # RFC 5804 2.10: the active script cannot be deleted.
            raise ScriptError("the active script cannot be deleted", "ACTIVE")
        path.unlink()

    def rename(self, user: str, old: str, new: str) -> None:
        src, dst = self._path(user, old), self._path(user, new)
        if not src.exists():
            raise ScriptError(f"no script named {old!r}", "NONEXISTENT")
        if dst.exists():
            raise ScriptError(f"a script named {new!r} exists", "ALREADYEXISTS")
        was_active = self.active_name(user) == old
        os.rename(src, dst)
        if was_active:  # RFC 5804 2.11.1: renaming the active script keeps it active
            self.activate(user, new)

    def activate(self, user: str, name: str) -> None:
        """Make ``name`` the active script; an empty name deactivates (RFC 5804 2.8)."""
        folder = self._dir(user)
        if name and not self._path(user, name).exists():
            raise ScriptError(f"no script named {name!r}", "NONEXISTENT")
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "active", name.encode("utf-8"))

    def record_error(self, user: str, line: str) -> bool:
        """Keep the last errors of the user's script where the user can read them; True for
        the first error of the active script as it is now (the user is told once)."""
        folder = self._dir(user)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "errors.log"
        try:
            old = path.read_text("utf-8").splitlines()[-(MAX_ERRORS - 1) :]
        except FileNotFoundError:
            old = []
        _write(path, "\n".join([*old, line.replace("\n", " ")]).encode() + b"\n")
        name = self.active_name(user) or ""
        try:
            version = f"{name}:{self._path(user, name).stat().st_mtime_ns}" if name else ""
        except OSError:
            version = name
        marker = folder / "announced"
        try:
            if marker.read_text("utf-8") == version:
                return False
        except FileNotFoundError:
            pass
        _write(marker, version.encode("utf-8"))
        return True

    def errors(self, user: str) -> list[str]:
        try:
            return (self._dir(user) / "errors.log").read_text("utf-8").splitlines()
        except FileNotFoundError:
            return []

    def active(self, user: str) -> Script | None:
        """The compiled active script (cached until its file changes), or None."""
        name = self.active_name(user)
        return None if name is None else self.compiled(user, name)

    def compiled(self, user: str, name: str) -> Script | None:
        """The script ``name`` compiled (cached until its file changes), or None."""
        path = self._path(user, name)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        script = self.check(path.read_bytes())
        with self._lock:
            self._cache[path] = (mtime, script)
        return script


class ReplyLog:
    """Who had an automatic reply from whom, until when (RFC 5230 4.2, RFC 3834 2)."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._lock = threading.Lock()
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (user TEXT, sender TEXT, handle TEXT,"
            " until REAL, PRIMARY KEY (user, sender, handle))"
        )

    def claim(self, user: str, sender: str, handle: str, now: float, period: float) -> bool:
        """True (and recorded) when ``sender`` has had no reply from ``user`` for ``handle``
        within the period; False when one went out already."""
        key = (user.lower(), sender.lower(), handle)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "SELECT until FROM replies WHERE user = ? AND sender = ? AND handle = ?", key
                ).fetchone()
                if row is not None and row[0] > now:
                    self._db.execute("COMMIT")
                    return False
                self._db.execute(
                    "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)", (*key, now + period)
                )
                self._db.execute("COMMIT")
                return True
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise

    def forget(self, user: str) -> None:
        """A new vacation setting starts afresh: everyone may hear of it once."""
        with self._lock:
            self._db.execute("DELETE FROM replies WHERE user = ?", (user.lower(),))

    def close(self) -> None:
        self._db.close()
