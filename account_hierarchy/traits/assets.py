"""Dagster wiring of the traits stage, built from the definitions: the `account_traits` and
`user_traits` tables plus one asset per trait (its definition, compiled query, fill rate and
distribution in the metadata), all computed in one op for a partition or a range of hours."""

from collections.abc import Iterator
from datetime import datetime, timedelta

import dagster as dg
import duckdb
import yaml

from account_hierarchy import settings
from account_hierarchy.catalog.loader import Catalog, LocatedTrait
from account_hierarchy.hierarchy.queries import HierarchyNotBuiltError
from account_hierarchy.metadata import MATCHES_SCHEMA, last_hour_preview, schema_check, table_schema
from account_hierarchy.partitions import HOURLY, window_of
from account_hierarchy.policies import TRANSIENT_RETRY, not_retried
from account_hierarchy.resources import Warehouse
from account_hierarchy.traits.compute import ENTITY_TABLES, TRAIT_TABLES, build_traits
from account_hierarchy.traits.profile import profile_column
from account_hierarchy.traits.schemas import validate_traits
from account_hierarchy.traits.sql_traits import SqlTraitError
from account_hierarchy.validation import recheck_stored

HIERARCHY_DEPS = ["raw_events", "account_memberships", "account_hierarchy"]


def trait_key(name: str) -> dg.AssetKey:
    """The asset key of one trait."""
    return dg.AssetKey(["traits", name])


