"""Classify landing lines: each line becomes a typed Segment message or a quarantine reason.

The rules run as one vectorised DuckDB query over the lines of a batch of files (each file's
lines an Arrow table, see `LINE_SCHEMA`), so a million lines are checked in under two seconds
on two cores. Every line leaves with an `event_hour`, the hourly partition it belongs to:

- a line with a usable event time belongs to the hour of that time: `timestamp`, or when the
  field is absent `originalTimestamp`, then `receivedAt` (a present but unparseable
  `timestamp` is quarantined, never replaced by a fallback);
- so does a quarantined line whose event time is usable (parsed, not before the first
  partition, not more than 24 hours after it was received, and received not more than 24 hours
  after the file was written), whatever else it broke;
- a quarantined line without a usable event time belongs to the hour of its `receivedAt` (when
  that is not more than 24 hours after the file was written), else to the hour of the nearest
  earlier line of the same file that has one, else of the nearest later one, else to the hour
  the file was written (its modification time).

So no line belongs to an hour more than two days after its file was written: every line's hour
is one a run can cover soon after the file lands.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

from account_hierarchy.ingest.segment_spec import (
    ID_JSON_TYPES,
    MAX_FUTURE_SKEW_HOURS,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_ID_CHARS,
    MESSAGE_TYPES,
    stripped_sql,
)
from account_hierarchy.moments import utc_sql

LINE_SCHEMA = pa.schema(
    [("source_line", pa.int64()), ("line", pa.large_string()), ("utf8_error", pa.bool_())]
)

# The message fields we read, by JSONPath, and their column names while classifying.
_FIELDS = {
    "$": "root",
    "$.type": "type",
    "$.messageId": "message_id",
    "$.userId": "user_id",
    "$.anonymousId": "anonymous_id",
    "$.groupId": "group_id",
    "$.context": "context",
    "$.context.groupId": "context_group_id",
    "$.event": "event",
    "$.name": "name",
    "$.timestamp": "timestamp",
    "$.originalTimestamp": "original_timestamp",
    "$.receivedAt": "received_at",
    "$.properties": "properties",
    "$.traits": "traits",
}
# One parse gives every field's JSON type (NULL for an invalid line) ...
_TYPE_COLUMNS = ",\n        ".join(
    f"types[{index}] AS t_{name}" for index, name in enumerate(_FIELDS.values(), start=1)
)
# ... and one more gives the values, non-strictly: numbers and objects come back as text.
_STRUCTURE = {
    "type": "VARCHAR",
    "messageId": "VARCHAR",
    "userId": "VARCHAR",
    "anonymousId": "VARCHAR",
    "groupId": "VARCHAR",
    "context": {"groupId": "VARCHAR"},
    "event": "VARCHAR",
    "name": "VARCHAR",
    "timestamp": "VARCHAR",
    "originalTimestamp": "VARCHAR",
    "receivedAt": "VARCHAR",
    "properties": "JSON",
    "traits": "JSON",
}


def _in_list(constants: tuple[str, ...]) -> str:
    """Our own constants as a SQL IN list (a literal list is checked much faster than a
    bound list parameter)."""
    return "(" + ", ".join(f"'{constant}'" for constant in constants) + ")"


_MESSAGE_TYPES, _ID_TYPES = _in_list(MESSAGE_TYPES), _in_list(ID_JSON_TYPES)


def _present(name: str) -> str:
    return f"coalesce(t_{name} <> 'NULL', false)"


def _bad_id(name: str) -> str:
    return f"({_present(name)} AND t_{name} NOT IN {_ID_TYPES})"


def _non_finite_id(name: str) -> str:
    """A number no id can be made of: `NaN`, `Infinity` or beyond a double's range (`1e400`)."""
    return f"(t_{name} = 'DOUBLE' AND NOT isfinite(TRY_CAST({name} AS DOUBLE)))"


