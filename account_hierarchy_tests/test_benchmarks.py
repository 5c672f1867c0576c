"""The benchmark commands run end to end at a tiny scale and print their rows (no timing is
judged here: the figures are for `python -m benchmarks` on a real scale), and the verification
of the fast paths passes, and fails when a tile is wrong."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

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
    tiles, first, hour, day_end, baseline = figure("snapshot", work_dir)
    assert "tiles" in tiles["what"] and "ending a day" in day_end["what"]
    assert "first run" in first["what"] and first["vs baseline"] > 0
    assert hour["vs baseline"] > 0 and baseline["vs baseline"] == 1.0
    hierarchy, ours, pandas, sql_traits = figure("backfill", work_dir, "--hours", "3")
    assert hierarchy["what"] == "hierarchy snapshots, 3 hours"
    assert ours["what"] == "traits and audiences, 3 hours"
    assert ours["events"] == hierarchy["events"] == 3 * tiles["events"]
    assert pandas["vs baseline"] == 1.0
    assert 0 < sql_traits["seconds"] < ours["seconds"]


def test_verify_finds_the_fast_paths_equal_to_both_references(work_dir):
    rows = figure("verify", work_dir)
    assert {row["reference"].split(":")[0] for row in rows} == {"traits", "audiences"}
    assert len(rows) == 15 and all(row["cells compared"] > 0 for row in rows)
    assert all(row["differing"] == 0 for row in rows)


def test_verify_fails_on_a_wrong_tile(work_dir, tmp_path):
    shutil.copytree(work_dir / f"scale-{EVENTS}", tmp_path / f"scale-{EVENTS}")
    warehouse = tmp_path / f"scale-{EVENTS}" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:  # (the tile caches do not notice: no rebuild)
        con.execute("UPDATE trait_tiles SET user__user_logins_past_7_days__n = "
                    "user__user_logins_past_7_days__n + 1")  # fmt: skip
    command = [sys.executable, "-m", "benchmarks.verify", "--events", str(EVENTS),
               "--work-dir", str(tmp_path), "--format", "jsonl"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    wrong = {(row["window"], row["reference"]) for row in rows if row["differing"]}
    assert ("an ordinary hour", "traits: direct from the events") in wrong
    assert ("an ordinary hour", "traits: pandas, last hour, 1 in k accounts") in wrong
    assert "user_logins_past_7_days: stored" in done.stderr
