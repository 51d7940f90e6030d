"""Generic CSV and Parquet flows, read through a column-mapping file.

The mapping file is YAML::

    columns:                      # canonical column: source column, or {column, unit}
      start: {column: first_seen, unit: ms}     # s | ms | us | ns | iso
      end: last_seen
      src_ip: src
      dst_ip: dst
      src_port: sport
      dst_port: dport
      proto: protocol                           # numbers or names (tcp, udp, icmp ...)
      bytes: octets
    constants: {exporter: fw-edge-1}            # a value for every record
    delimiter: ","                              # CSV only; the first line is the header

Without a mapping, columns that already carry canonical names are taken as they are, so a
file written by ``cellwall flows query --out x.parquet`` loads back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from cellwall.errors import Diagnostic, FormatError
from cellwall.ingest.base import Chunk, FlowSource, Rejects, register
from cellwall.ingest.delimited import parse_block
from cellwall.ingest.stream import Block, iter_blocks
from cellwall.model.flow_schema import FLOW_SCHEMA, TS, conform
from cellwall.model.net import canonical_ips

__all__ = ["CsvSource", "ParquetSource", "load_mapping"]

PROTO_NAMES = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "icmpv6": 58, "sctp": 132}
UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None, "iso": None}
BATCH_ROWS = 256 * 1024


def load_mapping(path: str | None) -> dict[str, Any]:
    """Read and check a mapping file; None gives the identity mapping."""
    if not path:
        return {"columns": {}, "constants": {}, "delimiter": ","}
    try:
        text = Path(path).read_text(encoding="utf-8")
        doc = yaml.safe_load(text) or {}
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the mapping file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise FormatError(
            f"{path}: the mapping file is not YAML",
            diagnostics=[
                Diagnostic(
                    path,
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                    "mapping-yaml",
                    str(exc),
                )
            ],
        ) from exc
    if not isinstance(doc, dict):
        raise FormatError(f"{path}: a mapping file is a YAML mapping with a `columns` key")
    columns = doc.get("columns") or {}
    problems = []
    if not isinstance(columns, dict):
        raise FormatError(f"{path}: `columns` must map canonical names to source columns")
    for target, spec in columns.items():
        if target not in FLOW_SCHEMA.names or target.startswith("lineage_"):
            problems.append(
                Diagnostic(
                    path,
                    None,
                    None,
                    "mapping-target",
                    f"{target!r} is not a flow column",
                    hint="see docs/flows.md for the column names",
                )
            )
        unit = spec.get("unit", "s") if isinstance(spec, dict) else "s"
        if unit not in UNITS:
            problems.append(
                Diagnostic(
                    path,
                    None,
                    None,
                    "mapping-unit",
                    f"{target}: unit {unit!r}",
                    hint="use s, ms, us, ns or iso",
                )
            )
    if problems:
        raise FormatError(
            f"{path}: the mapping file has {len(problems)} problem(s)", diagnostics=problems
        )
    return {
        "columns": columns,
        "constants": doc.get("constants") or {},
        "delimiter": str(doc.get("delimiter", ",")),
    }


def _source_name(target: str, spec: Any) -> str:
    if isinstance(spec, dict):
        return str(spec.get("column", target))
    return str(spec)


def _timestamp(col: pa.Array, unit: str) -> tuple[pa.Array, pa.Array]:
    """Values and an ``ok`` mask (null input stays null and is not an error here)."""
    if unit == "iso" or pa.types.is_string(col.type):
        if unit != "iso":
            numeric = pc.match_substring_regex(col, r"^-?[0-9]+(\.[0-9]+)?$")
            if pc.all(numeric.fill_null(True)).as_py():
                return _timestamp(pc.cast(col, pa.float64()), unit)
        text = pc.replace_substring_regex(col, r"Z$", "+00:00")
        try:
            values = pc.cast(
                pc.strptime(text, format="%Y-%m-%dT%H:%M:%S%z", unit="us", error_is_null=True), TS
            )
        except pa.ArrowInvalid:
            values = pa.nulls(len(col), TS)
        return values, pc.or_(pc.is_valid(values), pc.is_null(col))
    if pa.types.is_timestamp(col.type):
        return pc.cast(col, TS), pa.array(np.ones(len(col), bool))
    seconds = pc.cast(col, pa.float64())
    scale = UNITS[unit]
    micros = pc.multiply(seconds, 0.001 if scale is None else float(scale))
    ok = pc.and_(pc.is_finite(micros), pc.less(pc.abs(micros), 2.5e17))
    micros = pc.if_else(ok, micros, None)
    values = pc.cast(pc.cast(pc.round(micros), pa.int64()), pa.timestamp("us")).cast(TS)
    return values, pc.or_kleene(ok, pc.is_null(col)).fill_null(True)


def _number(col: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array]:
    if pa.types.is_string(col.type):
        lowered = pc.utf8_lower(col)
        if target == pa.uint8():  # protocol names
            for name, num in PROTO_NAMES.items():
                lowered = pc.if_else(pc.equal(lowered, name), str(num), lowered)
        ok = pc.match_substring_regex(lowered, r"^[0-9]{1,19}$")
        col = pc.cast(pc.if_else(ok, lowered, None), pa.uint64())
    if pa.types.is_floating(col.type):
        col = pc.if_else(pc.equal(pc.floor(col), col), col, None)
    limit = int(np.iinfo(target.to_pandas_dtype()).max)
    wide = pc.cast(col, pa.float64()) if pa.types.is_floating(col.type) else col
    if pa.types.is_floating(wide.type):
        bound = pa.scalar(float(limit), wide.type)
    else:
        bound = pa.scalar(min(limit, int(np.iinfo(wide.type.to_pandas_dtype()).max)), wide.type)
    ok = pc.and_kleene(pc.greater_equal(wide, pa.scalar(0, wide.type)), pc.less_equal(wide, bound))
    ok = pc.and_kleene(ok, pc.is_valid(col))
    values = pc.cast(pc.if_else(ok, wide, None), target)
    return values, ok


class _Mapped(FlowSource):
    unit: ClassVar[str] = "line"

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        self.mapping = load_mapping(self.options.get("mapping"))

    def _convert(
        self, batch: pa.RecordBatch, pos: np.ndarray, file: str, rejects: Rejects
    ) -> pa.Table:
        names = set(batch.schema.names)
        specs: dict[str, Any] = {
            f.name: f.name
            for f in FLOW_SCHEMA
            if f.name in names and not f.name.startswith("lineage_")
        }
        specs.update(self.mapping["columns"])
        n = batch.num_rows
        columns: dict[str, Any] = {}
        bad = np.zeros(n, bool)
        why: list[tuple[np.ndarray, str, str]] = []
        for target, spec in specs.items():
            source = _source_name(target, spec)
            if source not in names:
                raise FormatError(
                    f"{file}: the mapping names column {source!r} for {target}, "
                    f"which the file does not have",
                    hint=f"the file's columns are: {', '.join(batch.schema.names)}",
                )
            col = batch.column(source)
            ftype = FLOW_SCHEMA.field(target).type
            if target in ("start", "end"):
                unit = spec.get("unit", "s") if isinstance(spec, dict) else "s"
                values, ok = _timestamp(col, unit)
                expect = f"a time ({unit})"
            elif target in ("src_ip", "dst_ip"):
                values = canonical_ips(pc.cast(col, pa.string()))
                ok = pc.or_(pc.is_valid(values), pc.is_null(col))
                expect = "an IP address"
            elif pa.types.is_integer(ftype):
                values, ok = _number(col, ftype)
                ok = pc.or_kleene(ok, pc.is_null(col)).fill_null(False)
                expect = f"an integer that fits {ftype}"
            elif pa.types.is_boolean(ftype):
                values = (
                    pc.cast(col, pa.bool_())
                    if not pa.types.is_string(col.type)
                    else pc.is_in(pc.utf8_lower(col), pa.array(["true", "t", "1", "yes"]))
                )
                ok = pa.array(np.ones(n, bool))
                expect = ""
            else:
                values, ok, expect = pc.cast(col, pa.string()), pa.array(np.ones(n, bool)), ""
            mask = ~np.asarray(pc.fill_null(ok, False))
            if mask.any():
                why.append((mask, target, expect))
                bad |= mask
            columns[target] = values
        for key, value in self.mapping["constants"].items():
            columns[key] = pa.array([value] * n).cast(FLOW_SCHEMA.field(key).type)
        columns["lineage_format"] = pa.array([self.name] * n, pa.string())
        columns["lineage_file"] = pa.array([file] * n, pa.string())
        columns["lineage_pos"] = pa.array(pos, pa.int64())
        table = conform(columns, n)
        if bad.any():
            for i in np.flatnonzero(bad):
                mask, target, expect = next(w for w in why if w[0][i])
                src = _source_name(target, specs[target])
                value = batch.column(src)[int(i)].as_py()
                raw = ",".join(
                    "" if v is None else str(v)
                    for v in batch.slice(int(i), 1).to_pylist()[0].values()
                )
                rejects.add(
                    int(pos[i]),
                    "bad-field",
                    f"column {src!r} ({target}) = {value!r} is not {expect}",
                    raw,
                )
            table = table.filter(pa.array(~bad))
        return table


@register
class CsvSource(_Mapped):
    name: ClassVar[str] = "csv"
    title: ClassVar[str] = "generic CSV with a header line, through --option mapping=FILE"

    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        delimiter = self.mapping["delimiter"]
        header = b""
        while not header.endswith(b"\n"):
            byte = stream.read(1)
            if not byte:
                break
            header += byte
            if len(header) > 1 << 20:
                break
        try:
            names = header.decode("utf-8").strip().split(delimiter)
        except UnicodeDecodeError:
            names = []
        if not names or not all(n.strip() for n in names):
            raise FormatError(
                f"{file}: line 1: not a CSV header", hint="the first line must name the columns"
            )
        names = [n.strip().strip('"') for n in names]
        types = {n: pa.string() for n in names}
        for block in iter_blocks(stream, prefix=b""):
            rejects = Rejects(file)
            shifted = Block(block.first_line + 1, block.offset + len(header), block.data)
            parsed = parse_block(
                shifted,
                names,
                types,
                rejects,
                delimiter=delimiter,
                null_values=("", "-", "NULL", "null"),
                quoting=True,
            )
            batch = pa.RecordBatch.from_arrays(
                [parsed.table[n].combine_chunks() for n in names], names=names
            )
            yield Chunk(self._convert(batch, parsed.lines, file, rejects), rejects)


@register
class ParquetSource(_Mapped):
    name: ClassVar[str] = "parquet"
    title: ClassVar[str] = "generic Parquet, canonical columns or --option mapping=FILE"
    unit: ClassVar[str] = "row"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(b"PAR1")

    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        import shutil
        import tempfile

        # Parquet needs random access: spool the stream (to disk past 64 MiB).
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as data:
            shutil.copyfileobj(stream, data, 8 << 20)  # type: ignore[misc]
            data.seek(0)
            try:
                pf = pq.ParquetFile(data)
            except (pa.ArrowInvalid, OSError) as exc:
                raise FormatError(f"{file}: not a readable Parquet file: {exc}") from exc
            row = 0
            for batch in pf.iter_batches(batch_size=BATCH_ROWS):
                rejects = Rejects(file, unit="row")
                pos = np.arange(row, row + batch.num_rows, dtype=np.int64)
                row += batch.num_rows
                yield Chunk(self._convert(batch, pos, file, rejects), rejects)
