"""Fingerprints and injection indicators, and their false positives on benign corpora."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellwall.dbfw import Classifier, libinjection_detector
from tests.dbfw.corpus import benign_statements, libinjection_false_positives


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(libinjection_detector())


BASE = "SELECT id, name FROM users WHERE id = "


@pytest.mark.parametrize(
    ("sql", "indicator"),
    [
        (BASE + "1 OR 1=1", "tautology"),
        ("SELECT id FROM users WHERE name = 'x' OR 'a'='a'", "tautology"),
        ("SELECT id FROM users WHERE name = 'x' OR name = name", "tautology"),
        (BASE + "1 AND 1=2", "contradiction"),
        ("SELECT id FROM users WHERE name = 'admin'-- ' AND password = 'x'", "comment-truncation"),
        (BASE + "1/**/UNION/**/SELECT 1, 2", "comment-truncation"),
        (BASE + "1 UNION SELECT table_name, 1 FROM information_schema.tables", "catalog-probe"),
        (BASE + "1 UNION SELECT usename, 1 FROM pg_shadow", "catalog-probe"),
        (BASE + "1 AND (SELECT 1 FROM pg_sleep(5)) = 1", "time-delay"),
        ("COPY (SELECT 1) TO PROGRAM 'curl x'", "program-exec"),
        (BASE + "1 UNION SELECT pg_read_file('/etc/passwd'), 1", "file-access"),
        ("SELECT lo_import('/etc/passwd')", "file-access"),
        ("SELECT dblink_connect('host=evil')", "out-of-band"),
        ("ALTER ROLE shop SUPERUSER", "privilege-change"),
        ("GRANT ALL ON users TO public", "privilege-change"),
        ("SET ROLE postgres", "privilege-change"),
        (BASE + "1 AND 1=CAST((SELECT current_user) AS int)", "error-cast"),
        (BASE + "CAST(version() AS numeric)", "error-cast"),
        ("SELECT id FROM users WHERE name = 'x'' OR ''1''=''1'", "libinjection"),
        ("SELECT id FROM users WHERE name = 'x' OR", "unparseable"),
    ],
)
def test_each_indicator_fires(classifier: Classifier, sql: str, indicator: str) -> None:
    assert indicator in {h.indicator for h in classifier.analyse(sql).hits}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id FROM users WHERE 1=1 AND name = 'bob'",
        "SELECT id FROM users WHERE name = 'union jack select comfort; drop shipping'",
        "SELECT a FROM t WHERE b = 'O''Brien'",
        "SELECT a::int, '2026-01-01'::date, $1::numeric FROM t",
        "SELECT a FROM t -- fetch the list\n",
        "/* app=shop */ SELECT a FROM t",
        "SELECT a FROM t UNION ALL SELECT b FROM u",
        "BEGIN",
    ],
)
def test_ordinary_queries_trip_nothing(classifier: Classifier, sql: str) -> None:
    assert classifier.analyse(sql).hits == ()


def test_fingerprint_ignores_values_but_not_shape(classifier: Classifier) -> None:
    a = classifier.analyse("SELECT * FROM t WHERE id = 1")
    assert a.fingerprint == classifier.analyse("SELECT * FROM t WHERE id = 99").fingerprint
    assert a.fingerprint == classifier.analyse("select *  from t where id='x'").fingerprint
    assert a.fingerprint != classifier.analyse("SELECT * FROM t WHERE id = 1 OR 1=1").fingerprint
    stacked = classifier.analyse("SELECT * FROM t WHERE id = 1; DROP TABLE t")
    assert stacked.statements == 2


def test_union_prefix_is_the_template(classifier: Classifier) -> None:
    base = classifier.analyse("SELECT * FROM t WHERE id = 1")
    union = classifier.analyse("SELECT * FROM t WHERE id = 1 UNION SELECT a FROM u")
    assert union.has_setop and union.prefix_fingerprint == base.fingerprint
    assert not union.union_suspicious
    assert classifier.analyse(BASE + "1 UNION SELECT NULL, NULL").union_suspicious


def test_value_checks_run_per_query_behind_the_fingerprint_cache(classifier: Classifier) -> None:
    assert classifier.analyse("SELECT a FROM t WHERE b = 1 AND 1 = 1").hits == ()
    hits = classifier.analyse("SELECT a FROM t WHERE b = 1 AND 1 = 2").hits
    assert [h.indicator for h in hits] == ["contradiction"]


@pytest.mark.parametrize("source", ["tpch", "tpcds", "oltp"])
def test_no_detector_fires_on_benign_benchmark_queries(classifier: Classifier, source: str) -> None:
    statements = benign_statements()[source]
    flagged = [q for q in statements if classifier.analyse(q).hits]
    assert len(statements) >= 22 and flagged == []


def test_zeek_captured_postgres_queries_trip_only_catalog_probes(classifier: Classifier) -> None:
    """Drivers read pg_catalog (type lookups, server version); a reviewer approves those
    fingerprints. Nothing else fires on parseable captured traffic."""
    got = [classifier.analyse(q) for q in benign_statements()["zeek"]]
    parsed = [a for a in got if a.parse_error is None]
    kinds = {h.indicator for a in parsed for h in a.hits}
    assert len(parsed) >= 30 and kinds == {"catalog-probe"}
    assert sum(bool(a.hits) for a in parsed) <= 5


def test_libinjection_false_positive_list(classifier: Classifier) -> None:
    """libinjection's own list of inputs it once flagged wrongly, as quoted literals: at most
    5% still trip the literal check (measured: 18 of 421)."""
    inputs = libinjection_false_positives()
    flagged = [
        s
        for s in inputs
        if classifier.analyse("SELECT a FROM t WHERE b = '" + s.replace("'", "''") + "'").hits
    ]
    assert len(inputs) > 400 and len(flagged) / len(inputs) <= 0.05


SHAPES = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = {}",
    "UPDATE pgbench_accounts SET abalance = abalance + -{} WHERE aid = {}",
    "SELECT a FROM t ORDER BY {} LIMIT {} OFFSET {}",
    "SELECT x::varchar({}) FROM t WHERE a IN ({}, {})",
    "FETCH {} FROM c",
    "SELECT {}::float({})",
    'SELECT "col {}" FROM t WHERE a = {}',
    "SELECT a FROM t WHERE a = {} OR {} = {}",
    "SELECT a FROM t WHERE a = {} UNION SELECT {}",
    "SELECT a FROM t WHERE b = $1 AND c = {}",
    "SELECT a FROM t{} WHERE a = {}.5",
    "SELECT a FROM t WHERE a = {} -- {}",
]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(SHAPES),
    st.lists(st.integers(0, 10**12), min_size=3, max_size=3),
    st.lists(st.integers(0, 10**12), min_size=3, max_size=3),
)
def test_a_shape_gives_what_the_full_analysis_gives(
    shape: str, first: list[int], second: list[int]
) -> None:
    """Whatever the numbers, the shape cache answers what the parser would."""
    c = Classifier(libinjection_detector())
    c.analyse(shape.format(*first))
    text = shape.format(*second)
    assert c.analyse(text) == c._analyse(text)[0]


def test_only_plain_integer_constants_make_a_shape() -> None:
    c = Classifier(libinjection_detector())
    for sql in (
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
        "SELECT a + -5 FROM t ORDER BY 2",
        "FETCH 5 FROM c",  # a count, not a constant: FETCH 6 has another fingerprint
        "SELECT 1::float(10)",  # float(25) is another type
        "SELECT a FROM t WHERE a = 1 OR 2 = 2",  # constants compared: checked per query
    ):
        c.analyse(sql)
    assert sum(a is not None for a in c._shapes.values()) == 2
    assert c.analyse("FETCH 6 FROM c").fingerprint != c.analyse("FETCH 5 FROM c").fingerprint
