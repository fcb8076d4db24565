"""Aliases: other addresses of an account, for delivery and for sending; bulk senders."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.cli import main
from reference.directory import Directory, DirectoryError
from reference.policy import Action, Filing, SenderOwnership, Session, transaction
from reference.policy.submission import BulkLane, FromOwnership
from reference.testing import ReferenceServer

ALICE = Session(role="submission", peer="192.0.2.1", tls=True, user="alice@example.test")


@pytest.fixture
def directory(directory_target: Path | str) -> Iterator[Directory]:
    d = Directory(directory_target)
    d.add_domain("example.test")
    d.add_domain("example.org")
    d.add_user("alice@example.test", "pw")
    d.add_user("bob@example.test", "pw")
    yield d
    d.close()


def test_alias_add_resolve_own_remove(directory: Directory) -> None:
    assert directory.add_alias("Sales@Example.ORG", "alice@example.test") == (
        "sales@example.org",
        ["alice@example.test"],
    )
    account = directory.resolve("sales@example.org")
    assert account is not None and account.address == "alice@example.test"
    assert directory.resolve("bob@example.test") == directory.lookup("bob@example.test")
    assert directory.resolve("nobody@example.org") is None
    assert directory.owns("alice@example.test", "SALES@example.org")
    assert directory.owns("alice@example.test", "alice@example.test")
    assert not directory.owns("bob@example.test", "sales@example.org")
    assert not directory.owns("alice@example.test", "bob@example.test")
    assert directory.aliases() == [("sales@example.org", "alice@example.test")]
    assert directory.aliases("example.test") == []
    assert directory.aliases(target="alice@example.test") == [
        ("sales@example.org", "alice@example.test")
    ]
    assert directory.remove_alias("sales@example.org")
    assert not directory.remove_alias("sales@example.org")
    assert directory.resolve("sales@example.org") is None


@pytest.mark.parametrize(
    ("alias", "target", "why"),
    [
        ("x@remote.test", "alice@example.test", "not ours"),
        ("bob@example.test", "alice@example.test", "an account already"),
        ("x@example.test", "nobody@example.test", "no such account"),
    ],
)
def test_alias_refusals(directory: Directory, alias: str, target: str, why: str) -> None:
    with pytest.raises(DirectoryError, match=why):
        directory.add_alias(alias, target)


def test_alias_twice_is_refused(directory: Directory) -> None:
    directory.add_alias("info@example.test", "alice@example.test")
    with pytest.raises(DirectoryError, match="exists already"):
        directory.add_alias("info@example.test", "alice@example.test")
    # Another target is one more destination of the same alias.
    directory.add_alias("info@example.test", "bob@example.test")
    assert [a.address for a in directory.expand("info@example.test").accounts] == [
        "alice@example.test",
        "bob@example.test",
    ]


def test_bulk_sender_flag(directory: Directory) -> None:
    assert not directory.is_bulk_sender("alice@example.test")
    directory.set_bulk_sender("Alice@example.test")
    assert directory.is_bulk_sender("alice@example.test")
    directory.set_bulk_sender("alice@example.test", False)
    assert not directory.is_bulk_sender("alice@example.test")
    with pytest.raises(DirectoryError):
        directory.set_bulk_sender("nobody@example.test")


async def test_mail_from_must_be_owned(directory: Directory) -> None:
    directory.add_alias("sales@example.org", "alice@example.test")
    check = SenderOwnership(directory)
    assert (await check.mail(transaction(ALICE, "sales@example.org"))).action is Action.CONTINUE
    assert (await check.mail(transaction(ALICE, ""))).action is Action.CONTINUE
    r = await check.mail(transaction(ALICE, "bob@example.test"))
    assert r.action is Action.REJECT and r.reply is not None
    assert (r.reply.code, r.reply.enhanced) == (553, "5.7.1")


@pytest.mark.parametrize(
    ("from_", "ok"),
    [
        ("Alice <alice@example.test>", True),
        ("=?utf-8?q?Sales_T=C3=A9am?= <sales@example.org>", True),
        ("alice@example.test, sales@example.org", True),
        ("alice@example.test, bob@example.test", False),
        ("Bob <bob@example.test>", False),
        ("undisclosed:;", False),
    ],
)
async def test_from_header_must_be_owned(directory: Directory, from_: str, ok: bool) -> None:
    directory.add_alias("sales@example.org", "alice@example.test")
    msg = f"From: {from_}\r\nTo: x@remote.test\r\nSubject: s\r\n\r\nbody\r\n".encode()
    r = await FromOwnership(directory).data(
        transaction(ALICE, "alice@example.test", ["x@remote.test"], msg)
    )
    if ok:
        assert r.action is Action.CONTINUE
    else:
        assert r.action is Action.REJECT and r.reply is not None
        assert (r.reply.code, r.reply.enhanced) == (550, "5.7.1")


async def test_from_header_check_is_submission_only(directory: Directory) -> None:
    msg = b"From: bob@example.test\r\n\r\nbody\r\n"
    mx = Session(role="mx", peer="192.0.2.1")
    r = await FromOwnership(directory).data(
        transaction(mx, "bob@example.test", ["alice@example.test"], msg)
    )
    assert r.action is Action.CONTINUE
    no_from = b"Subject: no author\r\n\r\nbody\r\n"
    r = await FromOwnership(directory).data(transaction(ALICE, "", ["x@remote.test"], no_from))
    assert r.action is Action.CONTINUE


@pytest.mark.parametrize(
    ("headers", "rcpts", "bulk"),
    [
        (b"", 1, False),
        (b"", 20, True),
        (b"Precedence: bulk\r\n", 1, True),
        (b"Precedence: List\r\n", 1, True),
        (b"Precedence: first-class\r\n", 1, False),
        (b"List-Unsubscribe: <mailto:unsub@example.test>\r\n", 1, True),
        (b"List-Id: <news.example.test>\r\n", 1, True),
    ],
)
async def test_bulk_lane(directory: Directory, headers: bytes, rcpts: int, bulk: bool) -> None:
    msg = b"From: alice@example.test\r\n" + headers + b"\r\nbody\r\n"
    to = [f"r{i}@remote.test" for i in range(rcpts)]
    r = await BulkLane(directory, recipients=20).data(
        transaction(ALICE, "alice@example.test", to, msg)
    )
    assert r.action is Action.CONTINUE
    assert (r.filing.lane == "bulk") is bulk


async def test_newsletter_sender_is_bulk(directory: Directory) -> None:
    directory.set_bulk_sender("alice@example.test")
    msg = b"From: alice@example.test\r\n\r\nbody\r\n"
    r = await BulkLane(directory).data(
        transaction(ALICE, "alice@example.test", ["x@remote.test"], msg)
    )
    assert r.filing == Filing(lane="bulk")


def test_alias_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    assert main(["domain", "add", "example.test", *d]) == 0
    assert main(["user", "add", "alice@example.test", "--password", "pw", *d]) == 0
    assert main(["alias", "add", "info@example.test", "alice@example.test", *d]) == 0
    assert main(["alias", "list", *d]) == 0
    assert main(["user", "bulk", "alice@example.test", *d]) == 0
    out = capsys.readouterr().out
    assert "alias info@example.test -> alice@example.test added" in out
    assert "info@example.test -> alice@example.test\n" in out
    assert "alice@example.test: a sender of newsletters" in out
    assert main(["alias", "add", "x@example.test", "nobody@example.test", *d]) == 1
    assert "no such account" in capsys.readouterr().err
    assert main(["alias", "remove", "info@example.test", *d]) == 0
    assert main(["alias", "remove", "info@example.test", *d]) == 1
    assert main(["alias", "list", "--domain", "example.test", *d]) == 0
    assert capsys.readouterr().out == f"alias info@example.test removed (in {tmp_path})\n"


def test_alias_end_to_end(tmp_path: Path) -> None:
    """Mail to an alias reaches its account; the account may send as the alias."""
    with ReferenceServer(tmp_path / "var") as ref:
        ref.add_domain("example.test")
        ref.add_user("alice@example.test", "alice-pw")
        ref.add_user("bob@example.test", "bob-pw")
        ref.add_alias("sales@example.test", "alice@example.test")
        with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
            s.sendmail("a@remote.test", ["sales@example.test"], b"Subject: to sales\r\n\r\nhi\r\n")
        ref.wait_delivered()
        (msg,) = ref.mailbox_messages("alice@example.test")
        assert b"Delivered-To: alice@example.test" in msg and b"Subject: to sales" in msg

        ctx = smtplib.ssl.create_default_context(cafile=str(ref.cafile))
        with smtplib.SMTP("127.0.0.1", ref.port("submission"), timeout=10) as s:
            s.starttls(context=ctx)
            s.login("alice@example.test", "alice-pw")
            s.sendmail(
                "sales@example.test",
                ["bob@example.test"],
                b"From: Sales <sales@example.test>\r\nSubject: from sales\r\n\r\nhi\r\n",
            )
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                s.sendmail("bob@example.test", ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
            assert refused.value.smtp_code == 553
            with pytest.raises(smtplib.SMTPDataError) as data_refused:
                s.sendmail(
                    "alice@example.test",
                    ["bob@example.test"],
                    b"From: bob@example.test\r\nSubject: forged\r\n\r\nx\r\n",
                )
            assert data_refused.value.smtp_code == 550
            assert b"5.7.1" in data_refused.value.smtp_error
        ref.wait_delivered()
        (got,) = ref.mailbox_messages("bob@example.test")
        assert b"Subject: from sales" in got
