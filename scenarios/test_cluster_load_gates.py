"""The books a load run keeps catch what its gates are for: lost mail, a rate limit that did
not hold across the nodes, mail a killed node held until it came back."""

from __future__ import annotations

from pathlib import Path

import pytest

from load.ledger import MAILBOX, RECOVERED, REMOTE, Ledger, ctime_lag, window_violations


def test_an_accepted_message_that_never_arrives_is_lost() -> None:
    led = Ledger()
    led.accept("<a@x>", 100.0, "node1", "inbound", 1)
    led.accept("<b@x>", 100.0, "node1", "inbound", 1)
    led.arrive("<a@x>", 100.05)
    assert [a.msgid for a in led.missing()] == ["<b@x>"]


def test_an_arrival_seen_before_the_client_read_its_250_still_counts() -> None:
    led = Ledger()
    led.arrive("<a@x>", 100.01)
    led.accept("<a@x>", 100.02, "node1", "inbound", 1)
    assert led.missing() == []
    assert led.latencies[MAILBOX] == [0.0]  # never negative


def test_outbound_mail_arrives_once_per_recipient_and_extra_copies_are_duplicates() -> None:
    led = Ledger()
    led.accept("<m@x>", 10.0, "node1", "outbound", 2)
    led.arrive("<m@x>", 10.2, 1)  # gmail.test's recipient
    assert [a.msgid for a in led.missing()] == ["<m@x>"]
    led.arrive("<m@x>", 10.3, 1)  # outlook.test's
    assert led.missing() == []
    led.arrive("<m@x>", 12.0, 1)  # redelivered after a crash: at least once
    assert led.duplicates == 1
    assert led.latencies[REMOTE] == [pytest.approx(200.0)]


def test_a_message_relayed_again_after_a_kill_counts_once_against_the_rate_limit() -> None:
    # The killed node had relayed it but not yet recorded so; once restarted it relays it
    # again. The remote MX sees 61 recipients for a limit of 60, yet the limit held.
    led = Ledger()
    led.remote_delivery("Limited0@example.test", "<m@x>", ["r1@gmail.test", "r2@yahoo.test"])
    led.remote_delivery("limited0@example.test", "<m@x>", ["R1@gmail.test"])  # again
    led.remote_delivery("limited0@example.test", "<n@x>", ["r1@gmail.test"])
    led.remote_delivery("limited0@example.test", None, ["r1@gmail.test"])  # no Message-ID
    assert led.remote_rcpts_by_sender["limited0@example.test"] == 4


def test_mail_held_by_a_killed_node_is_reported_apart() -> None:
    led = Ledger()
    led.kill = ("node2", 50.0)
    led.accept("<held@x>", 49.9, "node2", "inbound", 1)
    led.accept("<late-read@x>", 50.1, "node2", "inbound", 1)  # its 250 was read late
    led.accept("<other@x>", 49.9, "node1", "inbound", 1)
    led.restart_at = 52.0
    led.accept("<after@x>", 53.0, "node2", "inbound", 1)
    for msgid, when in (("<held@x>", 52.5), ("<late-read@x>", 52.5), ("<other@x>", 49.95)):
        led.arrive(msgid, when)
    led.arrive("<after@x>", 53.01)
    assert len(led.latencies[RECOVERED]) == 2
    assert sorted(led.latencies[MAILBOX]) == [pytest.approx(10.0), pytest.approx(50.0)]


def test_a_window_over_the_limit_is_found_and_jitter_makes_no_false_one() -> None:
    # 61 recipients answered within one 300 s window: one too many.
    over = [(float(i), i + 0.01) for i in range(61)]
    assert window_violations(over, 60, 300.0)
    assert not window_violations(over[:60], 60, 300.0)
    # 60 in the first window, 60 more just after it slid: allowed, even though the client
    # saw the first of the second batch answered before the window's end by its clock.
    first = [(float(i), i + 0.01) for i in range(60)]
    second = [(299.99 + i, 300.05 + i) for i in range(60)]
    assert not window_violations(first + second, 60, 300.0)


def test_ctime_lag_is_small_and_not_negative(tmp_path: Path) -> None:
    lag = ctime_lag(tmp_path / "calibrate", samples=20)
    assert 0.0 <= lag < 0.5
    assert not (tmp_path / "calibrate").exists()


def test_the_killed_nodes_mail_in_flight_is_found_with_who_delivered_it_and_any_copy() -> None:
    led = Ledger()
    led.accept("<done@x>", 49.0, "node2", "inbound", 1)
    led.arrive("<done@x>", 49.5, by="node2")  # delivered before the kill: not in flight
    led.kill = ("node2", 50.0)
    led.accept("<taken@x>", 49.9, "node2", "inbound", 1)
    led.accept("<twice@x>", 49.8, "node2", "inbound", 1)
    led.accept("<lost@x>", 49.7, "node2", "inbound", 1)
    led.accept("<other@x>", 49.9, "node1", "inbound", 1)
    led.arrive("<taken@x>", 51.1, by="node3")
    led.arrive("<twice@x>", 51.2, by="node1")
    led.arrive("<twice@x>", 52.0, by="node2")  # the restarted node delivered it again
    led.arrive("<other@x>", 50.1, by="node1")
    held = {a.msgid: a for a in led.in_flight_at_kill()}
    assert sorted(held) == ["<lost@x>", "<taken@x>", "<twice@x>"]
    assert held["<taken@x>"].by == "node3"
    assert held["<twice@x>"].by == "node1" and held["<twice@x>"].extra == 1
    assert held["<lost@x>"].arrived == 0
    assert led.mailbox_duplicates == 1
