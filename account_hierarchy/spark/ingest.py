"""Ingestion on the `spark` engine: a window's landing lines into the lake, exactly once, by
the DuckDB engine's rules and code (`ingest/load.py`):

1. the driver compares the landing folder with the file index (kept in the warehouse with
   either engine: it is a small catalog of files);
2. Spark tasks classify the files to read with the same vectorised classifier
   (`ingest/classify.py`), each in a private in-memory DuckDB, so the landing folder must be
   readable where the tasks run (a local session, or a folder every worker mounts). A task
   returns each file's lines of the window and, per hour of the file, a summary row
   (`source_line` NULL) counting its lines, for the file index;
3. Spark sorts the window's lines into events, quarantine and duplicates with the DuckDB
   engine's queries (`SORT_WINDOW_QUERIES`), transpiled to Spark SQL by sqlglot, against the
   lake's `raw_events` for messageIds loaded in other hours;
4. the events are validated with the pandera model, the window's hours of `raw_events`,
   `quarantined_lines` and `duplicate_lines` are replaced in the lake, and the warehouse gets
   views over them, the file index's changes and the hours' versions (`raw_event_hours`).
"""

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import (
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
)
from pyspark.sql.utils import AnalysisException

from account_hierarchy.ingest.events_schema import validate_event_rows
from account_hierarchy.ingest.landing import LandingFile
from account_hierarchy.ingest.load import (
    INDEX_COMMIT_SQL,
    SORT_WINDOW_QUERIES,
    IngestReport,
    classify_file,
    commit_in_one_transaction,
    files_to_read,
    fill_report,
)
from account_hierarchy.spark import lake
from account_hierarchy.spark.session import TASK_THREADS
from account_hierarchy.warehouse import (
    EVENT_HOUR_VERSIONS_SQL,
    ensure_event_hours,
    ensure_file_index,
)

LINE_TABLES = ("raw_events", "quarantined_lines", "duplicate_lines")


def _struct(columns: str) -> StructType:
    """A Spark schema from `name TYPE, ...` with the types used here (parsing DDL text would
    need a running session)."""
    types = {"STRING": StringType(), "BIGINT": LongType(), "TIMESTAMP": TimestampNTZType()}
    pairs = (column.split() for column in columns.split(","))
    return StructType([StructField(name, types[kind]) for name, kind in pairs])


RAW_EVENTS = _struct(
    "message_id STRING, type STRING, user_id STRING, anonymous_id STRING, group_id STRING, "
    "context_group_id STRING, event STRING, timestamp TIMESTAMP, received_at TIMESTAMP, "
    "properties STRING, traits STRING, source_file STRING, source_line BIGINT, "
    "event_hour TIMESTAMP"
)
CLASSIFIED = _struct(
    "source_file STRING, source_line BIGINT, reason STRING, event_hour TIMESTAMP, "
    "file_hour TIMESTAMP, message_id STRING, type STRING, user_id STRING, "
    "anonymous_id STRING, group_id STRING, context_group_id STRING, event STRING, "
    "timestamp TIMESTAMP, received_at TIMESTAMP, properties STRING, traits STRING, "
    "raw_line STRING, content_hash STRING, hour_lines BIGINT"
)
STAGED_FILES = pa.schema(
    [("path", pa.string()), ("content_hash", pa.string())]
    + [(name, pa.int64()) for name in ("size", "mtime_ns", "line_count")]
)
# Files are spread over at most this many tasks (a task classifies its files one by one).
MAX_CLASSIFY_TASKS = 64
FILE_SCHEMA = "path STRING, size BIGINT, mtime_ns BIGINT"
INDEX_SCHEMA = "path STRING, content_hash STRING, size BIGINT, mtime_ns BIGINT, seq BIGINT"

# The window's hours' versions, read back from the lake through the warehouse's view.
_VERSIONS_COMMIT_SQL = """
DELETE FROM raw_event_hours WHERE event_hour >= $start AND event_hour < $end;
INSERT INTO raw_event_hours {versions};
""".format(
    versions=EVENT_HOUR_VERSIONS_SQL.format(
        table="(SELECT * FROM raw_events WHERE event_hour >= $start AND event_hour < $end)"
    )
)


