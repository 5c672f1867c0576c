"""Trait benchmark: one snapshot hour of every computed sample trait over the whole event
history, against the same definitions computed with pandas (`benchmarks/pandas_traits.py`) on
frames already in memory. Reports events scanned per second.

    python -m benchmarks.traits [--users 15000] [--days 30] [--work-dir benchmarks/.work]
"""

import argparse
from datetime import datetime, timedelta
from pathlib import Path

from account_hierarchy.catalog.loader import Catalog, load_catalog
from account_hierarchy.catalog.models import SqlTrait
from account_hierarchy.hierarchy.entities import build_accounts, build_memberships, build_users
from account_hierarchy.hierarchy.tree import build_hierarchy
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.sample.generator import DEFAULT_START, generate_sample
from account_hierarchy.traits.compute import build_traits
from account_hierarchy.warehouse import connect
from benchmarks import pandas_traits
from benchmarks.common import peak_rss_mib, print_table, timed

DEFINITIONS = Path(__file__).parent.parent / "data" / "definitions"


def prepare_warehouse(work_dir: Path, users: int, days: int) -> tuple[Path, datetime]:
    """A warehouse with the sample's events and the hierarchy of its last hour (reused)."""
    folder = work_dir / f"traits-{users}-{days}"
    warehouse = folder / "warehouse.duckdb"
    hour = DEFAULT_START.replace(tzinfo=None) + timedelta(days=days) - timedelta(hours=1)
    if warehouse.exists():
        return warehouse, hour
    generate_sample(folder / "landing", accounts=max(20, users // 10), users=users, days=days)
    with connect(warehouse) as con:
        ingest_window(con, folder / "landing", datetime(2020, 1, 1), datetime(2030, 1, 1),
                      datetime(2020, 1, 1))  # fmt: skip
        window = (hour, hour + timedelta(hours=1))
        build_memberships(con, *window)
        build_users(con, *window)
        build_accounts(con, *window, "parent_account_id")
        build_hierarchy(con, *window)
    return warehouse, hour


def computed_only(catalog: Catalog) -> Catalog:
    """The catalog without its SQL traits (pandas has no SQL engine to compare with)."""
    return Catalog(catalog.folder, [t for t in catalog.traits if not isinstance(t.trait, SqlTrait)])


def run(users: int, days: int, work_dir: Path) -> list[dict]:
    """Measure both and return the table rows."""
    warehouse, hour = prepare_warehouse(work_dir, users, days)
    catalog = computed_only(load_catalog(DEFINITIONS))
    with connect(warehouse) as con:
        (events,) = con.execute("SELECT count(*) FROM raw_events").fetchone()
        seconds, _ = timed(lambda: build_traits(con, catalog, hour, hour + timedelta(hours=1)))
        frames = {
            "events": con.execute("SELECT * FROM raw_events").df(),
            "memberships": con.execute(
                "SELECT user_id, account_id FROM account_memberships WHERE snapshot_hour = $h",
                {"h": hour},
            ).df(),
            "hierarchy": con.execute(
                "SELECT account_id, path FROM account_hierarchy WHERE snapshot_hour = $h",
                {"h": hour},
            ).df(),
        }
    ours = {"what": "account_hierarchy (DuckDB via Ibis)", "events": events, "seconds": seconds,
            "events/s": events / seconds, "peak MiB": peak_rss_mib()}  # fmt: skip

    def baseline():
        prepared = pandas_traits.prepare(frames["events"])
        return pandas_traits.compute(
            prepared, frames["memberships"], frames["hierarchy"],
            [t.trait for t in catalog.traits], hour,
        )  # fmt: skip

    baseline_seconds, expected = timed(baseline)
    _check_same(warehouse, hour, expected["logins_past_30_days"])
    theirs = {"what": "pandas, same definitions", "events": events, "seconds": baseline_seconds,
              "events/s": events / baseline_seconds, "peak MiB": peak_rss_mib()}  # fmt: skip
    ours["vs baseline"] = baseline_seconds / seconds
    theirs["vs baseline"] = 1.0
    return [ours, theirs]


def _check_same(warehouse: Path, hour: datetime, expected) -> None:
    """Both implementations must agree (on one trait, as a sanity check of the baseline)."""
    with connect(warehouse, read_only=True) as con:
        ours = dict(con.execute(
            "SELECT account_id, logins_past_30_days FROM account_traits WHERE snapshot_hour = $h",
            {"h": hour},
        ).fetchall())  # fmt: skip
    theirs = {account: int(expected.get(account, 0)) for account in ours}
    if ours != theirs:
        raise AssertionError("pandas and account_hierarchy disagree on logins_past_30_days")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=15000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/.work"))
    args = parser.parse_args()
    print_table(run(args.users, args.days, args.work_dir))


if __name__ == "__main__":
    main()
