"""Dagster wiring of the hierarchy stage: users, accounts, memberships and the account tree,
built together in one op (one DuckDB connection) for a partition or a range of hours."""

from collections.abc import Iterator
from datetime import datetime, timedelta

import dagster as dg
import duckdb

from account_hierarchy import settings
from account_hierarchy.hierarchy import checks
from account_hierarchy.hierarchy.schemas import stored_trait_columns, validate_entities
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.metadata import MATCHES_SCHEMA, last_hour_preview, schema_check, table_schema
from account_hierarchy.partitions import HOURLY, partitions_start, window_of
from account_hierarchy.policies import TRANSIENT_RETRY, not_retried
from account_hierarchy.resources import Warehouse
from account_hierarchy.validation import recheck_stored
from account_hierarchy.warehouse import EventsNotLoadedError, require_events_loaded

# In dependency order: Dagster needs a multi-asset's outputs in topological order.
TABLE_KEYS = {
    "account_memberships": ("user_id", "account_id"),
    "users": ("user_id",),
    "accounts": ("account_id",),
    "account_hierarchy": ("account_id",),
}
DESCRIPTIONS = {
    "users": "One row per userId and snapshot hour: latest identify traits (typed columns plus "
    "a `traits` JSON), first and last seen.",
    "accounts": "One row per account (groupId) and snapshot hour: latest group traits, first "
    "and last group call, number of associated users, parent account.",
    "account_memberships": "User-to-account edges from group calls (many-to-many) per snapshot "
    "hour, with first and last association time.",
    "account_hierarchy": "Per account and snapshot hour: parent, ultimate parent, depth and "
    "path; cycle members and accounts whose parent never appeared are flagged.",
}
DEPS = {
    "users": ["raw_events"],
    "account_memberships": ["raw_events"],
    "accounts": ["raw_events", "account_memberships"],
    "account_hierarchy": ["accounts"],
}


def _check(asset: str, name: str, description: str, *, blocking: bool = True) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description)


CHECK_SPECS = [
    *(
        _check(table, "one_row_per_id", f"One row per {', '.join(keys)} and snapshot hour.")
        for table, keys in TABLE_KEYS.items()
    ),
    *(
        _check(
            table,
            MATCHES_SCHEMA,
            "The stored snapshots of the run's hours satisfy the pandera model.",
        )
        for table in TABLE_KEYS
    ),
    _check(
        "account_memberships",
        "memberships_reference_known_entities",
        "Every membership points to a user in `users` and an account in `accounts`.",
    ),
    _check(
        "account_hierarchy",
        "no_unflagged_self_ancestors",
        "No account is its own ancestor, except flagged cycle members.",
    ),
    _check(
        "account_hierarchy",
        "follows_parents",
        "Each account's row follows from its parent's row of the same hour (depth one more, "
        "same root, path extended; cycle members and missing parents flagged), checked one link "
        "at a time; every account of `accounts` has a row.",
    ),
    _check(
        "account_hierarchy",
        "no_parent_cycles",
        "No account's parents lead back to itself (cycle members are reported).",
        blocking=False,
    ),
    _check(
        "account_hierarchy",
        "parents_known",
        "Every parent account has sent a group call (missing parents are reported).",
        blocking=False,
    ),
]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            table,
            deps=DEPS[table],
            description=DESCRIPTIONS[table],
            group_name="hierarchy",
            kinds={settings.engine()},
            owners=["team:data-engineering"],
            tags={"stage": "hierarchy"},
        )
        for table in TABLE_KEYS
    ],
    partitions_def=HOURLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    retry_policy=TRANSIENT_RETRY,
    check_specs=CHECK_SPECS,
)
def hierarchy_snapshots(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Snapshots as of the end of each hour (events with timestamp before that instant)."""
    start, end = window_of(context)
    with warehouse.get_connection() as con:
        with not_retried(EventsNotLoadedError):
            require_events_loaded(con, partitions_start(), end)
            if settings.on_spark():
                from account_hierarchy.spark import stages  # (pyspark loads only here)

                caches = {}  # (the tiles and partials are the DuckDB engine's caches)
                counts = stages.hierarchy(con, start, end, settings.parent_trait())
            else:
                caches, counts = _build_on_duckdb(con, start, end)
        cycles = checks.flagged_accounts(con, "in_cycle", start, end)
        missing = checks.flagged_accounts(con, "parent_missing", start, end)
        last_hour = end - timedelta(hours=1)
        last_cycles, last_missing = (checks.flagged_accounts(con, flag, last_hour, end).count
                                     for flag in ("in_cycle", "parent_missing"))  # fmt: skip
        (max_depth,) = con.execute(
            "SELECT coalesce(max(depth), 0) FROM account_hierarchy WHERE snapshot_hour = $hour",
            {"hour": last_hour},
        ).fetchone()
        for table, keys in TABLE_KEYS.items():
            metadata = {
                "dagster/row_count": counts[table],
                **caches,
                "dagster/column_schema": table_schema(con, table),
                "preview": last_hour_preview(
                    con,
                    table,
                    end - timedelta(hours=1),
                    ("traits",) if table in ("users", "accounts") else (),
                ),
            }
            if table == "account_hierarchy":
                metadata |= {
                    "cycle_members": last_cycles,  # (all three at the last hour)
                    "missing_parents": last_missing,
                    "max_depth": max_depth,
                }
            yield dg.MaterializeResult(asset_key=table, metadata=metadata)
            repeated = checks.repeated_ids(con, table, keys, start, end)
            yield _result(table, "one_row_per_id", repeated)
            problems = recheck_stored(
                con, table, start, end,
                lambda rows, t=table: validate_entities(con, t, rows, stored_trait_columns(con, t)),
            )  # fmt: skip
            yield schema_check(problems, table)
        yield _result(
            "account_memberships",
            "memberships_reference_known_entities",
            checks.dangling_memberships(con, start, end),
        )
        yield _result(
            "account_hierarchy",
            "no_unflagged_self_ancestors",
            checks.unflagged_self_ancestors(con, start, end),
        )
        yield _result(
            "account_hierarchy",
            "follows_parents",
            checks.hierarchy_not_following_parents(con, start, end),
        )
    yield _result("account_hierarchy", "no_parent_cycles", cycles, dg.AssetCheckSeverity.WARN)
    yield _result("account_hierarchy", "parents_known", missing, dg.AssetCheckSeverity.WARN)


def _build_on_duckdb(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    """The four tables built in the warehouse in one transaction: what the tile caches did
    (hour tiles and day partials rebuilt, as metadata), and each table's row count."""
    con.begin()
    built = build_snapshots(con, start, end, settings.parent_trait())
    con.commit()
    caches = {"tile_hours_rebuilt": built.tile_hours_rebuilt,
              "day_partials_rebuilt": built.day_partials_rebuilt}  # fmt: skip
    return caches, built.rows


def _result(
    asset: str,
    name: str,
    finding: checks.Finding,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    description = None
    if finding.count:
        shown = len(finding.examples)
        description = (f"{finding.count} offending rows in the window, the first {shown} in "
                       f"`examples` ({', '.join(finding.columns)})")  # fmt: skip
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=finding.count == 0,
        severity=severity,
        description=description,
        metadata={"offending": finding.count, "examples": "\n".join(finding.examples) or "none"},
    )
