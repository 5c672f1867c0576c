"""The pipeline job: every hourly asset, from raw events to activation."""

import dagster as dg

pipeline_job = dg.define_asset_job(
    "pipeline_job",
    selection=dg.AssetSelection.all(),
    description="Every hourly asset, from raw events to activation, for an hour or a range.",
)

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"  # (a run of one hour, such as the hourly schedule's)
