"""The landing sensor: new, rewritten or removed landing files start a run of the whole chain.

Its cursor remembers, per file, the size, modification time and content hash it handled, the
earliest hour that content touched and a digest of how its lines were classified (per hour,
loaded or quarantined for which reason: a file only touched may change it). A file is handled
when it is new, when its content changed (its old content's hours are recomputed too: its
stale events must go), when it was removed, or when a touch changed how its lines are
classified. New content equal to another file's in the folder (the same file landed twice,
under any name) touches no hour: ingestion counts its lines as duplicates.

Each evaluation asks for at most one run, covering in one single-run backfill every hour from
the earliest hour the changes touch to the latest hour already materialized (or the latest
hour they touch), or to the last hour of a run still queued or in progress: snapshots as of an
hour depend on every earlier event, so a late file for an old hour recomputes that hour and
every later snapshot, raw events included. Hours not complete yet (not partitions yet) wait in
the cursor until a later evaluation finds them complete.

An evaluation must finish within Dagster's sensor timeout (60 s by default), so it reads new
files, in batches of about `BATCH_LINES` lines classified together (as ingestion reads them),
for at most `READ_BUDGET_SECONDS`; the files left are handled by the next evaluations, one run
each (a month of 10M events takes about a minute to read).
"""

import contextlib
import hashlib
import json
import time
from datetime import UTC, datetime

import dagster as dg

from account_hierarchy import settings
from account_hierarchy.ingest.landing import check_landing_folder, list_landing_files
from account_hierarchy.ingest.load import hours_of_files
from account_hierarchy.jobs import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG, pipeline_job
from account_hierarchy.partitions import HOURLY, is_hour_key, partitions_start

READ_BUDGET_SECONDS = 20.0
ASSET_JOB = "__ASSET_JOB"  # (the job of runs launched from the UI: materialize, backfills)
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
              dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]  # fmt: skip


def _hour_text(hour: datetime) -> str:
    return hour.isoformat()


def changed_files(cursor: dict) -> tuple[list[list[str]], set[datetime], dict]:
    """The changes to handle ([path, new content hash or "removed"]), the hours they touch,
    and the new cursor's files. New or changed files are read, a batch at a time, until
    `READ_BUDGET_SECONDS` have passed (at least one batch); the cursor leaves the others for
    the next evaluations."""
    landing = settings.landing_dir()
    handled = cursor.get("files", {})
    check_landing_folder(landing, len(handled))
    listed = list_landing_files(landing)
    present = {file.path for file in listed}
    unchanged = {file.path for file in listed
                 if handled.get(file.path, [])[:2] == [file.size, file.mtime_ns]}  # fmt: skip
    held_hashes = {handled[path][2] for path in unchanged}
    files = {path: handled[path] for path in unchanged}
    changes, hours = [], set()
    for path, entry in handled.items():
        if path not in present:
            changes.append([path, "removed"])
            hours |= _earliest_hour(entry)
    deadline, found_files = time.monotonic() + READ_BUDGET_SECONDS, []
    unread = [file for file in listed if file.path not in unchanged]
    with contextlib.closing(hours_of_files(landing, unread, partitions_start())) as batches:
        for batch in batches:
            found_files += batch
            if time.monotonic() > deadline:
                break
    # (the content of files only touched is held too, whichever was read first)
    held_hashes |= {found.content_hash for file, found in found_files
                    if handled.get(file.path, [None] * 3)[2] == found.content_hash}  # fmt: skip
    for file, found in found_files:
        known = handled.get(file.path)
        earliest = _hour_text(min(found.hours)) if found.hours else None
        digest = found.digest
        files[file.path] = [file.size, file.mtime_ns, found.content_hash, earliest, digest]
        same_content = known is not None and known[2] == found.content_hash
        # (a file only touched may still change: lines without a time of their own follow the
        # mtime, and lines without `receivedAt` are checked against it)
        if same_content and known[3:] == [earliest, digest]:
            continue
        changes.append([file.path, found.content_hash])
        if known:
            hours |= _earliest_hour(known)
        if same_content or found.content_hash not in held_hashes:
            held_hashes.add(found.content_hash)
            hours |= found.hours
    read = {file.path for file, _found in found_files}
    left = [file.path for file in unread if file.path not in read]
    files |= {path: handled[path] for path in left if path in handled}
    return changes, hours, files


def _earliest_hour(entry: list) -> set[datetime]:
    """The earliest hour a handled file's content touched (for a cursor written before the
    cursor kept it, the first partition: any hour may hold its events)."""
    if len(entry) < 4:
        return {partitions_start()}
    return {datetime.fromisoformat(entry[3])} if entry[3] else set()


def _partition_key(hour: datetime) -> str:
    return HOURLY.get_partition_key_for_timestamp(hour.replace(tzinfo=UTC).timestamp())


