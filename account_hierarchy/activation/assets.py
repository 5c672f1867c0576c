"""Dagster wiring of the activation stage: the hourly `activation_diffs` and one delivery asset
per destination, built from the definitions."""

import dagster as dg

from account_hierarchy import settings
from account_hierarchy.activation.deliver import SyncReport, sync
from account_hierarchy.activation.diffs import build_diffs, require_inputs, synced
from account_hierarchy.activation.plan import NothingToSyncError
from account_hierarchy.activation.schemas import validate_diffs
from account_hierarchy.activation.state import held_count, synced_hour
from account_hierarchy.activation.transport import DestinationUnavailableError, sender_for
from account_hierarchy.audiences.assets import audience_key
from account_hierarchy.audiences.evaluate import NotComputedError
from account_hierarchy.catalog.loader import Catalog, LocatedDestination
from account_hierarchy.metadata import MATCHES_SCHEMA, markdown_preview, schema_check, table_schema
from account_hierarchy.partitions import HOURLY, window_of
from account_hierarchy.policies import TRANSIENT_RETRY, not_retried
from account_hierarchy.resources import Warehouse
from account_hierarchy.traits.assets import trait_key
from account_hierarchy.validation import recheck_stored


def _trait_asset(catalog: Catalog, column: str) -> dg.AssetKey:
    columns = {**catalog.trait_columns("account"), **catalog.trait_columns("user")}
    return trait_key(columns[column].trait.name)


def build_diffs_asset(catalog: Catalog) -> dg.AssetsDefinition:
    """The `activation_diffs` asset."""
    audiences, traits = synced(catalog)
    # (hour to hour: the diffs also read the previous hour, but a mapping saying so would make
    # Dagster add the hour after a backfilled range to the backfill, with no inputs there)
    deps = [audience_key(a) for a in audiences]
    deps += sorted({_trait_asset(catalog, t) for t in traits}, key=lambda k: k.to_user_string())

    @dg.asset(
        deps=deps,
        partitions_def=HOURLY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="activation",
        kinds={settings.engine()},
        owners=["team:marketing-ops"],
        tags={"stage": "activation"},
        pool="duckdb",
        check_specs=[
            dg.AssetCheckSpec(
                MATCHES_SCHEMA,
                asset="activation_diffs",
                blocking=True,
                description="The stored diffs of the run's hours satisfy the pandera model.",
            )
        ],
        retry_policy=TRANSIENT_RETRY,
    )
    def activation_diffs(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        """Per hour, who entered and exited each synced audience since the previous hour, and
        which synced traits changed value."""
        start, end = window_of(context)
        with warehouse.get_connection() as con:
            with not_retried(NotComputedError):
                require_inputs(con, catalog, start, end)
                if settings.on_spark():
                    from account_hierarchy.spark import stages  # (pyspark loads only here)

                    counts = stages.diffs(con, catalog, start, end)
                else:
                    counts = build_diffs(con, catalog, start, end)
            preview = con.execute(
                "SELECT * FROM activation_diffs WHERE snapshot_hour >= $start "
                "AND snapshot_hour < $end ORDER BY ALL LIMIT 10",
                {"start": start, "end": end},
            ).df()
            problems = recheck_stored(
                con, "activation_diffs", start, end, lambda rows: validate_diffs(con, rows)
            )
            schema = table_schema(con, "activation_diffs")
        return dg.MaterializeResult(
            check_results=[schema_check(problems)],
            metadata={
                "dagster/row_count": sum(counts.values()),
                **counts,
                "dagster/column_schema": schema,
                "preview": dg.MetadataValue.md(markdown_preview(preview)),
            },
        )

    return activation_diffs


def build_destination_asset(located: LocatedDestination, catalog: Catalog) -> dg.AssetsDefinition:
    """The delivery asset of one destination."""
    destination = located.destination
    deps = [dg.AssetKey("activation_diffs")]
    deps += [audience_key(a) for a in destination.audiences]
    deps += sorted({_trait_asset(catalog, t) for t in destination.traits},
                   key=lambda k: k.to_user_string())  # fmt: skip

    @dg.asset(
        key=dg.AssetKey(["destinations", destination.name]),
        deps=deps,
        description=destination.description
        or f"Delivers audience and trait changes to {destination.name} ({destination.type}).",
        partitions_def=HOURLY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="activation",
        kinds={"http" if destination.type == "http" else "json", "segment"},
        owners=["team:marketing-ops"],
        tags={"stage": "activation", "destination_type": destination.type},
        pool="duckdb",
        retry_policy=TRANSIENT_RETRY,
        metadata={"defined_in": f"{located.file}:{located.line}"},
    )
    def deliver(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        window_of(context)  # (it delivers the newest snapshot, whatever the hours; bad ones fail)
        waiting = {}
        with warehouse.get_connection() as con:
            try:
                report = sync(con, catalog, destination, sender_for(destination))
            except DestinationUnavailableError as error:
                raise dg.Failure(description=str(error)) from None
            except NothingToSyncError as error:
                # Its inputs have no snapshot yet, or lag behind the one it holds: nothing is
                # sent (no failure: a later run delivers), and the metadata says what it awaits
                # and which snapshot it holds.
                context.log.warning(str(error))
                report, waiting = SyncReport(), {"waiting_for": str(error)}
                report.snapshot_hour = synced_hour(con, destination.name)
            held = held_count(con, destination.name)
        context.log.info(f"{destination.name}: {report}")
        hour = report.snapshot_hour
        counts = {"items": report.items, "messages": report.messages, "accepted": report.accepted,
                  "rejected": report.rejected, "oversized": report.oversized,
                  "batches": report.batches, "dagster/row_count": held}  # fmt: skip
        shown_hour = hour.isoformat() if hour else "none yet"
        return dg.MaterializeResult(metadata={"snapshot_hour": shown_hour, **counts} | waiting)

    return deliver


def build_activation_assets(catalog: Catalog) -> list[dg.AssetsDefinition]:
    """`activation_diffs` and one asset per destination (nothing without destinations)."""
    if not catalog.destinations:
        return []
    return [build_diffs_asset(catalog)] + [
        build_destination_asset(located, catalog) for located in catalog.destinations
    ]
