"""What a user sets for their account (forwarding, out-of-office, Sieve, spam thresholds) and
what a domain shows and receives (its branding, its DMARC aggregate reports).

The control panel and the command line call this layer like :mod:`reference.service`; who
may call what is theirs to check. Refusals are :class:`~reference.service.ServiceError`
values naming the field at fault, and nothing is half-done.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference.auth.feedback import Feedback
from reference.auth.reports import DmarcStore
from reference.config import Config
from reference.delivery.retire import delete_user
from reference.directory import Directory, DirectoryError, SpamSettings
from reference.mailbox import MailStore
from reference.service import Invalid, NotFound, canonical_address, canonical_domain
from reference.sieve import ReplyLog, ScriptStore
from reference.sieve.outofoffice import OutOfOffice, current, switch_off, switch_on
from reference.sieve.store import ScriptError

__all__ = [
    "LOGO_TYPES",
    "MAX_LOGO",
    "Branding",
    "DmarcDay",
    "Forward",
    "Settings",
    "SpamView",
    "Storage",
]

# A logo is a small picture shown on every page; PNG and JPEG only (an SVG can carry script).
MAX_LOGO = 48 * 1024
LOGO_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
MAX_BRAND_NAME = 80


@dataclass(frozen=True)
class Forward:
    targets: list[str]
    keep: bool


@dataclass(frozen=True)
class SpamView:
    """An account's thresholds in effect, and where each comes from."""

    reject: float
    junk: float
    reject_from: str  # "config", "domain" or "user"
    junk_from: str


@dataclass(frozen=True)
class Storage:
    """What an account holds against its quota (0: unlimited)."""

    bytes: int
    messages: int
    quota_bytes: int
    quota_messages: int


@dataclass(frozen=True)
class Branding:
    """How a domain administrator's customers see the panel: a name, maybe a logo."""

    domain: str
    name: str
    logo_type: str | None = None


@dataclass(frozen=True)
class DmarcDay:
    """Messages from one sending source on one day (UTC) reported about a domain."""

    source: str
    day: str  # YYYY-MM-DD
    passed: int  # aligned SPF or DKIM
    failed: int


def _refused(e: Exception, field: str) -> Invalid:
    return Invalid(str(e), field)


