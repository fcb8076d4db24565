"""API tokens: made by `mailspec token create`, kept hashed in the directory database (an
older database gains their table and keeps its rows), refused once revoked; failed token
and password logins count in the same lockout as SMTP, IMAP and POP3."""

from __future__ import annotations

import contextlib
import imaplib
import sqlite3
import ssl
from pathlib import Path

import pytest
from web_client import Web, reference, smtp_auth, token

from reference.cli import main
from reference.directory import Directory

# The directory's tables as they were before API tokens existed.
OLD_SCHEMA = """
CREATE TABLE domains (name TEXT PRIMARY KEY);
CREATE TABLE accounts (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    password TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE aliases (address TEXT PRIMARY KEY, target TEXT NOT NULL REFERENCES accounts(address));
"""


def test_an_older_directory_gains_tokens_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "directory.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO domains VALUES ('a.test')")
        db.commit()
    d = Directory(path)
    try:
        d.add_user("alice@a.test", "pw")  # works as before
        assert d.domains() == ["a.test"]
        made, text = d.create_token("user", now=1.0, user="alice@a.test")
        assert d.check_token(text) == made
        assert d.tokens() == [made]
    finally:
        d.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        (secret_hash,) = db.execute("SELECT secret_sha256 FROM api_tokens").fetchone()
    assert text.split("_", 2)[2] not in secret_hash  # only a hash is kept
    d = Directory(path)  # opened again: the migration is idempotent
    try:
        assert d.check_token(text) == made
    finally:
        d.close()


def test_token_refusals(tmp_path: Path) -> None:
    d = Directory(tmp_path / "d.sqlite3")
    try:
        d.add_domain("a.test")
        d.add_user("alice@a.test", "pw")
        _, text = d.create_token("user", now=1.0, user="alice@a.test")
        assert d.check_token(text[:-1] + ("A" if text[-1] != "A" else "B")) is None
        assert d.check_token("mst_nothing") is None
        d.set_enabled("alice@a.test", False)
        assert d.check_token(text) is None  # a disabled user's tokens stop with the account
        for role, kw in (
            ("root", {}),
            ("domain-admin", {}),
            ("domain-admin", {"domain": "other.test"}),
            ("user", {"user": "nobody@a.test"}),
            ("admin", {"domain": "a.test"}),
        ):
            with pytest.raises(ValueError):
                d.create_token(role, now=1.0, **kw)  # type: ignore[arg-type]
    finally:
        d.close()


async def test_token_command_makes_a_working_token_and_revokes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with reference(tmp_path) as (ref, _):
        ref.add_domain("a.test")
        data = ["--data-dir", str(ref.config.data_path)]
        assert main(["token", "create", "--role", "domain-admin", "--domain", "A.test", *data]) == 0
        out = capsys.readouterr().out
        text = out.strip().splitlines()[-1]
        token_id = text.split("_")[1]
        assert f"token {token_id}: domain-admin of a.test" in out
        assert main(["token", "list", *data]) == 0
        listed = capsys.readouterr().out
        assert token_id in listed and text not in listed  # the secret is never shown again
        assert main(["token", "create", "--role", "user", "--user", "no@a.test", *data]) == 1
        assert "no such account" in capsys.readouterr().err
        async with Web(ref) as web:
            r = await web.call("GET", "/api/v1/me", token=text)
            assert r.body == {"role": "domain-admin", "domain": "a.test", "user": None}
            assert main(["token", "revoke", token_id, *data]) == 0
            r = await web.call("GET", "/api/v1/me", token=text)
            assert r.status == 401 and r.problem["detail"] == "wrong credentials"
            assert "Bearer" in r.headers["WWW-Authenticate"]


async def test_failed_api_logins_count_in_the_mail_lockout(tmp_path: Path) -> None:
    with reference(tmp_path, **{"submission.auth_max_failures": 3}) as (ref, _):
        ref.add_domain("a.test")
        ref.add_user("alice@a.test", "pw")
        ref.add_user("bob@a.test", "pw")
        ctx = ssl.create_default_context(cafile=str(ref.cafile))
        admin = token(ref, "admin")
        other = token(ref, "admin")
        async with Web(ref) as web:
            # Passwords: two wrong ones on the API and one over SMTP lock alice everywhere.
            for _ in range(2):
                r = await web.call("GET", "/api/v1/me", basic=("alice@a.test", "wrong"))
                assert r.status == 401
            assert smtp_auth(ref, "alice@a.test", "wrong") == 535
            r = await web.call("GET", "/api/v1/me", basic=("alice@a.test", "pw"))
            assert r.status == 429 and int(r.headers["Retry-After"]) > 0
            imap = imaplib.IMAP4_SSL("127.0.0.1", ref.port("imaps"), ssl_context=ctx)
            with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
                imap.login("alice@a.test", "pw")  # the right password, still locked
            imap.logout()
            r = await web.call("GET", "/api/v1/me", basic=("bob@a.test", "pw"))
            assert r.body["user"] == "bob@a.test"  # others are not locked

            # Tokens: guesses at one token's secret lock that token, not the others.
            guessed = admin[:-4] + "AAAA" if not admin.endswith("AAAA") else admin[:-4] + "BBBB"
            for _ in range(3):
                assert (await web.call("GET", "/api/v1/me", token=guessed)).status == 401
            assert (await web.call("GET", "/api/v1/me", token=admin)).status == 429
            assert (await web.call("GET", "/api/v1/me", token=other)).status == 200
            metrics = (await web.call("GET", "/metrics")).body
            assert 'mailspec_auth_failures_total{service="web"} 5.0' in metrics
            assert 'mailspec_auth_lockouts_total{scope="account"} 2.0' in metrics
            ref.clock.advance(30 * 60)  # the lockout ends on the clock
            assert (await web.call("GET", "/api/v1/me", token=admin)).status == 200
