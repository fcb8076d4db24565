"""Per-domain and per-user thresholds, allow and block lists; the log line carries the queue id."""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.directory import Directory, DirectoryError, SpamSettings
from reference.mail.replies import SENDER_BLOCKED
from reference.policy import KEEP, Action, CheckResult, Filing, Session, transaction
from reference.policy.spam import BlockedSenders, SpamCheck
from reference.scan.bayes import Bayes, Classifiers
from reference.scan.rules import GTUBE, GTUBE_JUNK
from reference.testing import ReferenceServer

MX = Session(role="mx", peer="203.0.113.7", helo="mx.remote.example")
QID = "0000000000AABBCC"
ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@other.test"


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    d = Directory(tmp_path / "directory.sqlite3")
    d.add_domain("example.test")
    d.add_domain("other.test")
    for address in (ALICE, BOB, CAROL):
        d.add_user(address, "pw")
    yield d
    d.close()


def message(
    body: str = "Shall we meet at noon?", sender: str = "news@shop.example", mid: str = "1"
) -> bytes:
    return (
        f"From: Shop <{sender}>\r\nTo: alice@example.test\r\nSubject: lunch\r\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{mid}@shop.example>\r\n"
        f"\r\n{body}\r\n"
    ).encode()


async def decide(
    check: SpamCheck,
    msg: bytes,
    rcpts: list[str],
    sender: str = "bounce@esp.example",
    s: Session = MX,
) -> CheckResult:
    return await check.data(transaction(s, sender, rcpts, msg, qid=QID))


# -- the directory -----------------------------------------------------------------------------


def test_settings_are_kept_field_by_field(directory: Directory) -> None:
    assert directory.set_spam_settings("Alice@Example.TEST", junk_score=3) == SpamSettings(
        ALICE, None, 3.0
    )
    assert directory.set_spam_settings(ALICE, reject_score=8) == SpamSettings(ALICE, 8.0, 3.0)
    directory.set_spam_settings("EXAMPLE.test", reject_score=20)
    assert directory.spam_settings(ALICE, "example.test", "other.test") == {
        ALICE: SpamSettings(ALICE, 8.0, 3.0),
        "example.test": SpamSettings("example.test", 20.0, None),
    }
    directory.clear_spam_settings(ALICE)
    assert ALICE not in directory.spam_settings(ALICE)


@pytest.mark.parametrize(
    ("scope", "kw", "why"),
    [
        ("nobody@example.test", {"junk_score": 3}, "no such account"),
        ("remote.example", {"junk_score": 3}, "not ours"),
        (ALICE, {"junk_score": 0}, "more than 0"),
        (ALICE, {"reject_score": 4, "junk_score": 6}, "must not be more than"),
    ],
)
def test_settings_are_validated(
    directory: Directory, scope: str, kw: dict[str, float], why: str
) -> None:
    with pytest.raises(DirectoryError, match=why):
        directory.set_spam_settings(scope, **kw)


def test_sender_lists(directory: Directory) -> None:
    assert directory.set_sender_list(ALICE, "allow", "@Shop.Example") == "@shop.example"
    assert directory.set_sender_list("ALICE@example.test", "block", "Spam@Shop.example") == (
        "spam@shop.example"
    )
    assert directory.sender_lists(ALICE) == [
        ("allow", "@shop.example"),
        ("block", "spam@shop.example"),
    ]
    # The most specific entry decides: the address before its domain.
    assert directory.sender_listed(ALICE, ["spam@shop.example"]) == ("block", "spam@shop.example")
    assert directory.sender_listed(ALICE, ["news@shop.example"]) == ("allow", "@shop.example")
    assert directory.sender_listed(ALICE, ["x@sub.shop.example", "<>", ""]) is None
    assert directory.sender_listed(BOB, ["spam@shop.example"]) is None
    # One list per pattern: blocking what was allowed moves it.
    directory.set_sender_list(ALICE, "block", "@shop.example")
    assert directory.sender_listed(ALICE, ["news@shop.example"]) == ("block", "@shop.example")
    assert directory.remove_sender_list(ALICE, "@shop.example")
    assert not directory.remove_sender_list(ALICE, "@shop.example")
    for bad in ("shop.example", "@", "a b@shop.example"):
        with pytest.raises(DirectoryError):
            directory.set_sender_list(ALICE, "allow", bad)
    with pytest.raises(DirectoryError, match="no such account"):
        directory.set_sender_list("nobody@example.test", "allow", "@shop.example")
    with pytest.raises(DirectoryError, match="allow or block"):
        directory.set_sender_list(ALICE, "maybe", "@shop.example")


