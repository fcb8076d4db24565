"""The Sieve interpreter on values: scripts and messages in, actions out (no sockets)."""

from __future__ import annotations

import pytest

from reference.sieve import (
    Context,
    Filing,
    Limits,
    SieveError,
    SieveRuntimeError,
    compile_script,
    evaluate,
)

MESSAGE = (
    b"From: Alice <alice@remote.test>\r\n"
    b"To: Bob <bob+lists@example.test>\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9?= meeting\r\n"
    b"Date: Tue, 01 Dec 2026 10:30:00 +0100\r\n"
    b"Message-ID: <m1@remote.test>\r\n"
    b"\r\n"
    b"Hello Bob, the budget is ready.\r\n"
)


def run(source: str, message: bytes = MESSAGE, **kw: object):  # type: ignore[no-untyped-def]
    ctx_args: dict[str, object] = {
        "message": message,
        "envelope_from": "alice@remote.test",
        "envelope_to": "bob+lists@example.test",
        "user": "bob@example.test",
    }
    ctx_args.update(kw)
    return evaluate(compile_script(source), Context(**ctx_args))  # type: ignore[arg-type]


def folders(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.folder for f in result.filings]


def test_no_action_is_implicit_keep() -> None:
    assert folders(run("")) == ["INBOX"]


def test_fileinto_cancels_implicit_keep_and_copy_does_not() -> None:
    assert folders(run('require "fileinto"; fileinto "Work";')) == ["Work"]
    both = run('require ["fileinto", "copy"]; fileinto :copy "Work";')
    assert folders(both) == ["Work", "INBOX"]


def test_header_decodes_rfc2047_and_casemap_folds_ascii_only() -> None:
    script = 'require "fileinto"; if header :contains "subject" "CAFé" { fileinto "Cafe"; }'
    assert folders(run(script)) == ["Cafe"]


def test_address_parts_and_subaddress() -> None:
    script = """require ["fileinto", "subaddress"];
    if address :detail "to" "lists" { fileinto "Lists"; }"""
    assert folders(run(script)) == ["Lists"]
    user = 'require ["fileinto", "subaddress"]; if address :user "to" "bob" { fileinto "U"; }'
    assert folders(run(user)) == ["U"]
    domain = 'require "fileinto"; if address :domain "from" "remote.test" { fileinto "D"; }'
    assert folders(run(domain)) == ["D"]


def test_detail_without_delimiter_does_not_match() -> None:
    script = 'require "subaddress"; if address :detail "from" "" { discard; }'
    assert folders(run(script)) == ["INBOX"]


def test_envelope() -> None:
    script = """require ["envelope", "fileinto"];
    if envelope :is "from" "alice@remote.test" { fileinto "FromAlice"; }"""
    assert folders(run(script)) == ["FromAlice"]


def test_if_elsif_else_chain() -> None:
    script = """require "fileinto";
    if header :is "subject" "nope" { fileinto "A"; }
    elsif header :matches "from" "*alice*" { fileinto "B"; }
    else { fileinto "C"; }"""
    assert folders(run(script)) == ["B"]


def test_discard_and_stop() -> None:
    assert run("discard;").discarded
    assert folders(run("stop; discard;")) == ["INBOX"]


def test_variables_from_matches() -> None:
    script = """require ["variables", "fileinto"];
    if header :matches "subject" "* meeting" { set :upper "what" "${1}"; }
    fileinto "Sub/${what}";"""
    assert folders(run(script)) == ["Sub/CAFÉ"]


def test_string_test_and_set_modifiers() -> None:
    script = """require ["variables", "fileinto"];
    set :length "n" "abcd";
    if string :is "${n}" "4" { fileinto "Four"; }"""
    assert folders(run(script)) == ["Four"]


def test_imap4flags_on_keep_and_fileinto() -> None:
    script = """require ["imap4flags", "fileinto"];
    addflag "\\\\Flagged";
    addflag ["$Work", "\\\\flagged"];
    if hasflag :contains "work" { fileinto :flags "\\\\Seen" "Seen"; keep; }"""
    result = run(script)
    assert result.filings == (
        Filing("Seen", ("\\Seen",)),
        Filing("INBOX", ("\\Flagged", "$Work")),
    )


def test_body_text_and_raw() -> None:
    script = 'require ["body", "fileinto"]; if body :text :contains "budget" { fileinto "B"; }'
    assert folders(run(script)) == ["B"]
    raw = 'require "body"; if body :raw :contains "nothing like it" { discard; }'
    assert folders(run(raw)) == ["INBOX"]


def test_size() -> None:
    assert run("if size :over 10 { discard; }").discarded
    assert folders(run("if size :over 1K { discard; }")) == ["INBOX"]


