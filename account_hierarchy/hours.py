"""Reading snapshot hours typed by people."""

import re
from datetime import datetime, timedelta

_HOUR = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T\- ](?P<hour>[01]\d|2[0-3])"
    r"(:(?P<minute>[0-5]\d)(:(?P<second>[0-5]\d(\.\d+)?))?)?(Z|[+]00:?00)?$"
)


def parse_hour(text: str) -> datetime:
    """The UTC hour named by `2026-10-01T10`, `2026-10-01T10:00`, `2026-10-01 10:00:00Z` or
    a partition key `2026-10-01-10:00`. A time within the hour (`10:30`) is refused: a
    snapshot holds what was known at the end of its hour, not at any time within it."""
    match = _HOUR.match(text.strip())
    try:
        hour = datetime.strptime(match["date"], "%Y-%m-%d") if match else None
    except ValueError:  # (no such day: 2026-02-30)
        hour = None
    if hour is None:
        raise ValueError(
            f"{text!r} is not an hour; use e.g. 2026-10-01T10 or 2026-10-01-10:00 (UTC)"
        )
    if float(match["minute"] or 0) or float(match["second"] or 0):
        raise ValueError(
            f"{text!r} is not a whole hour: a snapshot holds what was known at the end of its "
            f"hour; use {match['date']}T{match['hour']} for the one ending at "
            f"{(int(match['hour']) + 1) % 24:02d}:00"
        )
    hour = hour.replace(hour=int(match["hour"]))
    if hour > datetime.max - timedelta(hours=1):  # (its snapshot holds what was known at its end)
        raise ValueError(f"{text!r} is the last hour there is: its end is past the year 9999")
    return hour
