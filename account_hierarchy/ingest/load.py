"""Load the landing lines of a window of hours into the warehouse, exactly once.

`ingest_window` is the whole ingest stage for a time window `[start, end)`:

1. refresh the file index (`landing_files`, `landing_file_hours`): new or changed files are
   read and the hours their lines belong to recorded; files gone from the folder are forgotten;
2. read every file that holds lines of the window and classify its lines (`classify.py`), a
   batch of files (about `BATCH_LINES` lines) at a time, keeping only the window's lines (so
   staging holds one window, not every file it had to read);
3. sort the window's lines into loaded events, quarantined lines and duplicates:
   - a file whose bytes equal those of a file indexed before it (a re-delivery under another
     name) is a duplicate file: all its lines are duplicates of that file's lines;
   - a valid message is a duplicate when its `messageId` was already loaded in another hour,
     or appears earlier in this window: after the copy this window loaded before, if any, else
     in an earlier hour, then in file index order, then path, then line; so a range keeps
     what its hours loaded one by one, in order, keep;
4. validate the events with pandera, then replace the window's rows in `raw_events`,
   `raw_event_hours` (each hour's version, for the hourly tiles), `quarantined_lines` and
   `duplicate_lines` in one transaction.

Re-running a window, or landing the same file again, therefore changes nothing, and for every
run `lines_read = loaded + quarantined + duplicates`.
"""

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from account_hierarchy.ingest.classify import FileLines, anchor_orphans, classify_into
from account_hierarchy.ingest.events_schema import validate_events
from account_hierarchy.ingest.landing import (
    FileContent,
    LandingFile,
    check_landing_folder,
    list_landing_files,
    read_landing_file,
)
from account_hierarchy.warehouse import (
    EVENT_HOUR_VERSIONS_SQL,
    ensure_ingest_tables,
    in_memory,
    transaction,
)

STAGING_DDL = """
CREATE OR REPLACE TEMP TABLE window_lines (
    source_file VARCHAR, source_line BIGINT, reason VARCHAR, event_hour TIMESTAMP,
    file_hour TIMESTAMP, message_id VARCHAR, type VARCHAR, user_id VARCHAR,
    anonymous_id VARCHAR, group_id VARCHAR, context_group_id VARCHAR, event VARCHAR,
    timestamp TIMESTAMP, received_at TIMESTAMP, properties JSON, traits JSON, raw_line VARCHAR
);
CREATE OR REPLACE TEMP TABLE staged_files (
    path VARCHAR, content_hash VARCHAR, size BIGINT, mtime_ns BIGINT, line_count BIGINT
);
CREATE OR REPLACE TEMP TABLE staged_file_hours (
    path VARCHAR, event_hour TIMESTAMP, line_count BIGINT
);
"""

# Lines classified in one query: large batches keep both cores busy and spare per-file
# statements; two batches (one classified, one being read) stay well within memory.
BATCH_LINES = 500_000

EVENT_COLUMNS = (
    "message_id, type, user_id, anonymous_id, group_id, context_group_id, event, timestamp, "
    "received_at, properties, traits, source_file, source_line, event_hour"
)


@dataclass
class IngestReport:
    """What one ingest run did; `lines_read == loaded + quarantined + duplicates`."""

    lines_read: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0
    files_read: int = 0
    files_indexed: int = 0
    # (the most frequent reasons, at most REASONS_REPORTED: reasons quote the lines' values)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"{self.lines_read} lines read from {self.files_read} files: {self.loaded} loaded, "
                f"{self.quarantined} quarantined, {self.duplicates} duplicates")  # fmt: skip


@dataclass(frozen=True)
class FilesToRead:
    """The landing folder as a run sees it: every file present, and those to read (new or
    changed since indexed, or holding lines of the window)."""

    present: list[LandingFile]
    to_read: list[LandingFile]
    changed: set[str]


