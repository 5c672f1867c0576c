"""Traits rolled up from hourly tiles equal traits computed from the events directly."""

import math
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import ibis
import pytest
import yaml

from account_hierarchy.audiences.memberships import build_audience
from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.traits.compute import build_traits, tiled_traits
from account_hierarchy.traits.tiles import (
    combines_by_day,
    day_tile_rows,
    day_value_tile_rows,
    is_value_trait,
    performed_counters,
    refresh_tiles,
    tile_rows,
    value_tile_rows,
)
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import PARTITIONS_START, message, write_lines
from account_hierarchy_tests.test_traits import SAMPLE_DEFINITIONS

START = datetime(2026, 10, 1)
# Windows that tiles cannot cut exactly (minutes) go to the direct path; whole hours roll up.
EXTRA_TRAITS = [
    {"name": "logins_90_minutes", "entity": "user", "type": "event_counter",
     "event": "Logged In", "window": "90 minutes"},
    {"name": "top_feature_3_hours", "entity": "account", "type": "most_frequent",
     "event": "Feature Used", "property": "feature", "window": "3 hours"},
    {"name": "first_feature_2_hours", "entity": "account", "type": "first_value",
     "event": "Feature Used", "property": "feature", "window": "2 hours",
     "attribution": "context"},
    {"name": "features_rollup", "entity": "account", "type": "unique_list_count",
     "event": "Feature Used", "property": "feature", "include_child_accounts": True},
    {"name": "nps_min_context", "entity": "account", "type": "aggregation", "function": "min",
     "event": "NPS Survey Submitted", "property": "score", "attribution": "context",
     "context_fallback": "none"},
    {"name": "last_title", "entity": "user", "type": "last_value", "event_type": "identify",
     "property": "title"},
    # Value traits sharing their value tiles (same selection) with sample traits, in other
    # windows or attribution classes, and a condition that makes a selection of its own.
    {"name": "features_past_6_hours", "entity": "account", "type": "unique_list",
     "event": "Feature Used", "property": "feature", "window": "6 hours"},
    {"name": "feature_count_past_6_hours", "entity": "account", "type": "unique_list_count",
     "event": "Feature Used", "property": "feature", "window": "6 hours"},
    {"name": "top_feature_of_user", "entity": "user", "type": "most_frequent",
     "event": "Feature Used", "property": "feature"},
    {"name": "top_feature_not_reports", "entity": "account", "type": "most_frequent",
     "event": "Feature Used", "property": "feature",
     "where": [{"property": "feature", "not_equals": "reports"}]},
    # Windows starting inside a day, or at a day's first hour, for some snapshot hours: day
    # tiles must give way to hour tiles for the part of a day inside the window.
    {"name": "logins_past_30_hours", "entity": "account", "type": "event_counter",
     "event": "Logged In", "window": "30 hours"},
    {"name": "first_page_past_36_hours", "entity": "user", "type": "first_value",
     "event_type": "page", "property": "path", "window": "36 hours"},
    {"name": "pages_past_2_days", "entity": "account", "type": "unique_list",
     "event_type": "page", "property": "path", "window": "2 days"},
]  # fmt: skip


DAY_WINDOW_TRAITS = [
    {"name": "logins_past_2_days", "entity": "account", "type": "event_counter",
     "event": "Logged In", "window": "2 days"},
    {"name": "first_page_past_2_days", "entity": "user", "type": "first_value",
     "event_type": "page", "property": "path", "window": "2 days"},
    {"name": "pages_past_2_days", "entity": "account", "type": "unique_list",
     "event_type": "page", "property": "path", "window": "2 days"},
]  # fmt: skip


def definitions(folder, extra=EXTRA_TRAITS):
    traits = yaml.safe_load((SAMPLE_DEFINITIONS / "traits.yaml").read_text())["traits"]
    folder.mkdir(exist_ok=True)
    (folder / "traits.yaml").write_text(yaml.safe_dump({"traits": traits + extra}))
    return load_catalog(folder)


def snapshots(con, start, end):
    build_snapshots(con, start, end, "parent_account_id")


