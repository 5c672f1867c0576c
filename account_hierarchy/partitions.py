"""The one hourly partitioning every stage shares, and conversions of its time windows."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from account_hierarchy import settings

HOURLY = dg.HourlyPartitionsDefinition(start_date=settings.partitions_start(), timezone="UTC")


def partitions_start() -> datetime:
    """First partition hour as a naive UTC datetime (the warehouse's convention)."""
    return naive_utc(HOURLY.start)


def naive_utc(moment: datetime) -> datetime:
    """A datetime in UTC without time zone, as stored in the warehouse."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def is_hour_key(key: str) -> bool:
    """Whether a partition key names an hour (`2026-10-01-10:00`, not `...-10:45` or a day)."""
    try:
        return datetime.strptime(key, HOURLY.fmt).minute == 0
    except ValueError:
        return False


def window_of(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    """The run's partition time window `[start, end)` in naive UTC; a range for backfills
    (a range whose first hour is after its last, a key not on the hour, or one before the
    first partition, is refused before any work)."""
    keys = context.partition_key_range
    for key in (keys.start, keys.end):
        # (Dagster takes any time in range, `20:45`, for the hour after it)
        if not is_hour_key(key):
            raise dg.Failure(
                f"partition {key} is not an hour: give keys on the hour, like 2026-10-01-10:00",
                allow_retries=False,
            )
    window = context.partition_time_window
    start, end = naive_utc(window.start), naive_utc(window.end)
    if start >= end:
        raise dg.Failure(
            f"partition range {keys.start}...{keys.end} ends before it starts: give the earlier "
            "hour first",
            allow_retries=False,
        )
    if start < (first := partitions_start()):
        raise dg.Failure(
            f"partition {keys.start} is before the first partition "
            f"{first:{HOURLY.fmt}} ({settings.PARTITIONS_START_ENV})",
            allow_retries=False,
        )
    return start, end


def day_of(moment: datetime) -> datetime:
    """Midnight starting `moment`'s day (the key of its day tiles and day partials)."""
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def hours_of(start: datetime, end: datetime) -> list[datetime]:
    """Every hour of `[start, end)`."""
    count = int((end - start) / timedelta(hours=1))
    return [start + timedelta(hours=index) for index in range(count)]
