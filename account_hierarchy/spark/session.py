"""The Spark session the `spark` engine runs on, and the Ibis backend over it.

`AH_SPARK_REMOTE` (a Spark Connect address such as `sc://spark.internal:15002`) points the
project at a running cluster; otherwise a session is started on `AH_SPARK_MASTER` (`local[*]`
by default: every core of this machine). Sessions work in UTC like the DuckDB warehouse.
"""

import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta
from functools import reduce

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from account_hierarchy import settings
from account_hierarchy.moments import (
    BAD_OFFSET,
    EARLIEST,
    LATEST,
    LEAP_SECOND,
    MINUTES_ONLY,
)
from account_hierarchy.traits.compile import AS_OF, HOUR, NUMBER_TEXT_SQL

_COMMON_CONFIG = {
    "spark.sql.session.timeZone": "UTC",
    # Timestamps without time zone, like the warehouse's (naive UTC).
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    # Writing a window of hours replaces exactly those hours' partitions.
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    # Partition folders are read back as text (`hour=2026-10-01T00`), never guessed at.
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    # A SQL trait's expressions give NULL, as on DuckDB, where Spark 4's ANSI mode fails the
    # whole query (an index past a list's end, a text that is no number).
    "spark.sql.ansi.enabled": "false",
    # SQL text is run as written: Spark would otherwise replace `${env:NAME}`, `${system:name}`
    # and `${spark.key}` (even inside a string literal) with an environment variable, a Java
    # property or a setting, which a definition could then read (and send to a destination).
    "spark.sql.variable.substitute": "false",
}
# A local session is one process: a small shuffle keeps small hours fast.
_LOCAL_CONFIG = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.memory": "4g",
    # The driver lists a local lake's hour folders itself: a listing job per read costs more.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
    # The session's catalog folder (the engine keeps no tables there): out of the working
    # directory, which Spark would otherwise leave a `spark-warehouse` folder in.
    "spark.sql.warehouse.dir": os.path.join(tempfile.gettempdir(), "account_hierarchy-spark"),
}
# Spark runs one task per core: the DuckDB a task runs stage code in keeps to one thread.
TASK_THREADS = 1


class JavaNotFoundError(RuntimeError):
    """A local Spark session needs a Java runtime, and none was found."""


