"""`show account`, `show user` and `tree` read the snapshots, as tables or JSON lines."""

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner

from account_hierarchy.cli import _tree_label, main
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.hours import parse_hour
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.output import emit
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import (
    PARTITIONS_START,
    group_call,
    strict_json,
    write_lines,
)

START, END = datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 12)


@pytest.fixture
def warehouse(tmp_path, landing, monkeypatch):
    group = group_call
    write_lines(
        landing / "a.ndjson",
        [
            group("g1", "2026-10-01T10:00:00Z", "HQ", "u1", name="Holding", industry="Software"),
            group("g2", "2026-10-01T10:10:00Z", "SUB", "u2", name="Sub", parent_account_id="HQ"),
            group("g3", "2026-10-01T11:10:00Z", "LEAF", "u2", parent_account_id="SUB"),
            group("g4", "2026-10-01T11:20:00Z", "LOST", "u3", parent_account_id="NOWHERE"),
            {
                "type": "identify",
                "messageId": "i1",
                "userId": "u2",
                "timestamp": "2026-10-01T10:11:00Z",
                "traits": {"role": "Admin", "seats": 4},
            },
        ],
    )
    return build_warehouse(tmp_path, landing, monkeypatch)


def build_warehouse(tmp_path, landing, monkeypatch):
    """Load the landing folder's hours 10 and 11 and build their snapshots in a warehouse
    that the CLI then reads."""
    path = tmp_path / "wh.duckdb"
    with connect(path) as con:
        ingest_window(con, landing, START, END, PARTITIONS_START)
        build_snapshots(con, START, END, "parent_account_id")
    monkeypatch.setenv("AH_WAREHOUSE", str(path))
    return path


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result


def test_show_account_jsonl(warehouse):
    result = run("show", "account", "SUB", "--as-of", "2026-10-01T11", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["traits"] == {"name": "Sub", "parent_account_id": "HQ"}
    assert record["parent_chain"] == ["HQ"]
    assert [child["account_id"] for child in record["children"]] == ["LEAF"]
    assert record["users"][0]["user_id"] == "u2"
    assert record["users"][0]["traits"] == {"role": "Admin", "seats": 4}


def test_show_account_as_of_an_earlier_hour(warehouse):
    result = run("show", "account", "SUB", "--as-of", "2026-10-01-10:00", "--format", "jsonl")
    assert json.loads(result.output)["children"] == []


def test_show_user_includes_account_traits(warehouse):
    result = run("show", "user", "u2", "--format", "jsonl")
    record = json.loads(result.output)
    assert record["snapshot_hour"] == "2026-10-01T11:00:00"
    assert record["traits"]["seats"] == 4
    assert {a["account_id"]: a["traits"].get("name") for a in record["accounts"]} == {
        "LEAF": None,
        "SUB": "Sub",
    }
    table = run("show", "user", "u2")
    assert "accounts:" in table.output and "traits.name" in table.output


def test_tree_is_indented(warehouse):
    result = run("tree", "--as-of", "2026-10-01T11")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "HQ  Holding  (1 user)",
        "  SUB  Sub  (1 user)",
        "    LEAF  (1 user)",
        "NOWHERE  (never sent a group call)",
        "  LOST  (1 user)",
    ]
    subtree = run("tree", "SUB", "--format", "jsonl")
    assert [json.loads(line)["account_id"] for line in subtree.output.splitlines()] == [
        "SUB",
        "LEAF",
    ]
    nodes = [json.loads(line) for line in run("tree", "--format", "jsonl").output.splitlines()]
    assert {tuple(node) for node in nodes} == {tuple(nodes[0])}  # (the same keys, in order)
    nowhere = next(node for node in nodes if node["account_id"] == "NOWHERE")
    assert (nowhere["seen"], nowhere["parent_account_id"], nowhere["user_count"]) == (
        False, None, None,
    )  # fmt: skip


def test_show_account_of_a_parent_that_never_sent_a_group_call_names_its_children(warehouse):
    shown = run("show", "account", "NOWHERE", "--format", "jsonl")
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.output)
    seen = json.loads(run("show", "account", "LOST", "--format", "jsonl").output)
    assert list(record) == list(seen)
    assert (record["seen"], seen["seen"]) == (False, True)
    assert record["children"] == [{"account_id": "LOST", "user_count": 1}]
    assert (record["traits"], record["parent_chain"], record["users"]) == ({}, [], [])
    assert record["depth"] is record["parent_account_id"] is record["first_seen_at"] is None
    table = run("show", "account", "NOWHERE").output
    assert "seen: false" in table and "LOST" in table


