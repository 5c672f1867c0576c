"""Policies shared by the assets: retries of transient errors (and failing at once on the
others), and the audiences' freshness."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import dagster as dg

from account_hierarchy.validation import FrameValidationError
from account_hierarchy.warehouse import EngineMismatchError

# A failing step (a transient DuckDB or file system error, a destination briefly down) is
# retried twice, 10 s then 30 s later (Dagster's exponential backoff); crashed run workers are
# retried by the instance (`run_retries` in dagster_home/dagster.yaml).
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL)


@contextmanager
def not_retried(*errors: type[Exception]) -> Iterator[None]:
    """Errors no retry can mend (an input not built yet, a query failing on the data, and
    always rows that break their table's pandera model or a warehouse of the other engine)
    fail the step at once, with their message, instead of going through `TRANSIENT_RETRY`."""
    try:
        yield
    except (FrameValidationError, EngineMismatchError, *errors) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None


# Audiences are meant to be at most an hour behind: warn after 2 hours, fail after 3.
AUDIENCE_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=3), warn_window=timedelta(hours=2)
)
