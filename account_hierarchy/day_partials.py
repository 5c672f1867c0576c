"""The day partials prepared off the hourly path.

The snapshots of every hour of a day read day partials: the whole days before it combined into
one row per key (trait partials, `traits/tiles.py: build_day_partials`; hierarchy partials,
`hierarchy/tiles.py`). The first hourly run of a day builds them when they are missing, which
at 100M events costs that run about 20 seconds. The job `day_partials_job` builds them ahead:
its schedule runs it half an hour after midnight, after the run of the hour ending the day
(which builds that day's day tiles) and before the new day's first hourly run. Both are
versioned caches: if late events change an earlier day after the job ran, the hourly run
notices and rebuilds them itself, so preparing them never changes a result.
"""

import re
from datetime import date, datetime

import dagster as dg
import duckdb
from pydantic import Field, field_validator

from account_hierarchy import settings
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.hierarchy.tiles import refresh_hierarchy_partials, refresh_hierarchy_tiles
from account_hierarchy.partitions import partitions_start
from account_hierarchy.resources import Warehouse
from account_hierarchy.traits.compute import day_partial_traits, refresh_window_tiles
from account_hierarchy.traits.tiles import build_day_partials

OP_NAME = "prepare_day_partials"


def prepare_day_partials(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, day: datetime
) -> dict[str, int]:
    """Bring the hierarchy and trait tiles up to date, then the day partials of `day`
    (midnight) that the hourly runs of that day read; return what was rebuilt."""
    hierarchy_tile_hours = refresh_hierarchy_tiles(con)
    hierarchy_partials = refresh_hierarchy_partials(con, day)
    tiles = refresh_window_tiles(con, catalog, day)
    by_day = day_partial_traits(catalog)
    trait_partials = build_day_partials(con, by_day, day) if by_day else False
    return {
        "hierarchy_tile_hours_rebuilt": hierarchy_tile_hours,
        "hierarchy_partials_rebuilt": int(hierarchy_partials),
        "trait_tile_hours_rebuilt": tiles.hours_rebuilt,
        "trait_tile_days_rebuilt": tiles.days_rebuilt,
        "trait_partials_rebuilt": int(trait_partials),
    }


class DayConfig(dg.Config):
    """The day whose hourly snapshots the partials are for."""

    day: str = Field(description="The day, as YYYY-MM-DD (UTC).")

    @field_validator("day")
    @classmethod
    def _is_a_day(cls, value: str) -> str:
        try:  # (Python also reads `20261031` and `2026-W44-6` as dates)
            day = date.fromisoformat(value) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
        except ValueError as error:
            raise ValueError(f"day {value!r} is not a date as YYYY-MM-DD: {error}") from None
        if day is None:
            raise ValueError(f"day {value!r} is not a date as YYYY-MM-DD")
        if day < (first := partitions_start().date()):
            raise ValueError(f"day {value} is before the first partition's day, {first}")
        return value


def build_day_partials_job(catalog: Catalog) -> dg.JobDefinition:
    """The job preparing a day's partials for the catalog's traits."""

    @dg.op(
        name=OP_NAME,
        pool="duckdb",
        description="Builds the day partials the day's hourly runs read (hierarchy and traits).",
        tags={"kind": "duckdb"},
    )
    def prepare(
        context: dg.OpExecutionContext, config: DayConfig, warehouse: Warehouse
    ) -> dg.Output[None]:
        if settings.on_spark():
            context.log.info("The Spark engine keeps no day partials: nothing to prepare.")
            return dg.Output(None, metadata={"engine": "spark"})
        day = datetime.combine(date.fromisoformat(config.day), datetime.min.time())
        with warehouse.get_connection() as con:
            rebuilt = prepare_day_partials(con, catalog, day)
        context.log.info(f"Day partials of {config.day}: {rebuilt}")
        return dg.Output(None, metadata={"day": config.day, **rebuilt})

    @dg.job(
        name="day_partials_job",
        description="Prepares a day's partials ahead of its first hourly run (run by the "
        "schedule `daily_day_partials`, or for any day with config `day`).",
    )
    def day_partials_job() -> None:
        prepare()

    return day_partials_job


def day_partials_schedule(job: dg.JobDefinition) -> dg.ScheduleDefinition:
    """Half an hour after midnight (UTC), the new day's partials."""

    @dg.schedule(
        name="daily_day_partials",
        cron_schedule="30 0 * * *",
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Prepares the new day's partials half an hour after midnight, between the "
        "run of the hour ending the day and the day's first hourly run.",
    )
    def daily_day_partials(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        day = context.scheduled_execution_time.date()
        if day < (first := partitions_start().date()):
            return dg.SkipReason(f"{day} is before the first partition's day, {first}.")
        key = day.isoformat()
        return dg.RunRequest(
            run_key=key, run_config={"ops": {OP_NAME: {"config": {"day": key}}}}, tags={"day": key}
        )

    return daily_day_partials
