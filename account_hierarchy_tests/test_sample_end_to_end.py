"""A generated sample goes through ingest and the hierarchy: every line accounted for, every
valid message loaded once, snapshots equal to an independent computation."""

import json
from datetime import datetime

import dagster as dg
import pytest

from account_hierarchy.hierarchy.assets import hierarchy_snapshots
from account_hierarchy.ingest.assets import raw_events
from account_hierarchy.resources import LandingFolder, Warehouse
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.reference import is_valid, read_events, read_lines, snapshot

RANGE = {
    "dagster/asset_partition_range_start": "2026-10-01-00:00",
    "dagster/asset_partition_range_end": "2026-10-03-23:00",
}
TABLES = (
    "raw_events",
    "quarantined_lines",
    "duplicate_lines",
    "users",
    "accounts",
    "account_memberships",
    "account_hierarchy",
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    summary = generate_sample(root / "landing", seed=7, accounts=40, users=300, days=3)
    resources = {
        "warehouse": Warehouse(database=str(root / "wh.duckdb")),
        "landing": LandingFolder(path=str(root / "landing")),
    }
    result = dg.materialize([raw_events, hierarchy_snapshots], resources=resources, tags=RANGE)
    assert result.success
    return root, summary, resources


def dump(path):
    with connect(path, read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def test_every_line_is_loaded_quarantined_or_a_duplicate(sample):
    root, summary, _ = sample
    lines = read_lines(root / "landing")
    with connect(root / "wh.duckdb", read_only=True) as con:
        loaded, distinct = con.execute(
            "SELECT count(*), count(DISTINCT message_id) FROM raw_events"
        ).fetchone()
        (quarantined,) = con.execute("SELECT count(*) FROM quarantined_lines").fetchone()
        (duplicates,) = con.execute("SELECT count(*) FROM duplicate_lines").fetchone()
        reasons = con.execute("SELECT reason FROM quarantined_lines").fetchall()
    assert len(lines) == summary.lines == loaded + quarantined + duplicates
    assert loaded == distinct == summary.valid_events == len(read_events(root / "landing"))
    assert duplicates == summary.duplicate_lines
    assert quarantined == sum(summary.dirty_lines.values())
    assert quarantined == sum(not is_valid(line) for line in lines)
    assert all(reason for (reason,) in reasons)


def test_running_twice_gives_identical_tables(sample):
    root, _, resources = sample
    before = dump(root / "wh.duckdb")
    assert dg.materialize(
        [raw_events, hierarchy_snapshots], resources=resources, tags=RANGE
    ).success
    assert dump(root / "wh.duckdb") == before


@pytest.mark.parametrize(
    "hour", [datetime(2026, 10, 1, 5), datetime(2026, 10, 2, 12), datetime(2026, 10, 3, 23)]
)
def test_hierarchy_matches_reference_on_the_sample(sample, hour):
    root, _, _ = sample
    expected = snapshot(read_events(root / "landing"), hour)
    with connect(root / "wh.duckdb", read_only=True) as con:
        accounts = con.execute(
            "SELECT account_id, traits, user_count, parent_account_id FROM accounts "
            "WHERE snapshot_hour = $hour",
            {"hour": hour},
        ).fetchall()
        users = con.execute(
            "SELECT user_id, traits, first_seen_at, last_seen_at FROM users "
            "WHERE snapshot_hour = $hour",
            {"hour": hour},
        ).fetchall()
        tree = con.execute(
            "SELECT account_id, ultimate_parent_id, depth, in_cycle "
            "FROM account_hierarchy WHERE snapshot_hour = $hour",
            {"hour": hour},
        ).fetchall()
    assert {a: (json.loads(t), n, p) for a, t, n, p in accounts} == {
        a: (v["traits"], v["users"], v["parent"]) for a, v in expected["accounts"].items()
    }
    assert {u: (json.loads(t), f, last) for u, t, f, last in users} == {
        u: (v["traits"], v["first"], v["last"]) for u, v in expected["users"].items()
    }
    assert {a: (u, d, c) for a, u, d, c in tree} == {
        a: (v["ultimate"], v["depth"], v["cycle"]) for a, v in expected["hierarchy"].items()
    }
    if hour == datetime(2026, 10, 3, 23):  # by then the sample's cycle and chains exist
        assert any(c for _, _, _, c in tree) and max(d for _, _, d, _ in tree) >= 2
