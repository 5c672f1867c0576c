"""Time windows written for people: `30 days`, `12 hours`, `90 minutes` or `all time`."""

import re
from datetime import timedelta

_WINDOW = re.compile(r"^\s*(\d+)\s+(minute|hour|day)s?\s*$")
_UNITS = {"minute": "minutes", "hour": "hours", "day": "days"}
ALL_TIME = "all time"


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
    return timedelta(**{_UNITS[match[2]]: amount})
