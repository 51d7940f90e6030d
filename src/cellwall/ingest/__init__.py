"""Flow ingestion: one module per source format, each registered by name.

Every adapter turns bytes into Arrow batches in the canonical flow schema
(:mod:`cellwall.model.flow_schema`) plus the records it rejected and why.
"""

from cellwall.ingest.base import Chunk, FlowSource, Rejects, detect, get_source, source_names

__all__ = ["Chunk", "FlowSource", "Rejects", "detect", "get_source", "source_names"]
