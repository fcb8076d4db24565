"""The platform a story runs on: the reference and the fake internet on one manual clock,
and what a receiver elsewhere makes of a message it got (`mailspec auth check`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import dns.resolver

from fakes.internet import FakeInternet
from fakes.mx import FakeMX
from reference.clock import ManualClock
from reference.testing import MAILSPEC, ReferenceServer, mailspec, write_config

POOL = "127.0.1.0/24"


class FakePlatform:
    """The reference relaying from a pool of loopback addresses to the fake providers."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "var"
        self.clock = ManualClock()
        self.internet = FakeInternet(clock=self.clock).start()
        self.config = write_config(tmp / "mailspec.toml", relay={"source_addresses": [POOL]})
        self.ref = ReferenceServer(
            self.data,
            clock=self.clock,
            nameservers=[self.internet.nameserver],
            overrides={
                "relay.port": self.internet.smtp_port,
                "relay.source_addresses": [POOL],
                "relay.timeout": "5s",
                "dns.timeout": "2s",
            },
        ).start()

    def cli(self, *args: str) -> str:
        return mailspec(*args, data_dir=self.data, config=self.config)

    def stop(self) -> None:
        self.ref.stop()
        self.internet.stop()

    @property
    def gmail(self) -> FakeMX:
        return self.internet.mx["gmail"]

    def verdict(self, delivery: Any) -> str:
        """`mailspec auth check` on a message a fake MX received, as that receiver judges it:
        its client address, HELO and MAIL FROM, against the fake DNS."""
        eml = self.tmp / "received.eml"
        eml.write_bytes(delivery.data)
        return subprocess.run(
            [
                *MAILSPEC,
                "auth",
                "check",
                str(eml),
                "--client-ip",
                delivery.source,
                "--helo",
                delivery.helo,
                "--mail-from",
                delivery.mail_from,
                "--nameserver",
                self.internet.nameserver,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout

    def txt(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's DNS function: a TXT record as a receiver reads it from the fake DNS."""
        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.port = [self.internet.dns.host], self.internet.dns.port
        try:
            answer = r.resolve(name.decode().rstrip("."), "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return b""
        return b"".join(answer[0].strings)