def test_a_tree_line_keeps_a_name_with_a_line_break_on_it():
    node = {"seen": True, "account_id": "A\n1", "name": 'Bond\r\n"James"', "user_count": 2,
            "in_cycle": True, "parent_account_id": "B"}  # fmt: skip
    assert _tree_label(node) == 'A\\n1  Bond\\r\\n"James"  (2 users)  [cycle: parent is B]'


def test_unknown_entity_and_bad_hour_give_clear_errors(warehouse):
    missing = run("show", "account", "NOPE")
    assert missing.exit_code == 1
    assert "account 'NOPE' is not in the snapshot of 2026-10-01 11:00:00" in missing.output
    unbuilt = run("show", "user", "u1", "--as-of", "2026-10-05T03")
    assert unbuilt.exit_code == 1
    assert ("No users in the snapshot of 2026-10-05 03:00:00 (is that hour materialized?); "
            "the newest snapshot with users is 2026-10-01 11:00:00.") in unbuilt.output  # fmt: skip
    bad = run("tree", "--as-of", "yesterday")
    assert bad.exit_code == 2
    assert "is not an hour" in bad.output


def test_an_hour_before_the_first_group_call_has_no_accounts_but_is_built(tmp_path, landing,
                                                                          monkeypatch):  # fmt: skip
    identify = {"type": "identify", "messageId": "i1", "userId": "u1",
                "timestamp": "2026-10-01T10:11:00Z", "traits": {}}  # fmt: skip
    write_lines(landing / "a.ndjson", [identify])
    build_warehouse(tmp_path, landing, monkeypatch)
    tree = run("tree", "--as-of", "2026-10-01T10")
    assert (tree.exit_code, tree.output) == (
        0, "No account has sent a group call by the snapshot of 2026-10-01 10:00:00.\n"
    )  # fmt: skip
    assert run("tree", "--format", "jsonl").output == ""
    missing = run("show", "account", "A", "--as-of", "2026-10-01T10")
    assert missing.exit_code == 1
    assert "account 'A' is not in the snapshot of 2026-10-01 10:00:00." in missing.output


def test_an_hour_built_before_the_first_event_is_built(tmp_path, landing, monkeypatch):
    """An hour with no rows at all is told apart from an hour that was not materialized."""
    write_lines(landing / "a.ndjson", [group_call("g1", "2026-10-01T11:00:00Z", "A", "u1")])
    build_warehouse(tmp_path, landing, monkeypatch)
    tree = run("tree", "--as-of", "2026-10-01T10")
    assert (tree.exit_code, tree.output) == (
        0, "No account has sent a group call by the snapshot of 2026-10-01 10:00:00.\n"
    )  # fmt: skip
    account = run("show", "account", "A", "--as-of", "2026-10-01T11").output
    assert "parent_account_id: null\n" in account and "in_cycle: false\n" in account
    assert "snapshot_hour: 2026-10-01T11:00:00\n" in account
    user = run("show", "user", "u1", "--as-of", "2026-10-01T10")
    assert user.exit_code == 1
    assert "user 'u1' is not in the snapshot of 2026-10-01 10:00:00." in user.output
    unbuilt = run("tree", "--as-of", "2026-10-01T09")
    assert unbuilt.exit_code == 1 and "is that hour materialized?" in unbuilt.output


@pytest.mark.parametrize(
    "text",
    ["2026-10-01T10", "2026-10-01T10:00", "2026-10-01 10:00:00Z", "2026-10-01-10:00",
     "2026-10-01T10:00:00.000"],
)  # fmt: skip
def test_parse_hour(text):
    assert parse_hour(text) == datetime(2026, 10, 1, 10)


@pytest.mark.parametrize("text", ["2026-10-01T10:99", "2026-13-01T10", "2026-02-30T10",
                                  "2026-10-01T24", "2026-10-01T10:00:61"])  # fmt: skip
def test_impossible_hours_are_refused_naming_the_text(text):
    with pytest.raises(ValueError, match=f"'{text}' is not an hour"):
        parse_hour(text)


