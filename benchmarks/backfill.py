"""Backfill benchmark: a single run of 30 days (720 hourly snapshots) of every sample trait
and audience over the scale's events, as a Dagster single-run backfill does it (queries
compiled once, tiles rolled up for each hour). The hierarchy snapshots of the 720 hours are
built first, and timed on their own row; the time the SQL traits took (the user's SQL over the
events, run for every hour: tiles cannot serve it) is shown on a row of its own.

Against pandas computing the computed traits alone for the backfill's last two hours, on a
share of the users; speeds are compared as event-hours (events x snapshot hours) per second.

    python -m benchmarks.backfill [--events 10000000] [--hours 720] [--format jsonl]
"""

from datetime import timedelta

from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.warehouse import connect
from benchmarks.common import figure_arguments, print_rows, row, timed, versus
from benchmarks.pipeline import (
    all_tiles,
    events_in,
    hierarchy_snapshots,
    last_hours,
    pandas_baseline,
    traits_and_audiences,
)
from benchmarks.scale import DAYS, DEFINITIONS, Scale

BASELINE_EVENTS = 1_000_000


def measure(scale: Scale, hours: int = DAYS * 24) -> list[dict]:
    """Rows: the hierarchy of every hour, the traits and audiences of every hour, pandas.
    `hours` (the last ones of the sample) shortens the backfill."""
    catalog = load_catalog(DEFINITIONS)
    end = scale.last_hour + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    with connect(scale.ingested()) as con:
        events = events_in(con)
        all_tiles(con, catalog)
        seconds, _ = timed(lambda: hierarchy_snapshots(con, start, end))
        hierarchy = row("backfill", f"hierarchy snapshots, {hours} hours", events * hours,
                        seconds)  # fmt: skip
        seconds, sql_seconds = timed(lambda: traits_and_audiences(con, catalog, start, end))
        ours = row("backfill", f"traits and audiences, {hours} hours", events * hours, seconds)
        sql_traits = row("backfill", f"of which SQL traits (user SQL, run for each of the {hours} "
                         "hours)", events * hours, sql_seconds)  # fmt: skip
        # (the last two hours of the backfill, which built their hierarchy snapshots)
        baseline_hours = last_hours(end, min(2, hours))
        baseline = pandas_baseline(con, catalog, "backfill", baseline_hours, BASELINE_EVENTS)
    return [hierarchy, *versus(ours, baseline), sql_traits]


def main() -> None:
    args = figure_arguments(__doc__, 10_000_000, hours=DAYS * 24)
    print_rows(measure(Scale(args.events, args.work_dir), args.hours), args.format)


if __name__ == "__main__":
    main()
