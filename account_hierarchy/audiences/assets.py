"""Dagster wiring of the audiences stage: one asset per audience, built from the definitions,
depending on the traits and audiences it uses."""

import dagster as dg
import yaml

from account_hierarchy import settings
from account_hierarchy.audiences.describe import describe
from account_hierarchy.audiences.evaluate import NotComputedError
from account_hierarchy.audiences.memberships import build_audience
from account_hierarchy.audiences.schemas import validate_memberships
from account_hierarchy.catalog.audience_checks import walk
from account_hierarchy.catalog.audience_models import (
    AccountAudienceReference,
    AnyAccount,
    AudienceReference,
    CustomTraitTest,
    Performed,
    Quantified,
    TraitTest,
)
from account_hierarchy.catalog.loader import Catalog, LocatedAudience
from account_hierarchy.metadata import MATCHES_SCHEMA, markdown_preview, schema_check, table_schema
from account_hierarchy.partitions import HOURLY, window_of
from account_hierarchy.policies import AUDIENCE_FRESHNESS, TRANSIENT_RETRY, not_retried
from account_hierarchy.resources import Warehouse
from account_hierarchy.traits.assets import trait_key
from account_hierarchy.validation import recheck_stored

ENTITY_TABLES = {"account": "accounts", "user": "users"}


def audience_key(name: str) -> dg.AssetKey:
    """The asset key of one audience."""
    return dg.AssetKey(["audiences", name])


def audience_deps(located: LocatedAudience, catalog: Catalog) -> list[dg.AssetKey]:
    """The traits, tables and audiences an audience reads, for the UI's lineage."""
    audience = located.audience
    deps = {dg.AssetKey(ENTITY_TABLES[audience.entity])}
    for condition, entity in walk(audience.where, audience.entity):
        if isinstance(condition, TraitTest):
            deps.add(trait_key(catalog.trait_columns(entity)[condition.trait].trait.name))
        elif isinstance(condition, CustomTraitTest):
            deps.add(dg.AssetKey(ENTITY_TABLES[entity]))
        elif isinstance(condition, AudienceReference):
            deps.add(audience_key(condition.audience))
        elif isinstance(condition, AccountAudienceReference):
            deps |= {audience_key(condition.in_account_audience),
                     dg.AssetKey("account_memberships")}  # fmt: skip
        elif isinstance(condition, AnyAccount | Quantified):
            deps.add(dg.AssetKey("account_memberships"))
        elif isinstance(condition, Performed):
            deps.add(dg.AssetKey("raw_events"))
    return sorted(deps, key=lambda key: key.to_user_string())


def build_audience_asset(located: LocatedAudience, catalog: Catalog) -> dg.AssetsDefinition:
    """The asset of one audience."""
    audience = located.audience
    definition = yaml.safe_dump(
        audience.model_dump(mode="json", exclude_defaults=True, by_alias=True, exclude_none=True),
        sort_keys=False,
    )

    @dg.asset(
        key=audience_key(audience.name),
        deps=audience_deps(located, catalog),
        description=audience.description or f"{audience.entity.title()} audience.",
        group_name="audiences",
        kinds={settings.engine(), "ibis"},
        owners=["team:marketing-ops"],
        tags={"stage": "audiences", "entity": audience.entity},
        partitions_def=HOURLY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        retry_policy=TRANSIENT_RETRY,
        freshness_policy=AUDIENCE_FRESHNESS,
        metadata={
            "definition": dg.MetadataValue.md(
                f"Defined in `{located.file}` line {located.line}:\n\n```yaml\n{definition}```"
            ),
            "condition": describe(audience.where),
            "table": "audience_memberships",
        },
        check_specs=[
            dg.AssetCheckSpec(
                MATCHES_SCHEMA,
                asset=audience_key(audience.name),
                description="The stored memberships of the run's hours satisfy the pandera model.",
                blocking=True,
            ),
            dg.AssetCheckSpec(
                "members_exist",
                asset=audience_key(audience.name),
                description=f"Every member is a {audience.entity} of the hour's snapshot.",
                blocking=True,
            ),
        ],
    )
    def audience_asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        start, end = window_of(context)
        with warehouse.get_connection() as con:
            # (inputs not materialized for the run's hours cannot appear between retries)
            with not_retried(NotComputedError):
                if settings.on_spark():
                    from account_hierarchy.spark import stages  # (pyspark loads only here)

                    report = stages.audience(con, catalog, audience.name, start, end)
                else:
                    report = build_audience(con, catalog, audience.name, start, end)
            last = max(report.sizes)
            preview = con.execute(
                "SELECT entity_id, reason FROM audience_memberships WHERE audience = $name "
                "AND snapshot_hour = $hour ORDER BY entity_id LIMIT 10",
                {"name": audience.name, "hour": last},
            ).df()
            (strangers,) = con.execute(
                f"SELECT count(*) FROM audience_memberships AS m ANTI JOIN "
                f"{ENTITY_TABLES[audience.entity]} AS e ON e.snapshot_hour = m.snapshot_hour "
                f"AND e.{audience.entity}_id = m.entity_id WHERE m.audience = $name "
                "AND m.snapshot_hour >= $start AND m.snapshot_hour < $end",
                {"name": audience.name, "start": start, "end": end},
            ).fetchone()
            problems = recheck_stored(
                con, "audience_memberships", start, end,
                lambda rows: validate_memberships(con, rows), extra={"audience": audience.name},
            )  # fmt: skip
            schema = table_schema(con, "audience_memberships")
        return dg.MaterializeResult(
            metadata={
                "size": report.sizes[last],
                "dagster/row_count": sum(report.sizes.values()),
                "dagster/column_schema": schema,
                "entered": report.entered,
                "exited": report.exited,
                "tile_hours_rebuilt": report.tile_hours_rebuilt,
                "snapshot_hour": last.isoformat(),
                "compiled_query": dg.MetadataValue.md(f"```sql\n{report.compiled}\n```"),
                "preview": dg.MetadataValue.md(markdown_preview(preview)),
            },
            check_results=[
                schema_check(problems),
                dg.AssetCheckResult(
                    check_name="members_exist",
                    passed=strangers == 0,
                    description=f"{strangers} members are not in their hour's snapshot of "
                    f"{ENTITY_TABLES[audience.entity]}"
                    if strangers
                    else None,
                    metadata={"unknown_members": strangers},
                ),
            ],
        )

    return audience_asset


def build_audience_assets(catalog: Catalog) -> list[dg.AssetsDefinition]:
    """One asset per audience of the catalog."""
    return [build_audience_asset(located, catalog) for located in catalog.audiences]
