"""Audiences on the `spark` engine: an audience's compiled expression (`audiences/evaluate.py`)
run by Spark for every hour of a window over the lake, its members and reasons written to the
audience's folder of the lake's `audience_memberships`."""

from datetime import datetime, timedelta

import ibis
import pandas as pd
from ibis.backends.pyspark.datatypes import PySparkType
from pyspark.sql import SparkSession

from account_hierarchy.audiences.evaluate import Evaluator, require_snapshots
from account_hierarchy.audiences.memberships import AudienceReport, member_frame
from account_hierarchy.audiences.schemas import validate_membership_rows
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.partitions import hours_of
from account_hierarchy.spark import lake
from account_hierarchy.spark.session import hourly_results, spark_backend
from account_hierarchy.traits.compile import AS_OF, HOUR
from account_hierarchy.traits.compute import TRAIT_TABLES

MEMBERSHIPS = "audience_memberships"
INPUTS = ("raw_events", "users", "accounts", "account_memberships", "account_hierarchy",
          *TRAIT_TABLES.values())  # fmt: skip
MEMBERSHIPS_SCHEMA = (
    "snapshot_hour TIMESTAMP_NTZ, audience STRING, entity_type STRING, entity_id STRING, "
    "reason STRING"
)
MEMBERSHIP_COLUMNS = tuple(field.split()[0] for field in MEMBERSHIPS_SCHEMA.split(", "))


def build_audience_on_spark(
    session: SparkSession,
    catalog: Catalog,
    name: str,
    start: datetime,
    end: datetime,
    lake_dir: str | None = None,
) -> tuple[AudienceReport, set[str]]:
    """Write the audience's members of the hours `[start, end)` to the lake; a report of its
    size at each hour and the Spark SQL it compiled to for the last hour (who entered and
    exited is left to the caller), and the members at the last hour."""
    backend = spark_backend(session)
    lake.register(session, INPUTS, lake_dir)
    hours = hours_of(start, end)
    evaluated = Evaluator(backend, catalog).audience(name)
    require_snapshots(backend, evaluated, start, end)
    members = evaluated.table.filter(evaluated.table.member)
    found = hourly_results(backend, members, hours)
    frames = [member_frame(evaluated, rows, hour) for hour, rows in zip(hours, found, strict=True)]
    memberships = pd.concat(frames, ignore_index=True)
    frame = session.createDataFrame(memberships, schema=MEMBERSHIPS_SCHEMA)
    # Spark collected the rows: they are validated here, on the driver, typed as the frame
    # (Ibis cannot tell a column's type from no rows).
    types = ibis.schema(PySparkType.to_ibis(frame.schema).fields)
    validate_membership_rows(ibis.memtable(memberships, schema=types))
    lake.write(frame, MEMBERSHIPS, start, end, lake_dir, {"audience": name}, memberships.empty)
    last_hour = {HOUR: end - timedelta(hours=1), AS_OF: end}
    report = AudienceReport(
        sizes={hour: len(rows) for hour, rows in zip(hours, found, strict=True)},
        compiled=str(backend.compile(evaluated.table, params=last_hour)),
    )
    return report, set(frames[-1].entity_id)
