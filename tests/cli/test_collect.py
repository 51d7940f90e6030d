"""What `cellwall collect` shows: a Rich live table on a terminal, status lines, or JSON."""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console

from cellwall.cli.collect import CollectView


def report(seconds: float, received: int, **extra: Any) -> dict[str, Any]:
    return {
        "listen": "udp://127.0.0.1:2055",
        "seconds": seconds,
        "datagrams_received": received // 30,
        "records_received": received,
        "records_decoded": received - 90,
        "sets_waiting_for_template": 3,
        "datagrams_dropped_queue_full": 7,
        "records_rejected": {"no-template": 2},
        "batches_committed": 4,
        "stored": received - 90,
        "queue_depth": 11,
        **extra,
    }


def consoles(terminal: bool) -> tuple[Console, Console]:
    screen = Console(file=io.StringIO(), force_terminal=terminal, record=True, width=100)
    status = Console(file=io.StringIO(), force_terminal=False, record=True, width=300)
    return screen, status


def test_a_terminal_gets_a_live_table_with_counts_and_rate() -> None:
    screen, status = consoles(terminal=True)
    with CollectView(as_json=False, console=screen, status=status) as view:
        assert view.live is not None
        view(report(1.0, 0))
        view(report(3.0, 600_000))
        view(report(4.0, 900_000, final=True))
    text = screen.export_text()
    assert "cellwall collect listening on udp://127.0.0.1:2055" in text
    assert "cellwall collect stopped" in text
    for what, count in [
        ("datagrams received", "30,000"),
        ("records received", "900,000"),
        ("records decoded", "899,910"),
        ("sets waiting for a template", "3"),
        ("datagrams dropped (queue full)", "7"),
        ("rejected", "no-template 2"),
        ("batches committed", "4"),
        ("rate", "300,000 records/s"),
    ]:
        assert any(what in line and count in line for line in text.splitlines()), what
    assert status.export_text() == ""  # no status lines under the live view


def test_not_a_terminal_gets_status_lines() -> None:
    screen, status = consoles(terminal=False)
    with CollectView(as_json=False, console=screen, status=status) as view:
        assert view.live is None
        view(report(1.0, 0))
        view(report(2.0, 250_000))
    lines = status.export_text().splitlines()
    assert len(lines) == 2 and "records/s" not in lines[0]
    assert "250,000 records received" in lines[1] and "250,000 records/s" in lines[1]
    assert screen.export_text() == ""


def test_json_is_one_document_per_report_even_on_a_terminal() -> None:
    screen, status = consoles(terminal=True)
    stdout = io.StringIO()
    docs = [report(1.0, 0), report(2.0, 30)]
    with CollectView(as_json=True, console=screen, status=status, stdout=stdout) as view:
        assert view.live is None
        for doc in docs:
            view(doc)
    assert [json.loads(line) for line in stdout.getvalue().splitlines()] == docs
    assert screen.export_text() == "" and status.export_text() == ""
