"""The `raw_events` asset: materialized through Dagster for a partition and for a range."""

from pathlib import Path

import dagster as dg
import pytest

from account_hierarchy.definitions import defs
from account_hierarchy.ingest.assets import (
    LINES_ACCOUNTED_FOR,
    MATCHES_SCHEMA,
    MESSAGE_IDS_UNIQUE,
    lines_accounted_for,
    raw_events,
)
from account_hierarchy.ingest.load import IngestReport
from account_hierarchy.metadata import schema_check
from account_hierarchy.resources import LandingFolder, Warehouse
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import message, write_lines


def resources(tmp_path: Path, landing: Path) -> dict:
    return {
        "warehouse": Warehouse(database=str(tmp_path / "warehouse.duckdb")),
        "landing": LandingFolder(path=str(landing)),
    }


def test_definitions_load_with_the_ingest_graph():
    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert "raw_events" in keys
    node = repository.asset_graph.get(dg.AssetKey("raw_events"))
    assert node.group_name == "ingest"
    assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert node.pools == {"duckdb"}
    check_names = {key.name for key in repository.asset_graph.asset_check_keys}
    assert {LINES_ACCOUNTED_FOR, MESSAGE_IDS_UNIQUE, MATCHES_SCHEMA} <= check_names
    assert repository.get_job("pipeline_job").partitions_def is not None


def test_every_asset_has_a_group_a_description_kinds_and_owners():
    graph = defs.get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.description and node.kinds and node.owners, key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key


def test_materialize_one_partition_reports_counts_and_checks(tmp_path, landing):
    write_lines(
        landing / "a.ndjson",
        [
            message("m1", "2026-10-01T10:05:00Z"),
            "oops",
            message("m1", "2026-10-01T10:05:00Z"),
            message("m2", "2026-10-01T11:05:00Z"),
        ],
    )
    result = dg.materialize(
        [raw_events], partition_key="2026-10-01-10:00", resources=resources(tmp_path, landing)
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("raw_events")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert metadata["lines_read"] == 3
    assert (metadata["loaded"], metadata["quarantined"], metadata["duplicates"]) == (1, 1, 1)
    assert metadata["dagster/row_count"] == 1
    assert "m1" in metadata["preview"]
    assert [column.name for column in metadata["dagster/column_schema"].columns][:2] == [
        "message_id",
        "type",
    ]
    checks = {check.check_name: check.passed for check in result.get_asset_check_evaluations()}
    assert checks == {LINES_ACCOUNTED_FOR: True, MESSAGE_IDS_UNIQUE: True, MATCHES_SCHEMA: True}


def test_the_metadata_reports_the_most_frequent_reasons_cut_short(tmp_path, landing):
    """Reasons quote the lines' values: the metadata lists the 20 most frequent, each cut to
    200 characters, and the lines of every other reason in one row."""
    long_type = "x" * 5000
    lines = [message(f"m{i}", type=f"kind{i:02}") for i in range(24)]
    lines += [message("n1", type=long_type), message("n2", type=long_type)]
    write_lines(landing / "a.ndjson", lines)
    result = dg.materialize(
        [raw_events], partition_key="2026-10-01-10:00", resources=resources(tmp_path, landing)
    )
    (materialization,) = result.asset_materializations_for_node("raw_events")
    table = materialization.metadata["quarantine_reasons"].value.splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert len(rows) == 20 + 1
    assert rows[0] == [f'unknown type "{"x" * 186}…', "2"]
    assert rows[1:3] == [['unknown type "kind00"', "1"], ['unknown type "kind01"', "1"]]
    assert rows[-1] == ["(every other reason: see the quarantined_lines table)", "5"]
    assert max(map(len, table)) < 220


def test_failing_checks_say_why(tmp_path, landing):
    """A messageId stored twice (written behind the asset's back) fails the check, which
    names it; lines not accounted for are counted in the description."""
    write_lines(landing / "a.ndjson", [message("m1", "2026-10-01T10:05:00Z"),
                                       message("m2", "2026-10-01T11:05:00Z")])  # fmt: skip
    dg.materialize([raw_events], partition_key="2026-10-01-10:00",
                   resources=resources(tmp_path, landing))  # fmt: skip
    with connect(tmp_path / "warehouse.duckdb") as con:
        con.execute("INSERT INTO raw_events SELECT * FROM raw_events")
    result = dg.materialize(
        [raw_events], partition_key="2026-10-01-11:00", resources=resources(tmp_path, landing),
        raise_on_error=False,
    )  # fmt: skip
    (unique,) = [c for c in result.get_asset_check_evaluations()
                 if c.check_name == MESSAGE_IDS_UNIQUE]  # fmt: skip
    assert not unique.passed
    assert unique.description == "1 messageIds are stored more than once: m1"
    report = IngestReport(lines_read=5, loaded=2, quarantined=1, duplicates=1)
    accounted = lines_accounted_for(report, indexed=4, stored=3)
    assert not accounted.passed
    assert accounted.description == (
        "5 lines read, 4 loaded, quarantined or counted duplicates; the landing index gives "
        "the window 4 lines, the tables hold 3"
    )
    schema = schema_check("1 row breaks rule x: [3]", "account_traits")
    assert (schema.passed, schema.description) == (
        False, "The stored rows break the table's model: 1 row breaks rule x: [3]",
    )  # fmt: skip
    assert schema_check(None).description is None


def test_range_in_one_run_equals_hour_by_hour(tmp_path, landing):
    write_lines(
        landing / "a.ndjson",
        [message(f"m{hour}", f"2026-10-01T{hour:02d}:30:00Z") for hour in range(24)] + ["junk"],
    )
    ranged = tmp_path / "ranged"
    ranged.mkdir()
    result = dg.materialize(
        [raw_events],
        tags={
            "dagster/asset_partition_range_start": "2026-10-01-00:00",
            "dagster/asset_partition_range_end": "2026-10-01-23:00",
        },
        resources=resources(ranged, landing),
    )
    assert result.success
    for hour in range(24):
        dg.materialize(
            [raw_events],
            partition_key=f"2026-10-01-{hour:02d}:00",
            resources=resources(tmp_path, landing),
        )
    tables = ("raw_events", "quarantined_lines", "duplicate_lines")
    with (
        connect(ranged / "warehouse.duckdb") as one,
        connect(tmp_path / "warehouse.duckdb") as many,
    ):
        for table in tables:
            query = f"SELECT * FROM {table} ORDER BY ALL"
            assert one.execute(query).fetchall() == many.execute(query).fetchall()
        assert one.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 24


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-10-01-05:00", "2026-10-01-00:00",
         "2026-10-01-05:00...2026-10-01-00:00 ends before it starts"),
        ("2026-10-01-00:30", "2026-10-01-02:00", "partition 2026-10-01-00:30 is not an hour"),
        ("2026-10-01-00:00", "2026-10-01-02:45", "partition 2026-10-01-02:45 is not an hour"),
        ("2023-12-31-22:00", "2024-01-01-01:00",
         "partition 2023-12-31-22:00 is before the first partition 2024-01-01-00:00 "
         "(AH_PARTITIONS_START)"),
    ],
)  # fmt: skip
def test_a_range_that_is_no_run_of_hours_fails_at_once_and_clearly(
    tmp_path, landing, start, end, message
):
    keys = {"dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end}  # fmt: skip
    result = dg.materialize([raw_events], resources=resources(tmp_path, landing),
                            tags=keys, raise_on_error=False)  # fmt: skip
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    assert message in str(failure.step_failure_data.error)
