"""Hierarchy snapshots built from hourly tiles kept up to date across ingests equal snapshots
built in a fresh warehouse, and `raw_event_hours` always describes `raw_events`."""

import shutil
from datetime import datetime, timedelta

import pytest

from account_hierarchy import tile_cache
from account_hierarchy.hierarchy import snapshots as snapshots_module
from account_hierarchy.hierarchy.tiles import refresh_hierarchy_partials, refresh_hierarchy_tiles
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.warehouse import EVENT_HOUR_VERSIONS_SQL, connect
from account_hierarchy_tests.conftest import PARTITIONS_START, write_lines
from account_hierarchy_tests.test_trait_tiles import snapshots, table_rows

START = datetime(2026, 10, 1)
TABLES = ("users", "accounts", "account_memberships", "account_hierarchy")
TILE_TABLES = ("hierarchy_seen_tiles", "custom_trait_tiles", "custom_trait_key_tiles")
HOURS = "SELECT DISTINCT event_hour FROM raw_events"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hierarchy_tiles") / "sample"
    generate_sample(folder, seed=11, accounts=20, users=120, days=2)
    return folder


# Late calls for 16:00, landed after that hour's tiles were built: a new trait value, a new
# membership and a new account.
LATE_CALLS = [
    {"type": "identify", "messageId": "late-1", "userId": "user_00030",
     "timestamp": "2026-10-01T16:30:00Z", "traits": {"title": "Late Title", "late": True}},
    {"type": "group", "messageId": "late-2", "userId": "user_00030", "groupId": "acct_late",
     "timestamp": "2026-10-01T16:40:00Z", "traits": {"plan": "late", "employees": 2.5}},
]  # fmt: skip


def event_hours_match(con) -> bool:
    stored = con.execute("SELECT * FROM raw_event_hours ORDER BY 1").fetchall()
    computed = con.execute(
        f"FROM ({EVENT_HOUR_VERSIONS_SQL.format(table='raw_events')}) ORDER BY 1"
    ).fetchall()
    return stored == computed


@pytest.mark.parametrize(
    "hours",
    [
        (datetime(2026, 10, 1, 15), datetime(2026, 10, 1, 20)),
        # (the day partials of the 2nd hold the late calls' hour)
        (datetime(2026, 10, 2, 3), datetime(2026, 10, 2, 6)),
    ],
)
def test_snapshots_from_refreshed_tiles_equal_a_fresh_build(sample, tmp_path, hours):
    landing, day = tmp_path / "landing", hours[0].replace(hour=0)
    shutil.copytree(sample, landing)
    con = connect(tmp_path / "incremental.duckdb")
    ingest_window(con, landing, START, START + timedelta(days=2), PARTITIONS_START)
    assert event_hours_match(con)
    snapshots(con, *hours)
    assert refresh_hierarchy_tiles(con) == 0
    assert not refresh_hierarchy_partials(con, day)  # built by the snapshots, still current
    known = "SELECT * FROM hierarchy_tile_hours ORDER BY 1"
    before = con.execute(known).fetchall()
    write_lines(landing / "late.ndjson", LATE_CALLS)
    ingest_window(con, landing, START, START + timedelta(days=2), PARTITIONS_START)
    ingest_window(con, landing, START, START + timedelta(hours=17), PARTITIONS_START)  # re-run
    assert event_hours_match(con)
    assert refresh_hierarchy_tiles(con) == 1
    changed = set(con.execute(known).fetchall()) - set(before)
    assert [row[0] for row in changed] == [datetime(2026, 10, 1, 16)]
    assert refresh_hierarchy_partials(con, day) == (day > datetime(2026, 10, 1, 16))
    snapshots(con, *hours)

    fresh = connect(tmp_path / "fresh.duckdb")
    ingest_window(fresh, landing, START, START + timedelta(days=2), PARTITIONS_START)
    snapshots(fresh, *hours)
    for table in TABLES:
        rows = table_rows(con, table)
        assert rows and rows == table_rows(fresh, table), table


