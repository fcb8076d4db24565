"""The command line: config show, accounts, and clear errors for bad config and busy ports."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reference.cli import main
from reference.testing import serve_process, write_config


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_config_show_prints_effective_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rc, out, _ = run(capsys, "config", "show", "--data-dir", str(tmp_path / "d"))
    assert rc == 0
    assert f'data_dir = "{tmp_path / "d"}"' in out
    assert 'mx = "127.0.0.1:2525"' in out
    assert "# Inbound MX SMTP" in out


def test_bad_config_names_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[listen]\nmx = "127.0.0.1:70000"\n')
    rc, _, err = run(capsys, "config", "show", "--config", str(f))
    assert rc == 2
    assert "listen.mx" in err and "out of range" in err
    f.write_text('[listen]\nmx_typo = "127.0.0.1:25"\n')
    rc, _, err = run(capsys, "serve", "--config", str(f))
    assert rc == 2
    assert "listen.mx_typo" in err and "unknown key" in err
    assert "Traceback" not in err


def test_domains_and_users(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    assert run(capsys, "domain", "add", "Example.TEST", *d)[0] == 0
    assert run(capsys, "user", "add", "bob@example.test", "--password", "pw", *d)[0] == 0
    assert run(capsys, "user", "add", "alice@example.test", "--password", "pw", *d)[0] == 0
    rc, out, _ = run(capsys, "user", "list", *d)
    assert (rc, out) == (0, "alice@example.test\nbob@example.test\n")
    rc, _, err = run(capsys, "user", "add", "eve@other.test", "--password", "pw", *d)
    assert rc == 1 and "not ours" in err
    rc, _, err = run(capsys, "user", "add", "bob@example.test", "--password", "pw", *d)
    assert rc == 1 and "exists already" in err
    rc, out, _ = run(capsys, "domain", "list", *d)
    assert out == "example.test\n"


def test_port_in_use_is_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "c.toml"
        names = ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
        lines = [f'{n} = "127.0.0.1:0"' for n in names if n != "imap"]
        cfg.write_text("[listen]\n" + "\n".join(lines) + f'\nimap = "127.0.0.1:{port}"\n')
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "reference.cli",
                "serve",
                "--config",
                str(cfg),
                "--data-dir",
                str(tmp_path / "d"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert f"listen.imap: cannot listen on 127.0.0.1:{port}: address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_user_quota_and_disable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    run(capsys, "domain", "add", "example.test", *d)
    run(capsys, "user", "add", "bob@example.test", "--password", "pw", *d)
    rc, out, _ = run(capsys, "user", "quota", "bob@example.test", "--messages", "100", *d)
    assert rc == 0 and "messages 100" in out and "bytes default" in out
    rc, out, _ = run(capsys, "user", "disable", "bob@example.test", *d)
    assert (rc, out) == (0, f"bob@example.test disabled (in {tmp_path})\n")
    assert "bob@example.test (disabled)" in run(capsys, "user", "list", *d)[1]
    assert run(capsys, "user", "enable", "bob@example.test", *d)[0] == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_right_after_start_exits_0(tmp_path: Path, sig: signal.Signals) -> None:
    # Supervisors may signal as soon as the node says it is up: no window without handlers.
    node = serve_process(tmp_path / "d", write_config(tmp_path / "c.toml"))
    assert node.stop(sig) == 0
    assert not (tmp_path / "d" / "mailspec.pid").exists()


def test_writing_commands_say_where_they_wrote(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default data_dir is relative: run from another folder, a command must not quietly
    # make a second directory that the server never reads.
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, "domain", "add", "example.test")
    assert rc == 0
    assert out == f"domain example.test added (in {tmp_path / 'var'})\n"
    assert f"new directory {tmp_path / 'var' / 'directory.sqlite3'}" in err
    rc, out, err = run(capsys, "user", "add", "bob@example.test", "--password", "pw")
    assert out == f"user bob@example.test added (in {tmp_path / 'var'})\n" and err == ""
    assert run(capsys, "domain", "list")[1:] == ("example.test\n", "")


def _passwd(tmp_path: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reference.cli", *args, "--data-dir", str(tmp_path)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_password_from_stdin_not_the_command_line(tmp_path: Path) -> None:
    from reference.directory import Directory

    assert _passwd(tmp_path, "domain", "add", "example.test", stdin="").returncode == 0
    done = _passwd(
        tmp_path, "user", "add", "bob@example.test", "--password-stdin", stdin="s3 cret\n"
    )
    assert done.returncode == 0, done.stderr
    done = _passwd(tmp_path, "user", "add", "eve@example.test", stdin="")  # no terminal
    assert done.returncode == 1
    assert "--password-stdin" in done.stderr and "Traceback" not in done.stderr
    d = Directory(tmp_path / "directory.sqlite3")
    try:
        assert d.check_password("bob@example.test", "s3 cret") == "bob@example.test"
        assert d.check_password("bob@example.test", "s3 cret\n") is None
        assert d.lookup("eve@example.test") is None
    finally:
        d.close()
    done = _passwd(
        tmp_path, "user", "passwd", "bob@example.test", "--password-stdin", stdin="new\n"
    )
    assert done.returncode == 0, done.stderr
    d = Directory(tmp_path / "directory.sqlite3")
    try:
        assert d.check_password("bob@example.test", "new") == "bob@example.test"
    finally:
        d.close()


def test_queue_flush_of_an_empty_queue(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Its help says it flushes everything when no id is given: an empty queue is not an error.
    rc, out, err = run(capsys, "queue", "flush", "--data-dir", str(tmp_path))
    assert rc == 0 and "is empty: nothing to flush" in out and err == ""
    with pytest.raises(SystemExit) as refused:  # the others need ids: argparse says so
        main(["queue", "hold", "--data-dir", str(tmp_path)])
    assert refused.value.code == 2 and "required: qid" in capsys.readouterr().err


def test_a_directory_server_down_is_a_tempfail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With directory.url naming a database that does not answer, a command says so and
    exits 75 (EX_TEMPFAIL: try again), without a traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once it is closed
    conf = write_config(
        tmp_path / "mailspec.toml", directory={"url": f"mysql://root@127.0.0.1:{port}/mailspec"}
    )
    rc, _, err = run(capsys, "user", "list", "--config", str(conf), "--data-dir", str(tmp_path))
    assert rc == 75
    assert f"127.0.0.1:{port}/mailspec unavailable" in err and "try again later" in err
    assert "Traceback" not in err and not (tmp_path / "directory.sqlite3").exists()


def test_directory_url_is_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    conf = write_config(tmp_path / "mailspec.toml", directory={"url": "oracle://db/mail"})
    rc, _, err = run(capsys, "user", "list", "--config", str(conf), "--data-dir", str(tmp_path))
    assert rc == 2 and "directory.url" in err