CLASSIFY_SQL = f"""
WITH trimmed AS (
    SELECT source_file, source_line, utf8_error, file_written_at,
           regexp_replace(line, '[\\r\\n]+$', '') AS text  -- (rtrim is 8x slower)
    FROM batch_lines JOIN batch_files USING (file_number)
), parsed AS (
    SELECT *, strlen(text) AS n_bytes,
           -- (json_valid first: an error inside try() makes DuckDB redo a vector row by row)
           CASE WHEN json_valid(text) THEN json_type(text, $paths) END AS types
    FROM trimmed
), typed AS (
    SELECT source_file, source_line, utf8_error, file_written_at, text, n_bytes,
        {_TYPE_COLUMNS},
        CASE WHEN types[1] = 'OBJECT' THEN json_transform(text, $structure) END AS m
    FROM parsed
), fields AS (
    SELECT * EXCLUDE (m),
        m.type AS type,
        m.messageId AS message_id,
        nullif({stripped_sql("m.userId")}, '') AS user_id,
        nullif({stripped_sql("m.anonymousId")}, '') AS anonymous_id,
        nullif({stripped_sql("m.groupId")}, '') AS group_id,
        nullif({stripped_sql("m.context.groupId")}, '') AS context_group_id,
        m.event AS event_name,
        m.name AS page_name,
        CASE WHEN {_present("timestamp")} THEN m.timestamp
             WHEN {_present("original_timestamp")} THEN m.originalTimestamp
             ELSE m.receivedAt END AS time_text,
        CASE WHEN {_present("timestamp")} THEN 'timestamp'
             WHEN {_present("original_timestamp")} THEN 'originalTimestamp'
             ELSE 'receivedAt' END AS time_field,
        {utc_sql("time_text")} AS event_time,
        m.receivedAt AS received_text,
        {utc_sql("received_text")} AS received_at,
        m.properties AS properties,
        m.traits AS traits
    FROM typed
), timed AS (
    SELECT *,
        event_time >= CAST($partitions_start AS TIMESTAMP) AND received_in_time
            AND event_time <= coalesce(received_at, file_written_at)
                              + to_hours(CAST($max_skew_hours AS BIGINT)) AS usable_time
    FROM (SELECT *,
              coalesce(received_at <= file_written_at
                                      + to_hours(CAST($max_skew_hours AS BIGINT)), true)
                  AS received_in_time
          FROM fields)
), checked AS (
    SELECT *,
        CASE
            WHEN utf8_error THEN 'line is not valid UTF-8'
            WHEN t_root IS NULL AND regexp_matches(text, '^[ \t\n\r\v\f]*$') THEN 'empty line'
            WHEN n_bytes > $max_bytes
                THEN format('message is {{}} bytes, over the {{}} byte limit', n_bytes, $max_bytes)
            WHEN t_root IS NULL THEN 'invalid JSON'
            WHEN t_root <> 'OBJECT' THEN format('JSON {{}} is not a message object', lower(t_root))
            WHEN NOT {_present("type")} THEN 'missing type'
            WHEN t_type <> 'VARCHAR' OR type NOT IN {_MESSAGE_TYPES}
                THEN format('unknown type "{{}}"', type)
            WHEN NOT {_present("message_id")} OR {stripped_sql("message_id")} = ''
                THEN 'missing messageId'
            WHEN t_message_id <> 'VARCHAR' THEN 'messageId is not a string'
            WHEN length(message_id) > $max_id_chars
                THEN format('messageId over {{}} characters', $max_id_chars)
            WHEN {_bad_id("user_id")} THEN 'userId is not a string'
            WHEN {_non_finite_id("user_id")} THEN 'userId is not a finite number'
            WHEN {_bad_id("anonymous_id")} THEN 'anonymousId is not a string'
            WHEN {_non_finite_id("anonymous_id")} THEN 'anonymousId is not a finite number'
            WHEN user_id IS NULL AND anonymous_id IS NULL THEN 'missing userId and anonymousId'
            WHEN {_bad_id("group_id")} THEN 'groupId is not a string'
            WHEN {_non_finite_id("group_id")} THEN 'groupId is not a finite number'
            WHEN type = 'group' AND group_id IS NULL THEN 'group call without groupId'
            WHEN {_present("context")} AND t_context <> 'OBJECT' THEN 'context is not an object'
            WHEN {_bad_id("context_group_id")} THEN 'context.groupId is not a string'
            WHEN {_non_finite_id("context_group_id")} THEN 'context.groupId is not a finite number'
            WHEN type = 'track'
                 AND (coalesce(t_event, '') <> 'VARCHAR' OR {stripped_sql("event_name")} = '')
                THEN 'track call without event name'
            WHEN type IN ('page', 'screen') AND {_present("name")} AND t_name <> 'VARCHAR'
                THEN 'name is not a string'
            WHEN {_present("properties")} AND t_properties <> 'OBJECT'
                THEN 'properties is not an object'
            WHEN {_present("traits")} AND t_traits <> 'OBJECT' THEN 'traits is not an object'
            WHEN time_text IS NULL
                THEN 'missing timestamp (no timestamp, originalTimestamp or receivedAt)'
            WHEN event_time IS NULL THEN format('unparseable {{}} "{{}}"', time_field, time_text)
            WHEN {_present("received_at")} AND received_at IS NULL
                THEN format('unparseable receivedAt "{{}}"', received_text)
            WHEN NOT received_in_time
                THEN format('receivedAt {{}} is more than {{}} hours after the file was written',
                            received_text, $max_skew_hours)
            WHEN event_time < CAST($partitions_start AS TIMESTAMP)
                THEN format('{{}} {{}} is before the first partition {{}}',
                            time_field, time_text, CAST($partitions_start AS TIMESTAMP))
            WHEN NOT usable_time
                THEN format('{{}} {{}} is more than {{}} hours after it was received',
                            time_field, time_text, $max_skew_hours)
        END AS reason
    FROM timed
)
SELECT
    source_file,
    source_line,
    reason,
    CASE WHEN reason IS NULL OR usable_time THEN date_trunc('hour', event_time)
         WHEN received_at >= CAST($partitions_start AS TIMESTAMP) AND received_in_time
             THEN date_trunc('hour', received_at) END AS event_hour,
    greatest(date_trunc('hour', file_written_at), CAST($partitions_start AS TIMESTAMP))
        AS file_hour,
    message_id,
    type,
    user_id,
    anonymous_id,
    group_id,
    context_group_id,
    CASE WHEN type = 'track' THEN event_name
         WHEN type IN ('page', 'screen') THEN page_name END AS event,
    event_time AS timestamp,
    received_at,
    CASE WHEN reason IS NULL THEN properties END AS properties,
    CASE WHEN reason IS NULL THEN traits END AS traits,
    CASE WHEN reason IS NOT NULL THEN text END AS raw_line
FROM checked
"""

