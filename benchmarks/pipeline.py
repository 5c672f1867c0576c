"""The hourly pipeline after ingestion, as plain calls (what the Dagster assets run), and the
pandas baseline's inputs."""

from datetime import datetime, timedelta

import duckdb
import pandas as pd

from account_hierarchy.audiences.memberships import build_audience
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.catalog.models import ComputedTrait, SqlTrait
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.hierarchy.tiles import refresh_hierarchy_tiles
from account_hierarchy.traits.compute import build_traits, tiled_traits
from account_hierarchy.traits.tiles import refresh_tiles
from benchmarks import pandas_traits
from benchmarks.common import row, timed


def all_tiles(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> None:
    """Bring the trait and hierarchy tiles of every hour up to date."""
    refresh_tiles(con, tiled_traits(catalog))
    refresh_hierarchy_tiles(con)


def hierarchy_snapshots(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> None:
    """Users, accounts, memberships and the account tree for every hour of `[start, end)`."""
    build_snapshots(con, start, end, "parent_account_id")


def traits_and_audiences(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, start: datetime, end: datetime
) -> float:
    """Every trait, then every audience, for every hour of `[start, end)`; return the seconds
    spent running SQL traits (user SQL, once per hour)."""
    report = build_traits(con, catalog, start, end)
    for located in catalog.audiences:
        build_audience(con, catalog, located.audience.name, start, end)
    return sum(report[entity]["sql_trait_seconds"] for entity in ("account", "user"))


def pandas_baseline(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, figure: str, hours: list[datetime],
    most_events: int,
) -> dict:  # fmt: skip
    """The computed traits of `hours` with pandas (`pandas_traits`), on the events of every
    k-th user (and k-th anonymous visitor, so that the share is a fair sample of all events)
    so that at most `most_events` events are in memory; one row, counting event-hours
    (events x hours) like the rows it is compared with."""
    (events,) = con.execute("SELECT count(*) FROM raw_events").fetchone()
    share = max(1, -(-events // most_events))
    frame = con.execute(
        "SELECT * FROM raw_events WHERE hash(coalesce(user_id, anonymous_id)) % $k = 0",
        {"k": share},
    ).df()
    traits = computed_traits(catalog)

    def compute() -> None:
        prepared = pandas_traits.prepare(frame)
        for hour in hours:
            pandas_values(con, prepared, traits, hour)

    seconds, _ = timed(compute)
    what = f"pandas, computed traits, 1 in {share} users, {len(hours)} hour(s)"
    return row(figure, what, len(frame) * len(hours), seconds)


def computed_traits(catalog: Catalog) -> list[ComputedTrait]:
    """The catalog's traits that pandas computes (all but SQL traits)."""
    return [t.trait for t in catalog.traits if not isinstance(t.trait, SqlTrait)]


def pandas_values(
    con: duckdb.DuckDBPyConnection, prepared: pd.DataFrame, traits: list[ComputedTrait],
    hour: datetime,
) -> dict[str, pd.Series]:  # fmt: skip
    """`pandas_traits.compute` for `hour` over the `prepared` events, with that hour's
    memberships and account tree read from the warehouse."""
    at = {"h": hour}
    memberships = con.execute(
        "SELECT user_id, account_id FROM account_memberships WHERE snapshot_hour = $h", at
    ).df()
    tree = con.execute(
        "SELECT account_id, path FROM account_hierarchy WHERE snapshot_hour = $h", at
    ).df()
    return pandas_traits.compute(prepared, memberships, tree, traits, hour)


def last_hours(end: datetime, count: int) -> list[datetime]:
    """The `count` hours before `end`."""
    return [end - timedelta(hours=count - i) for i in range(count)]


def events_in(con: duckdb.DuckDBPyConnection) -> int:
    """How many events the warehouse holds."""
    return con.execute("SELECT count(*) FROM raw_events").fetchone()[0]
