"""imaptest's scripted tests and stress mode against the reference and Dovecot, side by side.

Run by ``conformance/peers/imaptest.sh run DIR`` (which builds imaptest into DIR first), or
directly once imaptest is built::

    python conformance/peers/imaptest.py --imaptest DIR [--targets reference,dovecot]

Each target is started here and stopped at the end: the reference with ``mailspec serve``
on free loopback ports and a throw-away data dir, Dovecot as a private instance under a
temporary folder (passdb/userdb from static files, Maildir, a self-signed certificate).
imaptest speaks implicit TLS, so both are reached on their imaps port. Every scripted test
runs in its own imaptest process against an account of its own (a fresh mailbox state);
each stress run has its own account too, and an mbox file written here whose messages all
have unique Message-IDs (imaptest reports repeated ones as changed messages).

Prints a table (per target: passed/failed/skipped, the failing tests with the first line of
each failure, the stress figures) and writes reports/imaptest/imaptest.json with the
logs of every imaptest process. A measure, not a gate, unless --gate is given: then the exit
status is 1 when the reference does not pass a test that Dovecot passes (or fails one, when
Dovecot is not run), or when its stress runs report errors.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import reference
from reference import config, tls
from reference.app import directory_path
from reference.directory import Directory

COMMIT = "924f619"
DOMAIN = "example.test"
HOSTNAME = "mail.example.test"
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0  # seconds for a server to start listening


@dataclass
class ScriptedResult:
    status: str  # passed | failed | skipped | no-test
    failure: str = ""  # the first failure, as imaptest words it
    command: str = ""  # the command of that failure (as written in the test file)
    errors: int = 0  # "Error:" lines (protocol errors imaptest noticed on the side)
    seconds: float = 0.0


@dataclass
class StressResult:
    clients: int
    secs: int
    commands: int
    commands_per_s: float
    error_lines: int
    serverbug: int
    by_command: dict[str, int] = field(default_factory=dict)
    top_errors: list[tuple[str, int]] = field(default_factory=list)


class Target(Protocol):
    name: str  # e.g. reference-0.1.0, dovecot-2.3.19.1

    def start(self, accounts: Sequence[str]) -> dict[str, str]:
        """Start with these accounts (local parts); their passwords."""
        ...

    @property
    def port(self) -> int: ...

    def stop(self, logs: Path) -> None:
        """Stop, leaving the server's log in ``logs``."""
        ...


# -- targets ---------------------------------------------------------------------------------


def _free_port() -> int:
    # Dovecot cannot report a port 0 back: take one the kernel hands out now.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _passwords(accounts: Sequence[str]) -> dict[str, str]:
    return {a: secrets.token_urlsafe(12) for a in accounts}


