"""Engines benchmark: one hour of every sample trait, audience and activation diff, computed
from the same compiled definitions and the same inputs on DuckDB and on Spark (`local[*]`,
or `AH_SPARK_MASTER` / `AH_SPARK_REMOTE`).

Both engines aggregate the traits from the events (DuckDB's hourly tiles are left out, so
that both do the same work; the snapshot benchmark has the tiled figure). Spark's inputs are
copied from the warehouse into the lake first, which is its own row. Speeds are events per
second over the whole history. The Spark row's ratio is against the DuckDB row. Peak memory is
this Python process's: Spark's JVM is not included.

    python -m benchmarks.engines [--events 10000000] [--format jsonl]
"""

from datetime import datetime, timedelta

import duckdb

from account_hierarchy.activation.diffs import build_diffs
from account_hierarchy.audiences.memberships import build_audience
from account_hierarchy.catalog.loader import Catalog, load_catalog
from account_hierarchy.spark import lake
from account_hierarchy.spark.audiences import build_audience_on_spark
from account_hierarchy.spark.diffs import build_diffs_on_spark
from account_hierarchy.spark.session import spark_session
from account_hierarchy.spark.traits import INPUTS, build_traits_on_spark
from account_hierarchy.traits.compute import build_traits
from account_hierarchy.warehouse import connect
from benchmarks.common import figure_arguments, print_rows, row, timed, versus
from benchmarks.pipeline import events_in, hierarchy_snapshots
from benchmarks.scale import DEFINITIONS, Scale

EVERYTHING_BEFORE = datetime(2000, 1, 1)


def on_duckdb(con: duckdb.DuckDBPyConnection, catalog: Catalog, start, end) -> None:
    """Traits (from the events), audiences and diffs of the window in the warehouse."""
    build_traits(con, catalog, start, end, use_tiles=False)
    for located in catalog.audiences:
        build_audience(con, catalog, located.audience.name, start, end)
    build_diffs(con, catalog, start, end)


def on_spark(catalog: Catalog, start, end, lake_dir: str) -> None:
    """The same on Spark, over the lake."""
    session = spark_session()
    build_traits_on_spark(session, catalog, start, end, lake_dir)
    for located in catalog.audiences:
        build_audience_on_spark(session, catalog, located.audience.name, start, end, lake_dir)
    build_diffs_on_spark(session, catalog, start, end, lake_dir)


def measure(scale: Scale) -> list[dict]:
    """Rows: DuckDB, the copy into the lake, Spark."""
    catalog = load_catalog(DEFINITIONS)
    hour = scale.last_hour
    start, end = hour, hour + timedelta(hours=1)
    lake_dir = str(scale.folder / "lake")
    with connect(scale.ingested()) as con:
        events = events_in(con)
        hierarchy_snapshots(con, start, end)  # the inputs, not timed
        seconds, _ = timed(lambda: on_duckdb(con, catalog, start, end))
        duck = row("engines", "duckdb: traits, audiences, diffs, 1 hour", events, seconds)

        def publish() -> None:
            for table in INPUTS:
                first = EVERYTHING_BEFORE if table == "raw_events" else start
                lake.export_from_warehouse(con, table, first, end, lake_dir)

        seconds, _ = timed(publish)
        copy = row("engines", "copy the inputs into the lake (Parquet)", events, seconds)
    spark_session()  # started before timing
    seconds, _ = timed(lambda: on_spark(catalog, start, end, lake_dir))
    spark = row("engines", "spark: traits, audiences, diffs, 1 hour", events, seconds)
    spark_vs_duckdb, duck = versus(spark, duck)
    return [duck, copy, spark_vs_duckdb]


def main() -> None:
    args = figure_arguments(__doc__, 10_000_000)
    print_rows(measure(Scale(args.events, args.work_dir)), args.format)


if __name__ == "__main__":
    main()
