"""Global options: `--config` and `--data-dir` work before the verb and after it, for every verb."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.cli import build_parser, main


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command of the parser, as (words, its parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for action in subs:
        seen: set[int] = set()
        for name, child in action.choices.items():
            if id(child) in seen:  # an alias (spam learn/train): walk it once
                continue
            seen.add(id(child))
            yield from _leaves(child, (*path, name))


def _required(parser: argparse.ArgumentParser) -> list[str]:
    """Values for the arguments a command cannot run without (what they are doesn't matter)."""
    out: list[str] = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            continue
        value = str(next(iter(a.choices))) if a.choices else "1"
        if not a.option_strings:
            if a.nargs not in ("?", "*"):
                out.append(value)
        elif a.required:
            out += [a.option_strings[0], value]
    return out


COMMANDS = sorted(_leaves(build_parser()))


def test_the_walk_finds_every_verb() -> None:
    words = {" ".join(w) for w, _ in COMMANDS}
    for verb in ("serve", "config check", "domain add", "dkim keygen", "spam learn", "check"):
        assert verb in words
    assert len(words) >= 40


@pytest.mark.parametrize(("words", "leaf"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_global_options_before_and_after_the_verb(
    words: tuple[str, ...], leaf: argparse.ArgumentParser
) -> None:
    parser = build_parser()
    rest = _required(leaf)
    where = ["--config", "c.toml", "--data-dir", "d"]
    for argv in (
        [*where, *words, *rest],  # before the verb
        [words[0], *where, *words[1:], *rest],  # between a group and its action
        [*words, *where, *rest],  # after it
    ):
        args = parser.parse_args(argv)
        assert (args.config, args.data_dir) == (Path("c.toml"), "d"), argv
    args = parser.parse_args([*words, *rest])
    assert (args.config, args.data_dir) == (None, None)


def test_the_option_nearest_the_verb_wins() -> None:
    parser = build_parser()
    args = parser.parse_args(["--data-dir", "outer", "domain", "add", "--data-dir", "inner", "x"])
    assert args.data_dir == "inner"
    args = parser.parse_args(["--data-dir", "outer", "domain", "add", "x"])
    assert args.data_dir == "outer"


def test_data_dir_before_the_verb_is_where_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "d"
    assert main(["--data-dir", str(d), "domain", "add", "x.test"]) == 0
    assert (d / "directory.sqlite3").exists()
    assert not (tmp_path / "var").exists()
    assert main(["domain", "list", "--data-dir", str(d)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "x.test"


def test_config_before_the_verb_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[listen\n")
    assert main(["--config", str(broken), "config", "check"]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.toml"), "config", "check"]) == 2
    assert "no such file" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text('[server]\nhostname = "mx.before.test"\n')
    assert main(["--config", str(good), "config", "show", "--bare"]) == 0
    assert 'hostname = "mx.before.test"' in capsys.readouterr().out


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the command line, groups (``spam``) as well as commands."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


@pytest.mark.parametrize(
    ("words", "parser"),
    list(_parsers(build_parser())),
    ids=[" ".join(w) or "mailspec" for w, _ in _parsers(build_parser())],
)
def test_every_help_is_readable(words: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert "--config FILE" in text and "--data-dir DIR" in text
    assert "`" not in text, "raw reST backticks in the help"
    assert "python -c" not in text, "the help sends the user elsewhere"
    assert parser.description, "no description"
    for a in parser._actions:
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction):
            assert a.help, f"positional {a.dest} has no help"


def test_serve_with_the_options_before_the_verb(tmp_path: Path) -> None:
    from reference.testing import serve_process, write_config

    config = write_config(tmp_path / "c.toml", hostname="mx.options.test")
    node = serve_process(tmp_path / "d", config, options_first=True)
    try:
        banner = "".join(node.output)
        assert f"mx.options.test, data in {tmp_path / 'd'}" in banner
        assert 2525 not in node.ports.values()  # the config's port 0, not the default
        assert (tmp_path / "d" / "directory.sqlite3").exists()
        # No scanner configured: the banner says mail goes unscanned.
        assert "no virus scanner" in banner
        assert f"mailspec domain add example.test --config {config} --data-dir" in banner
    finally:
        assert node.stop() == 0


def test_every_module_adds_the_commands_it_is_listed_with() -> None:
    from reference.cli import COMMANDS

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == {name for _, names in COMMANDS for name in names}


def test_a_command_whose_module_is_missing_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    from reference.cli import COMMANDS

    commands = (*COMMANDS, ("reference.cli.not_installed", ("ghost",)))
    assert main(["ghost", "--anything", "x"], commands=commands) == 2
    err = capsys.readouterr().err
    assert "mailspec ghost: unavailable here" in err and "reference.cli.not_installed" in err
