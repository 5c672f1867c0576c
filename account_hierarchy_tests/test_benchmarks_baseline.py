"""The pandas baseline (`benchmarks/pandas_traits.py`) follows README "Definitions: traits",
and the benchmark commands refuse bad arguments with a usage error, not a traceback."""

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from account_hierarchy.catalog.loader import load_catalog
from benchmarks import pandas_traits

TRAITS = [
    {"name": "score_sum", "entity": "user", "type": "aggregation", "function": "sum",
     "event": "Score", "property": "score"},
    {"name": "score_max", "entity": "user", "type": "aggregation", "function": "max",
     "event": "Score", "property": "score"},
    {"name": "score_gt_count", "entity": "user", "type": "event_counter", "event": "Score",
     "where": [{"property": "score", "gt": 1}]},
    {"name": "obj_first", "entity": "user", "type": "first_value", "event": "Obj",
     "property": "v"},
    {"name": "plan_last", "entity": "user", "type": "last_value", "event_type": "identify",
     "property": "plan"},
]  # fmt: skip


def _event(i, kind, hour, event=None, properties=None, traits=None):
    return {"message_id": f"m{i}", "type": kind, "user_id": "u1", "anonymous_id": None,
            "context_group_id": None, "event": event, "timestamp": datetime(2026, 10, 30, hour),
            "properties": json.dumps(properties, ensure_ascii=False) if properties else None,
            "traits": json.dumps(traits, ensure_ascii=False) if traits else None}  # fmt: skip


def test_pandas_baseline_follows_the_trait_semantics(tmp_path: Path) -> None:
    (tmp_path / "traits.yaml").write_text(yaml.safe_dump({"traits": TRAITS}))
    traits = [t.trait for t in load_catalog(tmp_path).traits]
    events = pd.DataFrame([
        _event(1, "track", 1, "Score", {"score": "inf"}),  # (infinities are no number)
        _event(2, "track", 2, "Score", {"score": 5}),
        _event(3, "track", 3, "Score", traits={"score": 100}),  # (a track reads properties)
        _event(4, "track", 4, "Obj", {"v": {"name": "café"}}),  # (JSON text, as stored)
        _event(5, "identify", 5, properties={"plan": "free"}, traits={"plan": "pro"}),
    ])  # fmt: skip
    values = pandas_traits.compute(
        pandas_traits.prepare(events), pd.DataFrame(columns=["user_id", "account_id"]),
        pd.DataFrame(columns=["account_id", "path"]), traits, datetime(2026, 10, 30, 23),
    )  # fmt: skip
    got = {name: series.get("u1") for name, series in values.items()}
    assert got == {"score_sum": 5, "score_max": 5, "score_gt_count": 1,
                   "obj_first": '{"name":"café"}', "plan_last": "pro"}  # fmt: skip


@pytest.mark.parametrize("arguments", [
    ["benchmarks", "--events", "-5"],
    ["benchmarks", "--events", "0"],
    ["benchmarks", "--backfill-hours", "0"],
    ["benchmarks.ingest", "--events", "0"],
    ["benchmarks.backfill", "--hours", "0"],
    ["benchmarks", "--figures", "generate,nope"],
])  # fmt: skip
def test_bad_arguments_are_usage_errors(arguments: list[str], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", *arguments, "--work-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())  # (nothing was generated or run first)


def test_verify_reports_missing_definitions_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.verify", "--work-dir",
                           str(tmp_path), "--definitions", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1
    assert "no such folder of definitions" in done.stderr
    assert "Traceback" not in done.stderr
