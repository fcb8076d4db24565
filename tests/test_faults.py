"""The reference's fault switches are for the mutation harness only, and off by default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reference import faults

ROOT = Path(__file__).resolve().parent.parent


def test_every_fault_is_off_by_default() -> None:
    assert not any(faults.active(name) for name in faults.FAULTS)


def test_a_fault_is_on_only_inside_planted() -> None:
    with faults.planted("mailbox.recent-for-all"):
        assert faults.active("mailbox.recent-for-all")
    assert not faults.active("mailbox.recent-for-all")
    with pytest.raises(ValueError, match="unknown fault"), faults.planted("no-such-fault"):
        pass


def test_nothing_but_the_harness_plants_a_fault() -> None:
    # No configuration key, environment variable or command-line option can turn one on:
    # the only caller of planted() is the mutation harness's bootstrap.
    callers = sorted(
        str(path.relative_to(ROOT))
        for folder in ("reference", "conformance", "fakes", "scenarios", "load", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"\bplanted\(", path.read_text())
    )
    assert callers == ["reference/faults.py", "tests/test_faults.py", "tests/test_mutation.py"]
    # ... and the configuration (every key is documented in reference/config.py) has none.
    assert not re.search(r"\bfaults?\b", (ROOT / "reference/config.py").read_text(), re.I)
