"""The lake: tables as Parquet files partitioned by hour under `AH_LAKE_DIR`, readable by any
engine (Spark, DuckDB, pandas/pyarrow).

A table lives in `<lake>/<table>/hour=<YYYY-MM-DDTHH>/*.parquet`; `audience_memberships` has
one folder per audience above the hours (`audience=<name>/hour=...`), so that each audience's
asset replaces only its own files. The hour partition is the hour of the table's hour column
(`event_hour` for ingested lines, `snapshot_hour` for snapshots), which stays in the files as a
naive UTC timestamp; readers drop the `hour` partition column again.
"""

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

import duckdb
import ibis.expr.types as ir
import sqlglot.expressions as exp
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from account_hierarchy import settings
from account_hierarchy.spark.session import spark_backend
from account_hierarchy.warehouse import EngineMismatchError

PARTITION = "hour"
HOUR_COLUMNS = {
    table: "event_hour" for table in ("raw_events", "quarantined_lines", "duplicate_lines")
}
_SPARK_FORMAT, _DUCKDB_FORMAT = "yyyy-MM-dd'T'HH", "%Y-%m-%dT%H"


def hour_column(table: str) -> str:
    """The timestamp column a table is partitioned by."""
    return HOUR_COLUMNS.get(table, "snapshot_hour")


def location(table: str, lake: str | None = None, within: dict[str, str] | None = None) -> str:
    """Where a table's files live (`lake` defaults to `AH_LAKE_DIR`), or those of one value of
    its outer partition (`within={"audience": "trials"}`)."""
    path = f"{(lake or settings.lake_dir()).rstrip('/')}/{table}"
    return "/".join([path, *(f"{key}={value}" for key, value in (within or {}).items())])


def partition_value(hour: datetime) -> str:
    """The partition folder value of an hour (`2026-10-01T00`)."""
    return hour.strftime(_DUCKDB_FORMAT)


def _clear_hours(path: str, start: datetime, end: datetime) -> None:
    """Remove a table's partitions of `[start, end)` before they are written again, so that
    an hour left without rows holds none (Spark's dynamic partition overwrite replaces only
    the hours written). A local table's folder is created if needed; an object store's
    partitions are removed through the Hadoop file system of the Spark session's JVM (a
    Spark Connect session has none: there, only the hours written are replaced)."""
    first, last = partition_value(start), partition_value(end)

    def in_window(name: str) -> bool:
        return name.startswith(f"{PARTITION}=") and first <= name.split("=", 1)[1] < last

    if "://" not in path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for folder in Path(path).iterdir():
            if in_window(folder.name):
                shutil.rmtree(folder)
        return
    session = SparkSession.getActiveSession()
    jvm = getattr(session, "_jvm", None)
    if jvm is None:
        return
    table_path = jvm.org.apache.hadoop.fs.Path(path)
    files = table_path.getFileSystem(session._jsc.hadoopConfiguration())
    if files.exists(table_path):
        for status in files.listStatus(table_path):
            if in_window(status.getPath().getName()):
                files.delete(status.getPath(), True)


def export_from_warehouse(
    con: duckdb.DuckDBPyConnection,
    table: str,
    start: datetime,
    end: datetime,
    lake: str | None = None,
) -> int:
    """Copy a warehouse table's rows of `[start, end)` into the lake (replacing those hours);
    the number of rows copied."""
    path, column = location(table, lake), hour_column(table)
    _clear_hours(path, start, end)
    window = {"start": start, "end": end}
    days = con.execute(
        f"SELECT DISTINCT date_trunc('day', {column}) AS day FROM {table} "
        f"WHERE {column} >= $start AND {column} < $end ORDER BY day",
        window,
    ).fetchall()
    count = 0
    # A day at a time: a partitioned write buffers every open hour's rows until it ends.
    for (day,) in days:
        rows = con.sql(
            f"SELECT *, strftime({column}, '{_DUCKDB_FORMAT}') AS {PARTITION} FROM {table} "
            f"WHERE {column} >= greatest($start, $day) "
            f"AND {column} < least($end, $day + INTERVAL 1 DAY)",
            params={**window, "day": day},
        )
        count += rows.aggregate("count(*)").fetchone()[0]
        rows.write_parquet(
            path, partition_by=[PARTITION], append=True, filename_pattern="duckdb_{uuid}"
        )
    if not days:  # one file without rows keeps the columns, as `write` does: Spark cannot
        # read a table folder without files
        folder = f"{path}/{PARTITION}={partition_value(start)}"
        if "://" not in folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
        con.sql(f"SELECT * FROM {table} LIMIT 0").write_parquet(f"{folder}/duckdb_empty.parquet")
    return count


def read(session: SparkSession, table: str, lake: str | None = None) -> DataFrame:
    """A lake table as a Spark frame (without the hour partition column), with the columns of
    every hour's files: a trait or trait key added since older hours were written is a column
    (null in those hours). Where the hours' types cannot be merged (a column whose type
    changed), the columns are taken from one file, as Spark does by default."""
    path = location(table, lake)
    reader = session.read.option("basePath", path)
    try:
        frame = reader.option("mergeSchema", "true").parquet(path)
    except Exception as error:  # (a JVM error: its class depends on the kind of session)
        if "CANNOT_MERGE_SCHEMAS" not in str(error):
            raise
        frame = reader.option("mergeSchema", "false").parquet(path)
    return frame.drop(PARTITION)


# (session, view) -> (path, files) when the view was made, for a local lake's tables
_REGISTERED: dict[tuple[int, str], tuple[str, tuple]] = {}