def files_to_read(
    con: duckdb.DuckDBPyConnection, landing_dir: Path, start: datetime, end: datetime
) -> FilesToRead:
    """Compare the landing folder with the file index (`landing_files`, `landing_file_hours`)."""
    known = dict(
        (path, (size, mtime_ns))
        for path, size, mtime_ns in con.execute(
            "SELECT path, size, mtime_ns FROM landing_files"
        ).fetchall()
    )
    check_landing_folder(landing_dir, len(known))
    present = list_landing_files(landing_dir)
    touching = {
        path
        for (path,) in con.execute(
            "SELECT DISTINCT path FROM landing_file_hours WHERE event_hour >= $start "
            "AND event_hour < $end",
            {"start": start, "end": end},
        ).fetchall()
    }
    changed = {file.path for file in present if known.get(file.path) != (file.size, file.mtime_ns)}
    to_read = [file for file in present if file.path in changed or file.path in touching]
    return FilesToRead(present, to_read, changed)


def ingest_window(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    start: datetime,
    end: datetime,
    partitions_start: datetime,
) -> IngestReport:
    """Ingest every landing line whose hour is in `[start, end)` (naive UTC datetimes)."""
    ensure_ingest_tables(con)
    report = IngestReport()
    files = files_to_read(con, landing_dir, start, end)
    con.execute(STAGING_DDL)
    con.register("present_files", pa.table({"path": [file.path for file in files.present]}))
    for batch in read_in_batches(landing_dir, files.to_read, BATCH_LINES):
        _stage_batch(con, batch, partitions_start, files.changed)
        con.execute(
            "INSERT INTO window_lines SELECT * FROM file_lines "
            "WHERE event_hour >= $start AND event_hour < $end",
            {"start": start, "end": end},
        )
        report.files_read += len(batch)
        report.files_indexed += sum(file.path in files.changed for file, _ in batch)
    # Staging happens outside the transaction: DuckDB updates transaction-local rows slowly.
    _sort_window(con, start, end, report)
    commit_in_one_transaction(con, INDEX_COMMIT_SQL + LINES_COMMIT_SQL, start, end)
    con.unregister("present_files")
    return report


def commit_in_one_transaction(
    con: duckdb.DuckDBPyConnection, script: str, start: datetime, end: datetime
) -> None:
    """Run the statements of `script` (with the window as `$start`, `$end`) all or none."""
    with transaction(con):
        for statement in script.split(";"):
            if statement.strip():
                params = {"start": start, "end": end} if "$" in statement else None
                con.execute(statement, params)


def read_in_batches(
    landing_dir: Path, files: list[LandingFile], batch_lines: int
) -> Iterator[list[tuple[LandingFile, FileContent]]]:
    """The files with their contents, in batches of consecutive files holding about
    `batch_lines` lines; the next batch is read (hashed, decompressed, split) in a thread while
    the caller classifies the current one."""
    remaining = iter(files)

    def read_batch() -> list[tuple[LandingFile, FileContent]]:
        batch, lines = [], 0
        for file in remaining:
            content = read_landing_file(landing_dir, file)
            batch.append((file, content))
            lines += content.lines.num_rows + (content.error is not None)
            if lines >= batch_lines:
                break
        return batch

    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read_batch)
        while batch := pending.result():
            pending = reader.submit(read_batch)
            yield batch


def _stage_batch(
    con: duckdb.DuckDBPyConnection,
    batch: list[tuple[LandingFile, FileContent]],
    partitions_start: datetime,
    to_index: set[str],
) -> None:
    """Classify a batch of files' lines into `file_lines` (replacing the previous batch's) and
    give their orphan lines their hour; stage the index entries of the files in `to_index`
    (new or changed files). The unreadable rest of a file gets one line after those read: the
    reason it is unreadable, with the text cut off where reading stopped."""
    # Replaced rather than emptied: a temp table does not give back the space of deleted rows.
    con.execute("CREATE OR REPLACE TEMP TABLE file_lines AS FROM window_lines WITH NO DATA")
    readable = [
        FileLines(file.path, file.written_at, content.lines)
        for file, content in batch
        if content.lines.num_rows
    ]
    if readable:
        classify_into(con, "file_lines", readable, partitions_start)
    for file, content in batch:
        if content.error is not None:
            file_hour = max(
                file.written_at.replace(minute=0, second=0, microsecond=0), partitions_start
            )
            con.execute(
                "INSERT INTO file_lines (source_file, source_line, reason, file_hour, raw_line) "
                "VALUES ($path, $line, $reason, $hour, $text)",
                {
                    "path": file.path,
                    "line": content.lines.num_rows + 1,
                    "reason": content.error,
                    "hour": file_hour,
                    "text": content.cut_line or None,
                },
            )
    anchor_orphans(con, "file_lines")
    indexed = [(file, content) for file, content in batch if file.path in to_index]
    if indexed:
        con.register(
            "indexed_files",
            pa.table(
                {
                    "path": [file.path for file, _ in indexed],
                    "content_hash": [content.content_hash for _, content in indexed],
                    "size": pa.array([file.size for file, _ in indexed], pa.int64()),
                    "mtime_ns": pa.array([file.mtime_ns for file, _ in indexed], pa.int64()),
                }
            ),
        )
        con.execute(INDEX_STAGING_SQL)
        con.unregister("indexed_files")