def test_the_last_hour_there_is_is_refused(tmp_path, monkeypatch):
    """Its end, which its snapshot is as of, is past the year 9999 (`preview` failed with a
    traceback)."""
    assert parse_hour("9999-12-31T22") == datetime(9999, 12, 31, 22)
    with pytest.raises(ValueError, match="'9999-12-31T23' is the last hour there is"):
        parse_hour("9999-12-31T23")
    monkeypatch.setenv("AH_WAREHOUSE", str(tmp_path / "none.duckdb"))
    result = run("preview", "anything", "--as-of", "9999-12-31T23")
    assert result.exit_code == 2 and "the last hour there is" in result.output


@pytest.mark.parametrize("text", ["2026-10-01T10:30", "2026-10-01 10:00:01Z",
                                  "2026-10-01T10:00:00.5"])  # fmt: skip
def test_a_time_within_an_hour_is_refused(text):
    """It would silently name the snapshot of the hour containing it, whose data runs to the
    end of that hour."""
    with pytest.raises(ValueError, match=f"'{text}' is not a whole hour: .* use 2026-10-01T10 "
                                         "for the one ending at 11:00"):  # fmt: skip
        parse_hour(text)


def test_as_of_on_a_warehouse_with_raw_events_only_is_a_clear_error(tmp_path, landing, monkeypatch):
    write_lines(landing / "a.ndjson", [group_call("g1", "2026-10-01T10:00:00Z", "HQ", "u1")])
    path = tmp_path / "raw.duckdb"
    with connect(path) as con:
        ingest_window(con, landing, START, END, PARTITIONS_START)
    monkeypatch.setenv("AH_WAREHOUSE", str(path))
    for args in (("show", "account", "HQ"), ("tree",), ("traits", "account")):
        result = run(*args, "--as-of", "2026-10-01T10")
        assert result.exit_code == 1 and "Traceback" not in result.output, args
        assert "materialize it first" in result.output, args


@pytest.mark.parametrize("kind", ["text file", "folder"])
def test_a_warehouse_that_is_no_duckdb_file_is_one_clear_line(tmp_path, monkeypatch, kind):
    path = tmp_path / "wh.duckdb"
    path.mkdir() if kind == "folder" else path.write_text("hello\n")
    monkeypatch.setenv("AH_WAREHOUSE", str(path))
    for command in (["tree"], ["members", "a"], ["traits", "account"]):
        result = run(*command)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert result.output.startswith(f"Error: The warehouse {path} cannot be opened: ")
        assert len(result.output.splitlines()) == 1


def test_a_table_not_built_yet_is_named(tmp_path, monkeypatch):
    connect(tmp_path / "wh.duckdb").close()
    monkeypatch.setenv("AH_WAREHOUSE", str(tmp_path / "wh.duckdb"))
    result = run("show", "account", "a", "--as-of", "2026-10-01T00")
    assert result.output == (
        "Error: accounts: the warehouse has no such table yet; materialize it first.\n"
    )


def test_sync_without_a_warehouse_creates_none(tmp_path, monkeypatch):
    monkeypatch.setenv("AH_WAREHOUSE", str(tmp_path / "none" / "wh.duckdb"))
    result = run("sync", "crm_outbox", "--dry-run")
    assert result.exit_code == 1 and "No warehouse at" in result.output
    assert not (tmp_path / "none").exists()


def test_jsonl_prints_decimals_and_durations_as_numbers_and_nan_as_null(capsys):
    emit([{"a": Decimal("1.50"), "b": timedelta(minutes=2), "c": float("nan"),
           "d": {"e": [float("inf"), 1]}}], "jsonl")  # fmt: skip
    assert strict_json(capsys.readouterr().out) == {
        "a": 1.5, "b": 120.0, "c": None, "d": {"e": [None, 1]}}  # fmt: skip


def test_show_reads_traits_with_non_finite_numbers(tmp_path, landing, monkeypatch):
    traits = '{"score": nan, "low": -INF, "note": "nan inf"}'
    write_lines(landing / "a.ndjson", [
        f'{{"type": "group", "messageId": "g1", "groupId": "A", "userId": "u1", '
        f'"timestamp": "2026-10-01T10:00:00Z", "traits": {traits}}}',
    ])  # fmt: skip
    build_warehouse(tmp_path, landing, monkeypatch)
    result = run("show", "account", "A", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["traits"] == {"score": None, "low": None, "note": "nan inf"}
