"""Snapshot benchmark: one hourly snapshot (users, accounts, memberships, the account tree,
every sample trait and every sample audience) of the scale's last hour, over its whole event
history, as the hourly run does it: the tiles (trait and hierarchy) of earlier hours exist, the
new hour's are built and its day's trait day tiles rebuilt.
DuckDB keeps within `AH_DUCKDB_MEMORY_LIMIT` (4GB unless set).

Against pandas computing the computed traits alone (`pandas_traits`) for the same hour, on
the events of a share of the users small enough to fit in memory; speeds are compared as
events per second.

    python -m benchmarks.snapshot [--events 10000000] [--format jsonl]
"""

from datetime import timedelta

from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.hierarchy.tiles import HIERARCHY_TILE_HOURS
from account_hierarchy.traits.tiles import TILE_DAYS, TILE_HOURS
from account_hierarchy.warehouse import connect
from benchmarks.common import figure_arguments, print_rows, row, timed, versus
from benchmarks.pipeline import (
    all_tiles,
    events_in,
    hierarchy_snapshots,
    pandas_baseline,
    traits_and_audiences,
)
from benchmarks.scale import DEFINITIONS, Scale

BASELINE_EVENTS = 2_000_000


def measure(scale: Scale) -> list[dict]:
    """Rows: building every tile once, the snapshot, and the pandas baseline."""
    catalog = load_catalog(DEFINITIONS)
    hour = scale.last_hour
    window = (hour, hour + timedelta(hours=1))
    with connect(scale.ingested()) as con:
        events = events_in(con)
        tiles_seconds, _ = timed(lambda: all_tiles(con, catalog))
        tiles = row("snapshot", "tiles of the whole history (once)", events, tiles_seconds)
        # The new hour's tiles are built, and its day's day tiles rebuilt.
        for hours_table in (TILE_HOURS, HIERARCHY_TILE_HOURS, TILE_DAYS):
            con.execute(
                f"DELETE FROM {hours_table} WHERE tile_hour = date_trunc('day', $h)"
                if hours_table == TILE_DAYS
                else f"DELETE FROM {hours_table} WHERE tile_hour = $h",
                {"h": hour},
            )

        def snapshot() -> None:
            hierarchy_snapshots(con, *window)
            traits_and_audiences(con, catalog, *window)

        seconds, _ = timed(snapshot)
        ours = row("snapshot", "one hourly snapshot, everything", events, seconds)
        baseline = pandas_baseline(con, catalog, "snapshot", [hour], BASELINE_EVENTS)
    return [tiles, *versus(ours, baseline)]


def main() -> None:
    args = figure_arguments(__doc__, 10_000_000)
    print_rows(measure(Scale(args.events, args.work_dir)), args.format)


if __name__ == "__main__":
    main()
