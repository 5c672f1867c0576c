"""Windows are loaded exactly once: duplicates dropped and counted, re-runs change nothing."""

import gzip
import json
import os
import zlib
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from account_hierarchy.ingest import load
from account_hierarchy.ingest.events_schema import validate_events
from account_hierarchy.ingest.landing import LandingFileIndexError, list_landing_files
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.validation import FrameValidationError, recheck_stored
from account_hierarchy.warehouse import connect, table_names
from account_hierarchy_tests.conftest import (
    PARTITIONS_START,
    message,
    warehouse_tables,
    write_lines,
)

H10 = datetime(2026, 10, 1, 10)
H11 = datetime(2026, 10, 1, 11)
H12 = datetime(2026, 10, 1, 12)
HOUR = timedelta(hours=1)

TABLES = ("raw_events", "quarantined_lines", "duplicate_lines")


def snapshot(con) -> dict[str, list]:
    return {
        table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in TABLES
    }


def ingest(con, landing, start=H10, end=H12):
    return ingest_window(con, landing, start, end, PARTITIONS_START)


@pytest.fixture
def two_hours(landing):
    write_lines(
        landing / "a.ndjson",
        [
            message("m1", "2026-10-01T10:05:00Z"),
            message("m2", "2026-10-01T10:59:59.999Z"),
            message("m3", "2026-10-01T11:00:00Z"),
            "oops",
            message("m1", "2026-10-01T10:05:00Z"),
        ],
    )
    write_lines(landing / "b.ndjson.gz", [message("m2", "2026-10-01T10:59:59.999Z")], gz=True)
    return landing


def test_counts_add_up_and_duplicates_point_to_the_kept_copy(con, two_hours):
    report = ingest(con, two_hours)
    assert (report.lines_read, report.loaded, report.quarantined, report.duplicates) == (6, 3, 1, 2)
    assert report.lines_read == report.loaded + report.quarantined + report.duplicates
    duplicates = con.execute(
        "SELECT source_file, source_line, message_id, duplicate_of FROM duplicate_lines "
        "ORDER BY 1, 2"
    ).fetchall()
    assert duplicates == [
        ("a.ndjson", 5, "m1", "a.ndjson:1"),
        ("b.ndjson.gz", 1, "m2", "a.ndjson:2"),
    ]


def test_rerunning_a_window_changes_nothing(con, two_hours):
    ingest(con, two_hours)
    first = snapshot(con)
    again = ingest(con, two_hours)
    assert snapshot(con) == first
    assert again.loaded == 3


def test_hours_are_half_open_and_loaded_separately(con, two_hours):
    report = ingest(con, two_hours, H10, H11)
    assert report.loaded == 2
    assert con.execute("SELECT max(timestamp) FROM raw_events").fetchone()[0] < H11
    report = ingest(con, two_hours, H11, H12)
    assert (report.loaded, report.quarantined) == (1, 1)
    assert con.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 3
    # hour by hour gives the same tables as the range in one go
    by_hour = snapshot(con)
    for table in TABLES:
        con.execute(f"DELETE FROM {table}")
    ingest(con, two_hours)
    assert snapshot(con) == by_hour


def test_same_file_landed_twice_changes_nothing(con, two_hours):
    ingest(con, two_hours)
    before = snapshot(con)
    (two_hours / "a-copy.ndjson").write_bytes((two_hours / "a.ndjson").read_bytes())
    report = ingest(con, two_hours)
    after = snapshot(con)
    assert after["raw_events"] == before["raw_events"]
    assert after["quarantined_lines"] == before["quarantined_lines"]
    copies = [row for row in after["duplicate_lines"] if row[0] == "a-copy.ndjson"]
    assert len(copies) == 5  # every line of the copy, the bad one included
    assert all(row[3] == f"a.ndjson:{row[1]}" for row in copies)
    assert report.lines_read == 11 == report.loaded + report.quarantined + report.duplicates


def test_the_same_bytes_read_as_gzip_and_as_text_are_not_one_file(con, landing):
    """Text misnamed `.gz` is an unreadable gzip file; the same bytes under a text name are
    its lines, loaded (not duplicates of lines the misnamed file does not have)."""
    write_lines(landing / "a.ndjson.gz", [message("m1", "2026-10-01T10:05:00Z")])
    written = H10.replace(minute=30, tzinfo=UTC).timestamp()  # (the hour of its error row)
    os.utime(landing / "a.ndjson.gz", (written, written))
    ingest(con, landing)
    (landing / "b.ndjson").write_bytes((landing / "a.ndjson.gz").read_bytes())
    report = ingest(con, landing)
    assert con.execute("SELECT source_file, message_id FROM raw_events").fetchall() == [
        ("b.ndjson", "m1")
    ]
    assert con.execute("SELECT source_file, source_line FROM quarantined_lines").fetchall() == [
        ("a.ndjson.gz", 1)
    ]
    assert report.duplicates == 0