def java_found() -> bool:
    """Whether a Java runtime is where Spark looks for one: `$JAVA_HOME/bin/java`, else `java`
    on the PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        return os.access(os.path.join(java_home, "bin", "java"), os.X_OK)
    return shutil.which("java") is not None


def spark_session(master: str | None = None) -> SparkSession:
    """The Spark session (created on first use, then shared): Spark Connect when
    `AH_SPARK_REMOTE` is set, else `master` or `AH_SPARK_MASTER`."""
    # Python workers run in this interpreter (the project's environment).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    remote = settings.spark_remote()
    if not remote and not java_found():
        raise JavaNotFoundError(
            "the Spark engine starts a local Spark session, which needs Java 17 or 21: install "
            "it (JAVA_HOME or java on the PATH), or set AH_SPARK_REMOTE to a Spark Connect server"
        )
    builder = SparkSession.builder.appName("account_hierarchy")
    if remote:
        builder = builder.remote(remote)
        config = _COMMON_CONFIG
    else:
        builder = builder.master(master or settings.spark_master())
        config = _COMMON_CONFIG | _LOCAL_CONFIG
    for key, value in config.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if not remote:
        session.sparkContext.setLogLevel("ERROR")
    return session


def spark_backend(session: SparkSession) -> ibis.BaseBackend:
    """The Ibis backend that compiles definitions to Spark SQL on `session`."""
    return ibis.pyspark.connect(session)


# Ibis reads a JSON property on Spark with `get_json_object` (the value as text: strings
# unquoted, numbers, booleans and objects as their JSON) and unwraps it with these functions.
# Ibis ships them as Python functions; these native ones give the warehouse's answers (a
# string's text, a number from a number or numeric string) without leaving the JVM.
# `utc_moment` reads text with an offset as the UTC moment it names (the session's TIMESTAMP is
# TIMESTAMP_NTZ, whose cast would drop the offset), RFC 3339's lower-case `t` and `z` and times
# to the minute too (as `moments.utc_sql` does on DuckDB); only text starting with a date, as
# DuckDB's cast wants (Spark's reads `2001` as a year), and only moments of the years 1 to
# 9999. What DuckDB's casts read and Spark's do not is rewritten first: `/` between a date's
# parts and white space (tabs too, or several) before the time (`moment_text`), and the hour 24
# (`2026-09-30T24:00:00Z`, the next day's midnight) and leap seconds (`23:59:60Z`), as
# `castable_text` writes them (`00:00:00Z`, `23:59:59Z`) with a day or a second added. Offsets
# RFC 3339 refuses are no time.
_DATE = "^( *[0-9]+)[-/]([0-9]{1,2})[-/]([0-9]{1,2})"
# (Java's `\s` is white space; its backslash is doubled for Spark's string literals)
_DATE_TIME = "^( *[0-9]+-[0-9]{1,2}-[0-9]{1,2})[Tt]?\\\\s+([0-9])"
_HOUR_24 = "^( *[0-9]+-[0-9]{1,2}-[0-9]{1,2}[Tt ])24(:00(:00([.]0*)?)?)(?![0-9.:])"
_NUMBER_PATTERN = NUMBER_TEXT_SQL.replace("\\", "\\\\")
_BOUNDS = " AND ".join(f"TIMESTAMP_NTZ'{bound.isoformat(sep=' ')}'" for bound in (EARLIEST, LATEST))
_JSON_FUNCTIONS = {
    "unwrap_json_str": "STRING RETURN value",
    # (backslashes doubled: Spark unescapes its string literals)
    "unwrap_json_float": f"DOUBLE RETURN CASE WHEN value RLIKE '{_NUMBER_PATTERN}' "
    "THEN try_cast(value AS DOUBLE) END",
    "moment_text": f"STRING RETURN regexp_replace(regexp_replace(value, '{_DATE}', "
    f"'$1-$2-$3'), '{_DATE_TIME}', '$1 $2')",
    "castable_text": f"STRING RETURN regexp_replace(regexp_replace(moment_text(value), "
    f"'{_HOUR_24}', '$100$2'), '{LEAP_SECOND}', '$1:59$2')",
    # (reads text `castable_text` rewrote: `utc_moment` rewrites it once)
    "utc_moment_of": "TIMESTAMP_NTZ RETURN CASE WHEN value RLIKE '^ *[0-9]+-[0-9]+-[0-9]+' THEN "
    "CAST(coalesce(try_cast(value AS TIMESTAMP_LTZ), try_cast(upper(value) AS TIMESTAMP_LTZ), "
    f"try_cast(regexp_replace(upper(value), '{MINUTES_ONLY}', '$1:00$2') AS TIMESTAMP_LTZ)) "
    "AS TIMESTAMP_NTZ) END",
    "any_utc_moment": "TIMESTAMP_NTZ RETURN utc_moment_of(castable_text(value)) + CASE WHEN "
    f"moment_text(value) RLIKE '{_HOUR_24}' THEN INTERVAL 1 DAY ELSE INTERVAL 0 DAY END + CASE "
    f"WHEN value RLIKE '{LEAP_SECOND}' THEN INTERVAL 1 SECOND ELSE INTERVAL 0 SECOND END",
    "utc_moment": f"TIMESTAMP_NTZ RETURN CASE WHEN value RLIKE '{BAD_OFFSET}' THEN NULL "
    f"WHEN any_utc_moment(value) BETWEEN {_BOUNDS} THEN any_utc_moment(value) END",
}


def spark_frame(backend: ibis.BaseBackend, expr: ir.Table, params: dict | None = None) -> DataFrame:
    """An Ibis expression as a lazy Spark frame, with the JSON functions it may use."""
    backend._register_in_memory_tables(expr)
    register_json_functions(backend._session)
    return backend._session.sql(backend.compile(expr, params=params))


def register_json_functions(session: SparkSession) -> None:
    """Create (again) the session's JSON functions (`_JSON_FUNCTIONS`)."""
    for name, body in _JSON_FUNCTIONS.items():
        session.sql(f"CREATE OR REPLACE TEMPORARY FUNCTION {name}(value STRING) RETURNS {body}")


# (pandas turns integer columns holding nulls into floats, which round beyond 2^53)
_NULLABLE = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
             pa.int64(): pd.Int64Dtype()}  # fmt: skip


def hourly_results(
    backend: ibis.BaseBackend, expr: ir.Table, hours: list[datetime]
) -> list[pd.DataFrame]:
    """An expression over the hour parameter `HOUR` (and `AS_OF`) run for every hour, as one
    Spark job; each hour's rows as a pandas frame (integers with nulls stay exact integers)."""
    tagged = expr.mutate(result_hour=HOUR)
    frames = [
        spark_frame(backend, tagged, {HOUR: hour, AS_OF: hour + timedelta(hours=1)})
        for hour in hours
    ]
    if not frames:
        return []
    found = reduce(DataFrame.unionByName, frames).toArrow().to_pandas(types_mapper=_NULLABLE.get)
    return [found[found.result_hour == hour].drop(columns="result_hour") for hour in hours]