def build_trait_assets(catalog: Catalog) -> dg.AssetsDefinition:
    """The multi-asset computing every trait of the catalog."""
    specs = []
    for located in catalog.traits:
        trait = located.trait
        specs.append(
            dg.AssetSpec(
                trait_key(trait.name),
                deps=[*HIERARCHY_DEPS, ENTITY_TABLES[trait.entity]],
                description=trait.description or f"{trait.type} trait of {trait.entity}s.",
                group_name="traits",
                kinds={settings.engine(), "sql" if trait.type == "sql" else "ibis"},
                owners=["team:data-engineering"],
                tags={"stage": "traits", "entity": trait.entity, "trait_type": trait.type},
                metadata={"definition": dg.MetadataValue.md(_definition_markdown(located))},
            )
        )
    for entity, table in TRAIT_TABLES.items():
        specs.append(
            dg.AssetSpec(
                table,
                deps=[trait_key(t.trait.name) for t in catalog.traits_of(entity)]
                or [ENTITY_TABLES[entity]],
                description=f"One row per {entity} and snapshot hour, one column per {entity} "
                "trait.",
                group_name="traits",
                kinds={settings.engine()},
                owners=["team:data-engineering"],
                tags={"stage": "traits"},
            )
        )

    @dg.multi_asset(
        name="trait_snapshots",
        specs=specs,
        partitions_def=HOURLY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        retry_policy=TRANSIENT_RETRY,
        check_specs=[
            *(
                dg.AssetCheckSpec(
                    "one_row_per_entity",
                    asset=table,
                    blocking=True,
                    description=f"Exactly the {ENTITY_TABLES[entity]} of each hour, once each.",
                )
                for entity, table in TRAIT_TABLES.items()
            ),
            *(
                dg.AssetCheckSpec(
                    MATCHES_SCHEMA,
                    asset=table,
                    blocking=True,
                    description="The stored rows of the run's hours satisfy the pandera model "
                    "generated from the definitions.",
                )
                for table in TRAIT_TABLES.values()
            ),
        ],
    )
    def trait_snapshots(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Every trait as of the end of each hour of the partition window."""
        start, end = window_of(context)
        with warehouse.get_connection() as con:
            # (a trait's query failing on the hour's data, or hours without their hierarchy,
            # would fail the same way again)
            with not_retried(SqlTraitError, HierarchyNotBuiltError):
                if settings.on_spark():
                    from account_hierarchy.spark import stages  # (pyspark loads only here)

                    report = stages.traits(con, catalog, start, end)
                else:
                    report = build_traits(con, catalog, start, end, describe=True)
            last_hour = end - timedelta(hours=1)
            for located in catalog.traits:
                trait = located.trait
                table = TRAIT_TABLES[trait.entity]
                metadata = {}
                for column in located.columns:
                    prefix = "" if column == trait.name else f"{column}."
                    profile = profile_column(con, table, column, last_hour)
                    metadata |= {f"{prefix}{key}": value for key, value in profile.items()}
                compiled = report.get(trait.entity, {}).get("compiled", {}).get(trait.name, "")
                metadata["compiled_query"] = dg.MetadataValue.md(f"```sql\n{compiled}\n```")
                yield dg.MaterializeResult(asset_key=trait_key(trait.name), metadata=metadata)
            for entity, table in TRAIT_TABLES.items():
                yield from _table_results(con, entity, table, report, start, end)
                problems = recheck_stored(
                    con, table, start, end,
                    lambda rows, e=entity: validate_traits(con, rows, e, catalog),
                )  # fmt: skip
                yield schema_check(problems, table)

    return trait_snapshots


def _table_results(
    con: duckdb.DuckDBPyConnection,
    entity: str,
    table: str,
    report: dict,
    start: datetime,
    end: datetime,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    id_column = "account_id" if entity == "account" else "user_id"
    yield dg.MaterializeResult(
        asset_key=table,
        metadata={
            "dagster/row_count": report.get(entity, {}).get("rows", 0),
            "dagster/column_schema": table_schema(con, table),
            "preview": last_hour_preview(con, table, end - timedelta(hours=1)),
            **_tile_metadata(report),
            **_time_metadata(report.get(entity, {})),
        },
    )
    (mismatches,) = con.execute(
        f"""
        SELECT count(*) FROM (
            (SELECT snapshot_hour, {id_column} FROM {ENTITY_TABLES[entity]}
             WHERE snapshot_hour >= $start AND snapshot_hour < $end
             EXCEPT ALL
             SELECT snapshot_hour, {id_column} FROM {table}
             WHERE snapshot_hour >= $start AND snapshot_hour < $end)
            UNION ALL
            (SELECT snapshot_hour, {id_column} FROM {table}
             WHERE snapshot_hour >= $start AND snapshot_hour < $end
             EXCEPT ALL
             SELECT snapshot_hour, {id_column} FROM {ENTITY_TABLES[entity]}
             WHERE snapshot_hour >= $start AND snapshot_hour < $end))
        """,
        {"start": start, "end": end},
    ).fetchone()
    yield dg.AssetCheckResult(
        asset_key=table,
        check_name="one_row_per_entity",
        passed=mismatches == 0,
        description=f"{mismatches} rows of the window are missing (an entity of the snapshot "
        "without one) or extra (no such entity, or one twice)"
        if mismatches
        else None,
        metadata={"missing_or_extra_rows": mismatches},
    )


def _tile_metadata(report: dict) -> dict:
    """How many hours and days of trait tiles the run rebuilt, how many tiles there are, and
    for how many days it rebuilt the day partials."""
    tiles = report.get("tiles")
    if tiles is None:
        return {}
    return {
        "tile_hours_rebuilt": tiles.hours_rebuilt,
        "tile_days_rebuilt": tiles.days_rebuilt,
        "tile_rows": tiles.tiles,
        "day_partials_rebuilt": report["day_partials_rebuilt"],
    }


def _time_metadata(entity_report: dict) -> dict:
    """Seconds the entity's traits took, and of them the SQL traits (user SQL, run once per
    hour)."""
    if "seconds" not in entity_report:
        return {}
    return {
        "compute_seconds": round(entity_report["seconds"], 3),
        "sql_trait_seconds": round(entity_report["sql_trait_seconds"], 3),
    }


def _definition_markdown(located: LocatedTrait) -> str:
    body = located.trait.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    body = {"name": located.trait.name, "type": located.trait.type, **body}
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True)
    return f"Defined in `{located.file}` line {located.line}:\n\n```yaml\n{text}```"
