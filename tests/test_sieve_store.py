"""Per-user script storage and the vacation reply log, on files (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.sieve import ReplyLog, ScriptError, ScriptStore, SieveError

USER = "bob@example.test"


def test_names_of_any_kind_stay_inside_the_users_folder(tmp_path: Path) -> None:
    store = ScriptStore(tmp_path)
    store.put(USER, "../../etc/passwd", "keep;\r\n")
    store.put(USER, "Ünïcode / slash", "keep;\r\n")
    assert store.names(USER) == ["../../etc/passwd", "Ünïcode / slash"]
    assert [p.parent for p in tmp_path.rglob("*.sieve")] == [tmp_path / USER] * 2
    with pytest.raises(ScriptError):
        store.put(USER, "bad\nname", "keep;")


def test_a_script_that_does_not_compile_is_not_stored(tmp_path: Path) -> None:
    store = ScriptStore(tmp_path)
    with pytest.raises(SieveError):
        store.put(USER, "x", 'fileinto "y";')
    assert store.names(USER) == []


def test_active_script_rules(tmp_path: Path) -> None:
    store = ScriptStore(tmp_path)
    store.put(USER, "a", "keep;\r\n")
    store.activate(USER, "a")
    with pytest.raises(ScriptError) as e:
        store.delete(USER, "a")
    assert e.value.code == "ACTIVE"
    store.rename(USER, "a", "b")
    assert store.listing(USER) == [("b", True)]
    assert store.active(USER) is not None
    store.activate(USER, "")
    assert store.active(USER) is None
    with pytest.raises(ScriptError) as e:
        store.activate(USER, "nope")
    assert e.value.code == "NONEXISTENT"


def test_the_active_name_is_read_again_when_another_store_changes_it(tmp_path: Path) -> None:
    # Two stores on one folder: the worker processes of a node, each remembering the name.
    reader, writer = ScriptStore(tmp_path), ScriptStore(tmp_path)
    for name in ("one", "two", "six"):  # names of one length, changed within one clock tick
        writer.put(USER, name, "keep;\r\n")
    assert reader.active_name(USER) is None
    for name in ("one", "two", "six", "one"):
        writer.activate(USER, name)
        assert reader.active_name(USER) == name
    writer.activate(USER, "")
    assert reader.active_name(USER) is None
    writer.activate(USER, "two")
    (tmp_path / USER / "two.sieve").unlink()  # removed behind the store's back
    assert reader.active_name(USER) is None


def test_limits(tmp_path: Path) -> None:
    store = ScriptStore(tmp_path, max_scripts=1, max_size=100)
    store.put(USER, "one", "keep;")
    with pytest.raises(ScriptError) as e:
        store.put(USER, "two", "keep;")
    assert e.value.code == "QUOTA/MAXSCRIPTS"
    store.put(USER, "one", "discard;")  # replacing one is fine
    with pytest.raises(ScriptError) as e:
        store.has_space(USER, "one", 101)
    assert e.value.code == "QUOTA/MAXSIZE"


def test_a_changed_script_is_compiled_again(tmp_path: Path) -> None:
    store = ScriptStore(tmp_path)
    store.put(USER, "s", "keep;")
    store.activate(USER, "s")
    first = store.active(USER)
    assert store.active(USER) is first  # cached
    store.put(USER, "s", "discard;")
    second = store.active(USER)
    assert second is not None and second.source == "discard;"


def test_reply_log_once_per_period(tmp_path: Path) -> None:
    log = ReplyLog(tmp_path / "r.sqlite3")
    try:
        assert log.claim(USER, "Alice@Remote.test", "h", now=0, period=100)
        assert not log.claim(USER, "alice@remote.test", "h", now=50, period=100)
        assert log.claim(USER, "alice@remote.test", "other", now=50, period=100)
        assert log.claim(USER, "alice@remote.test", "h", now=100, period=100)
        log.forget(USER)
        assert log.claim(USER, "alice@remote.test", "h", now=101, period=100)
    finally:
        log.close()
