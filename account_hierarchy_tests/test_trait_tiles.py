"""Traits rolled up from hourly tiles equal traits computed from the events directly."""

import math
from datetime import datetime, timedelta

import pytest
import yaml

from account_hierarchy.audiences.memberships import build_audience
from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.hierarchy.entities import build_accounts, build_memberships, build_users
from account_hierarchy.hierarchy.tree import build_hierarchy
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.traits.compute import build_traits, tiled_traits
from account_hierarchy.traits.tiles import performed_counters, refresh_tiles
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import PARTITIONS_START
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
]  # fmt: skip


def definitions(folder, extra=EXTRA_TRAITS):
    traits = yaml.safe_load((SAMPLE_DEFINITIONS / "traits.yaml").read_text())["traits"]
    folder.mkdir(exist_ok=True)
    (folder / "traits.yaml").write_text(yaml.safe_dump({"traits": traits + extra}))
    return load_catalog(folder)


def snapshots(con, start, end):
    for build in (build_memberships, build_users, build_accounts, build_hierarchy):
        args = (con, start, end, "parent_account_id") if build is build_accounts else (
            con, start, end)  # fmt: skip
        build(*args)


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
    start, end = datetime(2026, 10, 2, 0), datetime(2026, 10, 3, 0)
    snapshots(con, start, end)
    tiled, direct = both_ways(con, catalog, start, end)
    for left, right in zip(tiled, direct, strict=True):
        assert left and any(v not in (None, 0, []) for row in left for v in row.values())
        assert_same(left, right)
    names = {t.name for t in tiled_traits(catalog)}
    assert "logins_past_30_days" in names and "top_feature_3_hours" in names
    assert "logins_90_minutes" not in names


def test_tiles_follow_new_events_and_changed_definitions(landing, tmp_path):
    con = connect(tmp_path / "wh.duckdb")
    catalog = definitions(tmp_path / "definitions")
    ingest_window(con, landing / "landing", START, START + timedelta(days=1), PARTITIONS_START)
    snapshots(con, datetime(2026, 10, 1, 20), datetime(2026, 10, 1, 21))
    build_traits(con, catalog, datetime(2026, 10, 1, 20), datetime(2026, 10, 1, 21))
    assert refresh_tiles(con, tiled_traits(catalog)).hours_rebuilt == 0  # nothing changed

    # The next day's files also bring late events of day one's last hours: those hours change.
    ingest_window(con, landing / "landing", START, START + timedelta(days=2), PARTITIONS_START)
    start, end = datetime(2026, 10, 1, 23), datetime(2026, 10, 2, 5)
    snapshots(con, start, end)
    tiled, direct = both_ways(con, catalog, start, end)
    for left, right in zip(tiled, direct, strict=True):
        assert_same(left, right)

    changed = definitions(tmp_path / "changed", EXTRA_TRAITS[:2])
    refresh = refresh_tiles(con, tiled_traits(changed))
    (hours,) = con.execute("SELECT count(DISTINCT event_hour) FROM raw_events").fetchone()
    assert refresh.hours_rebuilt == hours  # a new fingerprint rebuilds every hour
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
            con.execute("DROP TABLE trait_tiles")
        for name in names:
            build_audience(con, catalog, name, start, end)
        results.append(table_rows(con, "audience_memberships"))
    assert results[0] == results[1]
    assert any(row["audience"] in names for row in results[0])
