"""account_hierarchy: an open B2B audience engine built as a Dagster asset graph."""

import warnings

# Every asset has a single-run backfill policy on purpose (a range of hours is one run). Dagster
# marks the parameter beta and would print the warning once per asset at every code load.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy` of function `asset`")
