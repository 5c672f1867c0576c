"""The benchmark commands run end to end at a tiny scale and print their rows (no timing is
judged here: the figures are for `python -m benchmarks` on a real scale), and the verification
of the fast paths passes, and fails when a tile is wrong."""

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

import benchmarks.generate
from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.traits.compute import build_traits
from benchmarks import verify
from benchmarks.common import row, timed
from benchmarks.pipeline import all_tiles, hierarchy_snapshots
from benchmarks.scale import DEFINITIONS, Scale

ROOT = Path(__file__).parent.parent
EVENTS = 20_000


def figure(name: str, work_dir: Path, *options: str) -> list[dict]:
    command = [sys.executable, "-m", f"benchmarks.{name}", "--events", str(EVENTS),
               "--work-dir", str(work_dir), "--format", "jsonl", *options]  # fmt: skip
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return [json.loads(line) for line in output.stdout.splitlines()]


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("benchmarks")


def test_generate_and_ingest(work_dir):
    generated = figure("generate", work_dir)
    assert [row["figure"] for row in generated] == ["generate"] * 3
    ours, baseline = figure("ingest", work_dir)
    assert ours["what"] == "account_hierarchy ingest" and ours["events"] > EVENTS
    assert baseline["events"] == EVENTS and baseline["vs baseline"] == 1.0
    assert ours["seconds"] > 0 and ours["vs baseline"] > 0


def test_snapshot_and_backfill(work_dir):
    tiles, job, first, prepared, hour, day_end, baseline = figure("snapshot", work_dir)
    assert "tiles" in tiles["what"] and "ending a day" in day_end["what"]
    assert "daily job" in job["what"] and "vs baseline" not in job
    assert "without the daily job" in first["what"] and first["vs baseline"] > 0
    assert "after the daily job" in prepared["what"] and prepared["vs baseline"] > 0
    assert hour["vs baseline"] > 0 and baseline["vs baseline"] == 1.0
    hierarchy, ours, pandas, sql_traits = figure("backfill", work_dir, "--hours", "1")
    assert hierarchy["what"] == "hierarchy snapshots, 1 hours"
    assert ours["what"] == "traits and audiences, 1 hours"
    assert ours["events"] == hierarchy["events"] == tiles["events"]
    # (pandas computes only hours the backfill built the hierarchy of)
    assert pandas["vs baseline"] == 1.0 and pandas["what"].endswith(", 1 hour(s)")
    assert 0 < sql_traits["seconds"] < ours["seconds"]


# Beyond the sample: every `where` operator, windows that tiles cut by hours or days or cannot
# cut (minutes), each attribution, and `performed` conditions over such windows.
EXTRA_TRAITS = [
    {"name": "scores_not_8", "entity": "user", "type": "event_counter",
     "event": "NPS Survey Submitted", "where": [{"property": "score", "not_equals": 8}]},
    {"name": "scores_in", "entity": "account", "type": "event_counter",
     "event": "NPS Survey Submitted", "where": [{"property": "score", "in": [8, 9, "10"]}]},
    {"name": "port_features_2_days", "entity": "account", "type": "unique_list",
     "event": "Feature Used", "property": "feature", "window": "2 days",
     "where": [{"property": "feature", "contains": "port"}]},
    {"name": "low_score_30_hours", "entity": "user", "type": "aggregation", "function": "min",
     "event": "NPS Survey Submitted", "property": "score", "window": "30 hours",
     "where": [{"property": "score", "lt": 5}]},
    {"name": "surveys_without_score", "entity": "account", "type": "event_counter",
     "event": "NPS Survey Submitted", "where": [{"property": "score", "exists": False}]},
    {"name": "title_90_minutes", "entity": "user", "type": "last_value",
     "event_type": "identify", "property": "title", "window": "90 minutes",
     "where": [{"property": "title", "exists": True}]},
    {"name": "detractors_in_context", "entity": "account", "type": "event_counter",
     "event": "NPS Survey Submitted", "attribution": "context", "context_fallback": "none",
     "where": [{"property": "score", "lte": 6}]},
    {"name": "group_top_feature_36_hours", "entity": "account", "type": "most_frequent",
     "event": "Feature Used", "property": "feature", "window": "36 hours",
     "include_child_accounts": True},
    {"name": "high_score_sum", "entity": "account", "type": "aggregation", "function": "sum",
     "event": "NPS Survey Submitted", "property": "score",
     "where": [{"property": "score", "gt": 6}]},
    {"name": "feature_users_2_days", "entity": "account", "type": "unique_users",
     "event": "Feature Used", "window": "2 days"},
]  # fmt: skip
EXTRA_AUDIENCES = [
    {"name": "logged_in_twice_in_36_hours", "entity": "user",
     "where": {"performed": "Logged In", "at_least": 2, "window": "36 hours"}},
    {"name": "accounts_of_quiet_feature_users", "entity": "account",
     "where": {"users": "any", "where": {"performed": "Feature Used", "at_most": 1,
                                         "window": "2 days"}}},
]  # fmt: skip