def register(session: SparkSession, tables: Iterable[str], lake: str | None = None) -> None:
    """Make lake tables readable by name in the session (temp views), as queries expect. A
    local table whose files are those the session's view was made from keeps its view: making
    one lists the files and reads a footer, about 0.2 s a table. A table not written yet gets
    no view (a fresh lake's audience that reads no trait runs before the traits): a query
    that reads it fails naming it."""
    for table in tables:
        path = location(table, lake)
        made_from = (path, _files(path))
        key = (id(session), table)
        if (
            made_from[1]
            and _REGISTERED.get(key) == made_from
            and session.catalog.tableExists(table)
        ):
            continue
        try:
            read(session, table, lake).createOrReplaceTempView(table)
        except AnalysisException as error:
            if error.getCondition() != "PATH_NOT_FOUND":
                raise
            session.catalog.dropTempView(table)
            _REGISTERED.pop(key, None)
            continue
        _REGISTERED[key] = made_from


def _files(path: str) -> tuple:
    """A local table's files with their sizes and modification times (empty for an object
    store, or no folder)."""
    if "://" in path or not Path(path).is_dir():
        return ()
    found = []
    for folder, _, names in os.walk(path):
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            found.append((folder, name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(found))


def write(
    frame: DataFrame,
    table: str,
    start: datetime,
    end: datetime,
    lake: str | None = None,
    within: dict[str, str] | None = None,
    empty: bool | None = None,
) -> None:
    """Write `frame` as the table's hours `[start, end)` (of one outer partition `within`,
    whose columns the files leave out), replacing what those hours held. `empty` says whether
    the frame has no rows, when the caller knows (else Spark is asked: a job)."""
    path = location(table, lake, within)
    _clear_hours(path, start, end)
    frame = frame.drop(*(within or {}))
    if frame.isEmpty() if empty is None else empty:  # one file without rows keeps the columns
        frame.write.mode("overwrite").parquet(f"{path}/{PARTITION}={partition_value(start)}")
        return
    partitioned = frame.withColumn(PARTITION, F.date_format(hour_column(table), _SPARK_FORMAT))
    # Each hour's rows are gathered in one task first: one file per hour, not one per task.
    by_hour = partitioned.repartition(PARTITION)
    by_hour.write.mode("overwrite").partitionBy(PARTITION).parquet(path)


def write_validated(
    frame: DataFrame,
    table: str,
    validate: Callable[[ir.Table], None],
    start: datetime,
    end: datetime,
    lake: str | None = None,
    within: dict[str, str] | None = None,
) -> int:
    """Validate `frame` (`validate` takes it as an Ibis table), then `write` it; its row count.
    The frame is cached meanwhile, so that it is computed once."""
    frame = frame.cache()
    staged = f"{table}_staged"
    frame.createOrReplaceTempView(staged)
    validate(spark_backend(frame.sparkSession).table(staged))
    rows = frame.count()
    write(frame, table, start, end, lake, within, empty=rows == 0)
    frame.unpersist()
    return rows


def _scan(table: str, lake: str | None, columns: Sequence[str] = ()) -> str:
    """DuckDB SQL reading every file of a lake table (the path as a quoted literal): its
    `columns` in that order, else every column but the hour partition (the outer partition
    columns last)."""
    path = location(table, lake)
    files = exp.Literal.string(f"{path}/**/*.parquet").sql("duckdb")
    # (hive partitioning makes a column of every `key=value` folder in the path, and the
    # lake's own folders, such as `/data/env=prod/lake`, are no columns of the table)
    above = {part.split("=", 1)[0] for part in path.split("/")[:-1] if "=" in part}
    excluded = ", ".join(exp.to_identifier(key).sql("duckdb") for key in [PARTITION, *above])
    selected = ", ".join(columns) or f"* EXCLUDE ({excluded})"
    return (
        f"SELECT {selected} FROM read_parquet({files}, hive_partitioning = true, "
        "hive_types_autocast = false, union_by_name = true)"
    )


def read_with_duckdb(
    con: duckdb.DuckDBPyConnection, table: str, lake: str | None = None
) -> duckdb.DuckDBPyRelation:
    """A lake table as a DuckDB relation (without the hour partition column)."""
    return con.sql(_scan(table, lake))


def attach_views(
    con: duckdb.DuckDBPyConnection,
    tables: list[str],
    lake: str | None = None,
    columns: Sequence[str] = (),
) -> None:
    """Make lake tables readable in the warehouse as views of the same names, so that the
    metadata, checks, CLI and delivery read what the Spark engine wrote (`columns`: in the
    order of the DuckDB engine's table, when an outer partition column would come last)."""
    require_own_tables(con, tables)
    for table in tables:
        con.execute(f"CREATE OR REPLACE VIEW {table} AS {_scan(table, lake, columns)}")


def require_own_tables(con: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> None:
    """Refuse a warehouse where any of `tables` is a table the DuckDB engine made (the Spark
    engine's are views over the lake): checked before a stage starts Spark, and not retried."""
    made = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_type <> 'VIEW' "
        "AND list_contains($tables, table_name) ORDER BY table_name",
        {"tables": list(tables)},
    ).fetchall()
    if made:
        raise EngineMismatchError(
            f"the warehouse holds {'tables' if len(made) > 1 else 'a table'} "
            f"{', '.join(name for (name,) in made)} made by the duckdb engine; run the spark "
            "engine with its own AH_WAREHOUSE"
        )