# -- thresholds --------------------------------------------------------------------------------


async def test_a_users_lower_junk_threshold(directory: Directory) -> None:
    check = SpamCheck(directory=directory)
    urgent = message("Act now and verify your account. Click here")  # 1.5 + 2 + 0.5
    assert (await decide(check, urgent, [ALICE])).filing == KEEP
    directory.set_spam_settings(ALICE, junk_score=3)
    r = await decide(check, urgent, [ALICE])
    assert r.filing == Filing(folder="Junk") and b"score=4.0 required=3 " in r.prepend_headers
    assert (await decide(check, urgent, [BOB])).filing == KEEP


async def test_a_domains_thresholds_and_a_users_on_top(directory: Directory) -> None:
    check = SpamCheck(directory=directory)
    directory.set_spam_settings("example.test", reject_score=4)
    directory.set_spam_settings(BOB, reject_score=30)
    urgent = message("Act now and verify your account. Click here")  # 4.0
    r = await decide(check, urgent, [ALICE])
    assert r.reply is not None and str(r.reply) == (
        "550 5.7.1 Message refused as spam (score 4.0, threshold 4)"
    )
    assert (await decide(check, urgent, [CAROL])).action is Action.CONTINUE
    gtube_junk = message(GTUBE_JUNK)  # scores the junk threshold, 5: refused at 4 for alice
    r = await decide(check, gtube_junk, [ALICE])
    assert r.reply is not None and "threshold 4)" in r.reply.text
    r = await decide(check, message(GTUBE_JUNK), [BOB])
    assert r.action is Action.CONTINUE and r.filing == Filing(folder="Junk")
    assert (await decide(check, message(GTUBE_JUNK), [CAROL])).filing == Filing(folder="Junk")


async def test_gtube_junk_follows_the_users_junk_threshold(directory: Directory) -> None:
    directory.set_spam_settings(ALICE, junk_score=7.5)
    r = await decide(SpamCheck(directory=directory), message(GTUBE_JUNK), [ALICE])
    assert r.filing == Filing(folder="Junk") and b"score=7.5 required=7.5" in r.prepend_headers


