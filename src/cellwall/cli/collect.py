"""`cellwall collect`: the live NetFlow/IPFIX collector.

What it shows (:class:`CollectView`): with ``--json``, one JSON document per report on
stdout; else, when stdout is a terminal, a Rich live table that each report redraws; else
one status line per report on stderr.
"""

from __future__ import annotations

import json
import sys
from types import TracebackType
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cellwall.cli.app import app
from cellwall.cli.common import (
    AsOpt,
    HomeOpt,
    JsonOpt,
    LakeOpt,
    err,
    handled,
    out,
    workspace,
)


class CollectView:
    """Shows the collector's reports: JSON lines, a Rich live table, or status lines.

    The rate is the records received per second between two reports.
    """

    def __init__(
        self, *, as_json: bool, console: Console, status: Console, stdout: IO[str] | None = None
    ) -> None:
        self.as_json = as_json
        self.console = console
        self.status = status
        self.stdout = stdout if stdout is not None else sys.stdout
        self.live: Live | None = None
        self._last: tuple[float, int] | None = None

    def __enter__(self) -> CollectView:
        if not self.as_json and self.console.is_terminal:
            self.live = Live(console=self.console, auto_refresh=False, transient=False)
            self.live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def rate(self, doc: dict[str, Any]) -> float | None:
        """Records received per second since the previous report (None for the first)."""
        now = (float(doc.get("seconds", 0.0)), int(doc.get("records_received", 0)))
        last, self._last = self._last, now
        if last is None or now[0] <= last[0]:
            return None
        return (now[1] - last[1]) / (now[0] - last[0])

    def __call__(self, doc: dict[str, Any]) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(doc, default=str) + "\n")
            self.stdout.flush()
            return
        rate = self.rate(doc)
        if self.live is not None:
            self.live.update(status_table(doc, rate), refresh=True)
            return
        self.status.print(
            f"[bold]collect[/] {doc['datagrams_received']:,} datagrams, "
            f"{doc.get('records_received', 0):,} records received, "
            f"{doc['records_decoded']:,} decoded, "
            f"{doc['sets_waiting_for_template']} sets waiting for a template, "
            f"{doc['datagrams_dropped_queue_full']:,} datagrams dropped, "
            f"{doc['stored']:,} stored in {doc['batches_committed']} batches"
            + (f", {rate:,.0f} records/s" if rate is not None else ""),
            highlight=False,
        )


def status_table(doc: dict[str, Any], rate: float | None) -> Table:
    """The live view of one report."""
    state = "stopped" if doc.get("final") else "listening"
    listen = doc.get("listen", "")
    table = Table(title=f"cellwall collect {state} on {listen}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    rejected = doc.get("records_rejected", {})
    rows = [
        ("datagrams received", f"{doc['datagrams_received']:,}"),
        ("records received", f"{doc.get('records_received', 0):,}"),
        ("records decoded", f"{doc['records_decoded']:,}"),
        ("sets waiting for a template", f"{doc['sets_waiting_for_template']:,}"),
        ("datagrams dropped (queue full)", f"{doc['datagrams_dropped_queue_full']:,}"),
        ("rejected", ", ".join(f"{k} {v:,}" for k, v in rejected.items()) or "0"),
        ("batches committed", f"{doc['batches_committed']:,}"),
        ("flows stored", f"{doc['stored']:,}"),
        ("queue depth", f"{doc.get('queue_depth', 0):,}"),
        ("rate", "-" if rate is None else f"{rate:,.0f} records/s"),
    ]
    for what, count in rows:
        table.add_row(what, count)
    return table


@app.command()
def collect(
    listen: Annotated[str, typer.Option("--listen", help="Where to listen: udp://HOST:PORT.")],
    batch_records: Annotated[
        int, typer.Option("--batch-records", help="Commit a batch at this many records.")
    ] = 100_000,
    batch_seconds: Annotated[
        float, typer.Option("--batch-seconds", help="Commit a batch at least this often.")
    ] = 5.0,
    queue_datagrams: Annotated[
        int, typer.Option("--queue", help="Datagrams queued before drops (bounded memory).")
    ] = 65_536,
    home: HomeOpt = None,
    lake: LakeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the live NetFlow v5/v9/IPFIX collector into the lake until SIGTERM or Ctrl-C."""
    import signal

    from cellwall.services.collect import Collector, CollectSettings

    with handled():
        settings = CollectSettings(
            listen=listen,
            batch_records=batch_records,
            batch_seconds=batch_seconds,
            queue_datagrams=queue_datagrams,
        )
        collector = Collector(workspace(home, lake), settings, actor=actor)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: collector.stop())

        view = CollectView(as_json=as_json, console=out, status=err)
        with view:
            view({**collector.snapshot(), "listening": list(collector.address[:2])})
            final = collector.run(view)
            view({**final, "final": True})
