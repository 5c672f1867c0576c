"""The landing sensor: one run per new content, over the hours it touches and later snapshots."""

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from account_hierarchy import sensors
from account_hierarchy.definitions import defs
from account_hierarchy.ingest import load
from account_hierarchy.ingest.assets import raw_events
from account_hierarchy.jobs import RANGE_END_TAG, RANGE_START_TAG
from account_hierarchy.partitions import partitions_start
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
    assert requests == []
    assert {**json.loads(cursor), "epoch": 0} == {
        "files": {}, "pending": [], "requests": 0, "epoch": 0}  # fmt: skip


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
    assert span(rewritten) == ("2026-10-01-10:00", "2026-10-01-11:00")


def test_a_copy_landing_while_its_original_is_touched_touches_no_hour(instance, landing_env):
    """The copy is read before the original (`a` sorts after `0`): the original's content,
    only touched, is still held."""
    path = write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    _, cursor = evaluate(instance)
    (landing_env / "0_copy.ndjson").write_bytes(path.read_bytes())
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    requests, _ = evaluate(instance, cursor)
    assert requests == []


def span(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]


def test_a_rewritten_file_recomputes_the_hours_of_its_old_content(instance, landing_env):
    """The old content's events must leave their hours, even when the new content is later
    (or equals content handled before: a file changed and changed back)."""
    lines = [message("m1", "2026-10-01T10:05:00Z"), message("m2", "2026-10-01T15:05:00Z")]
    path = write_lines(landing_env / "a.ndjson", lines)
    _, cursor = evaluate(instance)
    original = path.read_bytes()
    write_lines(path, [message("m2", "2026-10-01T15:05:00Z"), message("m3", "2026-10-01T15:10Z")])
    (rewritten,), cursor = evaluate(instance, cursor)
    assert span(rewritten) == ("2026-10-01-10:00", "2026-10-01-15:00")
    path.write_bytes(original)
    (reverted,), cursor = evaluate(instance, cursor)
    assert span(reverted) == ("2026-10-01-10:00", "2026-10-01-15:00")
    assert reverted.run_key != rewritten.run_key


def test_a_removed_file_recomputes_its_hours_and_may_land_again(instance, landing_env):
    path = write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T12:05:00Z")])
    write_lines(landing_env / "b.ndjson", [message("m2", "2026-10-01T10:05:00Z")])
    (first,), cursor = evaluate(instance)
    content = path.read_bytes()
    path.unlink()
    (removed,), cursor = evaluate(instance, cursor)
    assert span(removed) == ("2026-10-01-12:00", "2026-10-01-12:00")
    assert "a.ndjson" not in json.loads(cursor)["files"]
    path.write_bytes(content)
    (landed_again,), cursor = evaluate(instance, cursor)
    assert span(landed_again) == ("2026-10-01-12:00", "2026-10-01-12:00")
    assert len({first.run_key, removed.run_key, landed_again.run_key}) == 3


def test_a_state_seen_before_gets_a_new_run_key(instance, landing_env):
    """Removing a file and landing it again returns the cursor to an earlier state: the run
    must not be skipped as a repeat of the first one (Dagster skips a run key it has seen)."""
    write_lines(landing_env / "b.ndjson", [message("m2", "2026-10-01T10:05:00Z")])
    _, cursor = evaluate(instance)
    path = write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T12:05:00Z")])
    (landed,), cursor = evaluate(instance, cursor)
    content, written = path.read_bytes(), path.stat().st_mtime_ns
    path.unlink()
    (removed,), cursor = evaluate(instance, cursor)
    path.write_bytes(content)
    os.utime(path, ns=(written, written))
    (again,), _ = evaluate(instance, cursor)
    assert len({landed.run_key, removed.run_key, again.run_key}) == 3
    assert span(again) == span(landed)


def test_a_cursor_without_earliest_hours_recomputes_from_the_first_partition(instance, landing_env):
    """A cursor written before it kept each file's earliest hour: a removed file's events may
    be in any hour."""
    path = write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T12:05:00Z")])
    _, cursor = evaluate(instance)
    old = json.loads(cursor)
    old["files"] = {name: entry[:3] for name, entry in old["files"].items()}
    path.unlink()
    (removed,), _ = evaluate(instance, json.dumps(old))
    assert span(removed)[0] == f"{partitions_start():%Y-%m-%d-%H:%M}"


def test_a_touched_file_whose_lines_follow_its_mtime_moves_them(instance, landing_env):
    """Lines without a time of their own belong to the file's mtime hour: touching the file
    moves them, from one hour to another, both recomputed."""
    path = write_lines(landing_env / "q.ndjson", ["junk", "more junk"])
    at = datetime(2026, 10, 1, 9, 30, tzinfo=UTC).timestamp()
    os.utime(path, (at, at))
    (first,), cursor = evaluate(instance)
    assert span(first) == ("2026-10-01-09:00", "2026-10-01-09:00")
    at = datetime(2026, 10, 1, 11, 30, tzinfo=UTC).timestamp()
    os.utime(path, (at, at))
    (moved,), _ = evaluate(instance, cursor)
    assert span(moved) == ("2026-10-01-09:00", "2026-10-01-11:00")