def table_rows(con, table):
    cursor = con.execute(f"SELECT * FROM {table} ORDER BY ALL")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def assert_same(tiled: list[dict], direct: list[dict]) -> None:
    assert len(tiled) == len(direct)
    for left, right in zip(tiled, direct, strict=True):
        assert left.keys() == right.keys()
        for key, value in right.items():
            if isinstance(value, float) and not math.isnan(value):
                assert left[key] == pytest.approx(value), (key, right)
            else:
                assert left[key] == value, (key, right)


def both_ways(con, catalog, start, end):
    """The trait tables computed with tiles, then directly from the events."""
    results = []
    for use_tiles in (True, False):
        build_traits(con, catalog, start, end, use_tiles=use_tiles)
        results.append([table_rows(con, t) for t in ("account_traits", "user_traits")])
    return results


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiles")
    generate_sample(root / "landing", seed=5, accounts=25, users=160, days=3)
    return root


def test_tiles_equal_direct_computation_over_a_day(landing, tmp_path):
    con = connect(tmp_path / "wh.duckdb")
    ingest_window(con, landing / "landing", START, START + timedelta(days=3), PARTITIONS_START)
    catalog = definitions(tmp_path / "definitions")
    # Every hour of the third day: whole days before it roll up from day tiles.
    start, end = datetime(2026, 10, 3, 0), datetime(2026, 10, 4, 0)
    snapshots(con, start, end)
    tiled, direct = both_ways(con, catalog, start, end)
    days = con.execute("SELECT DISTINCT tile_hour FROM trait_day_tiles ORDER BY 1").fetchall()
    assert [day for (day,) in days] == [START + timedelta(days=n) for n in range(3)]
    for left, right in zip(tiled, direct, strict=True):
        assert left and any(v not in (None, 0, []) for row in left for v in row.values())
        assert_same(left, right)
    names = {t.name for t in tiled_traits(catalog)}
    assert "logins_past_30_days" in names and "top_feature_3_hours" in names
    assert "logins_90_minutes" not in names


def test_day_partials_equal_direct_computation_across_midnight(landing, tmp_path):
    """A run of hours starting inside a day and ending inside the next rolls up from the day
    partials of each day (every trait here combines by day), and the snapshot ending at
    midnight from them and the day's own tile; they equal the direct computation."""
    con = connect(tmp_path / "wh.duckdb")
    ingest_window(con, landing / "landing", START, START + timedelta(days=3), PARTITIONS_START)
    # (windows of 2 days reach back to the first day: its day tile counts in the snapshot
    # ending at midnight only)
    catalog = definitions(tmp_path / "definitions", DAY_WINDOW_TRAITS)
    assert all(combines_by_day(trait) for trait in tiled_traits(catalog))
    start, end = datetime(2026, 10, 2, 17), datetime(2026, 10, 3, 7)
    snapshots(con, start, end)
    tiled, direct = both_ways(con, catalog, start, end)
    assert con.execute("SELECT count(*) FROM trait_day_partials").fetchone()[0] > 0
    for left, right in zip(tiled, direct, strict=True):
        assert left and any(v not in (None, 0, []) for row in left for v in row.values())
        assert_same(left, right)


def test_day_partials_are_kept_until_their_days_or_traits_change(landing, tmp_path):
    con = connect(tmp_path / "wh.duckdb")
    catalog = definitions(tmp_path / "definitions", DAY_WINDOW_TRAITS)
    folder = shutil.copytree(landing / "landing", tmp_path / "landing")  # (gets a late file)
    ingest_window(con, folder, START, START + timedelta(days=1), PARTITIONS_START)
    day_two = START + timedelta(days=1)
    snapshots(con, day_two, day_two + timedelta(hours=8))

    def rebuilt(hour: int, traits=catalog) -> int:
        at = day_two + timedelta(hours=hour)
        return build_traits(con, traits, at, at + timedelta(hours=1))["day_partials_rebuilt"]

    assert rebuilt(3) == 1
    assert rebuilt(4) == 0  # the next hourly run of the day reuses them
    # A late event of day one changes its day tile, then the partials.
    (user,) = con.execute("SELECT user_id FROM raw_events WHERE event = 'Logged In'").fetchone()
    late = message("late-login", "2026-10-01T09:30:00Z", userId=user)
    write_lines(folder / "late" / "login.ndjson", [late])
    ingest_window(con, folder, START, START + timedelta(days=1), PARTITIONS_START)
    assert rebuilt(5) == 1
    five = day_two + timedelta(hours=5)
    tiled, direct = both_ways(con, catalog, five, five + timedelta(hours=1))
    for left, right in zip(tiled, direct, strict=True):
        assert_same(left, right)
    assert rebuilt(6) == 0
    # Changed definitions change the partials' queries.
    changed = definitions(tmp_path / "changed", DAY_WINDOW_TRAITS[:2])
    assert rebuilt(6, changed) == 1
    assert rebuilt(7, changed) == 0