def test_message_loaded_in_another_hour_is_a_duplicate(con, landing):
    write_lines(landing / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    ingest(con, landing, H10, H11)
    # a re-send of m1 with a different (later) timestamp lands in hour 11
    write_lines(landing / "b.ndjson", [message("m1", "2026-10-01T11:05:00Z")])
    report = ingest(con, landing, H11, H12)
    assert (report.loaded, report.duplicates) == (0, 1)
    assert con.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 1


def test_changed_and_removed_files_are_reindexed(con, landing):
    path = write_lines(landing / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    ingest(con, landing)
    write_lines(
        path, [message("m1", "2026-10-01T10:05:00Z"), message("m9", "2026-10-01T11:30:00Z")]
    )
    report = ingest(con, landing)
    assert report.files_indexed == 1
    assert con.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 2
    path.unlink()
    report = ingest(con, landing)
    assert report.lines_read == 0
    assert snapshot(con) == {table: [] for table in TABLES}
    assert con.execute("SELECT count(*) FROM landing_files").fetchone()[0] == 0


def test_files_outside_the_window_are_not_read_again(con, landing):
    write_lines(landing / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    write_lines(landing / "b.ndjson", [message("m2", "2026-10-01T14:05:00Z")])
    ingest(con, landing, H10, H11)
    report = ingest(con, landing, H10, H11)
    assert report.files_read == 1
    assert report.files_indexed == 0


def gzip_cut_after(text: bytes) -> bytes:
    """The start of a gzip stream that decompresses to exactly `text`, then ends (truncated)."""
    writer = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    return writer.compress(text) + writer.flush(zlib.Z_SYNC_FLUSH)


def test_a_damaged_gzip_file_loads_the_lines_read_before_the_damage(con, landing):
    """A truncated gzip file loads its whole lines, and the line cut off is quarantined with
    the reason (in its neighbour's hour); of a file of several gzip members, those before a
    damaged one (whose CRC does not match) load."""
    line = {name: json.dumps(message(name, f"2026-10-01T10:0{n}:00Z")) for n, name in
            enumerate(["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"])}  # fmt: skip
    (landing / "cut.ndjson.gz").write_bytes(
        gzip_cut_after(f"{line['m1']}\n{line['m2'][:20]}".encode())
    )
    (landing / "cut-at-end.ndjson.gz").write_bytes(gzip_cut_after(f"{line['m3']}\n".encode()))
    damaged = bytearray(gzip.compress(f"{line['m5']}\n".encode()))
    damaged[-8] ^= 1  # (its CRC)
    (landing / "members.ndjson.gz").write_bytes(gzip.compress(f"{line['m4']}\n".encode()) + damaged)
    # a whole member's last line needs no line break; a byte order mark is no text cut off
    whole = gzip.compress(f"{line['m6']}\n{line['m7']}".encode())
    (landing / "trailing.ndjson.gz").write_bytes(whole + b"\n")
    also_whole = gzip.compress(f"{line['m8']}\n{line['m9']}".encode())
    (landing / "trailing-magic.ndjson.gz").write_bytes(also_whole + b"\x1f")  # (a cut header)
    (landing / "bom.ndjson.gz").write_bytes(gzip_cut_after(b"\xef\xbb\xbf{"))
    written = H10.replace(minute=30, tzinfo=UTC).timestamp()  # (the hour of its only row)
    os.utime(landing / "bom.ndjson.gz", (written, written))
    report = ingest(con, landing)
    loaded = con.execute(
        "SELECT source_file, source_line, message_id FROM raw_events ORDER BY 3, 1"
    )
    assert loaded.fetchall() == [
        ("cut.ndjson.gz", 1, "m1"),
        ("cut-at-end.ndjson.gz", 1, "m3"),
        ("members.ndjson.gz", 1, "m4"),
        ("trailing.ndjson.gz", 1, "m6"),
        ("trailing.ndjson.gz", 2, "m7"),
        ("trailing-magic.ndjson.gz", 1, "m8"),
        ("trailing-magic.ndjson.gz", 2, "m9"),
    ]
    quarantined = con.execute(
        "SELECT source_file, source_line, reason, raw_line, event_hour FROM quarantined_lines "
        "ORDER BY 1"
    ).fetchall()
    truncated = "unreadable gzip file: it ends early (truncated)"
    after_members = "unreadable gzip file after its last whole gzip member"
    assert quarantined[0] == ("bom.ndjson.gz", 1, truncated, "{", H10)
    assert quarantined[1:3] == [
        ("cut-at-end.ndjson.gz", 2, truncated, None, H10),
        ("cut.ndjson.gz", 2, truncated, line["m2"][:20], H10),
    ]
    assert quarantined[3][:2] == ("members.ndjson.gz", 2)
    assert (
        quarantined[3][2]
        == f"{after_members}: Error -3 while decompressing data: incorrect data check"
    )
    assert quarantined[4:] == [
        ("trailing-magic.ndjson.gz", 3, f"{after_members}: it ends early (truncated)", None, H10),
        ("trailing.ndjson.gz", 3, f"{after_members}: not gzip data", None, H10),
    ]
    assert report.lines_read == 13 == report.loaded + report.quarantined + report.duplicates


def test_batches_of_files_load_what_one_batch_loads(tmp_path, landing, monkeypatch):
    """Files are classified a batch at a time; where the batches end changes nothing."""
    write_lines(landing / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z"), "oops"])
    write_lines(landing / "b.ndjson", ["{", "[]"])  # orphans only: the file's hour
    write_lines(
        landing / "c.ndjson.gz",
        ["oops", message("m1", "2026-10-01T11:05:00Z"), message("m2", "2026-10-01T11:06:00Z")],
        gz=True,
    )
    (landing / "d.ndjson.gz").write_bytes(b"not gzip")
    write_lines(landing / "e.ndjson", [message("m2", "2026-10-01T11:06:00Z"), ""])
    tables = {}
    for batch_lines in (1, 4, 1_000):
        monkeypatch.setattr(load, "BATCH_LINES", batch_lines)
        with connect(tmp_path / f"batches-{batch_lines}.duckdb") as con:
            report = ingest(con, landing, PARTITIONS_START, datetime(2100, 1, 1))
            tables[batch_lines] = warehouse_tables(con)
        assert (report.lines_read, report.files_read) == (10, 5)
    assert tables[1] == tables[4] == tables[1_000]
    assert len(tables[1]["raw_events"]) == 2


def test_event_validation_names_rule_and_rows(con):
    con.execute(
        """
        CREATE TABLE bad AS SELECT * FROM (VALUES
          ('m1', 'track', 'u', NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, 'Logged In',
           TIMESTAMP '2026-10-01 10:05',
           NULL::TIMESTAMP, NULL::JSON, NULL::JSON, 'f.ndjson', 1::BIGINT,
           TIMESTAMP '2026-10-01 10:00'),
          ('m1', 'track', NULL, NULL, NULL, NULL, 'Logged In', TIMESTAMP '2026-10-01 10:05',
           NULL, NULL, NULL, 'f.ndjson', 2, TIMESTAMP '2026-10-01 11:00')
        ) v(message_id, type, user_id, anonymous_id, group_id, context_group_id, event,
            timestamp, received_at, properties, traits, source_file, source_line, event_hour)
        """
    )
    with pytest.raises(FrameValidationError) as error:
        validate_events(con, "bad")
    text = str(error.value)
    assert "rule 'userId or anonymousId is present' broken by 1 row(s): f.ndjson:2:m1" in text
    assert "rule 'event_hour is the hour of timestamp' broken by 1 row(s): f.ndjson:2:m1" in text
    assert "rule 'one row per message_id' broken by 2 row(s)" in text


def test_stored_rows_are_rechecked_against_the_model(con, two_hours):
    ingest(con, two_hours)
    check = partial(recheck_stored, con, "raw_events", H10, H12,
                    lambda rows: validate_events(con, rows), "event_hour")  # fmt: skip
    assert check() is None
    con.execute("UPDATE raw_events SET type = 'bogus' WHERE message_id = 'm2'")
    problems = check()
    assert "rule 'type is a Segment message type' broken by 1 row(s): a.ndjson:2:m2" in problems


def test_only_landing_files_outside_hidden_folders_are_read(tmp_path):
    """Files being written (a dot-name, or any file in a dot-folder) and other suffixes wait."""
    landing = tmp_path / "landing"
    for relative in ("a.ndjson", "sub/b.jsonl.gz", "c.json", ".d.ndjson", ".tmp/e.ndjson",
                     "sub/.writing/f.ndjson", "notes.txt", "g.ndjson.bak"):  # fmt: skip
        (landing / relative).parent.mkdir(parents=True, exist_ok=True)
        (landing / relative).write_text("")
    assert [file.path for file in list_landing_files(landing)] == [
        "a.ndjson", "c.json", "sub/b.jsonl.gz"]  # fmt: skip


@pytest.mark.parametrize("moved", ["rewritten", "removed and landed again"])
@pytest.mark.parametrize("order", [[(H11, H12), (H10, H11)], [(H10, H11), (H11, H12)]])
def test_a_message_moved_to_another_hour_is_loaded_once_whatever_the_order(
    con, landing, moved, order
):
    """M lands in hour 10 and is loaded there; then its file is rewritten (or removed, and M
    lands again in another file) with M in hour 11. Its stale row in hour 10 is no copy to
    keep, and after both hours are loaded again M is in `raw_events` once, at 11."""
    write_lines(landing / "a.ndjson", [message("M", "2026-10-01T10:05:00Z"),
                                       message("N", "2026-10-01T10:06:00Z")])  # fmt: skip
    ingest(con, landing, H10, H11)
    if moved == "removed and landed again":
        (landing / "a.ndjson").unlink()
    write_lines(landing / ("a.ndjson" if moved == "rewritten" else "b.ndjson"),
                [message("M", "2026-10-01T11:05:00Z"),
                 message("N", "2026-10-01T10:06:00Z")])  # fmt: skip
    for start, end in order:
        ingest(con, landing, start, end)
    rows = con.execute("SELECT message_id, hour(event_hour) FROM raw_events ORDER BY 1").fetchall()
    assert rows == [("M", 11), ("N", 10)]
    assert con.execute("SELECT count(*) FROM duplicate_lines").fetchone() == (0,)


def test_a_landing_file_name_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "ok.ndjson").write_text("")
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.ndjson"), "w") as file:
        file.write("{}\n")
    with pytest.raises(LandingFileIndexError, match=r"caf\\xe9.ndjson: its name is not UTF-8"):
        list_landing_files(tmp_path)


def test_a_landing_file_modified_after_2262_is_named(tmp_path):
    """Its time in nanoseconds does not fit the index's 64 bits: an error naming the file, not
    an overflow naming nothing."""
    (tmp_path / "ok.ndjson").write_text("")
    (tmp_path / "future.ndjson").write_text("{}\n")
    os.utime(tmp_path / "future.ndjson", ns=(0, 2**63 + 10**18))
    with pytest.raises(LandingFileIndexError, match=r"future.ndjson: modified in 2293, after"):
        list_landing_files(tmp_path)


def test_a_landing_folder_gone_is_an_error_not_every_file_removed(con, tmp_path, landing):
    """An unmounted or mistyped landing folder does not make a run forget every file and
    delete its hours' events: the run fails, naming the folder, and changes nothing."""
    write_lines(landing / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    ingest(con, landing)
    before = snapshot(con)
    landing.rename(tmp_path / "unmounted")
    with pytest.raises(OSError, match=r"landing folder .*landing does not exist"):
        ingest(con, landing)
    assert snapshot(con) == before
    assert con.execute("SELECT count(*) FROM landing_files").fetchone() == (1,)


def test_a_folder_that_cannot_be_listed_is_an_error_not_its_files_removed(
    con, landing, monkeypatch
):
    """A subfolder the process may not list (permissions) is no empty folder: its files would
    look removed and their events be deleted. (Simulated: the tests may run as root, for whom
    permissions do not stop a listing.)"""
    write_lines(landing / "day" / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    ingest(con, landing)
    before = snapshot(con)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fspath(path)) == "day":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(OSError, match=r"cannot list the landing folder .*day"):
        ingest(con, landing)
    assert snapshot(con) == before


def test_a_file_that_cannot_be_read_fails_the_run_naming_it(con, landing, monkeypatch):
    """(Simulated: as root, a file's permissions do not stop a read.)"""
    write_lines(landing / "ok.ndjson", [message("m1", "2026-10-01T10:05:00Z")])
    write_lines(landing / "bad.ndjson", [message("m2", "2026-10-01T10:06:00Z")])
    real_read_bytes = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path.name == "bad.ndjson":
            raise OSError(5, "Input/output error")
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(
        OSError, match=r"cannot read the landing file .*bad\.ndjson: .*Input/output"
    ):
        ingest(con, landing)


def test_a_file_only_touched_keeps_its_copies_loaded_in_other_hours(con, landing):
    first = write_lines(landing / "a.ndjson", [message("M", "2026-10-01T10:05:00Z")])
    write_lines(landing / "b.ndjson", [message("M", "2026-10-01T11:05:00Z")])
    ingest(con, landing, H10, H12)
    stored = snapshot(con)
    os.utime(first, ns=(first.stat().st_mtime_ns + 10**9,) * 2)
    report = ingest(con, landing, H11, H12)
    assert (report.files_indexed, report.loaded, report.duplicates) == (1, 0, 1)
    assert snapshot(con) == stored


def test_a_range_keeps_the_copies_its_hours_loaded_in_order_keep(tmp_path):
    """M in hour 12 in the first file, and in hour 10 in the second: the copy in the earlier
    hour is kept, whether the hours are loaded as one range or one by one."""
    landing = tmp_path / "landing"
    write_lines(landing / "a.ndjson", [message("M", "2026-10-01T12:05:00Z", userId="uA")])
    write_lines(landing / "b.ndjson", [message("M", "2026-10-01T10:05:00Z", userId="uB")])
    stored = []
    for windows in ([(H10, H12 + HOUR)], [(H10, H11), (H11, H12), (H12, H12 + HOUR)]):
        with connect(tmp_path / f"{len(windows)}.duckdb") as con:
            for start, end in windows:
                ingest(con, landing, start, end)
            stored.append(snapshot(con))
            ingest(con, landing, H10, H12 + HOUR)  # (and the range again changes nothing)
            assert snapshot(con) == stored[-1]
    assert stored[0] == stored[1]
    assert [row[:3] for row in stored[0]["raw_events"]] == [("M", "track", "uB")]


def test_a_late_earlier_copy_stays_a_duplicate_in_a_range_as_hour_by_hour(tmp_path):
    """M is loaded at 11; then a file lands with M at 9: the copy loaded before stays, whether
    the hours are loaded again as one range or one by one."""
    landing = tmp_path / "landing"
    write_lines(landing / "a.ndjson", [message("M", "2026-10-01T11:05:00Z", userId="uA")])
    hours = [H10 - HOUR, H10, H11, H12]
    stored = []
    for windows in ([(hours[0], H12 + HOUR)], [(hour, hour + HOUR) for hour in hours]):
        with connect(tmp_path / f"{len(windows)}.duckdb") as con:
            for start, end in windows:
                ingest(con, landing, start, end)
            write_lines(landing / "b.ndjson", [message("M", "2026-10-01T09:05:00Z", userId="uB")])
            for start, end in windows:
                ingest(con, landing, start, end)
            stored.append(snapshot(con))
            (landing / "b.ndjson").unlink()
    assert stored[0] == stored[1]
    assert [row[:3] for row in stored[0]["raw_events"]] == [("M", "track", "uA")]


def test_table_names_are_the_warehouse_tables_and_views_not_temporary_ones(tmp_path):
    """A Spark lake's tables are views in the warehouse: they count as tables; a connection's
    temporary tables do not."""
    with connect(tmp_path / "wh.duckdb") as con:
        con.execute("CREATE TABLE kept (x INT)")
        con.execute("CREATE VIEW lake_table AS SELECT 1 AS x")
        con.execute("CREATE TEMP TABLE scratch (x INT)")
        assert table_names(con) == {"kept", "lake_table"}


def test_times_python_cannot_hold_are_quarantined_in_a_real_hour(con, landing):
    """DuckDB reads `infinity` and years past 9999 as times: such a line is quarantined in a
    real hour (not in one no partition has), and the sensor can read the file's hours."""
    write_lines(
        landing / "a.ndjson",
        [
            message("m1", "2026-10-01T10:05:00Z"),
            message("m2", "infinity", receivedAt="infinity"),
            message("m3", "2026-10-01T10:06:00Z", receivedAt="infinity"),
            message("m4", "10000-01-01T00:00:00Z", receivedAt="10000-01-01T00:00:00Z"),
        ],
    )
    written = H12.replace(minute=30, tzinfo=UTC).timestamp()
    os.utime(landing / "a.ndjson", (written, written))
    (file,) = list_landing_files(landing)
    # (lines without a usable time belong to the hour of the line before them)
    ((_, found),) = next(load.hours_of_files(landing, [file], PARTITIONS_START))
    assert found.hours == {H10}
    ingest(con, landing, H10, H11)
    loaded = con.execute("SELECT message_id FROM raw_events").fetchall()
    reasons = con.execute("SELECT source_line, reason FROM quarantined_lines ORDER BY 1").fetchall()
    assert loaded == [("m1",)]
    assert reasons == [
        (2, 'unparseable timestamp "infinity"'),
        (3, 'unparseable receivedAt "infinity"'),
        (4, 'unparseable timestamp "10000-01-01T00:00:00Z"'),
    ]
