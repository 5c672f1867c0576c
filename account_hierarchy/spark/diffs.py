"""Activation diffs on the `spark` engine: the change queries of `activation/diffs.py` run by
Spark over the lake's memberships and traits, written to the lake's `activation_diffs`
(delivery reads them from there, as it reads the warehouse's)."""

from datetime import datetime

import pandas as pd
from pyspark.sql import SparkSession

from account_hierarchy.activation.diffs import DIFF_COLUMNS, change_queries, diff_rows
from account_hierarchy.activation.schemas import validate_diff_rows
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.partitions import hours_of
from account_hierarchy.spark import lake
from account_hierarchy.spark.session import hourly_results, spark_backend

DIFFS = "activation_diffs"
INPUTS = ("audience_memberships", "account_traits", "user_traits")
DIFFS_SCHEMA = (
    "snapshot_hour TIMESTAMP_NTZ, kind STRING, name STRING, entity_type STRING, "
    "entity_id STRING, change STRING, old_value STRING, new_value STRING"
)


def build_diffs_on_spark(
    session: SparkSession,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    lake_dir: str | None = None,
) -> dict[str, int]:
    """Write the diffs of the hours `[start, end)` to the lake; the counts per change."""
    backend = spark_backend(session)
    lake.register(session, INPUTS, lake_dir)
    hours = hours_of(start, end)
    frames = []
    for (kind, name), query in change_queries(backend, catalog).items():
        for hour, found in zip(hours, hourly_results(backend, query, hours), strict=True):
            frames.append(diff_rows(kind, name, query, found, hour))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DIFF_COLUMNS)
    frame = session.createDataFrame(rows, schema=DIFFS_SCHEMA)
    lake.write_validated(frame, DIFFS, validate_diff_rows, start, end, lake_dir)
    counts = rows.change.value_counts()
    return {change: int(counts.get(change, 0)) for change in ("entered", "exited", "changed")}
