"""The query engine: Ibis expressions over the flow lake, on DuckDB (embedded, the default)
or Spark (PySpark)."""

from cellwall.engine.backend import ENGINES, connect

__all__ = ["ENGINES", "connect"]
