"""The hourly schedule: the whole chain for the latest complete hour."""

import dagster as dg

from account_hierarchy.jobs import pipeline_job

hourly_schedule = dg.build_schedule_from_partitioned_job(
    pipeline_job,
    name="hourly_pipeline",
    description="Materializes every asset for the hour that just ended, five minutes past.",
    minute_of_hour=5,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
