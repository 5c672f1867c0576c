"""Ingestion on the `spark` engine loads exactly what the DuckDB engine loads: the same events,
quarantined lines, duplicates, file index and hour versions, through re-sends, copied, changed
and removed files, windows run twice and lines of every quarantine reason."""

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.spark import lake
from account_hierarchy.spark.ingest import ingest_on_spark
from account_hierarchy.spark.session import spark_session
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import (
    PARTITIONS_START,
    message,
    warehouse_tables,
    write_lines,
)
from account_hierarchy_tests.test_classify import DIRTY_LINES

H10, H11, H12 = (datetime(2026, 10, 1, hour) for hour in (10, 11, 12))


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
        both(H10, H12)  # again, as one window: nothing changes
        # a re-send of m3 in another hour, a changed file and a removed one
        write_lines(landing / "late.ndjson", [message("m3", "2026-10-01T10:30:00Z")])
        write_lines(landing / "b.ndjson.gz", [message("m4", "2026-10-01T11:10:00Z")], gz=True)
        (landing / "empty.ndjson").unlink()
        both(H10, H11)
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
