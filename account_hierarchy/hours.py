"""Reading snapshot hours typed by people."""

import re
from datetime import datetime

_HOUR = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T\- ](?P<hour>\d{2})(:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+]00:?00)?$"
)


def parse_hour(text: str) -> datetime:
    """The UTC hour named by `2026-10-01T10`, `2026-10-01T10:00`, `2026-10-01 10:00:00Z` or
    a partition key `2026-10-01-10:00` (minutes are dropped: the hour containing them)."""
    match = _HOUR.match(text.strip())
    if not match:
        raise ValueError(
            f"{text!r} is not an hour; use e.g. 2026-10-01T10 or 2026-10-01-10:00 (UTC)"
        )
    day = datetime.strptime(match["date"], "%Y-%m-%d")
    hour = int(match["hour"])
    if hour > 23:
        raise ValueError(f"{text!r}: hour {hour} is not between 00 and 23")
    return day.replace(hour=hour)