class Settings:
    """Per-account and per-domain settings over one node's directory and stores."""

    def __init__(
        self,
        directory: Directory,
        cfg: Config,
        scripts: ScriptStore,
        replies: ReplyLog,
        store: MailStore,
        dmarc: DmarcStore,
    ) -> None:
        self.directory = directory
        self.cfg = cfg
        self.scripts = scripts
        self.replies = replies
        self.store = store
        self.dmarc = dmarc
        self.brand_dir = cfg.data_path / "branding"

    def _account(self, address: str) -> str:
        found = self.directory.lookup(canonical_address(address))
        if found is None:
            raise NotFound(f"no such account: {address}", "address")
        return found.address

    # -- forwarding

    def forward(self, address: str) -> Forward:
        targets, keep = self.directory.forward_of(self._account(address))
        return Forward(targets, keep if targets else True)

    def set_forward(self, address: str, targets: list[str], *, keep: bool) -> Forward:
        """Forward to ``targets`` (none: stop forwarding); ``keep`` files a copy here too."""
        account = self._account(address)
        chosen = [t.strip() for t in targets if t.strip()]
        if not chosen:
            self.directory.clear_forward(account)
            return Forward([], True)
        for i, t in enumerate(chosen):
            canonical_address(t, f"targets.{i}")
        try:
            return Forward(self.directory.set_forward(account, chosen, keep=keep), keep)
        except DirectoryError as e:
            raise _refused(e, "targets") from None

    # -- out-of-office (a generated vacation script, RFC 5230)

    def out_of_office(self, address: str) -> OutOfOffice | None:
        """The form's settings while it is on; None when it is off."""
        return current(self.scripts, self._account(address))

    def set_out_of_office(self, address: str, ooo: OutOfOffice) -> str | None:
        """Turn the out-of-office on (or change it); the account's own active script, which
        keeps applying beside it, if any."""
        return switch_on(self.scripts, self.replies, self._account(address), ooo)

    def clear_out_of_office(self, address: str) -> str | None:
        """Turn it off: None if it was off, else the script made active again ("" if none)."""
        return switch_off(self.scripts, self._account(address))

    # -- Sieve scripts (RFC 5228)

    def scripts_of(self, address: str) -> list[tuple[str, bool]]:
        return self.scripts.listing(self._account(address))

    def script(self, address: str, name: str) -> str:
        text = self.scripts.get(self._account(address), name)
        if text is None:
            raise NotFound(f"no script named {name!r}", "name")
        return text

    def put_script(self, address: str, name: str, text: str, *, activate: bool) -> None:
        """Store (and maybe activate) a script; a script that does not parse is refused."""
        account = self._account(address)
        try:
            self.scripts.put(account, name, text)
            if activate:
                self.scripts.activate(account, name)
        except ScriptError as e:
            raise Invalid(str(e), "script" if "name" not in str(e) else "name") from None

    # -- spam thresholds

    def spam(self, address: str) -> SpamView:
        account = self._account(address)
        domain = account.rpartition("@")[2]
        rows: dict[str, SpamSettings] = self.directory.spam_settings(domain, account)
        found: dict[str, tuple[float, str]] = {}
        for name, default in (
            ("reject", self.cfg.spam.reject_score),
            ("junk", self.cfg.spam.junk_score),
        ):
            value, source = default, "config"
            for key, label in ((domain, "domain"), (account, "user")):
                row = rows.get(key)
                got = None if row is None else getattr(row, f"{name}_score")
                if got is not None:
                    value, source = got, label
            found[name] = (value, source)
        return SpamView(found["reject"][0], found["junk"][0], found["reject"][1], found["junk"][1])

    def set_spam(self, address: str, *, reject: float | None, junk: float | None) -> SpamView:
        """The account's own thresholds (None for both: back to its domain's)."""
        account = self._account(address)
        old = self.directory.spam_settings(account).get(account)
        self.directory.clear_spam_settings(account)  # a value not given is the domain's
        if reject is None and junk is None:
            return self.spam(account)
        try:
            self.directory.set_spam_settings(account, reject_score=reject, junk_score=junk)
        except DirectoryError as e:
            if old is not None:  # refused: the account keeps what it had
                self.directory.set_spam_settings(
                    account, reject_score=old.reject_score, junk_score=old.junk_score
                )
            raise _refused(e, "junk" if "junk" in str(e) else "reject") from None
        return self.spam(account)

    # -- storage

    def delete_account(self, address: str) -> str:
        """Delete an account and its mail (its aliases and forwards go with it)."""
        account = self._account(address)
        try:
            delete_user(self.directory, self.store, account, archive=None)
        except DirectoryError as e:
            raise _refused(e, "address") from None
        return account

    def storage(self, address: str) -> Storage:
        account = self._account(address)
        used = self.store.usage(account) if self.store.has_account(account) else None
        quota = self.store.quota_for(account)
        return Storage(
            used.bytes if used else 0, used.messages if used else 0, quota.bytes, quota.messages
        )

    # -- branding (a domain administrator's name and logo, shown to the domain's users)

    def _brand_paths(self, domain: str) -> tuple[Path, Path]:
        d = canonical_domain(domain)
        return self.brand_dir / f"{d}.json", self.brand_dir / f"{d}.logo"

    def branding(self, domain: str) -> Branding | None:
        meta, _ = self._brand_paths(domain)
        try:
            data: dict[str, Any] = json.loads(meta.read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return Branding(canonical_domain(domain), str(data["name"]), data.get("logo_type"))

    def logo(self, domain: str) -> tuple[bytes, str] | None:
        brand = self.branding(domain)
        if brand is None or brand.logo_type is None:
            return None
        return self._brand_paths(domain)[1].read_bytes(), brand.logo_type

    def set_branding(self, domain: str, name: str, logo: bytes | None = None) -> Branding:
        """Name the domain's panel (and show ``logo``, a PNG or JPEG; None keeps the one
        there is, b"" removes it)."""
        d = canonical_domain(domain)
        if not self.directory.is_local_domain(d):
            raise NotFound(f"domain {d} is not ours", "domain")
        name = " ".join(name.split())
        if not name or len(name) > MAX_BRAND_NAME:
            raise Invalid(f"a name is 1 to {MAX_BRAND_NAME} characters", "name")
        meta, picture = self._brand_paths(d)
        logo_type = (self.branding(d) or Branding(d, name)).logo_type
        if logo:
            if len(logo) > MAX_LOGO:
                raise Invalid(f"a logo is at most {MAX_LOGO // 1024} KiB", "logo")
            logo_type = next((t for magic, t in LOGO_TYPES.items() if logo.startswith(magic)), None)
            if logo_type is None:
                raise Invalid("a logo is a PNG or JPEG picture", "logo")
        self.brand_dir.mkdir(parents=True, exist_ok=True)
        if logo:
            _write(picture, logo)
        elif logo == b"":
            picture.unlink(missing_ok=True)
            logo_type = None
        _write(meta, json.dumps({"name": name, "logo_type": logo_type}).encode())
        return Branding(d, name, logo_type)

    # -- DMARC aggregate reports received about a domain

    def dmarc_reports(self, domain: str) -> list[Feedback]:
        return self.dmarc.received(canonical_domain(domain))

    def dmarc_days(self, domain: str) -> list[DmarcDay]:
        """Pass and fail per sending source and day, from the reports received about it."""
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for fb in self.dmarc_reports(domain):
            day = _day(fb.begin)
            for row in fb.rows:
                counts[(row.source_ip, day)][0 if row.aligned else 1] += row.count
        return [DmarcDay(s, d, p, f) for (s, d), (p, f) in sorted(counts.items())]


def _day(t: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole: a reader sees the old file or the new one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
