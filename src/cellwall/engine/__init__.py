"""The query engine: Ibis expressions over the flow lake, run on DuckDB (embedded) by default."""

from cellwall.engine.backend import connect

__all__ = ["connect"]
