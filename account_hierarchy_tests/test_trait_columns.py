"""Trait keys become typed columns; odd keys stay in the traits JSON only."""

from datetime import datetime

import pytest

from account_hierarchy.hierarchy.trait_columns import column_type, infer_trait_columns
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy_tests.conftest import PARTITIONS_START, write_lines


@pytest.mark.parametrize(
    ("json_types", "all_timestamps", "expected"),
    [
        (["BIGINT"], None, "BIGINT"),
        (["UBIGINT", "BIGINT"], None, "BIGINT"),
        (["BIGINT", "DOUBLE"], None, "DOUBLE"),
        (["BOOLEAN"], None, "BOOLEAN"),
        (["VARCHAR"], False, "VARCHAR"),
        (["VARCHAR"], True, "TIMESTAMP"),
        (["VARCHAR", "BIGINT"], False, "JSON"),
        (["OBJECT"], None, "JSON"),
        ([], None, "VARCHAR"),
    ],
)
def test_column_type(json_types, all_timestamps, expected):
    assert column_type(json_types, all_timestamps) == expected


def test_infer_trait_columns_skips_odd_and_clashing_keys(con, landing):
    traits = {
        "employees": 5,
        "created_at": "2026-01-02T03:04:05Z",
        "weird key": 1,
        "Traits": "clash",
        "Plan": "a",
        "plan": "b",
        "when": "tomorrow",
    }
    write_lines(
        landing / "a.ndjson",
        [
            {
                "type": "group",
                "messageId": "g",
                "userId": "u",
                "groupId": "A",
                "timestamp": "2026-10-01T10:00:00Z",
                "traits": traits,
            }
        ],
    )
    ingest_window(con, landing, datetime(2026, 10, 1), datetime(2026, 10, 2), PARTITIONS_START)
    columns = infer_trait_columns(con, "group", ("account_id", "traits"))
    assert columns == {
        "Plan": "VARCHAR",
        "created_at": "TIMESTAMP",
        "employees": "BIGINT",
        "when": "VARCHAR",
    }
