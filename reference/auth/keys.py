"""DKIM keys: made, stored under data_dir/dkim/<domain>/<selector>.{rsa,ed25519}.key, published.

One selector name covers both keys of a domain; since one DNS name holds one key, the RSA
key is published at ``<selector>-rsa._domainkey.<domain>`` and the Ed25519 key at
``<selector>-ed25519._domainkey.<domain>`` (see :func:`dns_selector`).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = [
    "ALGORITHMS",
    "KeyStore",
    "KeyStoreError",
    "SigningKey",
    "dns_selector",
    "txt_strings",
]

# a= values (RFC 6376 3.3, RFC 8463 3) -> file suffix
ALGORITHMS = {"rsa-sha256": "rsa", "ed25519-sha256": "ed25519"}
RSA_BITS = 2048
_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,40}[A-Za-z0-9])?$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class KeyStoreError(ValueError):
    """A key cannot be made or read; the message says which and why."""


def dns_selector(selector: str, algorithm: str) -> str:
    """The selector a signature with ``algorithm`` names (s=), e.g. "mailspec-rsa"."""
    return f"{selector}-{ALGORITHMS[algorithm]}"


@dataclass(frozen=True)
class SigningKey:
    """A private key and where its public half is published."""

    domain: str
    selector: str  # as in s=, already suffixed (see dns_selector)
    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    key: PrivateKey

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def public_record(self) -> str:
        """The TXT value to publish (RFC 6376 3.6.1; RFC 8463 4: raw Ed25519 key in p=)."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            der = self.key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"

    def private_pem(self) -> bytes:
        """PEM; RSA as PKCS#1 ("BEGIN RSA PRIVATE KEY"), which dkimpy and OpenDKIM read."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            fmt = serialization.PrivateFormat.TraditionalOpenSSL
        else:
            fmt = serialization.PrivateFormat.PKCS8
        return self.key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def txt_strings(value: str, size: int = 255) -> list[str]:
    """A TXT value cut into character-strings of at most 255 octets (RFC 1035 3.3.14)."""
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def check_names(domain: str, selector: str) -> tuple[str, str]:
    domain = domain.lower().rstrip(".")
    if not _DOMAIN.match(domain) or ".." in domain or "/" in domain:
        raise KeyStoreError(f"not a domain name: {domain!r}")
    if not _SELECTOR.match(selector):
        raise KeyStoreError(f"not a selector (letters, digits, hyphens): {selector!r}")
    return domain, selector


class KeyStore:
    """Keys on disk, read once and cached; made on demand when ``generate`` is asked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[tuple[str, str], list[SigningKey]] = {}
        self._lock = threading.Lock()

    def path(self, domain: str, selector: str, algorithm: str) -> Path:
        domain, selector = check_names(domain, selector)
        return self.root / domain / f"{selector}.{ALGORITHMS[algorithm]}.key"

    def load(
        self, domain: str, selector: str, algorithms: tuple[str, ...] = tuple(ALGORITHMS)
    ) -> list[SigningKey]:
        """The keys of a domain that exist on disk (none: an empty list)."""
        domain, selector = check_names(domain, selector)
        key = (domain, selector)
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = []
            for alg in ALGORITHMS:
                path = self.path(domain, selector, alg)
                try:
                    pem = path.read_bytes()
                except FileNotFoundError:
                    continue
                except OSError as e:
                    raise KeyStoreError(f"cannot read {path}: {e.strerror}") from None
                try:
                    pk = serialization.load_pem_private_key(pem, password=None)
                except ValueError as e:
                    raise KeyStoreError(f"{path}: not a PEM private key: {e}") from None
                if not isinstance(pk, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
                    raise KeyStoreError(f"{path}: neither RSA nor Ed25519")
                cached.append(SigningKey(domain, dns_selector(selector, alg), alg, pk))
            with self._lock:
                if cached:
                    self._cache[key] = cached
        return [k for k in cached if k.algorithm in algorithms]

    def generate(
        self,
        domain: str,
        selector: str,
        algorithms: tuple[str, ...] = tuple(ALGORITHMS),
        *,
        replace: bool = False,
    ) -> list[SigningKey]:
        """Make the missing keys (all of them with ``replace``); returns every key."""
        domain, selector = check_names(domain, selector)
        for alg in algorithms:
            if alg not in ALGORITHMS:
                raise KeyStoreError(f"unknown algorithm {alg!r} (one of {', '.join(ALGORITHMS)})")
            path = self.path(domain, selector, alg)
            if path.exists() and not replace:
                continue
            pk: PrivateKey
            if alg == "rsa-sha256":
                pk = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
            else:
                pk = ed25519.Ed25519PrivateKey.generate()
            pem = SigningKey(domain, selector, alg, pk).private_pem()
            path.parent.mkdir(parents=True, exist_ok=True)
            # A tmp name of its own per writer: several nodes or threads may make the first
            # key for a domain at once; the first to link it in wins and all load that one.
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
                    f.flush()
                    os.fsync(f.fileno())
                if replace:
                    os.replace(tmp, path)
                else:
                    with contextlib.suppress(FileExistsError):
                        os.link(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        with self._lock:
            self._cache.pop((domain, selector), None)
        return self.load(domain, selector, algorithms)
