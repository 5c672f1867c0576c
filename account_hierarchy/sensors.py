"""The landing sensor: new or rewritten landing files start a run of the whole chain.

Its cursor remembers, per file, the size, modification time and content hash it handled, and
every content hash. A file is handled when it is new or its content changed; a file whose
content was already handled (the same file landed twice, under any name) is not. Each
evaluation asks for at most one run, covering in one single-run backfill every hour from the
earliest hour the new files touch to the latest hour already materialized (or the latest hour
they touch), or to the last hour of a run still queued or in progress: snapshots as of an hour
depend on every earlier event, so a late file for an old hour recomputes that hour and every
later snapshot, raw events included.

An evaluation must finish within Dagster's sensor timeout (60 s by default), so it reads new
files for at most `READ_BUDGET_SECONDS`; the files left are handled by the next evaluations,
one run each (a month of 10M events takes about a minute to read).
"""

import hashlib
import json
import time

import dagster as dg

from account_hierarchy import settings
from account_hierarchy.ingest.landing import list_landing_files
from account_hierarchy.ingest.load import hours_of_file
from account_hierarchy.jobs import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG, pipeline_job
from account_hierarchy.partitions import HOURLY, partitions_start

PARTITION_KEY_FORMAT = "%Y-%m-%d-%H:%M"
READ_BUDGET_SECONDS = 20.0
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
              dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]  # fmt: skip


def changed_files(cursor: dict) -> tuple[list[tuple[str, str]], set, dict]:
    """(path, content hash) of files to handle, the hours they touch, and the new cursor.
    New files are read until `READ_BUDGET_SECONDS` have passed (at least one); the cursor
    leaves the others new."""
    landing = settings.landing_dir()
    files = cursor.get("files", {})
    seen_hashes = set(cursor.get("hashes", []))
    to_handle, hours = [], set()
    deadline, read = time.monotonic() + READ_BUDGET_SECONDS, 0
    for file in list_landing_files(landing):
        known = files.get(file.path)
        if known and known[:2] == [file.size, file.mtime_ns]:
            continue
        if read and time.monotonic() > deadline:
            break
        read += 1
        content_hash, file_hours = hours_of_file(landing, file, partitions_start())
        files[file.path] = [file.size, file.mtime_ns, content_hash]
        if content_hash in seen_hashes:
            continue
        seen_hashes.add(content_hash)
        to_handle.append((file.path, content_hash))
        hours |= file_hours
    return to_handle, hours, {"files": files, "hashes": sorted(seen_hashes)}


@dg.sensor(
    job=pipeline_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs the whole chain for the hours that new landing files touch.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """New landing files -> one run over the hours they touch (and later snapshots)."""
    to_handle, hours, cursor = changed_files(json.loads(context.cursor or "{}"))
    if not to_handle or not hours:
        return dg.SensorResult(skip_reason="No new landing content.", cursor=json.dumps(cursor))
    keys = HOURLY.get_partition_keys(dynamic_partitions_store=context.instance)
    known = [
        HOURLY.get_partition_key_for_timestamp(hour.timestamp())
        for hour in hours
        if hour.timestamp() < HOURLY.end_time_for_partition_key(keys[-1]).timestamp()
    ]
    if not known:
        return dg.SensorResult(skip_reason="The new files touch only hours not complete yet.",
                               cursor=json.dumps(cursor))  # fmt: skip
    materialized = context.instance.get_materialized_partitions(dg.AssetKey("raw_events"))
    last = max([*known, *(materialized or []), *unfinished_range_ends(context.instance)])
    run_key = hashlib.sha256(json.dumps(sorted(to_handle)).encode()).hexdigest()[:20]
    request = dg.RunRequest(
        run_key=run_key,
        tags={RANGE_START_TAG: min(known), RANGE_END_TAG: last,
              "account_hierarchy/files": str(len(to_handle))},
    )  # fmt: skip
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(cursor))


def unfinished_range_ends(instance: dg.DagsterInstance) -> list[str]:
    """The last hour (partition key; keys sort in time order) of each run queued or in
    progress, of the job or of a backfill launched from the UI (`__ASSET_JOB`): a late file
    must recompute those snapshots too, and its run is queued after theirs."""
    runs = instance.get_runs(dg.RunsFilter(statuses=UNFINISHED))
    ends = [run.tags.get(RANGE_END_TAG) or run.tags.get(PARTITION_TAG) for run in runs]
    return [end for end in ends if end]