def test_verify_finds_the_fast_paths_equal_to_both_references(work_dir, tmp_path):
    for name, extra in (("traits", EXTRA_TRAITS), ("audiences", EXTRA_AUDIENCES)):
        sample = yaml.safe_load((DEFINITIONS / f"{name}.yaml").read_text())
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({name: sample[name] + extra}))
    # (the day's first and last hours run inside the window across midnight; the wrong tile's
    # test runs an ordinary hour and the one ending the day)
    windows = "3 hours across midnight,an hour mid-month"
    rows = figure("verify", work_dir, "--definitions", str(tmp_path), "--windows", windows)
    assert {row["reference"].split(":")[0] for row in rows} == {"traits", "audiences"}
    assert {row["window"] for row in rows} == set(windows.split(","))
    assert len(rows) == 6 and all(row["cells compared"] > 0 for row in rows)
    assert all(row["differing"] == 0 for row in rows)


def test_verify_fails_on_a_wrong_tile(work_dir, tmp_path):
    shutil.copytree(work_dir / f"scale-{EVENTS}", tmp_path / f"scale-{EVENTS}")
    warehouse = tmp_path / f"scale-{EVENTS}" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        all_tiles(con, load_catalog(DEFINITIONS))  # (the sample's tiles, which verify reads)
        # the tile caches do not notice a changed value: nothing rebuilds the tile
        con.execute("UPDATE trait_tiles SET user__user_logins_past_7_days__n = "
                    "user__user_logins_past_7_days__n + 1")  # fmt: skip
    command = [sys.executable, "-m", "benchmarks.verify", "--events", str(EVENTS),
               "--work-dir", str(tmp_path), "--format", "jsonl",
               "--windows", "an ordinary hour,the hour ending the day"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {row["window"] for row in rows} == {"an ordinary hour", "the hour ending the day"}
    wrong = {(row["window"], row["reference"]) for row in rows if row["differing"]}
    assert ("an ordinary hour", "traits: direct from the events") in wrong
    assert ("an ordinary hour", "traits: pandas, last hour, 1 in k accounts") in wrong
    assert "user_logins_past_7_days: stored" in done.stderr


def test_verify_finds_rows_missing_from_the_stored_traits(work_dir, tmp_path):
    shutil.copy(work_dir / f"scale-{EVENTS}" / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    catalog = load_catalog(DEFINITIONS)
    hour = Scale(EVENTS, work_dir).last_hour
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        hierarchy_snapshots(con, hour, hour + timedelta(hours=1))
        build_traits(con, catalog, hour, hour + timedelta(hours=1))
        cells, found = verify._pandas_traits(con, catalog, hour)
        assert cells > 0 and found == []
        con.execute("DELETE FROM account_traits")
        cells, found = verify._pandas_traits(con, catalog, hour)
    assert found and all("account_traits" in f and "not stored" in f for f in found)


def test_verify_names_the_windows_it_knows(work_dir):
    command = [sys.executable, "-m", "benchmarks.verify", "--events", str(EVENTS),
               "--work-dir", str(work_dir), "--windows", "an odd hour"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1
    assert "unknown window(s) 'an odd hour'; choose from '3 hours across midnight'" in done.stderr


ALLOCATE = "block = bytearray(b'x') * (300 * 2**20); import time; time.sleep(0.5)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak reset is Linux's")
def test_each_timed_figure_reports_its_own_peak_memory():
    def allocate() -> None:
        block = bytearray(b"x") * (300 * 2**20)  # (filled, so its pages are resident)
        del block

    timed(allocate)
    with_block = row("f", "allocates", 1, 1.0)["peak MiB"]
    timed(lambda: None)
    assert with_block - row("f", "nothing", 1, 1.0)["peak MiB"] > 250


def test_the_peak_memory_counts_child_processes():
    timed(lambda: subprocess.run([sys.executable, "-c", ALLOCATE], check=True))
    with_child = row("f", "a child allocates", 1, 1.0)["peak MiB"]
    timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
    assert with_child - row("f", "a child does nothing", 1, 1.0)["peak MiB"] > 250


def test_each_generate_row_has_the_peak_of_its_own_run(tmp_path, monkeypatch):
    def generate_sample(folder, processes, **sizes):
        if processes == 2:  # (the first of the two runs: its peak must not be the second's)
            block = bytearray(b"x") * (300 * 2**20)
            del block
        return real_generate_sample(folder, processes=processes, **sizes)

    real_generate_sample = benchmarks.generate.generate_sample
    monkeypatch.setattr(benchmarks.generate, "generate_sample", generate_sample)
    _, two_processes, one_process = benchmarks.generate.measure(Scale(1000, tmp_path))
    assert (two_processes["what"], one_process["what"]) == ("3 days, 2 processes",
                                                            "3 days, 1 process")  # fmt: skip
    assert two_processes["peak MiB"] - one_process["peak MiB"] > 250