@dg.sensor(
    job=pipeline_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs the whole chain for the hours that new, rewritten or removed landing "
    "files touch.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Landing changes -> one run over the hours they touch (and later snapshots)."""
    previous = _read_cursor(context)
    changes, hours, files = changed_files(previous)
    hours |= {datetime.fromisoformat(hour) for hour in previous.get("pending", [])}
    first = partitions_start()
    hours = {max(hour, first) for hour in hours}  # (the start may have moved)
    requests = previous.get("requests", 0)
    keys = HOURLY.get_partition_keys(dynamic_partitions_store=context.instance)
    complete_until = HOURLY.end_time_for_partition_key(keys[-1]) if keys else None
    complete = sorted(
        hour for hour in hours if complete_until and hour.replace(tzinfo=UTC) < complete_until
    )
    pending = sorted(_hour_text(hour) for hour in hours if hour not in complete)
    # (a cleared cursor starts again from request 0: its keys must not repeat the earlier ones)
    epoch = previous.get("epoch") if previous else time.time_ns()
    cursor = {"files": files, "pending": pending, "requests": requests}
    if epoch is not None:
        cursor["epoch"] = epoch
    if not complete:
        reason = "The changes touch only hours not complete yet." if hours else None
        return dg.SensorResult(skip_reason=reason or "No new landing content.",
                               cursor=json.dumps(cursor))  # fmt: skip
    known = [_partition_key(hour) for hour in complete]
    materialized = context.instance.get_materialized_partitions(dg.AssetKey("raw_events"))
    last = max([*known, *(materialized or []), *unfinished_range_ends(context.instance)])
    # (the count of requests so far: a later state may repeat an earlier one, its key may not)
    material = [requests, changes, known] if epoch is None else [epoch, requests, changes, known]
    run_key = hashlib.sha256(json.dumps(material).encode()).hexdigest()[:20]
    request = dg.RunRequest(
        run_key=run_key,
        tags={RANGE_START_TAG: min(known), RANGE_END_TAG: last,
              "account_hierarchy/files": str(len(changes))},
    )  # fmt: skip
    return dg.SensorResult(
        run_requests=[request], cursor=json.dumps(cursor | {"requests": requests + 1})
    )


def _read_cursor(context: dg.SensorEvaluationContext) -> dict:
    """The cursor as the sensor wrote it; another (edited by hand, corrupt) is dropped with a
    warning: every landing file is handled again, as on the first evaluation."""
    try:
        cursor = json.loads(context.cursor or "{}")
        if _is_cursor(cursor):
            return cursor
    except (json.JSONDecodeError, ValueError, TypeError):
        pass
    context.log.warning(
        f"The sensor's cursor is not one it wrote ({str(context.cursor)[:80]!r}): it starts "
        "again, every landing file is handled anew."
    )
    return {}


def _is_cursor(cursor: object) -> bool:
    """Whether `cursor` has the shape the sensor writes (files: [size, mtime, content hash,
    earliest hour, classification digest], the last two from later versions; pending hours;
    the count of requests; the epoch); a time that does not parse raises ValueError."""

    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def is_hour(text: object) -> bool:  # (the sensor writes UTC hours without an offset)
        return datetime.fromisoformat(text).tzinfo is None  # type: ignore[arg-type]

    def is_entry(entry: object) -> bool:
        return (
            isinstance(entry, list) and 3 <= len(entry) <= 5
            and all(is_int(number) for number in entry[:2]) and isinstance(entry[2], str)
            and (len(entry) < 4 or entry[3] is None or is_hour(entry[3]))
            and all(isinstance(digest, str) for digest in entry[4:])
        )  # fmt: skip

    if not isinstance(cursor, dict) or not isinstance(files := cursor.get("files", {}), dict):
        return False
    pending = cursor.get("pending", [])
    return (
        all(is_entry(entry) for entry in files.values())
        and isinstance(pending, list) and all(is_hour(hour) for hour in pending)
        and is_int(cursor.get("requests", 0)) and is_int(cursor.get("epoch", 0))
    )  # fmt: skip


def unfinished_range_ends(instance: dg.DagsterInstance) -> list[str]:
    """The last hour (partition key; keys sort in time order) of each run queued or in
    progress, of the job or of a backfill launched from the UI (`__ASSET_JOB`): a late file
    must recompute those snapshots too, and its run is queued after theirs."""
    runs = instance.get_runs(dg.RunsFilter(statuses=UNFINISHED))
    ends = [run.tags.get(RANGE_END_TAG) or run.tags.get(PARTITION_TAG) for run in runs
            if run.job_name == pipeline_job.name or run.job_name.startswith(ASSET_JOB)]  # fmt: skip
    # (other code locations' runs in the instance may have other partitions: daily, static)
    return [end for end in ends if end and is_hour_key(end)]
