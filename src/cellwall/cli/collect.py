"""`cellwall collect`: the live NetFlow/IPFIX collector."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from cellwall.cli.app import app
from cellwall.cli.common import (
    AsOpt,
    HomeOpt,
    JsonOpt,
    LakeOpt,
    err,
    handled,
    workspace,
)


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

        def report(doc: dict[str, Any]) -> None:
            if as_json:
                sys.stdout.write(json.dumps(doc, default=str) + "\n")
                sys.stdout.flush()
            else:
                err.print(
                    f"[bold]collect[/] {doc['datagrams_received']:,} datagrams, "
                    f"{doc['records_decoded']:,} records decoded, "
                    f"{doc['sets_waiting_for_template']} sets waiting for a template, "
                    f"{doc['datagrams_dropped_queue_full']:,} dropped, "
                    f"{doc['stored']:,} stored in {doc['batches_committed']} batches",
                    highlight=False,
                )

        report({**collector.snapshot(), "listening": list(collector.address[:2])})
        final = collector.run(report)
        report({**final, "final": True})
