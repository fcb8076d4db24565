"""The out-of-office form: settings -> a vacation script that compiles, runs only between
its dates, and reads back."""

from __future__ import annotations

import datetime as dt

import pytest

from reference.sieve import Context, compile_script, evaluate
from reference.sieve.outofoffice import OutOfOffice, read, render

FORM = OutOfOffice(
    subject='Away "until" Monday',
    text="I am away.\n.A line with a leading dot\nBack on the 24th.",
    start="2026-12-01",
    end="2026-12-24",
    days=3,
    from_="bob@example.test",
    addresses=("bobby@example.test",),
)


def at(day: str) -> float:
    return dt.datetime.fromisoformat(day + "T12:00:00+00:00").timestamp()


def vacation_on(day: str, form: OutOfOffice = FORM):  # type: ignore[no-untyped-def]
    script = compile_script(render(form, previous="main"))
    ctx = Context(b"Subject: hi\r\n\r\nx\r\n", "alice@remote.test", "bob@example.test", now=at(day))
    return evaluate(script, ctx).vacation


def test_replies_only_between_the_dates() -> None:
    assert vacation_on("2026-11-30") is None
    assert vacation_on("2026-12-24") is not None
    assert vacation_on("2026-12-25") is None


def test_the_reply_carries_the_form() -> None:
    vac = vacation_on("2026-12-10")
    assert vac is not None
    assert vac.reason == FORM.text + "\n"
    assert (vac.subject, vac.from_, vac.addresses) == (
        FORM.subject,
        FORM.from_,
        FORM.addresses,
    )
    assert vac.seconds == 3 * 86400


def test_without_dates_it_always_replies() -> None:
    assert vacation_on("2030-01-01", OutOfOffice(subject="Away", text="x")) is not None


def test_settings_read_back() -> None:
    assert read(render(FORM, previous="main")) == (FORM, "main")
    assert read('require "fileinto";') is None


@pytest.mark.parametrize(
    "kw",
    [
        {"start": "12/01/2026"},
        {"start": "2026-12-02", "end": "2026-12-01"},
        {"days": 0},
        {"text": " "},
    ],
)
def test_bad_forms_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        OutOfOffice(**{"subject": "s", "text": "t", **kw})  # type: ignore[arg-type]
