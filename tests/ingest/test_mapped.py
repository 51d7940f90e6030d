"""Generic CSV and Parquet through a column mapping."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.errors import FormatError
from cellwall.ingest.mapped import CsvSource, ParquetSource, load_mapping
from tests.flowfiles import MAPPING


def read_all(source: CsvSource | ParquetSource, data: bytes, name: str = "f.csv"):
    flows, rejects = [], []
    for chunk in source.read(io.BytesIO(data), name):
        flows.append(chunk.flows)
        rejects.extend(chunk.rejects.table().to_pylist())
    return pa.concat_tables(flows) if flows else None, rejects


@pytest.fixture
def csv_source(mapping: Path) -> CsvSource:
    return CsvSource({"mapping": str(mapping)})


def test_maps_columns_units_and_protocol_names(tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text(
        "columns:\n  start: {column: first, unit: ms}\n  src_ip: a\n  dst_ip: b\n"
        "  proto: p\n  dst_port: port\nconstants: {exporter: fw-1}\ndelimiter: ';'\n"
    )
    data = b"first;a;b;p;port\n1762000000123;10.0.0.1;2001:DB8::1;UDP;53\n"
    flows, rejects = read_all(CsvSource({"mapping": str(m)}), data)
    row = flows.to_pylist()[0]
    assert rejects == []
    assert row["start"].timestamp() == pytest.approx(1_762_000_000.123)
    assert (row["dst_ip"], row["proto"], row["dst_port"]) == ("2001:db8::1", 17, 53)
    assert (row["exporter"], row["lineage_pos"], row["lineage_format"]) == ("fw-1", 2, "csv")


def test_bad_rows_are_rejected_with_line_and_field(csv_source: CsvSource) -> None:
    data = (
        b"ts,src,dst,sport,dport,proto,octets\n"
        b"1762000000,10.0.0.1,10.0.0.2,1,443,tcp,5\n"
        b"1762000000,10.0.0.1,10.0.0.2,1,65536,tcp,5\n"
        b"1762000000,10.0.0.1\n"
        b"1762000000,10.0.0.x,10.0.0.2,1,443,tcp,5\n"
        b"1762000001,10.0.0.3,10.0.0.2,1,443,tcp,5\n"
    )
    flows, rejects = read_all(csv_source, data)
    assert flows["lineage_pos"].to_pylist() == [2, 6]
    got = sorted((r["pos"], r["reason"]) for r in rejects)
    assert got == [(3, "bad-field"), (4, "field-count"), (5, "bad-field")]
    assert any("65536" in r["message"] and "dst_port" in r["message"] for r in rejects)


def test_mapping_errors_name_the_problem(tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text("columns:\n  start: {column: t, unit: weeks}\n  nosuch: x\n")
    with pytest.raises(FormatError) as info:
        load_mapping(str(m))
    codes = sorted(d.code for d in info.value.diagnostics)
    assert codes == ["mapping-target", "mapping-unit"]
    m.write_text("columns: [\n")
    with pytest.raises(FormatError, match="not YAML") as info:
        load_mapping(str(m))
    assert info.value.diagnostics[0].line is not None


def test_missing_source_column_is_a_format_error(csv_source: CsvSource) -> None:
    with pytest.raises(FormatError, match="'octets'"):
        read_all(csv_source, b"ts,src,dst,sport,dport,proto\n1,10.0.0.1,10.0.0.2,1,2,6\n")


def test_parquet_with_canonical_columns_needs_no_mapping() -> None:
    table = pa.table(
        {
            "start": pa.array(
                [1_762_000_000_000_000, 1_762_000_001_000_000], pa.timestamp("us", tz="UTC")
            ),
            "src_ip": ["10.0.0.1", "999.0.0.1"],
            "dst_ip": ["10.0.0.2", "10.0.0.2"],
            "proto": pa.array([6, 6], pa.int64()),
            "bytes": pa.array([10, 20], pa.int64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    assert ParquetSource.sniff(buf.getvalue()[:4])
    flows, rejects = read_all(ParquetSource(), buf.getvalue(), "x.parquet")
    assert flows.num_rows == 1 and flows["bytes"].to_pylist() == [10]
    assert rejects[0]["pos"] == 1 and rejects[0]["unit"] == "row"


@settings(
    max_examples=int(os.environ.get("CELLWALL_FUZZ", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=400))
def test_fuzz_csv_never_crashes(tmp_path_factory: pytest.TempPathFactory, junk: bytes) -> None:
    m = tmp_path_factory.mktemp("m") / "m.yaml"
    m.write_text(MAPPING)
    header = b"ts,src,dst,sport,dport,proto,octets\n"
    try:
        flows, rejects = read_all(CsvSource({"mapping": str(m)}), header + junk)
    except FormatError:
        return  # a clear, located refusal is fine; a crash is not
    stored = 0 if flows is None else flows.num_rows
    lines = junk.split(b"\n")
    last = len(lines) + 1  # physical line number of the last data line
    nonblank = sum(1 for line in lines if line.strip(b"\r"))
    # Every data line is stored or rejected once; a quoted field may join lines into one.
    if b'"' in junk or b"\r" in junk:
        assert stored + len(rejects) <= nonblank + 1
    else:
        assert stored + len(rejects) == nonblank
    for r in rejects:
        assert r["file"] == "f.csv" and 2 <= r["pos"] <= last and r["reason"]