# The index entries of a batch's new or changed files (`indexed_files`), from their lines.
INDEX_STAGING_SQL = """
INSERT INTO staged_files
SELECT f.path, f.content_hash, f.size, f.mtime_ns, count(l.source_file)
FROM indexed_files AS f LEFT JOIN file_lines AS l ON l.source_file = f.path
GROUP BY ALL;
INSERT INTO staged_file_hours
SELECT source_file, event_hour, count(*) FROM file_lines
WHERE source_file IN (SELECT path FROM indexed_files)
GROUP BY ALL;
"""


# The window's lines sorted into events, quarantine and duplicates: named queries in DuckDB's
# dialect, each kept as a table (or view) of its name that the later ones read. Their inputs are
# `window_lines`, `landing_files`, `landing_file_hours`, `present_files`, `staged_files` and
# `raw_events`. The Spark
# engine runs the same queries, transpiled (`spark/ingest.py`).
SORT_WINDOW_QUERIES = {
    "file_index": """
        SELECT path, content_hash, seq FROM landing_files
        WHERE path IN (SELECT path FROM present_files)
          AND path NOT IN (SELECT path FROM staged_files)
        UNION ALL
        SELECT staged.path, staged.content_hash,
               coalesce(known.seq, (SELECT coalesce(max(seq), 0) FROM landing_files)
                                   + row_number() OVER (PARTITION BY known.seq IS NULL
                                                        ORDER BY staged.path)) AS seq
        FROM staged_files AS staged LEFT JOIN landing_files AS known USING (path)
    """,
    "duplicate_files": """
        SELECT copy.path, arg_min(original.path, (original.seq, original.path)) AS original
        FROM file_index AS copy
        JOIN file_index AS original
          ON original.content_hash = copy.content_hash
         AND (original.seq, original.path) < (copy.seq, copy.path)
        GROUP BY copy.path
    """,
    # Files indexed again with other bytes than before (a file only touched keeps its hash).
    "rewritten_files": """
        SELECT staged.path
        FROM staged_files AS staged JOIN landing_files AS known USING (path)
        WHERE staged.content_hash <> known.content_hash
    """,
    # (a copy loaded in another hour counts while its file is as it was then: still present,
    # not rewritten in this run, with lines in that hour, and the line is not one of this
    # window's, which a rewritten file may have moved here)
    "loaded_elsewhere": """
        SELECT e.message_id, first(e.source_file || ':' || e.source_line) AS copy
        FROM raw_events AS e
        SEMI JOIN (SELECT message_id FROM window_lines WHERE reason IS NULL) AS w
            ON e.message_id = w.message_id
        SEMI JOIN file_index AS f ON f.path = e.source_file
        SEMI JOIN landing_file_hours AS h
            ON h.path = e.source_file AND h.event_hour = e.event_hour
        ANTI JOIN rewritten_files AS r ON r.path = e.source_file
        ANTI JOIN window_lines AS l
            ON l.source_file = e.source_file AND l.source_line = e.source_line
        WHERE e.event_hour < $start OR e.event_hour >= $end
        GROUP BY e.message_id
    """,
    # Only messages met more than once (or loaded in another hour) need their copies ranked.
    "contested_messages": """
        SELECT w.message_id
        FROM window_lines AS w ANTI JOIN duplicate_files AS d ON w.source_file = d.path
        WHERE w.reason IS NULL
        GROUP BY w.message_id HAVING count(*) > 1
        UNION
        SELECT message_id FROM loaded_elsewhere
    """,
    # The contested copies this window loaded before (their file not rewritten since): they
    # stay, as a copy loaded in another hour does.
    "stored_copies": """
        SELECT e.source_file, e.source_line, e.message_id, e.event_hour
        FROM raw_events AS e
        SEMI JOIN contested_messages AS c ON c.message_id = e.message_id
        ANTI JOIN rewritten_files AS r ON r.path = e.source_file
        WHERE e.event_hour >= $start AND e.event_hour < $end
    """,
    "window_copies": """
        SELECT w.source_file, w.source_line, w.message_id, w.event_hour,
               row_number() OVER copies AS copy_rank,
               first(w.source_file || ':' || w.source_line) OVER copies AS first_copy
        FROM window_lines AS w
        JOIN file_index AS f ON f.path = w.source_file
        LEFT JOIN stored_copies AS s
            ON s.source_file = w.source_file AND s.source_line = w.source_line
           AND s.message_id = w.message_id AND s.event_hour = w.event_hour
        SEMI JOIN contested_messages AS c ON c.message_id = w.message_id
        ANTI JOIN duplicate_files AS d ON w.source_file = d.path
        WHERE w.reason IS NULL
        WINDOW copies AS (PARTITION BY w.message_id ORDER BY s.message_id IS NULL,
                          w.event_hour, f.seq, w.source_file, w.source_line)
    """,
    "window_duplicates": """
        SELECT w.source_file, w.source_line, w.message_id,
               d.original || ':' || w.source_line AS duplicate_of, w.event_hour
        FROM window_lines AS w JOIN duplicate_files AS d ON w.source_file = d.path
        UNION ALL
        SELECT v.source_file, v.source_line, v.message_id, coalesce(l.copy, v.first_copy),
               v.event_hour
        FROM window_copies AS v LEFT JOIN loaded_elsewhere AS l ON l.message_id = v.message_id
        WHERE v.copy_rank > 1 OR l.copy IS NOT NULL
    """,
    "window_quarantine": """
        SELECT w.source_file, w.source_line, w.reason, w.raw_line, w.event_hour
        FROM window_lines AS w ANTI JOIN duplicate_files AS d ON w.source_file = d.path
        WHERE w.reason IS NOT NULL
    """,
    "window_events": f"""
        SELECT {EVENT_COLUMNS}
        FROM window_lines
        ANTI JOIN window_duplicates USING (source_file, source_line)
        WHERE reason IS NULL
    """,
}

