"""`mailspec spam train|check|stats` from Maildirs, .eml directories and files."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.cli import main
from reference.scan.rules import GTUBE


def eml(i: int, words: str) -> bytes:
    head = f"Subject: {words} {i}\r\nMessage-ID: <{i}.{words[:4]}@r.example>\r\n"
    return f"{head}\r\n{words}\r\n".encode()


def maildir(root: Path, messages: list[bytes]) -> Path:
    for d in ("cur", "new", "tmp"):
        (root / d).mkdir(parents=True)
    for i, m in enumerate(messages):
        (root / ("cur" if i % 2 else "new") / f"{i}.host:2,S").write_bytes(m)
    (root / "tmp" / "partial").write_bytes(b"not yet delivered")  # never read
    return root


def test_train_from_maildir_and_eml_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spam = maildir(tmp_path / "Junk", [eml(i, "cheap pills offer") for i in range(4)])
    ham = tmp_path / "ham"
    (ham / "sub").mkdir(parents=True)
    for i in range(3):
        (ham / "sub" / f"{i}.eml").write_bytes(eml(i, "project meeting agenda"))
    data = ["--data-dir", str(tmp_path / "var")]
    assert main(["spam", "train", "--spam", str(spam), "--ham", str(ham), *data]) == 0
    out = capsys.readouterr().out
    assert "spam: learnt 4 messages (0 already known)" in out
    assert "ham: learnt 3 messages (0 already known)" in out
    assert "bayes: 4 spam and 3 ham learnt; it adds score from 200 spam and 200 ham on" in out
    one = spam / "new" / "0.host:2,S"
    assert main(["spam", "train", "--spam", str(one), *data]) == 0
    assert "spam: learnt 0 messages (1 already known)" in capsys.readouterr().out
    assert main(["spam", "stats", *data]) == 0
    assert "4 spam and 3 ham" in capsys.readouterr().out


def test_train_needs_something(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spam", "train", "--data-dir", str(tmp_path)]) == 2
    missing = str(tmp_path / "nope")
    assert main(["spam", "train", "--spam", missing, "--data-dir", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_check_names_the_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "m.eml"
    f.write_bytes(f"Subject: FREE MONEY NOW\r\n\r\n{GTUBE}\r\n".encode())
    assert main(["spam", "check", str(f), "--data-dir", str(tmp_path / "var")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("score 1003.5: refused (reject_score 10)\n")
    assert " 1000.0  GTUBE" in out and "SUBJ_ALL_CAPS" in out
    ok = tmp_path / "ok.eml"
    ok.write_bytes(
        b"Subject: hi\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        b"Message-ID: <a@b.example>\r\n\r\nhi\r\n"
    )
    assert main(["spam", "check", str(ok), "--data-dir", str(tmp_path / "var")]) == 0
    assert capsys.readouterr().out == "score 0.0: inbox\n"


def _directory(var: Path) -> None:
    data = ["--data-dir", str(var)]
    assert main(["domain", "add", "example.test", *data]) == 0
    assert main(["user", "add", "alice@example.test", "--password", "pw", *data]) == 0


def test_learn_for_a_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    var = tmp_path / "var"
    data = ["--data-dir", str(var)]
    _directory(var)
    spam = tmp_path / "spam"
    spam.mkdir()
    for i in range(2):
        (spam / f"{i}.eml").write_bytes(eml(i, "cheap pills offer"))
    capsys.readouterr()
    args = ["spam", "learn", "--spam", str(spam), "--user", "Alice@example.test", *data]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "spam: learnt 2 messages (0 already known)" in out
    assert "bayes for alice@example.test: 2 spam and 0 ham learnt; it scores their mail " in out
    assert main(["spam", "stats", "--user", "alice@example.test", *data]) == 0
    out = capsys.readouterr().out
    assert "bayes: 0 spam and 0 ham learnt" in out  # the global classifier was not taught
    assert "bayes for alice@example.test: 2 spam and 0 ham learnt" in out
    assert main(["spam", "learn", "--spam", str(spam), "--user", "x@example.test", *data]) == 1
    assert "no such account: x@example.test" in capsys.readouterr().err


def test_settings_lists_and_check_for_a_recipient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    data = ["--data-dir", str(var)]
    _directory(var)
    capsys.readouterr()
    assert main(["spam", "settings", "example.test", "--reject", "20", *data]) == 0
    assert capsys.readouterr().out == (
        f"example.test: reject 20 (domain), junk 5 (config) (in {var})\n"
    )
    assert main(["spam", "settings", "alice@example.test", "--junk", "3", *data]) == 0
    assert capsys.readouterr().out == (
        f"alice@example.test: reject 20 (domain), junk 3 (user) (in {var})\n"
    )
    assert main(["spam", "settings", "alice@example.test", "--reject", "2", *data]) == 1
    assert "must not be more than" in capsys.readouterr().err
    assert main(["spam", "settings", "example.test", "--reject", "2", *data]) == 0
    assert "note: junk 5 is above reject 2" in capsys.readouterr().err
    assert main(["spam", "settings", "example.test", "--reject", "20", *data]) == 0
    capsys.readouterr()
    f = tmp_path / "m.eml"
    f.write_bytes(
        b"From: a@shop.example\r\nSubject: hi\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        b"Message-ID: <a@shop.example>\r\n\r\nAct now and verify your account\r\n"
    )
    assert main(["spam", "check", str(f), *data]) == 0
    assert capsys.readouterr().out.startswith("score 3.5: inbox\n")
    assert main(["spam", "check", str(f), "--rcpt", "alice@example.test", *data]) == 0
    assert capsys.readouterr().out.startswith("score 3.5: Junk (junk_score 3, user settings)\n")

    assert main(["spam", "allow", "alice@example.test", "@Shop.example", *data]) == 0
    assert capsys.readouterr().out == (
        f"alice@example.test: @shop.example allowed (never scored as spam) (in {var})\n"
    )
    assert main(["spam", "block", "alice@example.test", "boss@shop.example", *data]) == 0
    assert main(["spam", "lists", "alice@example.test", *data]) == 0
    out = capsys.readouterr().out
    assert out.endswith("allow  @shop.example\nblock  boss@shop.example\n")
    assert main(["spam", "check", str(f), "--rcpt", "alice@example.test", *data]) == 0
    assert capsys.readouterr().out == "score 0.0: inbox\n    0.0  USER_ALLOWLIST  @shop.example\n"
    assert main(["spam", "allow", "alice@example.test", "@shop.example", "--remove", *data]) == 0
    assert main(["spam", "allow", "alice@example.test", "@shop.example", "--remove", *data]) == 1
    assert main(["spam", "settings", "alice@example.test", "--reset", *data]) == 0
    assert capsys.readouterr().out.endswith(
        f"alice@example.test: reject 20 (domain), junk 5 (config) (in {var})\n"
    )
    assert main(["spam", "block", "bob@example.test", "@shop.example", *data]) == 1
    assert "no such account" in capsys.readouterr().err