def test_spamtest_and_spamtestplus_on_our_score() -> None:
    plus = """require ["spamtestplus", "relational", "comparator-i;ascii-numeric", "fileinto"];
    if spamtest :percent :value "ge" :comparator "i;ascii-numeric" "50" { fileinto "Junk"; }"""
    assert folders(run(plus, spam_score=6.0, spam_threshold=10.0)) == ["Junk"]
    assert folders(run(plus, spam_score=2.0, spam_threshold=10.0)) == ["INBOX"]
    plain = """require ["spamtest", "relational", "comparator-i;ascii-numeric"];
    if spamtest :value "eq" :comparator "i;ascii-numeric" "0" { discard; }"""
    assert run(plain, spam_score=None).discarded  # RFC 5235: 0 means not tested
    ten = """require ["spamtest", "relational", "comparator-i;ascii-numeric"];
    if spamtest :value "ge" :comparator "i;ascii-numeric" "10" { discard; }"""
    assert run(ten, spam_score=25.0).discarded


def test_relational_count() -> None:
    script = """require "relational";
    if header :count "ge" :comparator "i;ascii-numeric" "to" "1" { discard; }"""
    assert run(script).discarded


def test_date_and_currentdate() -> None:
    dated = 'require "date"; if date :zone "+0000" "date" "hour" "09" { discard; }'
    assert run(dated).discarded
    now = 1_796_000_000.0  # 2026-11-29
    current = """require ["date", "relational"];
    if currentdate :value "ge" "date" "2026-11-01" { discard; }"""
    assert run(current, now=now).discarded
    assert not run(current, now=now - 90 * 86400).discarded


def test_redirect_limit_fails_the_script() -> None:
    script = 'redirect "a@x.test"; redirect "b@x.test"; redirect "a@x.test";'
    assert run(script).redirects == ("a@x.test", "b@x.test")
    with pytest.raises(SieveRuntimeError):
        run(script, limits=Limits(max_redirects=1))


def test_step_limit_bounds_the_run() -> None:
    script = "if anyof(" + ", ".join(['header :contains "x" "y"'] * 50) + ") { discard; }"
    with pytest.raises(SieveRuntimeError):
        run(script, limits=Limits(max_steps=20))


def test_reject_and_ereject() -> None:
    result = run('require "reject"; reject "go away";')
    assert result.reject is not None and result.reject.reason == "go away"
    assert result.filings == ()
    ext = run('require "ereject"; ereject "no";')
    assert ext.reject is not None and ext.reject.extended
    with pytest.raises(SieveRuntimeError):
        run('require "reject"; keep; reject "both";')


def test_vacation_values() -> None:
    script = """require "vacation";
    vacation :days 3 :subject "Away" :from "bob@example.test"
      :addresses ["bobby@example.test"] "I am away.";"""
    vac = run(script).vacation
    assert vac is not None
    assert (vac.seconds, vac.subject, vac.addresses) == (3 * 86400, "Away", ("bobby@example.test",))
    assert folders(run(script)) == ["INBOX"]  # vacation keeps the message


@pytest.mark.parametrize(
    "source",
    [
        'fileinto "x";',  # fileinto not required
        'require "nosuch"; keep;',  # RFC 5228 3.2: unknown extension
        "if true { keep; ",
        'require ["spamtest"]; if spamtest :percent "5" { keep; }',  # :percent needs plus
    ],
)
def test_bad_scripts_are_refused(source: str) -> None:
    with pytest.raises(SieveError):
        compile_script(source)


def test_script_size_limit() -> None:
    with pytest.raises(SieveError, match="too large"):
        compile_script("keep;" + "#" * 100, max_size=50)


def test_raw_utf8_header_is_read_as_utf8() -> None:
    raw = "Subject: Café au lait\r\nTo: bob@example.test\r\n\r\nx\r\n".encode()
    script = 'require "fileinto"; if header :contains "subject" "café" { fileinto "C"; }'
    assert folders(run(script, message=raw)) == ["C"]


def test_set_modifiers_apply_by_precedence() -> None:
    # RFC 5229 4.1: :upper before :lowerfirst, :quotewildcard before :length.
    script = """require ["variables", "fileinto"];
    set :upper :lowerfirst "a" "hello";
    set :length :quotewildcard "n" "a*b";
    fileinto "${a}-${n}";"""
    assert folders(run(script)) == ["hELLO-4"]


def test_encoded_character() -> None:
    script = """require ["encoded-character", "fileinto"];
    fileinto "${hex:43 61 66 C3 A9}-${unicode:1F600}";"""
    assert folders(run(script)) == ["Café-\U0001f600"]
    with pytest.raises(SieveError, match="encoded character"):
        compile_script('require ["encoded-character", "fileinto"]; fileinto "${unicode:110000}";')