# Kept as views by DuckDB: copying every event's columns costs more than reading them again.
SORT_WINDOW_VIEWS = {"window_events"}

# How many quarantine reasons a run reports, the most frequent first.
REASONS_REPORTED = 20

# What a run did, from the sorted window (the `IngestReport` counts, then its reasons).
REPORT_QUERIES = (
    """
    SELECT (SELECT count(*) FROM window_lines), (SELECT count(*) FROM window_events),
           (SELECT count(*) FROM window_quarantine), (SELECT count(*) FROM window_duplicates)
    """,
    "SELECT reason, count(*) FROM window_quarantine GROUP BY reason ORDER BY 2 DESC, 1 "
    f"LIMIT {REASONS_REPORTED}",
)

# The window's lines by the file index (the hours of every file's lines) and as stored: loaded,
# quarantined or duplicates. Every line of every indexed file has one hour, and one stored row.
STORED_LINES_SQL = """
SELECT (SELECT coalesce(sum(line_count), 0) FROM landing_file_hours
        WHERE event_hour >= $start AND event_hour < $end),
       (SELECT count(*) FROM raw_events WHERE event_hour >= $start AND event_hour < $end)
       + (SELECT count(*) FROM quarantined_lines WHERE event_hour >= $start AND event_hour < $end)
       + (SELECT count(*) FROM duplicate_lines WHERE event_hour >= $start AND event_hour < $end)
"""

# The file index's writes (from `present_files`, `staged_files`, `staged_file_hours` and
# `file_index`), in the run's transaction.
INDEX_COMMIT_SQL = """
DELETE FROM landing_file_hours
WHERE path NOT IN (SELECT path FROM present_files) OR path IN (SELECT path FROM staged_files);
DELETE FROM landing_files
WHERE path NOT IN (SELECT path FROM present_files) OR path IN (SELECT path FROM staged_files);
INSERT INTO landing_files
SELECT s.path, s.content_hash, s.size, s.mtime_ns, i.seq, s.line_count
FROM staged_files AS s JOIN file_index AS i USING (path);
INSERT INTO landing_file_hours SELECT * FROM staged_file_hours;
"""

