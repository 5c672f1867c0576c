"""Time windows written for people: `30 days`, `12 hours`, `90 minutes` or `all time`."""

import re
from datetime import timedelta

_WINDOW = re.compile(r"^\s*(\d+)\s+(minute|hour|day)s?\s*$")
_UNITS = {"minute": "minutes", "hour": "hours", "day": "days"}
ALL_TIME = "all time"


# (windows longer than a century are `all time` in practice; DuckDB's intervals and Python's
# timedelta both have limits far below what the pattern allows)
MAX_WINDOW_DAYS = 36_500


def parse_window(text: str) -> timedelta | None:
    """The window's length, or None for `all time`; ValueError explains what is expected."""
    if text.strip().lower() == ALL_TIME:
        return None
    match = _WINDOW.match(text.lower())
    if not match:
        raise ValueError(
            f"window {text!r} must look like '30 days', '12 hours', '90 minutes' or 'all time'"
        )
    amount = int(match[1])
    if amount <= 0:
        raise ValueError(f"window {text!r} must be longer than zero")
    length = timedelta(**{_UNITS[match[2]]: min(amount, MAX_WINDOW_DAYS * 24 * 60 + 1)})
    if length > timedelta(days=MAX_WINDOW_DAYS):
        raise ValueError(f"window {text!r} is over {MAX_WINDOW_DAYS} days: use 'all time'")
    return length