def test_hours_not_complete_yet_wait_in_the_cursor(instance, landing_env):
    write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z"),
                                           message("m2", "2026-10-01T11:10:00Z")])  # fmt: skip
    with dg.partition_loading_context(effective_dt=datetime(2026, 10, 1, 11, 30, tzinfo=UTC)):
        (request,), cursor = evaluate(instance)
        assert span(request) == ("2026-10-01-10:00", "2026-10-01-10:00")
        assert evaluate(instance, cursor)[0] == []
    with dg.partition_loading_context(effective_dt=datetime(2026, 10, 1, 12, 30, tzinfo=UTC)):
        (waited,), cursor = evaluate(instance, cursor)
        assert span(waited) == ("2026-10-01-11:00", "2026-10-01-11:00")
        assert evaluate(instance, cursor)[0] == []


@pytest.fixture
def tokyo_time(monkeypatch):
    """The process's local time zone is not UTC."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_hours_do_not_depend_on_the_local_time_zone(instance, landing_env, tokyo_time):
    write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    (request,), _ = evaluate(instance)
    assert span(request) == ("2026-10-01-10:00", "2026-10-01-10:00")


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
    original = sensors.hours_of_files
    monkeypatch.setattr(sensors, "hours_of_files", lambda landing, files, start: reads.extend(
        files) or original(landing, files, start))  # fmt: skip
    monkeypatch.setattr(sensors, "READ_BUDGET_SECONDS", 600.0)  # (all in one, on a busy machine)
    (_,), cursor = evaluate(instance)
    assert len(reads) == 300
    write_lines(landing_env / "new.ndjson", [message("n", "2026-10-01T11:05:00Z")])
    (_,), _ = evaluate(instance, cursor)
    assert len(reads) == 301  # only the new file is read


def test_files_beyond_the_read_budget_wait_for_the_next_evaluations(
    instance, landing_env, monkeypatch
):
    """An evaluation reads new files for a bounded time (at least one file), so that it ends
    within Dagster's sensor timeout; the next evaluations read the rest, one run each."""
    for hour in (10, 11, 12):
        write_lines(
            landing_env / f"f{hour}.ndjson", [message(f"m{hour}", f"2026-10-01T{hour}:05Z")]
        )
    monkeypatch.setattr(sensors, "READ_BUDGET_SECONDS", 0.0)
    monkeypatch.setattr(load, "BATCH_LINES", 1)  # (a file a batch)
    ranges, cursor = [], None
    for _ in range(3):
        (request,), cursor = evaluate(instance, cursor)
        ranges.append((request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]))
    assert ranges == [("2026-10-01-10:00", "2026-10-01-10:00"),
                      ("2026-10-01-11:00", "2026-10-01-11:00"),
                      ("2026-10-01-12:00", "2026-10-01-12:00")]  # fmt: skip
    assert evaluate(instance, cursor)[0] == []


@pytest.mark.parametrize("job", ["pipeline_job", "__ASSET_JOB"])
def test_a_late_file_recomputes_the_hours_of_runs_not_finished(instance, landing_env, job):
    """A run still queued (or in progress), of the job or of a backfill launched from the UI,
    will write snapshots after the late file's hour: the late file's run, queued after it,
    recomputes them too."""
    write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T20:05:00Z")])
    (request,), cursor = evaluate(instance)
    instance.create_run_for_job(defs.resolve_job_def(job), tags=request.tags,
                                status=dg.DagsterRunStatus.STARTED)  # fmt: skip
    write_lines(landing_env / "late.ndjson", [message("m0", "2026-10-01T08:30:00Z")])
    (late,), _ = evaluate(instance, cursor)
    assert (late.tags[RANGE_START_TAG], late.tags[RANGE_END_TAG]) == (
        "2026-10-01-08:00", "2026-10-01-20:00")  # fmt: skip


PLANNED_ONCE = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def test_a_range_run_records_its_planned_materializations_once_per_asset(instance, monkeypatch):
    """The sensor's first run over the sample covers 720 hours: Dagster would write one planned
    event per asset and hour (26,640, minutes of SQLite writes, and run monitoring fails a run
    not started within its timeout). `make` starts Dagster with the setting that records the
    range once per asset instead."""
    assert f"export {PLANNED_ONCE}" in (Path(__file__).parent.parent / "Makefile").read_text()
    monkeypatch.setenv(PLANNED_ONCE, "1")
    job = defs.resolve_job_def("pipeline_job")
    run = instance.create_run_for_job(job_def=job, tags={
        RANGE_START_TAG: "2026-10-01-00:00", RANGE_END_TAG: "2026-10-02-23:00"})  # fmt: skip
    planned = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=10_000
    ).records
    assets = {record.event_log_entry.dagster_event.asset_key for record in planned}
    assert len(planned) == len(assets) == len(job.asset_layer.executable_asset_keys)
    subset = planned[0].event_log_entry.dagster_event.event_specific_data.partitions_subset
    assert len(subset.get_partition_keys()) == 48