# Quarantined lines with no hour of their own ("orphans") borrow the hour of the nearest earlier
# line of their file that has one, else of the nearest later one, else the hour the file was
# written. A file's lines are numbered 1, 2, ... without gaps, so those neighbours are the lines
# just before and just after each run of consecutive orphans: found by equality joins on the
# few orphans rather than by sorting every line.
ANCHOR_SQL = """
UPDATE {table} AS target SET event_hour = anchored.hour
FROM (
    SELECT runs.source_file, runs.source_line,
           coalesce(earlier.event_hour, later.event_hour, runs.file_hour) AS hour
    FROM (
        SELECT source_file, source_line, file_hour,
               min(source_line) OVER run - 1 AS earlier_line,
               max(source_line) OVER run + 1 AS later_line
        FROM (SELECT source_file, source_line, file_hour,
                     source_line - row_number() OVER (PARTITION BY source_file
                                                      ORDER BY source_line) AS run_id
              FROM {table} WHERE event_hour IS NULL)
        WINDOW run AS (PARTITION BY source_file, run_id)
    ) AS runs
    LEFT JOIN {table} AS earlier
        ON earlier.source_file = runs.source_file AND earlier.source_line = runs.earlier_line
    LEFT JOIN {table} AS later
        ON later.source_file = runs.source_file AND later.source_line = runs.later_line
) AS anchored
WHERE target.event_hour IS NULL AND target.source_file = anchored.source_file
  AND target.source_line = anchored.source_line
"""


@dataclass(frozen=True)
class FileLines:
    """One file's lines to classify: its path, when it was written, its lines (`LINE_SCHEMA`)."""

    source_file: str
    written_at: datetime
    lines: pa.Table


def classify_into(
    con: duckdb.DuckDBPyConnection,
    table: str,
    files: Sequence[FileLines],
    partitions_start: datetime,
) -> None:
    """Append one row per line of `files` to `table` (a staging table we own): its reason
    (NULL when valid), its `event_hour` and the typed message fields. Then call
    `anchor_orphans`. The files are classified together: one query per batch, not per file."""
    numbered = [
        file.lines.append_column(
            "file_number", pa.array(np.full(file.lines.num_rows, number, dtype=np.int32))
        )
        for number, file in enumerate(files)
    ]
    con.register("batch_lines", pa.concat_tables(numbered))
    con.register(
        "batch_files",
        pa.table(
            {
                "file_number": pa.array(range(len(files)), pa.int32()),
                "source_file": [file.source_file for file in files],
                "file_written_at": pa.array(
                    [file.written_at for file in files], pa.timestamp("us")
                ),
            }
        ),
    )
    con.execute(
        f"INSERT INTO {table} BY NAME {CLASSIFY_SQL}",
        {
            "paths": list(_FIELDS),
            "structure": json.dumps(_STRUCTURE),
            "max_bytes": MAX_MESSAGE_BYTES,
            "max_id_chars": MAX_MESSAGE_ID_CHARS,
            "max_skew_hours": MAX_FUTURE_SKEW_HOURS,
            "partitions_start": partitions_start,
        },
    )
    con.unregister("batch_lines")
    con.unregister("batch_files")


def anchor_orphans(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Give the quarantined lines of `table` without an hour of their own their neighbours'
    hour (the nearest lines of the same file; `table` may hold several files)."""
    (orphans,) = con.execute(f"SELECT count(*) FROM {table} WHERE event_hour IS NULL").fetchone()
    if orphans:
        con.execute(ANCHOR_SQL.format(table=table))