def ingest_on_spark(
    session: SparkSession,
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    start: datetime,
    end: datetime,
    partitions_start: datetime,
    lake_dir: str | None = None,
) -> IngestReport:
    """Ingest every landing line whose hour is in `[start, end)` into the lake; `con` is the
    warehouse, which keeps the file index and gets views of the lake's tables."""
    ensure_file_index(con)
    files = files_to_read(con, landing_dir, start, end)
    classified = _classified(session, landing_dir, files.to_read, start, end, partitions_start)
    summaries = classified.filter(F.col("source_line").isNull())
    staged_files, staged_file_hours = _staged_index(summaries, files.to_read, files.changed)
    classified.filter(F.col("source_line").isNotNull()).drop(
        "content_hash", "hour_lines"
    ).createOrReplaceTempView("window_lines")
    _register_inputs(session, con, files.present, staged_files, lake_dir)
    cached = _sort_window(session, start, end)
    report = IngestReport(files_read=len(files.to_read), files_indexed=len(files.changed))
    fill_report(report, lambda query: [tuple(row) for row in _run(session, query).collect()])
    lake.write_validated(
        session.table("window_events"), "raw_events", validate_event_rows, start, end, lake_dir
    )
    for table, rows in (("quarantined_lines", "window_quarantine"),
                        ("duplicate_lines", "window_duplicates")):  # fmt: skip
        lake.write(session.table(rows), table, start, end, lake_dir)
    file_index = session.table("file_index").toArrow()
    for frame in (*cached, classified):
        frame.unpersist()
    lake.attach_views(con, list(LINE_TABLES), lake_dir)
    ensure_event_hours(con)
    tables = {
        "present_files": pa.table({"path": [file.path for file in files.present]}),
        "staged_files": staged_files,
        "staged_file_hours": staged_file_hours,
        "file_index": file_index,
    }
    for name, table in tables.items():
        con.register(name, table)
    commit_in_one_transaction(con, INDEX_COMMIT_SQL + _VERSIONS_COMMIT_SQL, start, end)
    for name in tables:
        con.unregister(name)
    return report


def _classified(
    session: SparkSession,
    landing_dir: Path,
    files: list[LandingFile],
    start: datetime,
    end: datetime,
    partitions_start: datetime,
) -> DataFrame:
    """The classified window lines and summary rows of `files` (see the module docstring),
    cached: every later query reads them."""
    rows = [(file.path, file.size, file.mtime_ns) for file in files]
    frame = session.createDataFrame(rows, FILE_SCHEMA)
    if files:
        frame = frame.repartition(min(len(files), MAX_CLASSIFY_TASKS))
    classify = _classify_task(str(landing_dir.resolve()), start, end, partitions_start)
    return frame.mapInArrow(classify, CLASSIFIED).cache()