def test_a_cleared_cursor_gets_new_run_keys(instance, landing_env):
    """A cursor cleared (`dagster sensor cursor landing_files_sensor --delete`, say after the
    warehouse was rebuilt) counts its requests from 0 again: a folder as it was at the first
    evaluation must not give the first run's key, which Dagster skips as already requested."""
    write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    (first,), _ = evaluate(instance)
    (again,), _ = evaluate(instance, None)
    assert span(again) == span(first) and again.run_key != first.run_key


def test_a_cursor_the_sensor_did_not_write_starts_again(instance, landing_env):
    write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    corrupt_values = ['{"files": {"a.ndjson": "x"}}', '{"files": {"a.ndjson": [36, 1]}}',
                      '{"files": {"b.ndjson": [1, 2, "h", "not-a-date"]}}',
                      '{"files": {}, "pending": ["garbage"]}', '{"files": {}, "pending": 5}',
                      '{"files": {}, "requests": "x"}', '{"files": {}, "epoch": [1]}',
                      '{"files": {}, "pending": ["2026-10-01T10:00:00+00:00"]}',
                      '{"files": {"b.ndjson": [1, 2, "h", "2026-10-01T10:00:00+00:00"]}}',
                      '{"files": {}, "pending": [7]}']  # fmt: skip
    for corrupt in ("not json", "[]", '{"files": []}', *corrupt_values):
        (request,), cursor = evaluate(instance, corrupt)
        assert span(request) == ("2026-10-01-10:00", "2026-10-01-10:00")
        assert evaluate(instance, cursor)[0] == []


def test_runs_of_other_partitions_in_the_instance_do_not_stretch_the_range(instance, landing_env):
    """The instance may run other code locations' jobs, with daily or static partitions: their
    keys are no hours of this job (a range ending at one fails at once)."""

    @dg.op
    def noop():
        pass

    @dg.job(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
    def daily_job():
        noop()

    @dg.job(partitions_def=dg.StaticPartitionsDefinition(["us-east"]))
    def static_job():
        noop()

    instance.create_run_for_job(daily_job, tags={"dagster/partition": "2026-11-30"},
                                status=dg.DagsterRunStatus.STARTED)  # fmt: skip
    instance.create_run_for_job(static_job, tags={"dagster/partition": "us-east"},
                                status=dg.DagsterRunStatus.STARTED)  # fmt: skip
    write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    (request,), _ = evaluate(instance)
    assert span(request) == ("2026-10-01-10:00", "2026-10-01-10:00")


def test_a_touched_file_whose_later_line_changes_hour_is_handled(instance, landing_env):
    """A line without `receivedAt` more than 24 hours after the file was written is quarantined
    in its neighbour's hour; touching the file later makes it valid, in its own hour: the
    earliest hour stays, a later one moves."""
    lines = [message("A", "2026-10-01T10:00:00Z"), message("B", "2026-10-03T10:00:00Z")]
    path = write_lines(landing_env / "f.ndjson", lines)
    at = datetime(2026, 10, 2, tzinfo=UTC).timestamp()
    os.utime(path, (at, at))
    (first,), cursor = evaluate(instance)
    assert span(first) == ("2026-10-01-10:00", "2026-10-01-10:00")
    at = datetime(2026, 10, 4, tzinfo=UTC).timestamp()
    os.utime(path, (at, at))
    (touched,), cursor = evaluate(instance, cursor)
    assert span(touched) == ("2026-10-01-10:00", "2026-10-03-10:00")
    os.utime(path, (at + 60, at + 60))  # touched again, the same hours: nothing to do
    assert evaluate(instance, cursor)[0] == []


def test_a_touched_file_whose_line_becomes_valid_in_the_same_hour_is_handled(instance, landing_env):
    """The same, with the line quarantined in its own hour: touching the file makes it valid
    there, which no hour of the file shows."""
    lines = [message("A", "2026-10-03T10:05:00Z"), message("B", "2026-10-03T10:30:00Z")]
    path = write_lines(landing_env / "f.ndjson", lines)
    at = datetime(2026, 10, 2, 10, 20, tzinfo=UTC).timestamp()  # (B: over 24 hours after)
    os.utime(path, (at, at))
    (first,), cursor = evaluate(instance)
    assert span(first) == ("2026-10-03-10:00", "2026-10-03-10:00")
    at = datetime(2026, 10, 3, 11, tzinfo=UTC).timestamp()
    os.utime(path, (at, at))
    (touched,), cursor = evaluate(instance, cursor)
    assert span(touched) == ("2026-10-03-10:00", "2026-10-03-10:00")


def test_a_landing_folder_gone_asks_for_no_run_that_would_delete_every_event(
    instance, landing_env, tmp_path
):
    """An unmounted landing folder is not every file removed: no run over every hour (which
    would delete their events) is asked for; the evaluation fails naming the folder."""
    write_lines(landing_env / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    _, cursor = evaluate(instance)
    landing_env.rename(tmp_path / "unmounted")
    with pytest.raises(OSError, match=r"landing folder .* does not exist"):
        evaluate(instance, cursor)
