"""The landing sensor: one run per new content, over the hours it touches and later snapshots."""

import json
import os

import dagster as dg
import pytest

from account_hierarchy import sensors
from account_hierarchy.ingest.assets import raw_events
from account_hierarchy.resources import LandingFolder, Warehouse
from account_hierarchy.sensors import landing_files_sensor
from account_hierarchy_tests.conftest import message, write_lines


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def landing_env(landing, monkeypatch):
    monkeypatch.setenv("AH_LANDING_DIR", str(landing))
    return landing


def evaluate(instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = landing_files_sensor(context)
    return result.run_requests or [], result.cursor


def test_no_files_no_run(instance, landing_env):
    requests, cursor = evaluate(instance)
    assert requests == [] and json.loads(cursor) == {"files": {}, "hashes": []}


def test_new_files_give_one_run_over_the_hours_they_touch(instance, landing_env):
    write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    write_lines(landing_env / "b.ndjson", [message("m2", "2026-10-01T13:05:00Z"), "junk"])
    (request,), cursor = evaluate(instance)
    assert request.tags["dagster/asset_partition_range_start"] == "2026-10-01-10:00"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-10-01-13:00"
    assert request.run_key
    again, _ = evaluate(instance, cursor)
    assert again == []  # handled once


def test_same_content_twice_is_not_handled_again_new_content_is(instance, landing_env):
    path = write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    _, cursor = evaluate(instance)
    (landing_env / "copy.ndjson").write_bytes(path.read_bytes())
    copies, cursor = evaluate(instance, cursor)
    assert copies == []
    os.utime(path)  # touched, same content
    touched, cursor = evaluate(instance, cursor)
    assert touched == []
    write_lines(path, [message("m1", "2026-10-01T10:05:00Z"), message("m3", "2026-10-01T11:00Z")])
    (rewritten,), cursor = evaluate(instance, cursor)
    assert rewritten.tags["dagster/asset_partition_range_end"] == "2026-10-01-11:00"


def test_a_late_file_recomputes_up_to_the_latest_materialized_hour(instance, landing_env, tmp_path):
    write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T20:05:00Z")])
    resources = {"warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
                 "landing": LandingFolder(path=str(landing_env))}  # fmt: skip
    dg.materialize([raw_events], partition_key="2026-10-01-20:00", resources=resources,
                   instance=instance)  # fmt: skip
    _, cursor = evaluate(instance)
    write_lines(landing_env / "late.ndjson", [message("m0", "2026-10-01T08:30:00Z")])
    (request,), _ = evaluate(instance, cursor)
    assert request.tags["dagster/asset_partition_range_start"] == "2026-10-01-08:00"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-10-01-20:00"


def test_many_files_are_read_only_once(instance, landing_env, monkeypatch):
    for index in range(300):
        write_lines(landing_env / f"f{index:04d}.ndjson",
                    [message(f"m{index}", "2026-10-01T10:05:00Z")])  # fmt: skip
    reads = []
    original = sensors.hours_of_file
    monkeypatch.setattr(sensors, "hours_of_file", lambda *a: reads.append(1) or original(*a))
    (_,), cursor = evaluate(instance)
    assert len(reads) == 300
    write_lines(landing_env / "new.ndjson", [message("n", "2026-10-01T11:05:00Z")])
    (_,), _ = evaluate(instance, cursor)
    assert len(reads) == 301  # only the new file is read
