"""Ingestion and the hierarchy on the `spark` engine give the DuckDB engine's tables.

- Ingestion: the same events, quarantined lines, duplicates, file index and hour versions,
  through re-sends, copied, changed and removed files, a window over hours loaded before and
  lines of every quarantine reason.
- The hierarchy: the same users, accounts, memberships and account tree for the hierarchy
  tests' edge cases (cycles, missing parents, ties, late files), with typed trait columns of
  every type."""

import gzip
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.spark import lake
from account_hierarchy.spark.hierarchy import HIERARCHY_TABLES, build_hierarchy_on_spark
from account_hierarchy.spark.ingest import ingest_on_spark
from account_hierarchy.spark.session import spark_session
from account_hierarchy.warehouse import connect
from account_hierarchy_tests import test_hierarchy as hierarchy_cases
from account_hierarchy_tests.conftest import (
    PARTITIONS_START,
    message,
    needs_java,
    warehouse_tables,
    write_lines,
)
from account_hierarchy_tests.test_classify import DIRTY_LINES

H10, H11, H12 = (datetime(2026, 10, 1, hour) for hour in (10, 11, 12))

pytestmark = needs_java


@pytest.fixture(scope="module")
def spark():
    return spark_session("local[2]")


def test_spark_ingestion_loads_what_duckdb_loads(tmp_path: Path, spark):
    landing = tmp_path / "landing"
    dirty = [line for line, _ in DIRTY_LINES]
    write_lines(landing / "a.ndjson", [
        message("m1", "2026-10-01T10:05:00Z"),
        *dirty,
        message("m2", "2026-10-01T10:59:59.999Z"),
        message("m3", "2026-10-01T11:00:00Z"),
        message("m1", "2026-10-01T10:05:00Z"),
    ])  # fmt: skip
    write_lines(landing / "b.ndjson.gz", [message("m2", "2026-10-01T10:59:59Z")], gz=True)
    (landing / "copy").mkdir()
    shutil.copy(landing / "a.ndjson", landing / "copy" / "a.ndjson")  # a re-delivery
    (landing / "empty.ndjson").write_text("")
    (landing / "broken.ndjson.gz").write_bytes(b"not gzip")
    (landing / "cut.ndjson.gz").write_bytes(gzip.compress(b'oops\n{"type": "tr')[:-8])
    lake_dir = str(tmp_path / "lake")
    with (
        connect(tmp_path / "duckdb.duckdb") as on_duckdb,
        connect(tmp_path / "spark.duckdb") as con,
    ):

        def both(start: datetime, end: datetime) -> None:
            expected = ingest_window(on_duckdb, landing, start, end, PARTITIONS_START)
            report = ingest_on_spark(spark, con, landing, start, end, PARTITIONS_START, lake_dir)
            assert report == expected
            assert report.lines_read == report.loaded + report.quarantined + report.duplicates
            assert warehouse_tables(con) == warehouse_tables(on_duckdb)

        both(H10, H11)
        both(H11, H12)
        # a re-send of m3 in another hour, a changed file and a removed one, loaded with the
        # unchanged files as one window
        write_lines(landing / "late.ndjson", [message("m3", "2026-10-01T10:30:00Z")])
        write_lines(landing / "b.ndjson.gz", [message("m4", "2026-10-01T11:10:00Z")], gz=True)
        (landing / "empty.ndjson").unlink()
        both(H10, H12)
        (events,) = lake.read_with_duckdb(con, "raw_events", lake_dir).count("*").fetchone()
        assert events == len(warehouse_tables(on_duckdb)["raw_events"]) == 4
    assert sorted(path.name for path in Path(lake_dir, "raw_events").iterdir()) == [
        "hour=2026-10-01T10",
        "hour=2026-10-01T11",
    ]


def test_an_empty_landing_folder_loads_nothing(tmp_path: Path, spark):
    (tmp_path / "landing").mkdir()
    with connect(tmp_path / "spark.duckdb") as con:
        report = ingest_on_spark(spark, con, tmp_path / "landing", H10, H10 + timedelta(hours=1),
                                 PARTITIONS_START, str(tmp_path / "lake"))  # fmt: skip
        assert (report.lines_read, report.files_read) == (0, 0)
        assert con.execute("SELECT count(*) FROM raw_events").fetchone() == (0,)


identify = hierarchy_cases.identify
# Traits of every column type, a type widened later, a key that is no identifier, a key only an
# anonymous call sets (nobody's trait: no column), and a parent given as a number.
TYPED_TRAITS = [
    identify("typed1", "2026-10-01T10:15:00Z", "u1", score=1, vip=True,
             signup_at="2026-01-02T03:04:05Z", prefs={"tz": "UTC"}),
    identify("typed2", "2026-10-01T11:15:00Z", "u2", score=2.5, **{"first name": "Ada"}),
    {"type": "identify", "messageId": "typed3", "anonymousId": "anon", "timestamp":
     "2026-10-01T11:20:00Z", "traits": {"anon_only": "x"}},
    hierarchy_cases.group("typed4", "2026-10-01T12:10:00Z", "NUM", user="u4", parent_account_id=7,
                          founded="2001-05-06", tags=["a", "b"]),
]  # fmt: skip


def test_spark_hierarchy_builds_what_duckdb_builds(tmp_path: Path, spark):
    landing = tmp_path / "landing"
    write_lines(landing / "a.ndjson", hierarchy_cases.EDGE_CASES + TYPED_TRAITS)
    write_lines(landing / "b.ndjson", hierarchy_cases.LATE)
    lake_dir = str(tmp_path / "lake")
    start, end = datetime(2026, 10, 1, 9), datetime(2026, 10, 1, 14)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, landing, start, end, PARTITIONS_START)
        lake.export_from_warehouse(con, "raw_events", start, end, lake_dir)
        for window in ((start, end - timedelta(hours=2)), (end - timedelta(hours=2), end)):
            build_snapshots(con, *window, "parent_account_id")
            counts = build_hierarchy_on_spark(spark, *window, "parent_account_id", lake_dir)
            assert set(counts) == set(HIERARCHY_TABLES)
        for table in HIERARCHY_TABLES:
            on_spark = lake.read_with_duckdb(con, table, lake_dir)
            on_duckdb = con.table(table)
            assert dict(zip(on_spark.columns, map(str, on_spark.types), strict=True)) == {
                name: "VARCHAR" if str(kind) == "JSON" else str(kind)
                for name, kind in zip(on_duckdb.columns, on_duckdb.types, strict=True)
            }, table
            names = ", ".join(f'"{name}"' for name in sorted(on_spark.columns))
            rows = [con.sql(f"SELECT {names} FROM ({relation.sql_query()})").order("ALL").fetchall()
                    for relation in (on_spark, on_duckdb)]  # fmt: skip
            assert rows[0] == rows[1], table
            assert rows[0], table
        users = con.table("users")
        typed = dict(zip(users.columns, map(str, users.types), strict=True))
        assert {typed[key] for key in ("score", "vip", "signup_at", "prefs")} == {
            "DOUBLE", "BOOLEAN", "TIMESTAMP", "JSON"}  # fmt: skip
        assert "first name" not in typed and "anon_only" not in typed