class Reference:
    """``mailspec serve`` with the IMAP role only, on free loopback ports."""

    def __init__(self, tmp: Path) -> None:
        self.name = f"reference-{reference.__version__}"
        self.tmp = tmp
        self.log = tmp / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    def start(self, accounts: Sequence[str]) -> dict[str, str]:
        data = self.tmp / "var"
        listen = "\n".join(f'{name} = "127.0.0.1:0"' for name in config.LISTENERS)
        conf = self.tmp / "mailspec.toml"
        conf.write_text(
            f'[server]\nhostname = "{HOSTNAME}"\ndata_dir = "{data}"\nroles = ["imap"]\n'
            # warning: a stress run at info level spends its time writing login lines
            f'log_level = "warning"\n\n[listen]\n{listen}\n'
        )
        passwords = _passwords(accounts)
        directory = Directory(directory_path(config.load(conf)))
        try:
            directory.add_domain(DOMAIN)
            for local, password in passwords.items():
                directory.add_user(f"{local}@{DOMAIN}", password)
        finally:
            directory.close()
        exe = Path(sys.executable).with_name("mailspec")
        command = [str(exe) if exe.exists() else "mailspec", "--config", str(conf), "serve"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = re.search(rb"imaps\s+imaps://127\.0\.0\.1:(\d+)", self.log.read_bytes())
            if found and b"Stop with" in self.log.read_bytes():
                self._port = int(found[1])
                return passwords
            time.sleep(0.1)
        raise RuntimeError(f"mailspec serve did not start; its log:\n{self.log.read_text()}")

    def stop(self, logs: Path) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            shutil.copy(self.log, logs / "serve.log")


class Dovecot:
    """Debian's Dovecot as a private instance: its own config, base_dir, users and Maildirs."""

    def __init__(self) -> None:
        version = subprocess.run(
            ["dovecot", "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        self.name = f"dovecot-{version}"
        # Under /tmp, not the work tree: Dovecot's unprivileged processes must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="mailspec-dovecot.", dir="/tmp"))
        self.dir.chmod(0o755)
        self.conf = self.dir / "dovecot.conf"
        self._port = 0
        self.started = False

    @property
    def port(self) -> int:
        return self._port

    def start(self, accounts: Sequence[str]) -> dict[str, str]:
        d = self.dir
        for sub in ("run", "state", "home"):
            (d / sub).mkdir()
        tls.self_signed(HOSTNAME, d / "cert.pem", d / "key.pem")
        passwords = _passwords(accounts)
        (d / "passwd").write_text(
            "".join(f"{a}@{DOMAIN}:{{PLAIN}}{pw}::::::\n" for a, pw in passwords.items())
        )
        if os.geteuid() == 0:
            # Root starts it; logins and mail run as the usual unprivileged users.
            login, internal, mail_user = "dovenull", "dovecot", "nobody"
        else:
            login = internal = mail_user = pwd.getpwuid(os.geteuid()).pw_name
        mail = pwd.getpwnam(mail_user)
        os.chown(d / "home", mail.pw_uid, mail.pw_gid)
        self._port = _free_port()
        self.conf.write_text(f"""\
# Written by conformance/peers/imaptest.py: a private Dovecot for imaptest.
base_dir = {d}/run
state_dir = {d}/state
instance_name = mailspec-imaptest-{d.name}
listen = 127.0.0.1
protocols = imap
log_path = {d}/dovecot.log
ssl = required
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
auth_mechanisms = plain login
default_login_user = {login}
default_internal_user = {internal}
first_valid_uid = {mail.pw_uid}
last_valid_uid = {mail.pw_uid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    # 0: no plaintext listener; imaptest speaks implicit TLS only
    port = 0
  }}
  inet_listener imaps {{
    port = {self._port}
    ssl = yes
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
protocol imap {{
  # A stress run logs in many clients as one user from one address.
  mail_max_userip_connections = 1000
}}
""")
        subprocess.run(["dovecot", "-c", str(self.conf)], check=True)
        self.started = True
        _wait_listening(self._port, time.monotonic() + START_TIMEOUT)
        return passwords

    def stop(self, logs: Path) -> None:
        if self.started:
            subprocess.run(["dovecot", "-c", str(self.conf), "stop"], capture_output=True)
            pidfile = self.dir / "run" / "master.pid"
            for _ in range(100):  # `stop` returns before the master has gone
                if not pidfile.exists():
                    break
                time.sleep(0.1)
        with contextlib.suppress(OSError):
            shutil.copy(self.dir / "dovecot.log", logs / "dovecot.log")
        shutil.rmtree(self.dir, ignore_errors=True)


# -- imaptest --------------------------------------------------------------------------------


def _imaptest(
    binary: Path, target: Target, user: str, password: str, args: list[str], timeout: float
) -> tuple[str, str, bool]:
    """Run imaptest; its stdout, its stderr, and whether it finished in time."""
    command = [
        str(binary),
        "host=127.0.0.1",
        f"port={target.port}",
        f"user={user}@{DOMAIN}",
        f"pass={password}",
        "ssl=any-cert",
        *args,
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout)
        return done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"), True
    except subprocess.TimeoutExpired as e:
        out, err = e.stdout or b"", e.stderr or b""
        return out.decode(errors="replace"), err.decode(errors="replace"), False


_SUMMARY = re.compile(r"(\d+) test groups: (\d+) failed, (\d+) skipped")


def parse_scripted(stdout: str, stderr: str, finished: bool, timeout: float) -> ScriptedResult:
    """One test file's result from imaptest's output."""
    errors = sum(1 for line in stderr.splitlines() if line.startswith("Error:"))
    failure, command = "", ""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("*** Test "):
            head = line.split(" ", 3)[3] if line.count(" ") >= 3 else line
            if "initialization failed:" in head:
                failure = head
                break
            detail = lines[i + 1] if i + 1 < len(lines) else ""
            detail = detail.removeprefix(" - ").removeprefix("failed: ")
            failure = f"{head}: {detail}"
            for after in lines[i + 1 :]:
                found = re.match(r" - Command(?: \(tag [^)]*\))?: (.*)", after)
                if found:  # some are 30 kB long (the ID test)
                    command = found[1] if len(found[1]) <= 100 else found[1][:97] + "..."
                    break
            break
    summary = _SUMMARY.search(stdout)
    if not finished:
        return ScriptedResult(
            "failed", failure or f"no result after {timeout:.0f} s", command, errors
        )
    if summary is None:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return ScriptedResult("failed", failure or f"imaptest ended without a summary: {last}")
    groups, failed, skipped = (int(n) for n in summary.groups())
    if groups == 0:
        return ScriptedResult("no-test")
    if failed:
        return ScriptedResult("failed", failure or "failed (no detail)", command, errors)
    if skipped:
        return ScriptedResult("skipped", errors=errors)
    return ScriptedResult("passed", errors=errors)


def parse_stress(stdout: str, stderr: str, clients: int, secs: int) -> StressResult:
    """Totals of a stress run: imaptest prints a table per second, then "Totals:"."""
    commands: dict[str, int] = {}
    block = stdout.rsplit("Totals:", 1)
    if len(block) == 2:
        rows = [r for r in block[1].splitlines() if r.strip()]
        if len(rows) >= 4:
            names, counts = rows[0].split(), rows[3].split()
            commands = {n: int(c) for n, c in zip(names, counts, strict=False) if c.isdigit()}
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    kinds = collections.Counter(_error_kind(line) for line in errors)
    total = sum(commands.values())
    return StressResult(
        clients=clients,
        secs=secs,
        commands=total,
        commands_per_s=round(total / secs, 1),
        error_lines=len(errors),
        serverbug=sum("SERVERBUG" in line for line in errors),
        by_command=commands,
        top_errors=kinds.most_common(10),
    )


def _error_kind(line: str) -> str:
    # "Error: user@x[3]: SELECT failed: 9.3 NO ..." -> "SELECT failed: N.N NO ..."
    text = re.sub(r"^Error: [^:]*: ", "", line)
    return re.sub(r"\d+", "N", text)[:90]


def stress_mbox(path: Path, count: int = 200, seed: int = 1) -> None:
    """An mbox of varied messages (plain, quoted-printable, alternative, attachments), each
    with its own Message-ID."""
    rng = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]

    def text(lines: int) -> str:
        return "\n".join(" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(lines))

    out: list[str] = []
    for i in range(count):
        kind = i % 5
        head = (
            f"From sender{i}@example.net Mon Jan  5 10:00:00 2026\n"
            f"From: Sender {i} <sender{i}@example.net>\n"
            f"To: user{i % 7}@{DOMAIN}\n"
            + (f"Cc: cc{i % 3}@example.org, Other <other{i}@example.org>\n" if i % 4 == 0 else "")
            + f"Subject: {'Re: ' if i % 6 == 0 else ''}stress message {i} {rng.choice(words)}\n"
            f"Date: Mon, {5 + i % 20:02d} Jan 2026 {i % 24:02d}:{i % 60:02d}:00 +0000\n"
            f"Message-ID: <{i}.{seed}@imaptest.{DOMAIN}>\n"
            "MIME-Version: 1.0\n"
        )
        if kind == 0:
            body = "Content-Type: text/plain; charset=us-ascii\n\n" + text(rng.randint(1, 40))
        elif kind == 1:
            body = (
                "Content-Type: text/plain; charset=utf-8\n"
                "Content-Transfer-Encoding: quoted-printable\n\n"
                f"Gr=C3=BC=C3=9Fe {i}, caf=C3=A9 =\n soft break\n" + text(rng.randint(1, 10))
            )
        elif kind == 2:
            body = (
                f'Content-Type: multipart/alternative; boundary="alt{i}"\n\n'
                f"--alt{i}\nContent-Type: text/plain\n\n{text(5)}\n"
                f"--alt{i}\nContent-Type: text/html\n\n<p>{text(3)}</p>\n--alt{i}--"
            )
        elif kind == 3:
            blob = base64.encodebytes(rng.randbytes(rng.randint(500, 6000))).decode()
            body = (
                f'Content-Type: multipart/mixed; boundary="mix{i}"\n\n'
                f"--mix{i}\nContent-Type: text/plain\n\n{text(4)}\n"
                f'--mix{i}\nContent-Type: application/octet-stream; name="f{i}.bin"\n'
                f'Content-Disposition: attachment; filename="f{i}.bin"\n'
                f"Content-Transfer-Encoding: base64\n\n{blob}--mix{i}--"
            )
        else:
            body = "Content-Type: text/plain\n\n" + text(rng.randint(100, 400))
        # mbox: a body line starting with "From " would start a new message.
        body = re.sub(r"(?m)^(>*From )", r">\1", body)
        out.append(head + body + "\n\n")
    path.write_text("".join(out))


# -- the run ---------------------------------------------------------------------------------


@dataclass
class TargetReport:
    name: str
    scripted: dict[str, ScriptedResult] = field(default_factory=dict)
    stress: list[StressResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.scripted.values())


@dataclass
class Running:
    target: Target
    logs: Path
    report: TargetReport
    passwords: dict[str, str] = field(default_factory=dict)


def run(args: argparse.Namespace) -> int:
    imaptest = Path(args.imaptest).resolve()
    binary = imaptest / "imaptest"
    tests = sorted(p for p in (imaptest / "tests").iterdir() if p.is_file() and p.suffix != ".mbox")
    if args.tests:
        tests = [t for t in tests if t.name in args.tests]
    clients = [int(c) for c in args.clients.split(",") if c]
    report_dir = Path(args.report)
    report_dir.mkdir(parents=True, exist_ok=True)
    accounts = [f"t-{t.name}" for t in tests]
    accounts += [f"stress{n}-{p}" for n in clients for p in range(args.pairs)]
    tmp = Path(tempfile.mkdtemp(prefix="mailspec-imaptest."))
    mbox = tmp / "stress.mbox"
    stress_mbox(mbox)
    running: dict[str, Running] = {}
    try:
        for kind in args.targets.split(","):
            target: Target
            if kind == "reference":
                (tmp / "reference").mkdir()
                target = Reference(tmp / "reference")
            else:
                target = Dovecot()
            logs = report_dir / kind
            shutil.rmtree(logs, ignore_errors=True)
            logs.mkdir(parents=True)
            running[kind] = Running(target, logs, TargetReport(target.name))
            running[kind].passwords = target.start(accounts)
            print(f"{target.name}: imaps on 127.0.0.1:{target.port}", file=sys.stderr)
        for r in running.values():
            for test in tests:
                user = f"t-{test.name}"
                started = time.monotonic()
                out, err, finished = _imaptest(
                    binary, r.target, user, r.passwords[user], [f"test={test}"], args.timeout
                )
                result = parse_scripted(out, err, finished, args.timeout)
                result.seconds = round(time.monotonic() - started, 2)
                r.report.scripted[test.name] = result
                (r.logs / f"{test.name}.log").write_text(out + err)
            print(
                f"{r.report.name}: scripted {r.report.count('passed')} passed, "
                f"{r.report.count('failed')} failed, {r.report.count('skipped')} skipped",
                file=sys.stderr,
            )
        # Stress runs alternate between the targets, so that both see the same machine load.
        for n in clients:
            for p in range(args.pairs):
                for r in running.values():
                    user = f"stress{n}-{p}"
                    options = [f"mbox={mbox}", f"clients={n}", f"secs={args.secs}", "box=INBOX"]
                    out, err, _ = _imaptest(
                        binary, r.target, user, r.passwords[user], options, args.secs + 60
                    )
                    (r.logs / f"stress-{n}-{p + 1}.log").write_text(out + err)
                    stress = parse_stress(out, err, n, args.secs)
                    r.report.stress.append(stress)
                    print(
                        f"{r.report.name}: stress {n} clients: {stress.commands_per_s} "
                        f"commands/s, {stress.error_lines} error lines, "
                        f"{stress.serverbug} SERVERBUG",
                        file=sys.stderr,
                    )
    finally:
        for r in running.values():
            r.target.stop(r.logs)
        shutil.rmtree(tmp, ignore_errors=True)

    reports = {kind: r.report for kind, r in running.items()}
    summary = render(reports, len(tests), args)
    print(summary)
    (report_dir / "summary.txt").write_text(summary + "\n")
    document = {
        "imaptest": {"commit": COMMIT, "tests": len(tests)},
        "stress": {"secs": args.secs, "clients": clients, "pairs": args.pairs, "mbox": 200},
        "targets": {
            kind: {
                "name": r.name,
                "scripted": {
                    "passed": r.count("passed"),
                    "failed": r.count("failed"),
                    "skipped": r.count("skipped"),
                    "tests": {name: asdict(res) for name, res in r.scripted.items()},
                },
                "stress": [asdict(s) for s in r.stress],
            }
            for kind, r in reports.items()
        },
    }
    (report_dir / "imaptest.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"report: {report_dir / 'imaptest.json'}", file=sys.stderr)
    return 1 if args.gate and not parity(reports) else 0


def parity(reports: dict[str, TargetReport]) -> bool:
    """The reference passes every test Dovecot passes (every test, without Dovecot), and its
    stress runs report no error."""
    ref = reports.get("reference")
    if ref is None:
        return True
    dovecot = reports.get("dovecot")
    owed = [
        name
        for name, result in ref.scripted.items()
        if (dovecot.scripted[name].status == "passed" if dovecot else result.status != "skipped")
        and result.status != "passed"
    ]
    return not owed and all(s.error_lines == 0 for s in ref.stress)


def render(reports: dict[str, TargetReport], tests: int, args: argparse.Namespace) -> str:
    names = list(reports)
    width = max(18, *(len(r.name) + 2 for r in reports.values()))

    def row(label: str, values: Sequence[object]) -> str:
        return f"  {label:<28}" + "".join(f"{v!s:>{width}}" for v in values)

    lines = [
        f"imaptest {COMMIT}: {tests} scripted tests (one imaptest process and a fresh account "
        "each)",
        row("", [reports[k].name for k in names]),
    ]
    for status in ("passed", "failed", "skipped"):
        lines.append(row(status, [reports[k].count(status) for k in names]))
    runs = max((len(r.stress) for r in reports.values()), default=0)
    if runs:
        lines.append(f"stress: default profile, {args.secs} s per run, an mbox of 200 messages")
        for i in range(runs):
            first = reports[names[0]].stress[i]
            label = f"{first.clients} clients"
            lines.append(row(f"{label}: commands/s", [reports[k].stress[i].commands_per_s
                                                      for k in names]))  # fmt: skip
            lines.append(row("  error lines", [reports[k].stress[i].error_lines for k in names]))
            lines.append(row("  SERVERBUG", [reports[k].stress[i].serverbug for k in names]))
    for kind in names:
        failing = {n: r for n, r in reports[kind].scripted.items() if r.status == "failed"}
        if not failing:
            continue
        lines.append(f"failing on {reports[kind].name} ({len(failing)}):")
        for name, result in failing.items():
            where = f" [{result.command}]" if result.command else ""
            lines.append(f"  {name:<26} {result.failure}{where}")
    if "dovecot" in reports and "reference" in reports:
        owed = [
            n
            for n, r in reports["dovecot"].scripted.items()
            if r.status == "passed" and reports["reference"].scripted[n].status != "passed"
        ]
        lines.append(
            f"passed by Dovecot, not by the reference ({len(owed)}): {' '.join(owed) or '-'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--imaptest", required=True, help="folder with imaptest and tests/")
    parser.add_argument(
        "--targets", default="reference,dovecot", help="reference, dovecot or both (default)"
    )
    parser.add_argument(
        "--report", default=str(ROOT / "reports" / "imaptest"), help="report folder"
    )
    parser.add_argument("--secs", type=int, default=20, help="seconds per stress run")
    parser.add_argument("--clients", default="10", help="stress clients, e.g. 10 or 10,50")
    parser.add_argument("--pairs", type=int, default=1, help="stress runs per client count")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per scripted test")
    parser.add_argument("--gate", action="store_true", help="exit 1 without parity")
    parser.add_argument("tests", nargs="*", help="only these scripted tests (file names)")
    args = parser.parse_args(argv)
    for kind in args.targets.split(","):
        if kind not in ("reference", "dovecot"):
            parser.error(f"unknown target {kind!r}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
