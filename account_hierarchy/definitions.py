"""The Dagster code location: `account_hierarchy.definitions:defs`.

The trait, audience and destination assets are built from the YAML definitions in
`AH_DEFINITIONS_DIR`; invalid definitions stop the code location from loading with the same
message as `account-hierarchy validate`.
"""

import dagster as dg

from account_hierarchy import settings
from account_hierarchy.activation.assets import build_activation_assets
from account_hierarchy.audiences.assets import build_audience_assets
from account_hierarchy.catalog.loader import DefinitionError, load_catalog
from account_hierarchy.day_partials import build_day_partials_job, day_partials_schedule
from account_hierarchy.hierarchy.assets import hierarchy_snapshots
from account_hierarchy.ingest.assets import raw_events
from account_hierarchy.jobs import pipeline_job
from account_hierarchy.resources import landing_resource, warehouse_resource
from account_hierarchy.schedules import hourly_schedule
from account_hierarchy.sensors import landing_files_sensor
from account_hierarchy.traits.assets import build_trait_assets

settings.check_all()
try:
    catalog = load_catalog(settings.definitions_dir())
except DefinitionError as error:
    # A fresh exception, so the code location's error is this message, not a deep traceback.
    raise DefinitionError(settings.definitions_dir(), error.problems) from None

day_partials_job = build_day_partials_job(catalog)

defs = dg.Definitions(
    assets=[
        raw_events,
        hierarchy_snapshots,
        build_trait_assets(catalog),
        *build_audience_assets(catalog),
        *build_activation_assets(catalog),
    ],
    jobs=[pipeline_job, day_partials_job],
    schedules=[hourly_schedule, day_partials_schedule(day_partials_job)],
    sensors=[landing_files_sensor],
    resources={"warehouse": warehouse_resource(), "landing": landing_resource()},
    # Every asset writes the one DuckDB file, one op at a time (the `duckdb` pool): steps run
    # in the run's own process instead of paying a process start each.
    executor=dg.in_process_executor,
)
