"""Audiences on the `spark` engine: each audience's compiled expression (`audiences/evaluate.py`)
run by Spark for every hour of a window over the lake, its members and reasons written back to
the lake's `audience_memberships`."""

from datetime import datetime

import pandas as pd
from pyspark.sql import SparkSession

from account_hierarchy.audiences.evaluate import Evaluator, require_snapshots
from account_hierarchy.audiences.memberships import member_frame
from account_hierarchy.audiences.schemas import validate_membership_rows
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.partitions import hours_of
from account_hierarchy.spark import lake
from account_hierarchy.spark.session import hourly_results, spark_backend
from account_hierarchy.traits.compute import TRAIT_TABLES

MEMBERSHIPS = "audience_memberships"
INPUTS = ("raw_events", "users", "accounts", "account_memberships", "account_hierarchy",
          *TRAIT_TABLES.values())  # fmt: skip
MEMBERSHIPS_SCHEMA = (
    "snapshot_hour TIMESTAMP_NTZ, audience STRING, entity_type STRING, entity_id STRING, "
    "reason STRING"
)


def build_audiences_on_spark(
    session: SparkSession,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    lake_dir: str | None = None,
) -> dict[str, dict[datetime, int]]:
    """Write every audience's members of the hours `[start, end)` to the lake; per audience
    its size at each hour."""
    backend = spark_backend(session)
    for name in INPUTS:
        lake.read(session, name, lake_dir).createOrReplaceTempView(name)
    hours = hours_of(start, end)
    frames, sizes = [], {}
    for located in catalog.audiences:
        evaluated = Evaluator(backend, catalog).audience(located.audience.name)
        require_snapshots(backend, evaluated, start, end)
        members = evaluated.table.filter(evaluated.table.member)
        found = hourly_results(backend, members, hours)
        sizes[evaluated.name] = {}
        for hour, rows in zip(hours, found, strict=True):
            frames.append(member_frame(evaluated, rows, hour))
            sizes[evaluated.name][hour] = len(rows)
    if not frames:
        return sizes
    rows = pd.concat(frames, ignore_index=True)
    frame = session.createDataFrame(rows, schema=MEMBERSHIPS_SCHEMA).cache()
    frame.createOrReplaceTempView(f"{MEMBERSHIPS}_staged")
    validate_membership_rows(backend.table(f"{MEMBERSHIPS}_staged"))
    lake.write(frame, MEMBERSHIPS, start, end, lake_dir)
    frame.unpersist()
    return sizes