def _classify_task(
    landing_dir: str, start: datetime, end: datetime, partitions_start: datetime
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function a Spark task runs over its share of the files to read."""
    schema = to_arrow_schema(CLASSIFIED)

    def classify(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for path, size, mtime_ns in zip(*batch.to_pydict().values(), strict=True):
                file = LandingFile(path, size, mtime_ns)
                content_hash, lines = classify_file(
                    Path(landing_dir), file, partitions_start, TASK_THREADS
                )
                yield from _task_rows(file, content_hash, lines, start, end, schema).to_batches()

    return classify


def _task_rows(
    file: LandingFile,
    content_hash: str,
    lines: pa.Table,
    start: datetime,
    end: datetime,
    schema: pa.Schema,
) -> pa.Table:
    """One file's lines of the window, then one summary row per hour of its lines (one
    without an hour for a file without lines)."""
    hours = lines["event_hour"]
    after_start = pc.greater_equal(hours, pa.scalar(start, hours.type))
    inside = pc.and_(after_start, pc.less(hours, pa.scalar(end, hours.type)))
    counts = lines.group_by("event_hour").aggregate([("source_line", "count")])
    summary = {
        "source_file": [file.path] * max(counts.num_rows, 1),
        "event_hour": counts["event_hour"] if counts.num_rows else [None],
        "hour_lines": counts["source_line_count"] if counts.num_rows else [0],
    }
    window = lines.filter(inside)
    summaries = pa.table(summary).cast(pa.schema([schema.field(name) for name in summary]))
    rows = pa.concat_tables([window, summaries], promote_options="default")
    rows = rows.append_column("content_hash", pa.array([content_hash] * rows.num_rows))
    return rows.select(schema.names).cast(schema)


def _staged_index(
    summaries: DataFrame, files: list[LandingFile], changed: set[str]
) -> tuple[pa.Table, pa.Table]:
    """The index entries of the new or changed files: `staged_files` and `staged_file_hours`."""
    found = summaries.select("source_file", "event_hour", "hour_lines", "content_hash").toArrow()
    found = found.filter(pc.is_in(found["source_file"], pa.array(sorted(changed), pa.string())))
    read = {file.path: file for file in files}
    per_file = found.group_by(["source_file", "content_hash"]).aggregate([("hour_lines", "sum")])
    paths = per_file["source_file"].to_pylist()
    staged_files = pa.table(
        {
            "path": paths,
            "content_hash": per_file["content_hash"],
            "size": [read[path].size for path in paths],
            "mtime_ns": [read[path].mtime_ns for path in paths],
            "line_count": per_file["hour_lines_sum"],
        },
        schema=STAGED_FILES,
    )
    hours = found.filter(pc.is_valid(found["event_hour"]))
    staged_file_hours = hours.select(["source_file", "event_hour", "hour_lines"]).rename_columns(
        ["path", "event_hour", "line_count"]
    )
    return staged_files, staged_file_hours


def _register_inputs(
    session: SparkSession,
    con: duckdb.DuckDBPyConnection,
    present: list[LandingFile],
    staged_files: pa.Table,
    lake_dir: str | None,
) -> None:
    """The sorting queries' other inputs as temp views: the file index (files and their
    hours), the files present and staged, and the lake's `raw_events` (empty before the first
    load)."""
    index = con.execute("SELECT path, content_hash, size, mtime_ns, seq FROM landing_files")
    session.createDataFrame(index.df(), INDEX_SCHEMA).createOrReplaceTempView("landing_files")
    hours = con.execute("SELECT path, event_hour FROM landing_file_hours").fetchall()
    session.createDataFrame(hours, "path STRING, event_hour TIMESTAMP").createOrReplaceTempView(
        "landing_file_hours"
    )
    paths = [(file.path,) for file in present]
    session.createDataFrame(paths, "path STRING").createOrReplaceTempView("present_files")
    staged = staged_files.select(["path", "content_hash"]).to_pylist()
    session.createDataFrame(
        [(row["path"], row["content_hash"]) for row in staged], "path STRING, content_hash STRING"
    ).createOrReplaceTempView("staged_files")
    try:
        events = lake.read(session, "raw_events", lake_dir)
    except AnalysisException:  # no events loaded yet
        events = session.createDataFrame([], RAW_EVENTS)
    events.createOrReplaceTempView("raw_events")


def _run(
    session: SparkSession, query: str, start: datetime | None = None, end: datetime | None = None
) -> DataFrame:
    """A query of `ingest/load.py` (DuckDB's dialect) run on Spark."""
    text = sqlglot.transpile(query, read="duckdb", write="spark")[0]
    return session.sql(text, args={"start": start, "end": end} if ":start" in text else None)


def _sort_window(session: SparkSession, start: datetime, end: datetime) -> list[DataFrame]:
    """Run `SORT_WINDOW_QUERIES`, each kept as a cached temp view of its name; the frames."""
    frames = []
    for name, query in SORT_WINDOW_QUERIES.items():
        frame = _run(session, query, start, end).cache()
        frame.createOrReplaceTempView(name)
        frames.append(frame)
    return frames
