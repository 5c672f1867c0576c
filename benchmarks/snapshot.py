"""Snapshot benchmark: one hourly snapshot (users, accounts, memberships, the account tree,
every sample trait and every sample audience) of the scale's last hour, over its whole event
history, as the hourly run does it: the tiles (trait and hierarchy) of earlier hours exist, the
new hour's are built. Measured for three hours of the last day: 21:00 as the day's first run,
twice: without the daily job, so that it builds the day's day partials (trait and hierarchy)
itself, and after the daily job built them (the job timed on its own row); 22:00, an ordinary
hour; and the last hour (23:00), whose run also builds its day's trait day tiles, as every
day's last run does.
DuckDB keeps within `AH_DUCKDB_MEMORY_LIMIT` (4GB unless set).

Against pandas computing the computed traits alone (`pandas_traits`) for the same hour, on
the events of a share of the users small enough to fit in memory; speeds are compared as
events per second.

    python -m benchmarks.snapshot [--events 10000000] [--format jsonl]
"""

from datetime import datetime, timedelta

import duckdb

from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.day_partials import prepare_day_partials
from account_hierarchy.hierarchy.tiles import HIERARCHY_PARTIALS_VERSION, HIERARCHY_TILE_HOURS
from account_hierarchy.traits.tiles import PARTIALS_VERSION, TILE_DAYS, TILE_HOURS
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
    """Rows: building every tile once; the snapshots of the day's first run, without the
    daily job (so it builds the day's day partials) and after it (the job's own row); of an
    ordinary hour; and of the last hour, which ends a day (so its run also builds that day's
    day tiles); the pandas baseline."""
    catalog = load_catalog(DEFINITIONS)
    last = scale.last_hour
    first, day = last - timedelta(hours=2), last.replace(hour=0)
    with connect(scale.ingested()) as con:
        events = events_in(con)
        tiles_seconds, _ = timed(lambda: all_tiles(con, catalog))
        tiles = row("snapshot", "tiles of the whole history (once)", events, tiles_seconds)
        rows, snapshots = [tiles], []
        for hour, what in ((first, "the day's first run, without the daily job (it builds "
                                   "the day's day partials)"),
                           (first, "the day's first run, after the daily job"),
                           (last - timedelta(hours=1), "an ordinary hour"),
                           (last, "the hour ending a day (its run also builds the day's day "
                                  "tiles)")):  # fmt: skip
            if hour == first:  # (the day's partials are built again)
                for version in (PARTIALS_VERSION, HIERARCHY_PARTIALS_VERSION):
                    con.execute(f"DROP TABLE IF EXISTS {version}")
            if "after the daily job" in what:  # (which runs before the hour's events land)
                seconds, _ = timed(lambda: prepare_day_partials(con, catalog, day))
                rows.append(row("snapshot", "the daily job: the day's day partials, off the "
                                "hourly path", events, seconds))  # fmt: skip
            _new_hour(con, hour)
            window = (hour, hour + timedelta(hours=1))

            def snapshot(window: tuple = window) -> None:
                hierarchy_snapshots(con, *window)
                traits_and_audiences(con, catalog, *window)

            seconds, _ = timed(snapshot)
            snapshots.append(row("snapshot", f"one hourly snapshot, everything, {what}", events,
                                 seconds))  # fmt: skip
        baseline = pandas_baseline(con, catalog, "snapshot", [last], BASELINE_EVENTS)
    for ours in snapshots:
        versus(ours, baseline)
    return [*rows, *snapshots, baseline]


def _new_hour(con: duckdb.DuckDBPyConnection, hour: datetime) -> None:
    """Make `hour` look new to the tile caches: its tiles are built again, and its day's day
    tiles too when a run needs them (one ending the day)."""
    for hours_table in (TILE_HOURS, HIERARCHY_TILE_HOURS):
        con.execute(f"DELETE FROM {hours_table} WHERE tile_hour = $h", {"h": hour})
    con.execute(f"DELETE FROM {TILE_DAYS} WHERE tile_hour = date_trunc('day', $h)", {"h": hour})


def main() -> None:
    args = figure_arguments(__doc__, 10_000_000)
    print_rows(measure(Scale(args.events, args.work_dir)), args.format)


if __name__ == "__main__":
    main()
