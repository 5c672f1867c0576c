"""Dagster wiring of the ingest stage: the hourly `raw_events` asset."""

from datetime import datetime

import dagster as dg

from account_hierarchy import settings
from account_hierarchy.ingest.events_schema import validate_events
from account_hierarchy.ingest.landing import LandingFileIndexError
from account_hierarchy.ingest.load import STORED_LINES_SQL, IngestReport, ingest_window
from account_hierarchy.metadata import (
    MATCHES_SCHEMA,
    markdown_preview,
    markdown_table,
    schema_check,
    table_schema,
)
from account_hierarchy.partitions import HOURLY, partitions_start, window_of
from account_hierarchy.policies import TRANSIENT_RETRY, not_retried
from account_hierarchy.resources import LandingFolder, Warehouse
from account_hierarchy.validation import recheck_stored

LINES_ACCOUNTED_FOR = "every_line_accounted_for"
MESSAGE_IDS_UNIQUE = "message_ids_unique"


@dg.asset(
    partitions_def=HOURLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="ingest",
    kinds={settings.engine(), "json"},
    owners=["team:data-engineering"],
    pool="duckdb",
    retry_policy=TRANSIENT_RETRY,
    tags={"stage": "ingest"},
    check_specs=[
        dg.AssetCheckSpec(
            LINES_ACCOUNTED_FOR,
            asset="raw_events",
            blocking=True,
            description="Lines read = loaded + quarantined + duplicates, in the run and in the "
            "stored tables (the lines the file index places in the run's hours = the rows "
            "stored for them).",
        ),
        dg.AssetCheckSpec(
            MATCHES_SCHEMA,
            asset="raw_events",
            blocking=True,
            description="The stored events of the run's hours satisfy the pandera model.",
        ),
        dg.AssetCheckSpec(
            MESSAGE_IDS_UNIQUE,
            asset="raw_events",
            blocking=True,
            description="No messageId appears twice in raw_events, across all hours.",
        ),
    ],
)
def raw_events(
    context: dg.AssetExecutionContext, warehouse: Warehouse, landing: LandingFolder
) -> dg.MaterializeResult:
    """Segment messages of each hour (by event `timestamp`), parsed, checked against the Segment
    spec and de-duplicated by `messageId`. Rejected lines go to `quarantined_lines` with a
    reason, re-sends to `duplicate_lines`. Reads every landing file holding lines of the hour."""
    start, end = window_of(context)
    with warehouse.get_connection() as con:
        with not_retried(LandingFileIndexError):  # (a retry mends no bad event or file time)
            if settings.on_spark():
                from account_hierarchy.spark import stages  # (pyspark loads only for this engine)

                report = stages.ingest(con, landing.root, start, end, partitions_start())
            else:
                report = ingest_window(con, landing.root, start, end, partitions_start())
        preview = con.execute(
            "SELECT message_id, type, user_id, group_id, event, timestamp, source_file, "
            "source_line FROM raw_events WHERE event_hour >= $start AND event_hour < $end "
            "ORDER BY timestamp, message_id LIMIT 10",
            {"start": start, "end": end},
        ).df()
        repeated_ids, repeated_examples = con.execute(
            "SELECT count(*), list(message_id ORDER BY message_id)[:5] FROM (SELECT message_id "
            "FROM raw_events GROUP BY message_id HAVING count(*) > 1)"
        ).fetchone()
        indexed, stored = con.execute(STORED_LINES_SQL, {"start": start, "end": end}).fetchone()
        schema = table_schema(con, "raw_events")
        problems = recheck_stored(
            con, "raw_events", start, end, lambda rows: validate_events(con, rows), "event_hour"
        )
    context.log.info(f"Ingested {start} to {end}: {report}")
    return dg.MaterializeResult(
        metadata=_metadata(report, start, end)
        | {
            "dagster/column_schema": schema,
            "preview": dg.MetadataValue.md(markdown_preview(preview)),
        },
        check_results=[
            lines_accounted_for(report, indexed, stored),
            schema_check(problems),
            dg.AssetCheckResult(
                check_name=MESSAGE_IDS_UNIQUE,
                passed=repeated_ids == 0,
                description=f"{repeated_ids} messageIds are stored more than once: "
                f"{', '.join(repeated_examples)}{', ...' if repeated_ids > 5 else ''}"
                if repeated_ids
                else None,
                metadata={"repeated_message_ids": repeated_ids},
            ),
        ],
    )


def lines_accounted_for(report: IngestReport, indexed: int, stored: int) -> dg.AssetCheckResult:
    """Every line read is loaded, quarantined or a duplicate, and every line the landing index
    gives the window is stored in one of the three tables."""
    accounted = report.loaded + report.quarantined + report.duplicates
    problems = []
    if report.lines_read != accounted:
        problems.append(f"{report.lines_read} lines read, {accounted} loaded, quarantined or "
                        "counted duplicates")  # fmt: skip
    if indexed != stored:
        problems.append(f"the landing index gives the window {indexed} lines, the tables hold "
                        f"{stored}")  # fmt: skip
    return dg.AssetCheckResult(
        check_name=LINES_ACCOUNTED_FOR,
        passed=not problems,
        description="; ".join(problems) or None,
        metadata={"lines_read": report.lines_read, "accounted_for": accounted,
                  "lines_indexed_in_window": indexed, "rows_stored_in_window": stored},
    )  # fmt: skip


def _metadata(report: IngestReport, start: datetime, end: datetime) -> dict:
    return {
        "dagster/row_count": report.loaded,
        "window": f"[{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) UTC",
        "lines_read": report.lines_read,
        "loaded": report.loaded,
        "quarantined": report.quarantined,
        "duplicates": report.duplicates,
        "files_read": report.files_read,
        "files_indexed": report.files_indexed,
        "quarantine_reasons": dg.MetadataValue.md(_reasons_table(report)),
    }


def _reasons_table(report: IngestReport) -> str:
    """The run's most frequent quarantine reasons (a table's cells are cut short: a reason
    quotes the line's value), then the lines quarantined for all others."""
    if not report.quarantined:
        return "No line quarantined."
    rows = [[reason, count] for reason, count in report.quarantine_reasons.items()]
    others = report.quarantined - sum(report.quarantine_reasons.values())
    if others:
        rows.append(["(every other reason: see the quarantined_lines table)", others])
    return markdown_table(["reason", "lines"], rows)
