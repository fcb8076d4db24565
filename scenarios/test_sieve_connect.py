"""Story: "I upload my filter with sieve-connect, and my next mail follows it."

Debian's sieve-connect (a real ManageSieve client, installed by .ci/services.sh) talks to
`mailspec serve` over STARTTLS, uploads and activates a script; the next message to bob
lands in the folder the script names.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient

from scenarios.conftest import Served, mailspec

SIEVE_CONNECT = shutil.which("sieve-connect")

SCRIPT = """require ["fileinto", "imap4flags"];
if header :contains "subject" "invoice" {
    fileinto :flags "\\\\Flagged" "Invoices";
}
"""


def sieve_connect(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    assert SIEVE_CONNECT is not None
    cmd = [
        SIEVE_CONNECT,
        "--server", "127.0.0.1",
        "--port", str(served.ports["managesieve"]),
        "--user", "bob@example.test",
        "--passwordfd", "0",
        "--tlscafile", str(served.cafile),
        "--authmech", "PLAIN",
        "--noclearauth",  # never send the password before STARTTLS
        *args,
    ]  # fmt: skip
    return subprocess.run(cmd, input="bob-pw\n", capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(SIEVE_CONNECT is None, reason="sieve-connect is not installed")
def test_sieve_connect_uploads_and_the_next_mail_follows(
    served: Served, tmp_path: Path, data_dir: Path
) -> None:
    script = tmp_path / "filters.sieve"
    script.write_text(SCRIPT)
    up = sieve_connect(served, "--upload", "--localsieve", str(script), "--remotesieve", "main")
    assert up.returncode == 0, up.stderr
    on = sieve_connect(served, "--activate", "--remotesieve", "main")
    assert on.returncode == 0, on.stderr
    listed = sieve_connect(served, "--list")
    assert listed.returncode == 0 and "main" in listed.stdout, listed.stdout + listed.stderr
    # The CLI sees what the client stored.
    assert "main  (active)" in mailspec("sieve", "list", "bob@example.test", data_dir=data_dir)

    with smtplib.SMTP("127.0.0.1", served.ports["mx"], timeout=10) as s:
        s.sendmail(
            "billing@remote.test",
            ["bob@example.test"],
            b"From: billing@remote.test\r\nTo: bob@example.test\r\n"
            b"Subject: Your invoice 42\r\n\r\nPlease pay.\r\n",
        )
    deadline = time.monotonic() + 10
    while True:
        with IMAPClient("127.0.0.1", port=served.ports["imap"], ssl=False, timeout=10) as c:
            c.starttls(ssl_context=served.tls_context())
            c.login("bob@example.test", "bob-pw")
            folders = [name for _, _, name in c.list_folders()]
            # The folder is made before the message is filed into it: wait for both.
            if "Invoices" in folders:
                c.select_folder("Invoices")
                uids = c.search("ALL")
                if uids:
                    got = c.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
                    break
        assert time.monotonic() < deadline, f"nothing in Invoices yet: {folders}"
        time.sleep(0.05)
    (message,) = got.values()
    assert b"invoice 42" in message[b"BODY[HEADER.FIELDS (SUBJECT)]"]
    assert b"\\Flagged" in message[b"FLAGS"]