def test_tiles_follow_new_events_and_changed_definitions(landing, tmp_path):
    con = connect(tmp_path / "wh.duckdb")
    catalog = definitions(tmp_path / "definitions")
    ingest_window(con, landing / "landing", START, START + timedelta(days=1), PARTITIONS_START)
    snapshots(con, datetime(2026, 10, 1, 20), datetime(2026, 10, 1, 21))
    build_traits(con, catalog, datetime(2026, 10, 1, 20), datetime(2026, 10, 1, 21))
    refresh = refresh_tiles(con, tiled_traits(catalog), days_before=START)
    assert (refresh.hours_rebuilt, refresh.days_rebuilt) == (0, 0)  # nothing changed

    # The next day's files also bring late events of day one's last hours: those hours change.
    ingest_window(con, landing / "landing", START, START + timedelta(days=2), PARTITIONS_START)
    start, end = datetime(2026, 10, 1, 23), datetime(2026, 10, 2, 5)
    snapshots(con, start, end)
    tiled, direct = both_ways(con, catalog, start, end)
    for left, right in zip(tiled, direct, strict=True):
        assert_same(left, right)

    # Hourly runs inside a day leave that day's tiles alone; the run of its last hour builds them.
    days = "SELECT tile_hour FROM trait_tile_days ORDER BY 1"
    assert [day for (day,) in con.execute(days).fetchall()] == [START]
    snapshots(con, datetime(2026, 10, 2, 22), datetime(2026, 10, 3, 0))
    build_traits(con, catalog, datetime(2026, 10, 2, 22), datetime(2026, 10, 2, 23))
    assert [day for (day,) in con.execute(days).fetchall()] == [START]
    build_traits(con, catalog, datetime(2026, 10, 2, 23), datetime(2026, 10, 3, 0))
    assert [day for (day,) in con.execute(days).fetchall()] == [START, START + timedelta(days=1)]
    # A run of an earlier hour leaves the later days' tiles as they are.
    report = build_traits(con, catalog, datetime(2026, 10, 2, 4), datetime(2026, 10, 2, 5))
    assert report["tiles"].days_rebuilt == 0
    assert [day for (day,) in con.execute(days).fetchall()] == [START, START + timedelta(days=1)]

    # A refresh that stopped after rebuilding hours, before their days: the days are stale.
    con.execute("DELETE FROM trait_tile_days WHERE tile_hour = $day", {"day": START})
    con.execute("UPDATE trait_day_tiles SET account__logins_past_30_days__n = 1000")
    assert refresh_tiles(con, tiled_traits(catalog)).days_rebuilt == 1
    con.execute("DELETE FROM trait_tile_days WHERE tile_hour > $day", {"day": START})
    assert refresh_tiles(con, tiled_traits(catalog)).days_rebuilt == 1
    tiled, direct = both_ways(con, catalog, start, end)
    for left, right in zip(tiled, direct, strict=True):
        assert_same(left, right)

    # A changed condition changes the hour tiles' query, not the day tiles': days follow.
    condition = {"property": "feature", "exists": False}
    changed = definitions(tmp_path / "changed", [
        {**trait, "where": [condition]} if trait["name"] == "logins_past_30_hours" else trait
        for trait in EXTRA_TRAITS])  # fmt: skip
    refresh = refresh_tiles(con, tiled_traits(changed))
    (hours,) = con.execute("SELECT count(DISTINCT event_hour) FROM raw_events").fetchone()
    assert refresh.hours_rebuilt == hours  # a new fingerprint rebuilds every hour
    assert refresh.days_rebuilt == 2
    tiled, direct = both_ways(con, changed, start, end)
    for left, right in zip(tiled, direct, strict=True):
        assert_same(left, right)


