"""Reading snapshot hours typed by people."""

import re
from datetime import datetime

_HOUR = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T\- ](?P<hour>[01]\d|2[0-3])"
    r"(:[0-5]\d(:[0-5]\d(\.\d+)?)?)?(Z|[+]00:?00)?$"
)


def parse_hour(text: str) -> datetime:
    """The UTC hour named by `2026-10-01T10`, `2026-10-01T10:00`, `2026-10-01 10:00:00Z` or
    a partition key `2026-10-01-10:00` (minutes are dropped: the hour containing them)."""
    match = _HOUR.match(text.strip())
    try:
        if match:
            return datetime.strptime(match["date"], "%Y-%m-%d").replace(hour=int(match["hour"]))
    except ValueError:  # (no such day: 2026-02-30)
        pass
    raise ValueError(f"{text!r} is not an hour; use e.g. 2026-10-01T10 or 2026-10-01-10:00 (UTC)")
