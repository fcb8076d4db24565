"""A locked account answers IMAP [UNAVAILABLE], POP3 [SYS/TEMP] and ManageSieve (TRYLATER):
try later, not "wrong"."""

from __future__ import annotations

import imaplib
import poplib
import ssl
from pathlib import Path

import pytest

from conformance.managesieve_client import ManageSieveClient
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
        # ManageSieve shares the authenticator and its lockout.
        sieve = ManageSieveClient.connect("127.0.0.1", ref.port("managesieve"))
        sieve.starttls(ctx, "127.0.0.1")
        reply = sieve.authenticate("bob@example.test", "bob-pw")
        assert (reply.status, reply.code) == ("NO", "TRYLATER"), str(reply)
        sieve.close()
        ref.clock.advance(30 * 60)
        imap = imaplib.IMAP4_SSL("127.0.0.1", ref.port("imaps"), ssl_context=ctx)
        assert imap.login("bob@example.test", "bob-pw")[0] == "OK"
        imap.logout()