def test_event_hours_are_created_for_a_warehouse_made_before_them(sample, tmp_path):
    con = connect(tmp_path / "old.duckdb")
    ingest_window(con, sample, START, START + timedelta(days=1), PARTITIONS_START)
    con.execute("DROP TABLE raw_event_hours")
    assert refresh_hierarchy_tiles(con) > 0
    assert event_hours_match(con)


def test_tiles_built_a_few_hours_at_a_time_equal_tiles_built_at_once(sample, tmp_path, monkeypatch):
    tiles = []
    for name, per_batch in (("once", 10**9), ("batched", 40)):
        monkeypatch.setattr(tile_cache, "EVENTS_PER_BATCH", per_batch)
        con = connect(tmp_path / f"{name}.duckdb")
        ingest_window(con, sample, START, START + timedelta(days=2), PARTITIONS_START)
        assert refresh_hierarchy_tiles(con) == len(con.execute(HOURS).fetchall())
        tiles.append([table_rows(con, table) for table in TILE_TABLES])
    assert tiles[0] == tiles[1]


def test_batches_hold_about_the_set_number_of_events(monkeypatch):
    monkeypatch.setattr(tile_cache, "EVENTS_PER_BATCH", 10)
    hours = [datetime(2026, 10, 1, h) for h in range(5)]
    counts = list(zip(hours, [4, 5, 30, 0, 2], strict=True))
    assert list(tile_cache._batches(counts)) == [hours[:2], hours[2:3], hours[3:]]


def test_a_window_built_a_few_hours_at_a_time_equals_one_pass(sample, tmp_path, monkeypatch):
    """`build_snapshots` builds long windows in passes of at most `HOURS_PER_PASS` hours that
    never cross midnight (uneven here) with the same rows as passes of a day, and rebuilds the
    day partials of each day the window covers."""
    con = connect(tmp_path / "wh.duckdb")
    ingest_window(con, sample, START, START + timedelta(days=2), PARTITIONS_START)
    window = (datetime(2026, 10, 1, 9), datetime(2026, 10, 2, 2))
    results = []
    for hours in (1_000, 5):
        monkeypatch.setattr(snapshots_module, "HOURS_PER_PASS", hours)
        built = snapshots_module.build_snapshots(con, *window, "parent_account_id")
        results.append(([table_rows(con, table) for table in TABLES], built.rows))
    (one_pass, one_pass_counts), (passes, passes_counts) = results
    assert all(one_pass) and passes == one_pass
    fresh = connect(tmp_path / "fresh.duckdb")
    ingest_window(fresh, sample, START, START + timedelta(days=2), PARTITIONS_START)
    assert (
        snapshots_module.build_snapshots(fresh, *window, "parent_account_id").day_partials_rebuilt
        == 2
    )
    assert passes_counts == one_pass_counts == {
        table: len(rows) for table, rows in zip(
            ("users", "accounts", "account_memberships", "account_hierarchy"), one_pass,
            strict=True)}  # fmt: skip


def test_a_window_on_the_second_day_reads_day_partials_that_agree_with_the_tiles(sample, tmp_path):
    """A window starting on the 2nd reads the day partials of the 2nd (every hour tile of the
    1st combined); one starting on the 1st reads those hour tiles one by one. Built again
    alone, the hours of the 2nd come out the same."""
    con = connect(tmp_path / "wh.duckdb")
    ingest_window(con, sample, START, START + timedelta(days=2), PARTITIONS_START)
    snapshots(con, datetime(2026, 10, 1, 20), datetime(2026, 10, 2, 6))
    before = {table: table_rows(con, table) for table in TABLES}
    snapshots(con, datetime(2026, 10, 2, 3), datetime(2026, 10, 2, 6))
    assert con.execute("SELECT count(*) FROM custom_trait_partials").fetchone()[0] > 0
    for table in TABLES:
        assert before[table] and table_rows(con, table) == before[table], table
