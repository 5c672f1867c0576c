"""The Dagster code location: `account_hierarchy.definitions:defs`."""

import dagster as dg

from account_hierarchy.hierarchy.assets import hierarchy_snapshots
from account_hierarchy.ingest.assets import raw_events
from account_hierarchy.resources import landing_resource, warehouse_resource

pipeline_job = dg.define_asset_job(
    "pipeline_job",
    selection=dg.AssetSelection.all(),
    description="Every hourly asset, from raw events onwards, for a partition or a range.",
)

defs = dg.Definitions(
    assets=[raw_events, hierarchy_snapshots],
    jobs=[pipeline_job],
    resources={"warehouse": warehouse_resource(), "landing": landing_resource()},
)
