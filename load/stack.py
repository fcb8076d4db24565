"""What a load run talks to: the nodes of a `mailspec cluster`, read from its state file.

Loopback only: an endpoint outside 127.0.0.0/8 or ::1 is refused here, before any traffic.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Accounts", "NodeInfo", "Stack", "loopback_only"]


def loopback_only(host: str) -> str:
    """``host`` if it is a loopback address; load runs never send anywhere else."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"load runs send only to loopback addresses, not to {host!r}") from None
    if not ip.is_loopback:
        raise ValueError(f"load runs send only to loopback addresses, not to {host!r}")
    return str(ip)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    pid: int | None
    up: bool
    endpoints: dict[str, tuple[str, int]]
    restarts: int = 0
    spool: Path | None = None


@dataclass
class Stack:
    """The cluster's state file: nodes and their endpoints, shared paths, the fakes."""

    path: Path
    nodes: list[NodeInfo] = field(default_factory=list)
    mail_dir: Path = Path()
    cafile: Path = Path()
    deliveries: Path | None = None
    providers: dict[str, str] = field(default_factory=dict)  # name -> domain
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Stack:
        stack = cls(Path(path))
        stack.reload()
        return stack

    def reload(self) -> None:
        raw = json.loads(self.path.read_text())
        nodes = []
        for n in raw["nodes"]:
            eps = {}
            for name, url in n["endpoints"].items():
                parts = urlsplit(url)
                assert parts.hostname is not None and parts.port is not None, url
                eps[name] = (loopback_only(parts.hostname), parts.port)
            spool = Path(n["spool"]) if n.get("spool") else None
            nodes.append(NodeInfo(n["name"], n["pid"], n["up"], eps, n.get("restarts", 0), spool))
        self.nodes = nodes
        self.mail_dir = Path(raw["mail_dir"])
        self.cafile = Path(raw["cafile"])
        fakes = raw.get("fakes") or {}
        self.deliveries = Path(fakes["deliveries"]) if fakes.get("deliveries") else None
        self.providers = {k: v["domain"] for k, v in (fakes.get("providers") or {}).items()}
        self.raw = raw

    def node(self, name: str) -> NodeInfo:
        return next(n for n in self.nodes if n.name == name)

    def serving(self, listener: str) -> list[NodeInfo]:
        return [n for n in self.nodes if listener in n.endpoints]

    def wait(self, predicate: Any, timeout: float, interval: float = 0.1) -> bool:
        """Re-read the file until ``predicate(self)`` holds or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.reload()  # fails only while the file is rewritten: read it again
            if predicate(self):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)


@dataclass
class Accounts:
    """The accounts a load run uses, written by the harness next to the state file."""

    recipients: list[str]  # local mailboxes the inbound MTAs send to (and IMAP reads)
    bulk: list[str]  # submission users with a high limit: accept-to-remote-MX latency
    limited: list[str]  # submission users at the platform's limit: the rate-limit check
    password: str
    limit: str  # the recipients limit of the limited users, COUNT/DURATION
    remote: list[str]  # remote domains (the fake providers)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Accounts:
        return cls(**json.loads(Path(path).read_text()))
