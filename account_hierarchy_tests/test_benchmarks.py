"""The benchmark commands run end to end at a tiny scale and print their rows (no timing is
judged here: the figures are for `python -m benchmarks` on a real scale)."""

import json
import subprocess
import sys
from pathlib import Path

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
