"""Engines benchmark: every stage on DuckDB and on Spark (`local[*]`, or `AH_SPARK_MASTER` /
`AH_SPARK_REMOTE`), from the same landing files and the same definitions, each engine in a
fresh warehouse (and, for Spark, a fresh lake):

1. ingest: every landing line;
2. hierarchy: the snapshot of the last hour (DuckDB builds its hierarchy tiles on the way, as
   a fresh warehouse does; Spark has no tiles);
3. traits, audiences, diffs: the last hour (both engines aggregate the traits from the events:
   DuckDB's trait tiles are left out, so that both do the same work; the snapshot benchmark
   has the tiled figure).

Speeds are events per second over the whole history. Each Spark row's ratio is against the
DuckDB row of the same stage. Peak memory is this Python process's: Spark's JVM is not
included.

    python -m benchmarks.engines [--events 10000000] [--format jsonl]
"""

import shutil
from datetime import datetime, timedelta

import duckdb

from account_hierarchy.activation.diffs import build_diffs
from account_hierarchy.audiences.memberships import build_audience
from account_hierarchy.catalog.loader import Catalog, load_catalog
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.spark.audiences import build_audience_on_spark
from account_hierarchy.spark.diffs import build_diffs_on_spark
from account_hierarchy.spark.hierarchy import build_hierarchy_on_spark
from account_hierarchy.spark.ingest import ingest_on_spark
from account_hierarchy.spark.session import spark_session
from account_hierarchy.spark.traits import build_traits_on_spark
from account_hierarchy.traits.compute import build_traits
from account_hierarchy.warehouse import connect
from benchmarks.common import figure_arguments, print_rows, row, timed, versus
from benchmarks.pipeline import events_in, hierarchy_snapshots
from benchmarks.scale import DEFINITIONS, EVERYTHING, Scale

PARENT_TRAIT = "parent_account_id"


def later_stages_on_duckdb(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, start: datetime, end: datetime
) -> None:
    """Traits (from the events), audiences and diffs of the window in the warehouse."""
    build_traits(con, catalog, start, end, use_tiles=False)
    for located in catalog.audiences:
        build_audience(con, catalog, located.audience.name, start, end)
    build_diffs(con, catalog, start, end)


def later_stages_on_spark(catalog: Catalog, start: datetime, end: datetime, lake_dir: str) -> None:
    """The same on Spark, over the lake."""
    session = spark_session()
    build_traits_on_spark(session, catalog, start, end, lake_dir)
    for located in catalog.audiences:
        build_audience_on_spark(session, catalog, located.audience.name, start, end, lake_dir)
    build_diffs_on_spark(session, catalog, start, end, lake_dir)


def measure(scale: Scale) -> list[dict]:
    """A DuckDB row and a Spark row per stage."""
    scale.generate()
    catalog = load_catalog(DEFINITIONS)
    start = scale.last_hour
    end = start + timedelta(hours=1)
    folder = scale.folder / "engines"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    lake_dir = str(folder / "lake")
    session = spark_session()  # started before timing
    rows = []
    with connect(folder / "duckdb.duckdb") as on_duckdb, connect(folder / "spark.duckdb") as con:
        stages = {
            "ingest every line": (
                lambda: ingest_window(on_duckdb, scale.landing, *EVERYTHING, EVERYTHING[0]),
                lambda: ingest_on_spark(
                    session, con, scale.landing, *EVERYTHING, EVERYTHING[0], lake_dir
                ),
            ),
            "hierarchy, 1 hour": (
                lambda: hierarchy_snapshots(on_duckdb, start, end),
                lambda: build_hierarchy_on_spark(session, start, end, PARENT_TRAIT, lake_dir),
            ),
            "traits, audiences, diffs, 1 hour": (
                lambda: later_stages_on_duckdb(on_duckdb, catalog, start, end),
                lambda: later_stages_on_spark(catalog, start, end, lake_dir),
            ),
        }
        for stage, (duckdb_run, spark_run) in stages.items():
            seconds, _ = timed(duckdb_run)
            events = events_in(on_duckdb)
            duck = row("engines", f"duckdb: {stage}", events, seconds)
            seconds, _ = timed(spark_run)
            spark = row("engines", f"spark: {stage}", events, seconds)
            spark_vs_duckdb, duck = versus(spark, duck)
            rows += [duck, spark_vs_duckdb]
    return rows


def main() -> None:
    args = figure_arguments(__doc__, 10_000_000)
    print_rows(measure(Scale(args.events, args.work_dir)), args.format)


if __name__ == "__main__":
    main()
