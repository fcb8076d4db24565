"""`mailspec spam train|check|stats` from Maildirs, .eml directories and files."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.cli import main
from reference.scan.spam import GTUBE


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
