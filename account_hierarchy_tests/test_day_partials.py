"""The daily job that prepares a day's partials ahead of its first hourly run, and its
schedule."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from pydantic import ValidationError

from account_hierarchy import day_partials
from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.day_partials import (
    build_day_partials_job,
    day_partials_schedule,
)
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.resources import Warehouse
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.traits.compute import build_traits
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import PARTITIONS_START
from account_hierarchy_tests.test_trait_tiles import assert_same, table_rows
from account_hierarchy_tests.test_traits import SAMPLE_DEFINITIONS

START = datetime(2026, 10, 1)
DAY = datetime(2026, 10, 3)  # (the snapshots of its hours read the 1st and 2nd combined)


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("day_partials")
    generate_sample(root, seed=9, accounts=20, users=120, days=3)
    return root


def run_job(job, database, day: str) -> dict:
    result = job.execute_in_process(
        run_config={"ops": {"prepare_day_partials": {"config": {"day": day}}}},
        resources={"warehouse": Warehouse(database=str(database))},
    )
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    entries = output.event_specific_data.metadata
    return {key: value.value for key, value in entries.items()}


def test_the_job_prepares_the_partials_the_days_first_run_reads(landing, tmp_path):
    catalog = load_catalog(SAMPLE_DEFINITIONS)
    database = tmp_path / "wh.duckdb"
    with connect(database) as con:
        ingest_window(con, landing, START, DAY + timedelta(days=1), PARTITIONS_START)
    job = build_day_partials_job(catalog)
    prepared = run_job(job, database, "2026-10-03")
    assert prepared["day"] == "2026-10-03"
    assert prepared["hierarchy_partials_rebuilt"] == prepared["trait_partials_rebuilt"] == 1
    assert prepared["trait_tile_days_rebuilt"] == 2  # the 1st and the 2nd
    again = run_job(job, database, "2026-10-03")
    assert again["hierarchy_partials_rebuilt"] == again["trait_partials_rebuilt"] == 0
    assert again["trait_tile_hours_rebuilt"] == again["hierarchy_tile_hours_rebuilt"] == 0

    first_hour = (DAY, DAY + timedelta(hours=1))
    with connect(database) as con:
        built = build_snapshots(con, *first_hour, "parent_account_id")
        report = build_traits(con, catalog, *first_hour)
        assert built.day_partials_rebuilt == 0 and report["day_partials_rebuilt"] == 0
        with_partials = [table_rows(con, t) for t in ("account_traits", "user_traits")]
        build_traits(con, catalog, *first_hour, use_tiles=False)
        direct = [table_rows(con, t) for t in ("account_traits", "user_traits")]
    assert with_partials[0] and with_partials[1]
    for tiled, reference in zip(with_partials, direct, strict=True):
        assert_same(tiled, reference)


@pytest.mark.parametrize(
    ("day", "message"),
    [
        ("2026-13-01", "day '2026-13-01' is not a date as YYYY-MM-DD"),
        ("20261001", "day '20261001' is not a date as YYYY-MM-DD"),
        ("2026-W40-4", "day '2026-W40-4' is not a date as YYYY-MM-DD"),
        ("2023-12-31", "day 2023-12-31 is before the first partition's day, 2024-01-01"),
    ],
)
def test_the_job_rejects_a_day_that_is_not_a_date(tmp_path, day, message):
    job = build_day_partials_job(load_catalog(SAMPLE_DEFINITIONS))
    with pytest.raises(ValidationError, match=message):
        run_job(job, tmp_path / "wh.duckdb", day)


def test_the_schedule_asks_for_the_new_day_half_an_hour_after_midnight():
    job = build_day_partials_job(load_catalog(SAMPLE_DEFINITIONS))
    schedule = day_partials_schedule(job)
    assert schedule.cron_schedule == "30 0 * * *" and schedule.execution_timezone == "UTC"
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 10, 3, 0, 30, tzinfo=UTC)
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.run_key == "2026-10-03"
    config = {"ops": {"prepare_day_partials": {"config": {"day": "2026-10-03"}}}}
    assert request.run_config == config


def test_the_schedule_skips_days_before_the_first_partition(monkeypatch):
    monkeypatch.setattr(day_partials, "partitions_start", lambda: datetime(2030, 1, 1))
    schedule = day_partials_schedule(build_day_partials_job(load_catalog(SAMPLE_DEFINITIONS)))
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2029, 6, 1, 0, 30, tzinfo=UTC)
    )
    tick = schedule.evaluate_tick(context)
    assert not tick.run_requests
    assert tick.skip_message == "2029-06-01 is before the first partition's day, 2030-01-01."