# The DuckDB engine's writes of the window's lines, in the same transaction.
LINES_COMMIT_SQL = """
DELETE FROM raw_events WHERE event_hour >= $start AND event_hour < $end;
DELETE FROM quarantined_lines WHERE event_hour >= $start AND event_hour < $end;
DELETE FROM duplicate_lines WHERE event_hour >= $start AND event_hour < $end;
INSERT INTO raw_events SELECT * FROM window_events;
DELETE FROM raw_event_hours WHERE event_hour >= $start AND event_hour < $end;
INSERT INTO raw_event_hours {versions};
INSERT INTO quarantined_lines
SELECT * FROM window_quarantine ORDER BY event_hour, source_file, source_line;
INSERT INTO duplicate_lines
SELECT * FROM window_duplicates ORDER BY event_hour, source_file, source_line;
""".format(versions=EVENT_HOUR_VERSIONS_SQL.format(table="window_events"))


def _sort_window(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, report: IngestReport
) -> None:
    """Split the window's lines into events, quarantine and duplicates, and validate them."""
    for name, query in SORT_WINDOW_QUERIES.items():
        params = {"start": start, "end": end} if "$start" in query else None
        kind = "VIEW" if name in SORT_WINDOW_VIEWS else "TABLE"
        con.execute(f"CREATE OR REPLACE TEMP {kind} {name} AS {query}", params)
    validate_events(con, "window_events")
    fill_report(report, lambda query: con.execute(query).fetchall())


def fill_report(report: IngestReport, run: Callable[[str], list[tuple]]) -> None:
    """Set the report's counts from the sorted window; `run` answers a query's rows."""
    counts, reasons = (run(query) for query in REPORT_QUERIES)
    report.lines_read, report.loaded, report.quarantined, report.duplicates = counts[0]
    report.quarantine_reasons = {reason: count for reason, count in reasons}


def classify_file(
    landing_dir: Path, file: LandingFile, partitions_start: datetime, threads: int | None = None
) -> tuple[str, pa.Table]:
    """A landing file's content hash and all its lines classified (the `window_lines` columns,
    JSON as text), worked out exactly as ingestion does but in a private in-memory DuckDB on
    `threads` threads (the warehouse is not touched)."""
    with in_memory(threads) as con:
        con.execute(STAGING_DDL)
        content = read_landing_file(landing_dir, file)
        _stage_batch(con, [(file, content)], partitions_start, to_index=set())
        lines = con.execute(
            "SELECT * REPLACE (properties::VARCHAR AS properties, traits::VARCHAR AS traits) "
            "FROM file_lines ORDER BY source_line"
        ).to_arrow_table()
    return content.content_hash, lines


@dataclass(frozen=True)
class FileHours:
    """What ingestion would make of a landing file: its content hash, the hours its lines
    belong to, and a digest of how they are classified (per hour, how many lines are loaded and
    how many are quarantined for each reason: a file only touched may change it)."""

    content_hash: str
    hours: set[datetime]
    digest: str


def hours_of_files(
    landing_dir: Path, files: list[LandingFile], partitions_start: datetime
) -> Iterator[list[tuple[LandingFile, FileHours]]]:
    """Batches of the files (`read_in_batches`), each file with its `FileHours`, classified
    exactly as ingestion does, in a private in-memory DuckDB (the warehouse is not touched);
    a caller may stop between batches."""
    with in_memory() as con:
        con.execute(STAGING_DDL)
        for batch in read_in_batches(landing_dir, files, BATCH_LINES):
            _stage_batch(con, batch, partitions_start, to_index=set())
            classified: dict[str, list[tuple]] = {}
            for path, *counts in con.execute(
                "SELECT source_file, event_hour, reason, count(*) FROM file_lines "
                "GROUP BY ALL ORDER BY ALL"
            ).fetchall():
                classified.setdefault(path, []).append(tuple(counts))
            found = []
            for file, content in batch:
                counts = classified.get(file.path, [])
                digest = hashlib.sha256(repr(counts).encode()).hexdigest()[:16]
                hours = {hour for hour, _reason, _count in counts}
                found.append((file, FileHours(content.content_hash, hours, digest)))
            yield found
