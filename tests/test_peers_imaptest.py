"""The imaptest harness (conformance/peers/imaptest.py) reads imaptest's output as it is."""

from __future__ import annotations

import importlib.util
import mailbox
import sys
from pathlib import Path
from types import ModuleType

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "conformance" / "peers" / "imaptest.py"


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    # A script next to the peers' shell scripts, not a module of the package: load it by path.
    spec = importlib.util.spec_from_file_location("imaptest_harness", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SUMMARY = (
    "1 test groups: {failed} failed, {skipped} skipped due to missing capabilities\n"
    "base protocol: 0/9 individual commands failed\n"
    "extensions: 0/0 individual commands failed\n"
)
SELECT_FAILURE = """\
*** Test select command 3/9 (line 7)
 - failed: Missing 1 untagged replies (4 mismatches)
 - first unexpanded: 2 recent
 - first expanded: 2 recent
 - best match: 2 EXISTS
 - Command: examine $mailbox

*** Test select command 5/9 (line 18)
 - failed: Missing 1 untagged replies (1 mismatches)
 - Command: status $mailbox (messages recent uidnext uidvalidity unseen)
"""


def test_a_failed_test_gives_its_first_failure_and_command(harness: ModuleType) -> None:
    stdout = SUMMARY.format(failed=1, skipped=0)
    result = harness.parse_scripted(stdout, SELECT_FAILURE, True, 120.0)
    assert result.status == "failed"
    assert result.failure == "command 3/9 (line 7): Missing 1 untagged replies (4 mismatches)"
    assert result.command == "examine $mailbox"


def test_tagged_commands_and_long_ones(harness: ModuleType) -> None:
    stderr = (
        "*** Test append-binary command 3/5 (line 20)\n - failed: Unexpected untagged match:\n"
        "Match: 1 fetch\nReply: 1 FETCH\n - Command (tag 1.8): fetch 1 (body.peek[1])\n"
    )
    result = harness.parse_scripted(SUMMARY.format(failed=1, skipped=0), stderr, True, 1.0)
    assert result.command == "fetch 1 (body.peek[1])"
    stderr = "*** Test id command 1/2 (line 4)\n - failed: x\n - Command: ID (" + "9" * 30000
    result = harness.parse_scripted(SUMMARY.format(failed=1, skipped=0), stderr, True, 1.0)
    assert len(result.command) == 100 and result.command.endswith("...")


def test_passed_skipped_and_broken_runs(harness: ModuleType) -> None:
    parse = harness.parse_scripted
    assert parse(SUMMARY.format(failed=0, skipped=0), "", True, 1.0).status == "passed"
    assert parse(SUMMARY.format(failed=0, skipped=1), "", True, 1.0).status == "skipped"
    hung = parse("", "", False, 120.0)
    assert (hung.status, hung.failure) == ("failed", "no result after 120 s")
    crashed = parse("", "Fatal: connect(127.0.0.1) failed\n", True, 1.0)
    assert crashed.status == "failed" and "Fatal: connect" in crashed.failure
    init = parse(
        SUMMARY.format(failed=1, skipped=0), "*** Test x initialization failed: no\n", True, 1.0
    )
    assert init.failure == "initialization failed: no"


def test_stress_totals_errors_and_serverbug(harness: ModuleType) -> None:
    stdout = (
        "Logi List Stat Sele Fetc Fet2 Stor Dele Expu Appe Logo \n"
        "  11    3    0    0    0    0    0    0    0    0    8   9/ 10\n"
        "Totals:\n"
        "Logi List Stat Sele Fetc Fet2 Stor Dele Expu Appe Logo \n"
        "100%  50%  50% 100% 100% 100%  50% 100% 100% 100% 100% \n"
        "                          30%                  5%      \n"
        " 162   81   77  160  132  212   56   91  154  139  162 \n"
    )
    stderr = (
        "Error: s@example.test[5]: Keyword used without being in FLAGS: $Label3: * 2 FETCH\n"
        "Error: s@example.test[7]: Keyword used without being in FLAGS: $Label4: * 9 FETCH\n"
        "Error: s@example.test[2]: APPEND failed: 2.7 NO [SERVERBUG] Internal error\n"
        "From: a message body line, not an error\n"
    )
    result = harness.parse_stress(stdout, stderr, 10, 20)
    assert result.commands == 1426 and result.commands_per_s == 71.3
    assert result.by_command["Fet2"] == 212
    assert (result.error_lines, result.serverbug) == (3, 1)
    assert result.top_errors[0] == ("Keyword used without being in FLAGS: $LabelN: * N FETCH", 2)


def test_stress_mbox_has_unique_message_ids(harness: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "stress.mbox"
    harness.stress_mbox(path)
    messages = list(mailbox.mbox(path))
    assert len(messages) == 200
    assert len({m["Message-ID"] for m in messages}) == 200
    assert {m.get_content_type() for m in messages} >= {
        "text/plain",
        "multipart/alternative",
        "multipart/mixed",
    }