async def test_recipients_that_disagree_get_the_configured_thresholds(
    directory: Directory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mailspec.spam")
    directory.set_spam_settings(ALICE, reject_score=4)
    check = SpamCheck(directory=directory)
    r = await decide(check, message(GTUBE_JUNK), [ALICE, BOB])
    assert r.action is Action.CONTINUE and r.filing == Filing(folder="Junk")
    assert "settings=mixed" in caplog.text
    # Two recipients with the same settings: theirs.
    directory.set_spam_settings(BOB, reject_score=4)
    assert (await decide(check, message(GTUBE_JUNK), [ALICE, BOB])).action is Action.REJECT


async def test_submission_ignores_recipient_settings(directory: Directory) -> None:
    directory.set_spam_settings(ALICE, reject_score=4)
    sub = Session(role="submission", peer="198.51.100.4", user=BOB)
    r = await decide(SpamCheck(directory=directory), message(GTUBE_JUNK), [ALICE], BOB, sub)
    assert r.action is Action.CONTINUE


# -- allow and block lists ---------------------------------------------------------------------


async def test_allowed_sender_skips_content_scoring(directory: Directory) -> None:
    directory.set_sender_list(ALICE, "allow", "@shop.example")
    check = SpamCheck(directory=directory)
    r = await decide(check, message(GTUBE), [ALICE])  # by the From address
    assert r.action is Action.CONTINUE and r.filing == KEEP
    assert b"X-Spam-Status: No, score=0.0 required=5 tests=USER_ALLOWLIST" in r.prepend_headers
    r = await decide(check, message(GTUBE, sender="x@elsewhere.example"), [ALICE], "a@shop.example")
    assert r.action is Action.CONTINUE  # by the envelope sender
    assert (await decide(check, message(GTUBE), [BOB])).action is Action.REJECT
    # Allowed by one of two recipients only: scored as usual.
    assert (await decide(check, message(GTUBE), [ALICE, BOB])).action is Action.REJECT


async def test_blocked_from_address_goes_to_junk(directory: Directory) -> None:
    directory.set_sender_list(ALICE, "block", "news@shop.example")
    r = await decide(SpamCheck(directory=directory), message(), [ALICE])
    assert r.filing == Filing(folder="Junk") and b"USER_BLOCKLIST" in r.prepend_headers
    assert (await decide(SpamCheck(directory=directory), message(), [BOB])).filing == KEEP


async def test_blocked_envelope_sender_is_refused_at_rcpt(directory: Directory) -> None:
    directory.set_sender_list(ALICE, "block", "@spam.example")
    check = BlockedSenders(directory)
    r = await check.rcpt(transaction(MX, "x@Spam.Example"), "Alice@example.test")
    assert r.action is Action.REJECT and r.reply == SENDER_BLOCKED
    assert str(SENDER_BLOCKED) == "550 5.7.1 Sender blocked by recipient"
    assert "alice@example.test's block list (@spam.example)" in r.reason
    assert (await check.rcpt(transaction(MX, "x@spam.example"), BOB)).action is Action.CONTINUE
    assert (await check.rcpt(transaction(MX, ""), ALICE)).action is Action.CONTINUE  # bounces pass
    assert (await check.rcpt(transaction(MX, "x@spam.example"), "nobody@example.test")).action is (
        Action.CONTINUE
    )
    # postmaster@ is read by the domain's first account: its list applies.
    assert (await check.rcpt(transaction(MX, "x@spam.example"), "postmaster@example.test")).refuses


# -- Bayes per recipient -----------------------------------------------------------------------


async def test_one_recipient_is_scored_with_their_own_classifier(
    directory: Directory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mailspec.spam")
    bayes = Classifiers.memory(min_spam=1, min_ham=1, user_min=1)
    bayes.learn_for_user(ALICE, message("cheap pills"), True)
    bayes.learn_for_user(ALICE, message("the minutes", mid="2"), False)
    seen: list[object] = []
    real = Bayes.score_parsed

    def spy(self: Bayes, p: object) -> float:
        seen.append(self.store)
        return real(self, p)  # type: ignore[arg-type]

    monkeypatch.setattr(Bayes, "score_parsed", spy)
    check = SpamCheck(directory=directory, bayes=bayes)
    await decide(check, message(), [ALICE])
    await decide(check, message(), [BOB])
    await decide(check, message(), [ALICE, BOB])
    assert seen == [bayes.user(ALICE).store, bayes.global_.store, bayes.global_.store]
    assert "bayes=user" in caplog.text and "bayes=global" in caplog.text


# -- the log line carries the queue id ---------------------------------------------------------


def test_rules_go_to_the_log_with_the_queue_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with ReferenceServer(tmp_path / "var") as ref:
        ref.add_domain("example.test")
        ref.add_user(ALICE, "pw")
        with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
            reply = s.sendmail("a@remote.test", [ALICE], message(GTUBE_JUNK))
            assert reply == {}
            with pytest.raises(smtplib.SMTPDataError) as refused:
                s.sendmail("a@remote.test", [ALICE], message(GTUBE))
            assert refused.value.smtp_code == 550
        ref.wait_delivered()
    lines = [r.getMessage() for r in caplog.records]
    junk = next(line for line in lines if "event=spam.junk" in line)
    qid = re.search(r"qid=(\w+)", junk)
    assert qid and "rules=GTUBE_JUNK=5" in junk
    assert any("event=queued" in line and f"qid={qid.group(1)}" in line for line in lines)
    spam = next(line for line in lines if "event=spam.refused" in line)
    qid = re.search(r"qid=(\w+)", spam)
    assert qid and "rules=GTUBE=1000" in spam
    assert any("event=data.refused" in line and f"qid={qid.group(1)}" in line for line in lines)
