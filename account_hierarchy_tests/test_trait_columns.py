"""Trait keys become typed columns; odd keys stay in the traits JSON only."""

from datetime import datetime

import pytest

from account_hierarchy.hierarchy import trait_columns
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.hierarchy.trait_columns import column_type, infer_trait_columns
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.warehouse import connect
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


def test_columns_retyped_and_added_in_one_transaction_commit(con, landing):
    """An hourly run whose traits retype several columns and add others (one transaction, as
    the hierarchy asset builds it) commits, and the columns hold every stored row's value."""

    def identify(message_id, hour, traits):
        return {"type": "identify", "messageId": message_id, "userId": "u1", "traits": traits,
                "timestamp": f"2026-10-01T{hour}:00:00Z"}  # fmt: skip

    later = {"age": 30.5, "seats": "x", "role": "Admin", "vip": True}
    write_lines(landing / "a.ndjson", [identify("i1", 10, {"age": 30, "seats": 1}),
                                       identify("i2", 11, later)])  # fmt: skip
    for hour in (10, 11):  # the columns are typed from the events loaded so far
        window = (datetime(2026, 10, 1, hour), datetime(2026, 10, 1, hour + 1))
        ingest_window(con, landing, *window, PARTITIONS_START)
        con.begin()
        build_snapshots(con, *window, "parent_account_id")
        con.commit()
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'users'").fetchall())  # fmt: skip
    assert [types[key] for key in ("age", "seats", "role", "vip")] == [
        "DOUBLE", "JSON", "VARCHAR", "BOOLEAN"]  # fmt: skip
    rows = con.execute("SELECT hour(snapshot_hour), age, seats, role, vip FROM users "
                       "ORDER BY 1").fetchall()  # fmt: skip
    assert rows == [(10, 30.0, "1", None, None), (11, 30.5, '"x"', "Admin", True)]


@pytest.mark.parametrize(
    ("first", "second", "limit"),
    [
        ({"email": "a@x.com"}, {"Email": "b@x.com"}, 200),  # (a new key sorting first clashes)
        ({"k1": 1, "k2": 2}, {"a0": 3}, 2),  # (a new key takes a place under the limit)
    ],
)
def test_hourly_runs_give_the_columns_a_range_run_gives(tmp_path, monkeypatch, first, second,
                                                        limit):  # fmt: skip
    monkeypatch.setattr(trait_columns, "MAX_TRAIT_COLUMNS", limit)
    landing = tmp_path / "landing"
    write_lines(landing / "a.ndjson", [
        {"type": "identify", "messageId": f"i{hour}", "userId": f"u{hour}", "traits": traits,
         "timestamp": f"2026-10-01T{hour}:00:00Z"}
        for hour, traits in ((10, first), (11, second))])  # fmt: skip
    tables = []
    for windows in ([(10, 11), (11, 12)], [(10, 12)]):
        con = connect(tmp_path / f"{len(windows)}.duckdb")
        for start, end in windows:
            window = (datetime(2026, 10, 1, start), datetime(2026, 10, 1, end))
            ingest_window(con, landing, *window, PARTITIONS_START)
            con.begin()
            build_snapshots(con, *window, "parent_account_id")
            con.commit()
        # (the same columns, in the order they were added)
        rows = con.execute("SELECT * FROM users ORDER BY ALL").df().to_dict("records")
        tables.append([{key: row[key] for key in sorted(row)} for row in rows])
    assert tables[0] == tables[1]


def test_columns_are_typed_by_the_values_kept(con, landing):
    """Anonymous identify calls type no column (their traits are nobody's), and integers
    beyond 64 bits (DuckDB's JSON reader types them DOUBLE) keep a column BIGINT, null there."""

    def identify(message_id, traits, user="u1"):
        who = {"userId": user} if user else {"anonymousId": "visitor"}
        return {"type": "identify", "messageId": message_id, "traits": traits,
                "timestamp": "2026-10-01T10:00:00Z"} | who  # fmt: skip

    write_lines(
        landing / "a.ndjson",
        [
            identify("i1", {"plan": "pro", "age": 30, "n": 12345678901234567890123}),
            identify("i2", {"n": 9007199254740993, "m": -9223372036854775809}, user="u2"),
            identify("i3", {"plan": 5, "age": "thirty", "only_anon": True}, user=None),
        ],
    )
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11))
    ingest_window(con, landing, *window, PARTITIONS_START)
    assert infer_trait_columns(con, "identify", ("user_id", "traits")) == {
        "age": "BIGINT", "m": "BIGINT", "n": "BIGINT", "plan": "VARCHAR"}  # fmt: skip
    build_snapshots(con, *window, "parent_account_id")
    rows = con.execute("SELECT user_id, plan, age, n, m FROM users ORDER BY 1").fetchall()
    assert rows == [("u1", "pro", 30, None, None), ("u2", None, None, 9007199254740993, None)]


def test_a_trait_set_to_null_is_null_in_its_column_of_any_type(con, landing):
    """(a JSON column held the JSON `null`, which `IS NULL` does not find)"""

    def identify(message_id, minute, user, traits):
        return {"type": "identify", "messageId": message_id, "userId": user, "traits": traits,
                "timestamp": f"2026-10-01T10:{minute:02}:00Z"}  # fmt: skip

    write_lines(landing / "a.ndjson", [
        identify("i1", 1, "u1", {"meta": {"a": 1}, "flag": True}),
        identify("i2", 2, "u2", {"meta": "text", "flag": False}),
        identify("i3", 3, "u1", {"meta": None, "flag": None}),
        identify("i4", 4, "u3", {"meta": [None]}),
    ])  # fmt: skip
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11))
    ingest_window(con, landing, *window, PARTITIONS_START)
    build_snapshots(con, *window, "parent_account_id")
    rows = con.execute(
        "SELECT user_id, typeof(meta), meta IS NULL, flag IS NULL, meta FROM users ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("u1", "JSON", True, True, None),
        ("u2", "JSON", False, False, '"text"'),
        ("u3", "JSON", False, True, "[null]"),
    ]


def test_a_key_ending_in_a_line_break_gets_no_column():
    """Keys are matched whole: `$` in a pattern would let `seats\n` through."""
    chosen = trait_columns.choose_trait_columns(
        [("seats\n", ["BIGINT"], False), ("plan", ["VARCHAR"], False)], ()
    )
    assert chosen == {"plan": "VARCHAR"}
