"""The `spark` engine behind the Dagster assets (`AH_ENGINE=spark`).

Every stage runs on Spark, reads and writes the lake, and the warehouse gets views of the same
names over the lake's tables. So the assets' metadata and
checks, the CLI and the delivery to destinations read what Spark wrote, through the same code
as with the DuckDB engine.
"""

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import ibis

from account_hierarchy.audiences.evaluate import Evaluator, require_traits_computed
from account_hierarchy.audiences.memberships import (
    AudienceReport,
    changes_at,
    record_audience_hours,
)
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.hierarchy.queries import require_hierarchy_built
from account_hierarchy.hierarchy.tables import record_snapshot_hours
from account_hierarchy.ingest.load import IngestReport
from account_hierarchy.spark import lake
from account_hierarchy.spark.audiences import (
    MEMBERSHIP_COLUMNS,
    MEMBERSHIPS,
    build_audience_on_spark,
)
from account_hierarchy.spark.diffs import DIFFS, build_diffs_on_spark
from account_hierarchy.spark.hierarchy import HIERARCHY_TABLES, build_hierarchy_on_spark
from account_hierarchy.spark.ingest import LINE_TABLES, ingest_on_spark
from account_hierarchy.spark.session import spark_session
from account_hierarchy.spark.traits import build_traits_on_spark
from account_hierarchy.traits.compute import TRAIT_TABLES, record_trait_hours
from account_hierarchy.warehouse import table_names


def ingest(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    start: datetime,
    end: datetime,
    partitions_start: datetime,
) -> IngestReport:
    """Ingestion on Spark; the report `ingest.load.ingest_window` gives."""
    lake.require_own_tables(con, LINE_TABLES)  # (before Spark starts, as in every stage)
    return ingest_on_spark(spark_session(), con, landing_dir, start, end, partitions_start)


def hierarchy(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, parent_trait: str
) -> dict[str, int]:
    """The hierarchy tables on Spark; their row counts."""
    lake.require_own_tables(con, HIERARCHY_TABLES)
    counts = build_hierarchy_on_spark(spark_session(), start, end, parent_trait)
    lake.attach_views(con, list(HIERARCHY_TABLES))
    record_snapshot_hours(con, start, end)
    return counts


def traits(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, start: datetime, end: datetime
) -> dict[str, dict]:
    """Both trait tables on Spark; the report `traits.compute.build_traits` gives."""
    lake.require_own_tables(con, list(TRAIT_TABLES.values()))
    require_hierarchy_built(con, start, end)  # (before Spark starts)
    report = build_traits_on_spark(spark_session(), catalog, start, end)
    lake.attach_views(con, list(TRAIT_TABLES.values()))
    record_trait_hours(con, catalog, start, end)
    return report


def audience(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, name: str, start: datetime, end: datetime
) -> AudienceReport:
    """One audience on Spark; the report `audiences.memberships.build_audience` gives."""
    lake.require_own_tables(con, [MEMBERSHIPS])
    if "trait_hours" in table_names(con):  # (the lake has no trait_hours: checked here)
        backend = ibis.duckdb.from_connection(con)
        require_traits_computed(backend, Evaluator(backend, catalog).audience(name), start, end)
    report, members = build_audience_on_spark(spark_session(), catalog, name, start, end)
    lake.attach_views(con, [MEMBERSHIPS], columns=MEMBERSHIP_COLUMNS)
    record_audience_hours(con, name, start, end, report.sizes)
    report.entered, report.exited = changes_at(
        con, catalog, name, members, end - timedelta(hours=1)
    )
    return report


def diffs(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, start: datetime, end: datetime
) -> dict[str, int]:
    """Activation diffs on Spark; the counts `activation.diffs.build_diffs` gives."""
    lake.require_own_tables(con, [DIFFS])
    counts = build_diffs_on_spark(spark_session(), catalog, start, end)
    lake.attach_views(con, [DIFFS])
    return counts
