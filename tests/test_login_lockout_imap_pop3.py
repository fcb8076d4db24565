"""A locked account answers IMAP [UNAVAILABLE] and POP3 [SYS/TEMP]: try later, not "wrong";
failed IMAP and POP3 logins count per client address too, as SMTP AUTH's do."""

from __future__ import annotations

import imaplib
import poplib
import socket
import ssl
from pathlib import Path

import pytest

from reference.testing import ReferenceServer


def test_locked_account_is_temporarily_unavailable(tmp_path: Path) -> None:
    overrides = {"submission.auth_max_failures": 3, "submission.auth_delay_after": 99}
    with ReferenceServer(tmp_path / "var", overrides=overrides) as ref:
        ref.add_domain("example.test")
        ref.add_user("bob@example.test", "bob-pw")
        ctx = ssl.create_default_context(cafile=str(ref.cafile))
        for _ in range(3):
            imap = imaplib.IMAP4_SSL("127.0.0.1", ref.port("imaps"), ssl_context=ctx)
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                imap.login("bob@example.test", "wrong")
            imap.logout()
        imap = imaplib.IMAP4_SSL("127.0.0.1", ref.port("imaps"), ssl_context=ctx)
        with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
            imap.login("bob@example.test", "bob-pw")  # the right password, still locked
        imap.logout()
        pop = poplib.POP3_SSL("127.0.0.1", ref.port("pop3s"), context=ctx)
        pop.user("bob@example.test")
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
            pop.pass_("bob-pw")
        pop.quit()
        ref.clock.advance(30 * 60)
        imap = imaplib.IMAP4_SSL("127.0.0.1", ref.port("imaps"), ssl_context=ctx)
        assert imap.login("bob@example.test", "bob-pw")[0] == "OK"
        imap.logout()


def _imaps(port: int, ctx: ssl.SSLContext, source: str) -> imaplib.IMAP4_SSL:
    """IMAP over TLS from the loopback address ``source`` (imaplib cannot choose it)."""

    class FromSource(imaplib.IMAP4_SSL):
        def _create_socket(self, timeout: float | None) -> socket.socket:
            sock = socket.create_connection((self.host, self.port), timeout, (source, 0))
            return ctx.wrap_socket(sock, server_hostname=self.host)

    return FromSource("127.0.0.1", port, ssl_context=ctx)


def _pop3s(port: int, ctx: ssl.SSLContext, source: str) -> poplib.POP3_SSL:
    class FromSource(poplib.POP3_SSL):
        def _create_socket(self, timeout: float) -> socket.socket:
            sock = socket.create_connection((self.host, self.port), timeout, (source, 0))
            return ctx.wrap_socket(sock, server_hostname=self.host)

    return FromSource("127.0.0.1", port, context=ctx)


def test_client_address_locked_after_failures_over_many_accounts(tmp_path: Path) -> None:
    overrides = {
        "submission.auth_max_failures": 50,
        "submission.auth_max_failures_per_client": 4,
        "submission.auth_delay_after": 99,
        "submission.auth_ignore_networks": ["127.0.0.1/32"],
    }
    with ReferenceServer(tmp_path / "var", overrides=overrides) as ref:
        ref.add_domain("example.test")
        ref.add_user("bob@example.test", "bob-pw")
        ctx = ssl.create_default_context(cafile=str(ref.cafile))
        source = "127.0.0.77"  # counted: only 127.0.0.1 is ignored here

        def imaps(src: str) -> imaplib.IMAP4_SSL:
            return _imaps(ref.port("imaps"), ctx, src)

        for n in range(2):  # four names, two tries each: no account reaches its limit
            for name in ("a", "b"):
                imap = imaps(source)
                with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                    imap.login(f"{name}{n}@example.test", "wrong")
                imap.logout()
        imap = imaps(source)
        with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
            imap.login("bob@example.test", "bob-pw")  # the address is locked
        imap.logout()
        pop = _pop3s(ref.port("pop3s"), ctx, source)
        pop.user("bob@example.test")
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
            pop.pass_("bob-pw")
        pop.quit()
        imap = imaps("127.0.0.1")  # another address: the account itself is not locked
        assert imap.login("bob@example.test", "bob-pw")[0] == "OK"
        imap.logout()
        ref.clock.advance(30 * 60)
        imap = imaps(source)
        assert imap.login("bob@example.test", "bob-pw")[0] == "OK"
        imap.logout()