def test_performed_conditions_count_the_same_with_and_without_tiles(landing, tmp_path):
    con = connect(tmp_path / "wh.duckdb")
    ingest_window(con, landing / "landing", START, START + timedelta(days=3), PARTITIONS_START)
    folder = tmp_path / "definitions"
    definitions(folder)
    audiences = yaml.safe_load((SAMPLE_DEFINITIONS / "audiences.yaml").read_text())["audiences"]
    (folder / "audiences.yaml").write_text(yaml.safe_dump({"audiences": audiences}))
    catalog = load_catalog(folder)
    start, end = datetime(2026, 10, 2, 12), datetime(2026, 10, 2, 18)
    snapshots(con, start, end)
    build_traits(con, catalog, start, end)
    names = [a.audience.name for a in catalog.audiences if "performed" in str(a.audience)]
    counters = performed_counters([a.audience for a in catalog.audiences])
    assert names and {c.name for c in counters} <= {t.name for t in tiled_traits(catalog)}
    results = []
    for source in ("tiles", "events"):
        if source == "events":
            con.execute("DROP TABLE trait_day_tiles")
        for name in names:
            build_audience(con, catalog, name, start, end)
        results.append(table_rows(con, "audience_memberships"))
    assert results[0] == results[1]
    assert any(row["audience"] in names for row in results[0])


def tile_queries() -> str:
    """The SQL of every tile query for the sample traits and the extra ones."""
    with tempfile.TemporaryDirectory() as folder:
        tiled = tiled_traits(definitions(Path(folder) / "definitions"))
    traits = [trait for trait in tiled if not is_value_trait(trait)]
    values = [trait for trait in tiled if is_value_trait(trait)]
    schema = ibis.schema({"message_id": "string", "type": "string", "user_id": "string",
                          "context_group_id": "string", "event": "string",
                          "timestamp": "timestamp", "properties": "json", "traits": "json",
                          "event_hour": "timestamp"})  # fmt: skip
    events = ibis.duckdb.connect().create_table("raw_events", schema=schema)
    hours, value_hours = tile_rows(events, traits), value_tile_rows(events, values)
    queries = (hours, value_hours, day_tile_rows(hours, traits), day_value_tile_rows(value_hours))
    return "\n".join(ibis.to_sql(query, dialect="duckdb") for query in queries)


def test_tile_queries_are_the_same_in_every_process():
    """Tiles are rebuilt when the fingerprint of their queries changes, so the compiled SQL
    must not depend on Python's per-process hash seed (set iteration order)."""
    script = "from account_hierarchy_tests import test_trait_tiles as t; print(t.tile_queries())"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True, text=True, check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }  # fmt: skip
    assert len(outputs) == 1


def test_a_trait_added_before_any_day_was_tiled_gets_its_tile_columns(landing, tmp_path):
    con = connect(tmp_path / "wh.duckdb")
    ingest_window(con, landing / "landing", START, START + timedelta(days=2), PARTITIONS_START)
    snapshots(con, datetime(2026, 10, 1, 10), datetime(2026, 10, 2, 2))
    build_traits(con, definitions(tmp_path / "before", []),
                 datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11))  # fmt: skip
    assert con.execute("SELECT count(*) FROM trait_tile_days").fetchone() == (0,)
    # The added traits' tile columns: in the hour tiles, and in the day tiles of the next day.
    added = definitions(tmp_path / "after", DAY_WINDOW_TRAITS)
    for start in (datetime(2026, 10, 1, 11), datetime(2026, 10, 2, 1)):
        tiled, direct = both_ways(con, added, start, start + timedelta(hours=1))
        for left, right in zip(tiled, direct, strict=True):
            assert_same(left, right)
