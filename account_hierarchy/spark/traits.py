"""Traits on the `spark` engine: the queries the definitions compile to (`traits/compute.py`),
run by Spark over the lake and written back to it.

Computed traits are aggregated from the events directly (the hourly tiles are the DuckDB
engine's cache); SQL traits run in Spark's dialect, transpiled from DuckDB's by sqlglot.
"""

from datetime import datetime, timedelta
from functools import reduce

import ibis
from ibis.common.exceptions import IbisError
from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import DataFrame, SparkSession

from account_hierarchy.catalog.loader import Catalog, LocatedTrait
from account_hierarchy.catalog.models import SqlTrait
from account_hierarchy.partitions import hours_of
from account_hierarchy.spark import lake
from account_hierarchy.spark.session import spark_backend, spark_frame
from account_hierarchy.traits.compile import AS_OF, HOUR
from account_hierarchy.traits.compute import (
    TRAIT_TABLES,
    compiled_traits,
    entity_rows,
    repeated_id,
    repeated_id_message,
    sql_trait_error,
    sql_trait_rows,
)
from account_hierarchy.traits.schemas import validate_trait_rows
from account_hierarchy.traits.sql_traits import (
    SqlTraitError,
    against_views,
    parse_trait_sql,
    rows_table,
    snapshot_views,
)

INPUTS = ("raw_events", "users", "accounts", "account_memberships", "account_hierarchy")


def build_traits_on_spark(
    session: SparkSession,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    lake_dir: str | None = None,
) -> dict[str, dict]:
    """Write both trait tables' hours `[start, end)` to the lake; per entity the row count and
    the Spark SQL each trait compiled to for the window's last hour."""
    backend = spark_backend(session)
    lake.register(session, INPUTS, lake_dir)
    hours = hours_of(start, end)
    report: dict[str, dict] = {}
    for entity, table in TRAIT_TABLES.items():
        if not hours:
            continue
        sql_traits = [t for t in catalog.traits_of(entity) if isinstance(t.trait, SqlTrait)]
        for located in sql_traits:  # their result views must exist to build the query
            _sql_trait(session, backend, located, hours[0])
        rows = entity_rows(backend, catalog, entity, tiled=[])
        frames = []
        for index, hour in enumerate(hours):
            for located in sql_traits if index else []:
                _sql_trait(session, backend, located, hour)
            # Each hour's frame is analysed now, so it keeps this hour's SQL trait views.
            params = {HOUR: hour, AS_OF: hour + timedelta(hours=1)}
            frames.append(spark_frame(backend, rows, params))
        rows = lake.write_validated(
            reduce(DataFrame.unionByName, frames), table,
            lambda staged, e=entity: validate_trait_rows(staged, e, catalog),
            start, end, lake_dir,
        )  # fmt: skip
        compiled = compiled_traits(backend, catalog, entity, hours[-1], [], dialect="spark")
        report[entity] = {"rows": rows, "compiled": compiled}
    return report


def _sql_trait(
    session: SparkSession, backend: ibis.BaseBackend, located: LocatedTrait, hour: datetime
) -> None:
    """Run a SQL trait for one hour into the temp view `rows_table(name)`, by `entity_id`; an
    entity given several rows without `many` is an error naming the trait and its file."""
    trait = located.trait
    query, values = parse_trait_sql(trait.sql, trait.entity)
    for name, view in snapshot_views(hour).items():
        session.sql(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS {view.sql('spark')}")
    try:
        raw = backend.sql(against_views(query, "spark"), dialect="spark")
        found = [] if trait.many else repeated_id(raw, trait).execute()
        rows = sql_trait_rows(raw, trait, values)
    except (AnalysisException, ParseException, IbisError, SqlTraitError) as error:
        # (DuckDB SQL that Spark cannot run: a column no table has, a function Spark lacks, a
        # JSON path Spark reads otherwise)
        first_line = str(error).strip().splitlines()[0]
        raise sql_trait_error(located, f"failed on Spark at {hour}: {first_line}") from None
    if len(found):
        raise sql_trait_error(located, repeated_id_message(trait, *found.iloc[0], hour))
    backend.create_view(rows_table(trait.name), rows, overwrite=True)
