"""Trait values match an independent computation, on edge cases and on the sample."""

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import ibis
import pytest
import yaml

from account_hierarchy.audiences.evaluate import NotComputedError
from account_hierarchy.audiences.memberships import build_audience
from account_hierarchy.audiences.queries import newest_evaluable_hour, preview
from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.catalog.models import SqlTrait
from account_hierarchy.hierarchy.queries import HierarchyNotBuiltError, NotInSnapshotError
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.traits import compute
from account_hierarchy.traits.compute import build_traits, sql_trait_rows
from account_hierarchy.traits.profile import profile_column
from account_hierarchy.traits.queries import trait_rows
from account_hierarchy.traits.sql_traits import SqlTraitError, parse_trait_sql
from account_hierarchy.warehouse import connect, table_names
from account_hierarchy_tests.conftest import PARTITIONS_START, group_call, write_lines
from account_hierarchy_tests.reference import read_events, snapshot
from account_hierarchy_tests.reference_traits import trait_values

SAMPLE_DEFINITIONS = Path(__file__).parent.parent / "data" / "definitions"


def build_all(con, landing, start, end, definitions: Path):
    """Snapshots and traits for `[start, end)` (the events must be ingested)."""
    build_snapshots(con, start, end, "parent_account_id")
    catalog = load_catalog(definitions)
    build_traits(con, catalog, start, end)
    return catalog


def one_account_with(tmp_path: Path, traits: list[dict]) -> None:
    """Account A with user u1 (one group call at 10:00 on 1 October) in `tmp_path / "landing"`,
    and `traits` in `tmp_path / "definitions" / "t.yaml"`."""
    write_lines(tmp_path / "landing" / "a.ndjson",
                [group_call("g1", "2026-10-01T10:00:00Z", "A", "u1")])  # fmt: skip
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": traits}))


def stored(con, entity: str, hour: datetime, column: str) -> dict:
    table, key = (
        ("account_traits", "account_id") if entity == "account" else ("user_traits", "user_id")
    )
    rows = con.execute(
        f'SELECT {key}, "{column}" FROM {table} WHERE snapshot_hour = $hour', {"hour": hour}
    ).fetchall()
    return dict(rows)


def close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            assert actual[key] == pytest.approx(value), key
        else:
            assert actual[key] == value, key


def track(mid, at, user, event="Logged In", context=None, **properties):
    message = {
        "type": "track",
        "messageId": mid,
        "userId": user,
        "event": event,
        "timestamp": at,
        "properties": properties,
    }
    if context:
        message["context"] = {"groupId": context}
    return message


group = group_call


EDGE_EVENTS = [
    # a three-level chain TOP <- MID <- LEAF, an account with no users (anonymous group call)
    group("g1", "2026-09-01T00:00:00Z", "TOP", "u_top"),
    group("g2", "2026-09-01T00:00:00Z", "MID", "u_mid", parent_account_id="TOP"),
    group("g3", "2026-09-01T00:00:00Z", "LEAF", "u_leaf", parent_account_id="MID"),
    {
        "type": "group",
        "messageId": "g4",
        "anonymousId": "crm",
        "groupId": "EMPTY",
        "timestamp": "2026-09-01T00:00:00Z",
        "traits": {},
    },
    # a user in two accounts
    group("g5", "2026-09-01T00:00:00Z", "MID", "u_both"),
    group("g6", "2026-09-01T00:00:00Z", "OTHER", "u_both"),
    # exactly on the 30-day window boundary of the 2026-10-01 10:00 snapshot (as_of 11:00)
    track("t1", "2026-09-01T11:00:00Z", "u_leaf"),
    track("t2", "2026-09-01T10:59:59.999Z", "u_leaf"),
    track("t3", "2026-10-01T10:59:59Z", "u_mid"),
    track("t4", "2026-10-01T11:00:00Z", "u_mid"),  # the next hour: not yet counted
    # context attribution: u_both logs in for OTHER twice, for MID once, once without context
    track("t5", "2026-09-20T10:00:00Z", "u_both", context="OTHER"),
    track("t6", "2026-09-21T10:00:00Z", "u_both", context="OTHER"),
    track("t7", "2026-09-22T10:00:00Z", "u_both", context="MID"),
    track("t8", "2026-09-23T10:00:00Z", "u_both"),
    # properties: features, NPS scores (one sent as a string), ties
    track("f1", "2026-09-25T10:00:00Z", "u_mid", "Feature Used", feature="reports"),
    track("f2", "2026-09-25T10:00:00Z", "u_top", "Feature Used", feature="api"),
    track("f3", "2026-09-26T10:00:00Z", "u_leaf", "Feature Used", feature="api"),
    track("f4", "2026-09-26T10:00:00Z", "u_leaf", "Feature Used", feature="reports"),
    track("n1", "2026-09-27T10:00:00Z", "u_mid", "NPS Survey Submitted", score=9),
    track("n2", "2026-09-28T10:00:00Z", "u_both", "NPS Survey Submitted", score="4"),
    track("n3", "2026-09-29T10:00:00Z", "u_mid", "NPS Survey Submitted", score="n/a"),
    {
        "type": "page",
        "messageId": "p1",
        "userId": "u_top",
        "name": "Pricing",
        "timestamp": "2026-09-02T00:00:00Z",
        "properties": {"path": "/pricing"},
    },
    {
        "type": "page",
        "messageId": "p2",
        "userId": "u_mid",
        "name": "Home",
        "timestamp": "2026-09-01T23:00:00Z",
        "properties": {"path": "/"},
    },
]
EDGE_TRAITS = [
    {
        "name": "logins_30d",
        "entity": "account",
        "type": "event_counter",
        "event": "Logged In",
        "window": "30 days",
    },
    {
        "name": "logins_30d_context",
        "entity": "account",
        "type": "event_counter",
        "event": "Logged In",
        "window": "30 days",
        "attribution": "context",
    },
    {
        "name": "logins_30d_strict_context",
        "entity": "account",
        "type": "event_counter",
        "event": "Logged In",
        "window": "30 days",
        "attribution": "context",
        "context_fallback": "none",
    },
    {
        "name": "logins_rollup",
        "entity": "account",
        "type": "event_counter",
        "event": "Logged In",
        "include_child_accounts": True,
    },
    {
        "name": "logins_rollup_context",
        "entity": "account",
        "type": "event_counter",
        "event": "Logged In",
        "include_child_accounts": True,
        "attribution": "context",
    },
    {
        "name": "avg_nps",
        "entity": "account",
        "type": "aggregation",
        "function": "avg",
        "event": "NPS Survey Submitted",
        "property": "score",
    },
    {
        "name": "sum_nps",
        "entity": "account",
        "type": "aggregation",
        "function": "sum",
        "event": "NPS Survey Submitted",
        "property": "score",
    },
    {
        "name": "first_page",
        "entity": "account",
        "type": "first_value",
        "event_type": "page",
        "property": "path",
    },
    {
        "name": "last_feature",
        "entity": "account",
        "type": "last_value",
        "event": "Feature Used",
        "property": "feature",
    },
    {
        "name": "top_feature",
        "entity": "account",
        "type": "most_frequent",
        "event": "Feature Used",
        "property": "feature",
        "include_child_accounts": True,
    },
    {
        "name": "features",
        "entity": "account",
        "type": "unique_list",
        "event": "Feature Used",
        "property": "feature",
        "include_child_accounts": True,
    },
    {
        "name": "feature_count",
        "entity": "account",
        "type": "unique_list_count",
        "event": "Feature Used",
        "property": "feature",
    },
    {
        "name": "active_users",
        "entity": "account",
        "type": "unique_users",
        "event": "Logged In",
        "include_child_accounts": True,
    },
    {
        "name": "reports_users",
        "entity": "user",
        "type": "event_counter",
        "event": "Feature Used",
        "where": [{"property": "feature", "equals": "reports"}],
    },
    {
        "name": "promoters",
        "entity": "user",
        "type": "event_counter",
        "event": "NPS Survey Submitted",
        "where": [{"property": "score", "gte": 5}],
    },
    {
        "name": "not_api",
        "entity": "user",
        "type": "event_counter",
        "event": "Feature Used",
        "where": [{"property": "feature", "not_equals": "api"}],
    },
    {
        "name": "score_not_9",
        "entity": "user",
        "type": "event_counter",
        "event": "NPS Survey Submitted",
        "where": [{"property": "score", "not_equals": 9}],
    },
    {
        "name": "in_list",
        "entity": "user",
        "type": "event_counter",
        "where": [{"property": "feature", "in": ["api", "exports"]}],
    },
    {
        "name": "has_score",
        "entity": "user",
        "type": "event_counter",
        "where": [{"property": "score", "exists": True}],
    },
    {
        "name": "pricing_pages",
        "entity": "user",
        "type": "event_counter",
        "event_type": "page",
        "where": [{"property": "path", "contains": "pric"}],
    },
]
EDGE_HOURS = [datetime(2026, 9, 25, 10), datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11)]


@pytest.fixture(scope="module")
def edge_warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge")
    write_lines(root / "landing" / "a.ndjson", EDGE_EVENTS)
    write_lines(root / "landing" / "resend.ndjson", EDGE_EVENTS[6:9])  # duplicate deliveries
    (root / "definitions").mkdir()
    (root / "definitions" / "traits.yaml").write_text(yaml.safe_dump({"traits": EDGE_TRAITS}))
    con = connect(root / "wh.duckdb")
    ingest_window(
        con, root / "landing", datetime(2026, 9, 1), datetime(2026, 10, 2), PARTITIONS_START
    )
    for hour in EDGE_HOURS:
        build_all(con, root / "landing", hour, hour + timedelta(hours=1), root / "definitions")
    yield con, read_events(root / "landing")
    con.close()


@pytest.mark.parametrize("hour", EDGE_HOURS)
@pytest.mark.parametrize("trait", EDGE_TRAITS, ids=[t["name"] for t in EDGE_TRAITS])
def test_edge_case_traits_match_reference(edge_warehouse, hour, trait):
    con, events = edge_warehouse
    expected = trait_values(events, hour, trait, snapshot(events, hour))
    close(stored(con, trait["entity"], hour, trait["name"]), expected)


def test_edge_case_values_spelled_out(edge_warehouse):
    con, _ = edge_warehouse
    hour = datetime(2026, 10, 1, 10)
    logins = stored(con, "account", hour, "logins_30d")
    assert logins["LEAF"] == 1  # 09-01 11:00 is in [as_of - 30 days, as_of); 10:59:59.999 is not
    assert logins["MID"] == 5  # t3 by u_mid and all four logins of u_both
    assert logins["EMPTY"] == 0
    context = stored(con, "account", hour, "logins_30d_context")
    assert (context["OTHER"], context["MID"]) == (3, 3)  # t8 has no context: both accounts
    strict = stored(con, "account", hour, "logins_30d_strict_context")
    assert (strict["OTHER"], strict["MID"]) == (2, 1)  # u_mid's t3 has no context
    rollup = stored(con, "account", hour, "logins_rollup")
    # all time: u_mid 1, u_both 4, and LEAF's u_leaf 2 roll up into MID, then into TOP
    assert (rollup["LEAF"], rollup["MID"], rollup["TOP"]) == (2, 7, 7)
    assert stored(con, "account", hour, "avg_nps")["EMPTY"] is None
    assert stored(con, "account", hour, "sum_nps")["EMPTY"] == 0
    assert stored(con, "account", hour, "features")["TOP"] == ["api", "reports"]
    # "n/a" is not 9 (a text that is not a number differs from a number); 9 itself is
    assert stored(con, "user", hour, "score_not_9")["u_mid"] == 1


@pytest.fixture(scope="module")
def sample_warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    generate_sample(root / "landing", seed=11, accounts=30, users=200, days=2)
    con = connect(root / "wh.duckdb")
    ingest_window(
        con, root / "landing", datetime(2026, 10, 1), datetime(2026, 10, 3), PARTITIONS_START
    )
    catalog = build_all(
        con,
        root / "landing",
        datetime(2026, 10, 2, 20),
        datetime(2026, 10, 2, 23),
        SAMPLE_DEFINITIONS,
    )
    yield con, read_events(root / "landing"), catalog
    con.close()


def _sample_traits():
    return yaml.safe_load((SAMPLE_DEFINITIONS / "traits.yaml").read_text())["traits"]


@pytest.mark.parametrize("hour", [datetime(2026, 10, 2, 20), datetime(2026, 10, 2, 22)])
def test_sample_traits_match_reference(sample_warehouse, hour):
    con, events, _ = sample_warehouse
    snap = snapshot(events, hour)
    for trait in _sample_traits():
        if trait["type"] == "sql":
            continue
        expected = trait_values(events, hour, trait, snap)
        close(stored(con, trait["entity"], hour, trait["name"]), expected)


def test_sample_sql_trait_counts_active_users(sample_warehouse):
    con, events, _ = sample_warehouse
    hour = datetime(2026, 10, 2, 22)
    snap = snapshot(events, hour)
    trait = {
        "name": "x",
        "entity": "account",
        "type": "unique_users",
        "event": "Logged In",
        "window": "30 days",
    }
    expected = trait_values(events, hour, trait, snap)  # every account, 0 when none
    assert stored(con, "account", hour, "active_users_past_month") == expected
    assert any(expected.values())


NULLS_AND_SOURCES_EVENTS = [
    {"type": "identify", "messageId": "m1", "userId": "u1", "traits": {"plan": None},
     "timestamp": "2026-10-01T10:10:00Z"},
    track("m2", "2026-10-01T10:20:00Z", "u1", "Feature Used", feature=None),
    {"type": "identify", "messageId": "m3", "userId": "u2", "traits": {"plan": "pro"},
     "properties": {}, "timestamp": "2026-10-01T10:30:00Z"},
    {"type": "track", "messageId": "m4", "userId": "u3", "event": "Feature Used",
     "traits": {"feature": "from_traits"}, "timestamp": "2026-10-01T10:40:00Z"},
]  # fmt: skip
NULLS_AND_SOURCES_TRAITS = [
    {"name": "plan_contains_l", "entity": "user", "type": "event_counter",
     "where": [{"property": "plan", "contains": "l"}]},
    {"name": "plan_in_null", "entity": "user", "type": "event_counter",
     "where": [{"property": "plan", "in": ["null"]}]},
    {"name": "plan_missing", "entity": "user", "type": "event_counter", "event_type": "identify",
     "where": [{"property": "plan", "exists": False}]},
    {"name": "feature_contains_u", "entity": "user", "type": "event_counter",
     "event": "Feature Used", "where": [{"property": "feature", "contains": "u"}]},
    {"name": "last_plan", "entity": "user", "type": "last_value", "event_type": "identify",
     "property": "plan"},
    {"name": "last_feature", "entity": "user", "type": "last_value", "event": "Feature Used",
     "property": "feature"},
]  # fmt: skip


def test_null_properties_and_where_properties_are_read(tmp_path):
    """A JSON null is a missing property for every operator; identify and group calls are
    read from `traits` (even with a `properties` object), the others from `properties`."""
    write_lines(tmp_path / "landing" / "a.ndjson", NULLS_AND_SOURCES_EVENTS)
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "t.yaml").write_text(
        yaml.safe_dump({"traits": NULLS_AND_SOURCES_TRAITS})
    )
    con = connect(tmp_path / "wh.duckdb")
    day = (datetime(2026, 10, 1), datetime(2026, 10, 2))
    ingest_window(con, tmp_path / "landing", *day, PARTITIONS_START)
    hour = datetime(2026, 10, 1, 10)
    build_all(con, tmp_path / "landing", hour, hour + timedelta(hours=1), tmp_path / "definitions")
    events = read_events(tmp_path / "landing")
    expected = {
        "plan_contains_l": {"u1": 0, "u2": 0, "u3": 0},
        "plan_in_null": {"u1": 0, "u2": 0, "u3": 0},
        "plan_missing": {"u1": 1, "u2": 0, "u3": 0},
        "feature_contains_u": {"u1": 0, "u2": 0, "u3": 0},
        "last_plan": {"u1": None, "u2": "pro", "u3": None},
        "last_feature": {"u1": None, "u2": None, "u3": None},
    }
    for trait in NULLS_AND_SOURCES_TRAITS:
        reference = trait_values(events, hour, trait, snapshot(events, hour))
        assert stored(con, "user", hour, trait["name"]) == expected[trait["name"]] == reference
    con.close()


def test_an_event_rewritten_in_place_is_recomputed(tmp_path):
    """A landing file rewritten under the same messageIds: the hour's tiles (traits and the
    hierarchy's custom traits) follow the new content."""
    landing = tmp_path / "landing"

    def land(score: float, plan: str) -> None:
        write_lines(landing / "a.ndjson", [
            group_call("g1", "2026-10-01T10:05:00Z", "ACME", "u1", plan=plan),
            track("t1", "2026-10-01T10:10:00Z", "u1", "Scored", score=score),
        ])  # fmt: skip

    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [
        {"name": "total", "entity": "account", "type": "aggregation", "function": "sum",
         "event": "Scored", "property": "score"}]}))  # fmt: skip
    con = connect(tmp_path / "wh.duckdb")
    hour = datetime(2026, 10, 1, 10)
    for score, plan in ((0.05, "free"), (50, "pro")):
        land(score, plan)
        ingest_window(con, landing, hour, hour + timedelta(hours=1), PARTITIONS_START)
        build_all(con, landing, hour, hour + timedelta(hours=1), tmp_path / "definitions")
    assert stored(con, "account", hour, "total") == {"ACME": 50}
    (plan,) = con.execute("SELECT plan FROM accounts WHERE account_id = 'ACME'").fetchone()
    assert plan == "pro"
    con.close()


@pytest.mark.parametrize("many", [False, True])
def test_a_sql_trait_may_give_ids_as_numbers(tmp_path, many):
    """Ids are text: a numeric id column names the entity whose id is that number's text."""
    write_lines(tmp_path / "landing" / "a.ndjson", [
        group_call("g1", "2026-10-01T10:00:00Z", 42, "u1"),
        group_call("g2", "2026-10-01T10:00:00Z", "ACME", "u1"),
    ])  # fmt: skip
    (tmp_path / "definitions").mkdir()
    trait = {"name": "answer", "entity": "account", "type": "sql", "many": many,
             "sql": "SELECT 42 AS account_id, 'yes' AS answer"}  # fmt: skip
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [trait]}))
    hour = datetime(2026, 10, 1, 10)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", hour, hour + timedelta(hours=1), PARTITIONS_START)
        build_all(con, tmp_path / "landing", hour, hour + timedelta(hours=1),
                  tmp_path / "definitions")  # fmt: skip
        rows = con.execute("SELECT account_id, answer FROM account_traits ORDER BY 1").fetchall()
    assert rows == [("42", ["yes"] if many else "yes"), ("ACME", None)]


def test_a_sql_trait_nested_as_deep_as_loading_allows_runs(tmp_path):
    """Loading refuses 898 terms; DuckDB runs 897, with the query around the trait's."""
    sql = "SELECT account_id, " + " + ".join(["1"] * 897) + " AS n FROM accounts"
    one_account_with(tmp_path, [{"name": "n", "entity": "account", "type": "sql", "sql": sql}])
    hour = datetime(2026, 10, 1, 10)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", hour, hour + timedelta(hours=1), PARTITIONS_START)
        build_all(con, tmp_path / "landing", hour, hour + timedelta(hours=1),
                  tmp_path / "definitions")  # fmt: skip
        assert stored(con, "account", hour, "n") == {"A": 897}


def test_a_many_sql_trait_of_only_nulls_has_no_value():
    """Like an entity without rows, not an empty list (the engines would differ)."""
    backend = ibis.duckdb.connect()
    raw = ibis.memtable({"user_id": ["u1", "u1", "u2"], "v": [None, None, "a"]},
                        schema={"user_id": "string", "v": "string"})  # fmt: skip
    trait = SqlTrait(type="sql", name="v", entity="user", sql="SELECT 1", many=True)
    rows = backend.execute(sql_trait_rows(raw, trait, ["v"]))
    assert dict(zip(rows.entity_id, rows.v.map(lambda v: None if v is None else list(v)),
                    strict=True)) == {"u1": None, "u2": ["a"]}  # fmt: skip


def test_a_sql_trait_whose_type_widens_keeps_the_stored_hours(tmp_path):
    """Hourly runs: the trait's values are integers at 10:00 and a decimal at 11:00; the column
    becomes DOUBLE and 10:00 keeps its value (as one run over both hours gives)."""
    write_lines(tmp_path / "landing" / "a.ndjson", [
        {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {"age": 30},
         "timestamp": "2026-10-01T10:00:00Z"},
        {"type": "identify", "messageId": "i2", "userId": "u1", "traits": {"age": 30.5},
         "timestamp": "2026-10-01T11:00:00Z"},
    ])  # fmt: skip
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [
        {"name": "sql_age", "entity": "user", "type": "sql",
         "sql": "SELECT user_id, age AS age_col FROM users WHERE age IS NOT NULL"}]}))  # fmt: skip
    con = connect(tmp_path / "wh.duckdb")
    for hour in (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11)):
        window = (hour, hour + timedelta(hours=1))
        ingest_window(con, tmp_path / "landing", *window, PARTITIONS_START)
        build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    rows = con.execute("SELECT hour(snapshot_hour), age_col FROM user_traits ORDER BY 1").fetchall()
    assert rows == [(10, 30.0), (11, 30.5)]
    con.close()


def test_a_sql_trait_column_of_integers_then_decimals_becomes_double(tmp_path):
    """DuckDB reads the literal 2.5 as a DECIMAL: united with the stored integers, the column
    is DOUBLE, as README says, not DECIMAL."""
    write_lines(tmp_path / "landing" / "a.ndjson", [
        {"type": "identify", "messageId": f"i{hour}", "userId": "u1",
         "timestamp": f"2026-10-01T{hour}:00:00Z"} for hour in (10, 11)])  # fmt: skip
    (tmp_path / "definitions").mkdir()
    con = connect(tmp_path / "wh.duckdb")
    for hour, value in ((datetime(2026, 10, 1, 10), "5"), (datetime(2026, 10, 1, 11), "2.5")):
        (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [
            {"name": "score", "entity": "user", "type": "sql",
             "sql": f"SELECT user_id, {value} AS score FROM users"}]}))  # fmt: skip
        window = (hour, hour + timedelta(hours=1))
        ingest_window(con, tmp_path / "landing", *window, PARTITIONS_START)
        build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    assert con.execute("SELECT typeof(score), score FROM user_traits ORDER BY ALL").fetchall() == [
        ("DOUBLE", 2.5), ("DOUBLE", 5.0)]  # fmt: skip
    con.close()


@pytest.mark.parametrize(
    ("before", "after", "column_type", "values"),
    [
        ({"type": "first_value", "property": "x"}, {"type": "event_counter"}, "BIGINT", [2, 3]),
        ({"type": "unique_list", "property": "x"}, {"type": "unique_list_count", "property": "x"},
         "BIGINT", [1, 1]),
        ({"type": "aggregation", "function": "sum", "property": "n"}, {"type": "event_counter"},
         "BIGINT", [2, 3]),
        ({"type": "event_counter"}, {"type": "last_value", "property": "x"}, "VARCHAR",
         ["hello", "hello"]),
    ],
)  # fmt: skip
def test_a_computed_trait_redefined_under_its_name_takes_its_new_type(
    tmp_path, before, after, column_type, values
):
    """Its column follows the definition; re-runs and later hours validate. A stored hour not
    run again keeps its old value where it converts (it is stale: run it again)."""
    write_lines(tmp_path / "landing" / "a.ndjson", [
        track(f"t{hour}", f"2026-10-01T{hour}:10:00Z", "u1", "E", x="hello", n=2.5)
        for hour in (10, 11, 12)
    ])  # fmt: skip
    (tmp_path / "definitions").mkdir()
    con = connect(tmp_path / "wh.duckdb")
    for definition, hours in ((before, (10, 11)), (after, (11, 12))):
        trait = {"name": "x_trait", "entity": "user", "event": "E"} | definition
        (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [trait]}))
        for hour in hours:
            window = (datetime(2026, 10, 1, hour), datetime(2026, 10, 1, hour + 1))
            ingest_window(con, tmp_path / "landing", *window, PARTITIONS_START)
            build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'user_traits'").fetchall())  # fmt: skip
    assert types["x_trait"] == column_type
    rows = con.execute("SELECT hour(snapshot_hour), x_trait FROM user_traits ORDER BY 1").fetchall()
    assert rows[1:] == list(zip((11, 12), values, strict=True))
    con.close()


@pytest.mark.parametrize("first_many", [True, False])
def test_a_trait_turned_from_a_list_to_a_value_or_back_keeps_both_as_json(tmp_path, first_many):
    write_lines(tmp_path / "landing" / "a.ndjson", [
        group_call("g1", "2026-10-01T10:00:00Z", "ACME", "u1"),
    ])  # fmt: skip
    (tmp_path / "definitions").mkdir()
    con = connect(tmp_path / "wh.duckdb")
    for hour, many in ((10, first_many), (11, not first_many)):
        trait = {"name": "who", "entity": "account", "type": "sql", "many": many,
                 "sql": "SELECT account_id, user_id AS who FROM account_memberships"}  # fmt: skip
        (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [trait]}))
        window = (datetime(2026, 10, 1, hour), datetime(2026, 10, 1, hour + 1))
        ingest_window(con, tmp_path / "landing", *window, PARTITIONS_START)
        build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    rows = con.execute("SELECT hour(snapshot_hour), who FROM account_traits ORDER BY 1").fetchall()
    values = {10: '["u1"]' if first_many else '"u1"', 11: '"u1"' if first_many else '["u1"]'}
    assert rows == list(values.items())
    # The CLI reads the JSON column as the values it holds, not as text.
    for hour, text in values.items():
        (row,) = trait_rows(con, "account", datetime(2026, 10, 1, hour))
        assert row["who"] == json.loads(text)
    con.close()


def test_a_list_of_numbers_is_profiled_as_a_list():
    """Its most common elements, not number statistics (which fail on a list)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT TIMESTAMP '2026-10-01 10:00' AS snapshot_hour, "
                "[1, 1, NULL]::INTEGER[] AS v")  # fmt: skip
    profile = profile_column(con, "t", "v", datetime(2026, 10, 1, 10))
    assert "min" not in profile and re.search(r"\| 1 +\| 2 +\|", profile["top_values"].value)


def test_a_profile_keeps_a_value_with_a_pipe_or_a_line_break_in_one_cell():
    """`a|b` and a line break in a value are escaped: the table keeps its two columns."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT TIMESTAMP '2026-10-01 10:00' AS snapshot_hour, "
                "unnest(['a|b' || chr(10) || 'c', 'a|b' || chr(10) || 'c', 'z']) AS v")  # fmt: skip
    table = profile_column(con, "t", "v", datetime(2026, 10, 1, 10))["top_values"].value
    rows = [re.split(r"(?<!\\)\|", line)[1:-1] for line in table.splitlines()]
    assert [[cell.strip() for cell in row] for row in rows[2:]] == [["a\\|b\\nc", "2"], ["z", "1"]]


def test_a_profile_counts_empty_text_as_not_filled():
    """`fill_rate` is the share of entities whose value is not null, zero or empty."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT TIMESTAMP '2026-10-01 10:00' AS snapshot_hour, "
                "unnest(['a', '', NULL, 'b']) AS v")  # fmt: skip
    assert profile_column(con, "t", "v", datetime(2026, 10, 1, 10))["fill_rate"] == 2 / 4


def test_a_profile_of_numbers_leaves_out_nan_and_keeps_the_median_exact():
    """A decimal column's median is not rounded to its places; NaN and infinities (which
    travel as null) are no values."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT TIMESTAMP '2026-10-01 10:00' AS snapshot_hour, "
                "unnest([1.5, 3.0, NULL])::DECIMAL(21, 1) AS v, "
                "unnest(['NaN', '4', 'inf'])::DOUBLE AS w")  # fmt: skip
    hour = datetime(2026, 10, 1, 10)
    decimals, doubles = profile_column(con, "t", "v", hour), profile_column(con, "t", "w", hour)
    assert decimals["median"].value == 2.25 and decimals["fill_rate"] == 2 / 3
    assert doubles["fill_rate"] == 1 / 3
    assert [doubles[key].value for key in ("min", "mean", "median", "max")] == [4.0] * 4


def test_nan_and_infinity_are_no_numbers(tmp_path):
    """Neither a bare NaN (which ingestion accepts) nor the strings "NaN" and "Infinity" count
    in an aggregation, as other values that are not numbers do not."""
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "a.ndjson").write_text(
        '{"type":"track","event":"Scored","messageId":"n1","userId":"u1",'
        '"timestamp":"2026-10-01T10:01:00Z","properties":{"score":NaN}}\n'
        + "\n".join(
            json.dumps(track(f"n{i}", "2026-10-01T10:02:00Z", "u1", "Scored", score=v))
            for i, v in ((2, "NaN"), (3, "Infinity"), (4, 2), (5, "-inf"))
        )
    )
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [
        {"name": f"{function}_score", "entity": "user", "type": "aggregation",
         "function": function, "event": "Scored", "property": "score"}
        for function in ("sum", "avg", "min", "max")]}))  # fmt: skip
    con = connect(tmp_path / "wh.duckdb")
    hour = datetime(2026, 10, 1, 10)
    ingest_window(con, tmp_path / "landing", hour, hour + timedelta(hours=1), PARTITIONS_START)
    build_all(con, tmp_path / "landing", hour, hour + timedelta(hours=1), tmp_path / "definitions")
    for function in ("sum", "avg", "min", "max"):
        assert stored(con, "user", hour, f"{function}_score") == {"u1": 2}, function
    con.close()


def test_sixty_value_traits_of_different_events_compute(tmp_path):
    """Each selection is a part of its own, joined to the entities: as many parts as traits."""
    write_lines(tmp_path / "landing" / "a.ndjson", [
        group_call("g1", "2026-10-01T10:00:00Z", "ACME", "u1"),
        track("t1", "2026-10-01T10:10:00Z", "u1", "E7", p="x"),
    ])  # fmt: skip
    (tmp_path / "definitions").mkdir()
    traits = [{"name": f"t{i}", "entity": "account", "type": "unique_list", "event": f"E{i}",
               "property": "p"} for i in range(60)]  # fmt: skip
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": traits}))
    con = connect(tmp_path / "wh.duckdb")
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11))
    ingest_window(con, tmp_path / "landing", *window, PARTITIONS_START)
    build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    assert stored(con, "account", window[0], "t7") == {"ACME": ["x"]}
    assert stored(con, "account", window[0], "t8") == {"ACME": []}
    con.close()


def test_a_sql_trait_giving_an_entity_two_rows_fails_naming_the_trait_file_and_entity(tmp_path):
    """Without `many`, at the first hour that has such an entity (the run's earlier hours
    compile the trait's queries and pass)."""
    write_lines(tmp_path / "landing" / "a.ndjson", [
        group_call("g1", "2026-10-01T10:00:00Z", "A", "u1"),
        group_call("g2", "2026-10-01T11:00:00Z", "A", "u2"),
    ])  # fmt: skip
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [
        {"name": "member", "entity": "account", "type": "sql",
         "sql": "SELECT account_id, user_id AS member FROM account_memberships"}]}))  # fmt: skip
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 12))
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", *window, PARTITIONS_START)
        with pytest.raises(SqlTraitError) as raised:
            build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    assert str(raised.value) == (
        f"{tmp_path / 'definitions' / 't.yaml'}:2: SQL trait member returned 2 rows for "
        "account_id 'A' at 2026-10-01 11:00:00; return one row per account_id, or set "
        "`many: true` to collect the values as lists"
    )


def test_a_sql_trait_naming_a_column_no_table_has_fails_naming_the_trait_and_file(tmp_path):
    one_account_with(tmp_path, [
        {"name": "s1", "entity": "account", "type": "sql",
         "sql": "SELECT account_id, count(DISTINCT usr_id) AS s1 FROM account_memberships "
                "GROUP BY account_id"}])  # fmt: skip
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11))
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", *window, PARTITIONS_START)
        with pytest.raises(SqlTraitError) as raised:
            build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    assert str(raised.value).startswith(
        f"{tmp_path / 'definitions' / 't.yaml'}:2: SQL trait s1 failed at 2026-10-01 10:00:00: "
    )
    assert "usr_id" in str(raised.value)


def test_traits_need_the_hierarchy_of_their_hours(tmp_path):
    """Traits of an hour whose hierarchy was not built would be computed for no entity: the
    run fails naming the hours. Hours built before `hierarchy_hours` was kept count as built
    when they have accounts or users."""
    one_account_with(tmp_path, [{"name": "n", "entity": "account", "type": "event_counter",
                                 "event": "X"}])  # fmt: skip
    catalog = load_catalog(tmp_path / "definitions")
    hour = [datetime(2026, 10, 1, 10) + timedelta(hours=n) for n in range(4)]
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", hour[0], hour[3], PARTITIONS_START)
        with pytest.raises(HierarchyNotBuiltError, match="not built for 1 of the 1 hours"):
            build_traits(con, catalog, hour[0], hour[1])
        build_snapshots(con, hour[0], hour[2], "parent_account_id")
        con.execute("DELETE FROM hierarchy_hours WHERE snapshot_hour = $h", {"h": hour[0]})
        with pytest.raises(HierarchyNotBuiltError, match=r"1 of the 3 hours .*\(the first: "
                                                         r"2026-10-01 12:00:00\)"):  # fmt: skip
            build_traits(con, catalog, hour[0], hour[3])
        assert "account_traits" not in table_names(con)
        build_traits(con, catalog, hour[0], hour[2])
        assert stored(con, "account", hour[0], "n") == {"A": 0}


@pytest.mark.parametrize("value", ["1::UHUGEINT", "[1::VARINT]", "'10:00:00+02:00'::TIMETZ",
                                   "{'k': map([1], [1::UHUGEINT])}"])  # fmt: skip
def test_a_sql_trait_returning_a_type_no_frame_holds_fails_before_storing(tmp_path, value):
    one_account_with(tmp_path, [{"name": "big", "entity": "account", "type": "sql",
                                 "sql": f"SELECT account_id, {value} AS big "
                                        "FROM accounts"}])  # fmt: skip
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11))
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", *window, PARTITIONS_START)
        with pytest.raises(SqlTraitError, match=r"t.yaml:2: SQL trait big returns big as .*cast"):
            build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
        assert "account_traits" not in table_names(con)


def test_a_struct_key_named_like_such_a_type_is_no_such_type(tmp_path):
    one_account_with(tmp_path, [{"name": "kinds", "entity": "account", "type": "sql",
                                 "sql": "SELECT account_id, {'VARINT': 1} AS kinds "
                                        "FROM accounts"}])  # fmt: skip
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11))
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", *window, PARTITIONS_START)
        build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
        assert stored(con, "account", window[0], "kinds") == {"A": {"VARINT": 1}}


PLAN_ONE = {"Plan Name": "pro", "a:b": 3, "$k": "x", "nested": {"Sub Key": 2}}
PLAN_TWO = {"Plan Name": "team", "a:b": 4, "$k": "y", "nested": {"Sub Key": 7}}
ODD_KEYS_EVENTS = [
    track("k1", "2026-10-01T09:00:00Z", "u1", "Plan Chosen", **PLAN_ONE),
    track("k2", "2026-10-01T09:30:00Z", "u1", "Plan Chosen", **PLAN_TWO),
    track("k3", "2026-10-01T09:40:00Z", "u2", "Plan Chosen", **{"a.b": 5, "a": {"b": 6}}),
]
ODD_KEYS_TRAITS = [
    {"name": "last_plan_name", "entity": "user", "type": "last_value", "event": "Plan Chosen",
     "property": "Plan Name"},
    {"name": "colon_total", "entity": "user", "type": "aggregation", "function": "sum",
     "event": "Plan Chosen", "property": "a:b"},
    {"name": "dollar_x", "entity": "user", "type": "event_counter", "event": "Plan Chosen",
     "where": [{"property": "$k", "equals": "x"}]},
    {"name": "sub_key_max", "entity": "user", "type": "aggregation", "function": "max",
     "event": "Plan Chosen", "property": "nested.Sub Key"},
    {"name": "dotted", "entity": "user", "type": "aggregation", "function": "sum",
     "event": "Plan Chosen", "property": "a.b"},
]  # fmt: skip


def test_property_names_with_spaces_colons_and_dollars_are_read(tmp_path):
    """A property is any key without quotes or backslashes, as a custom trait is; a dot
    reaches into a nested object (so the key `a.b` itself is not read)."""
    write_lines(tmp_path / "landing" / "a.ndjson", ODD_KEYS_EVENTS)
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": ODD_KEYS_TRAITS}))
    con = connect(tmp_path / "wh.duckdb")
    ingest_window(con, tmp_path / "landing", datetime(2026, 10, 1), datetime(2026, 10, 2),
                  PARTITIONS_START)  # fmt: skip
    hour = datetime(2026, 10, 1, 9)
    build_all(con, tmp_path / "landing", hour, hour + timedelta(hours=1), tmp_path / "definitions")
    expected = {
        "last_plan_name": {"u1": "team", "u2": None},
        "colon_total": {"u1": 7.0, "u2": 0.0},
        "dollar_x": {"u1": 1, "u2": 0},
        "sub_key_max": {"u1": 7.0, "u2": None},
        "dotted": {"u1": 0.0, "u2": 6.0},
    }
    events = read_events(tmp_path / "landing")
    for trait in ODD_KEYS_TRAITS:
        reference = trait_values(events, hour, trait, snapshot(events, hour))
        assert stored(con, "user", hour, trait["name"]) == expected[trait["name"]] == reference
    con.close()


def test_an_hour_computed_before_any_account_has_no_trait_rows_and_is_no_error(tmp_path):
    write_lines(tmp_path / "landing" / "a.ndjson", [track("t1", "2026-10-01T10:05:00Z", "u1")])
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [
        {"name": "logins", "entity": "account", "type": "event_counter", "event": "Logged In"},
        {"name": "user_logins", "entity": "user", "type": "event_counter", "event": "Logged In"},
    ]}))  # fmt: skip
    hour = datetime(2026, 10, 1, 10)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", hour, hour + timedelta(hours=1), PARTITIONS_START)
        build_all(
            con, tmp_path / "landing", hour, hour + timedelta(hours=1), tmp_path / "definitions"
        )
        assert trait_rows(con, "account", hour) == []
        assert [row["user_logins"] for row in trait_rows(con, "user", hour)] == [1]
        with pytest.raises(NotInSnapshotError, match="No traits of any account"):
            trait_rows(con, "account", hour + timedelta(hours=1))
        with pytest.raises(NotInSnapshotError, match="No traits of account 'A'"):
            trait_rows(con, "account", hour, "A")


def test_trait_rows_leave_out_a_trait_not_computed_for_the_hour(tmp_path):
    """A trait added to the definitions and computed for the older hour only has a column at
    the newer one too, without values: the rows of the newer hour do not show it as null."""
    lines = [track("t1", "2026-10-01T10:05:00Z", "u1"), track("t2", "2026-10-01T11:05:00Z", "u1")]
    write_lines(tmp_path / "landing" / "a.ndjson", lines)
    first = {"name": "logins", "entity": "user", "type": "event_counter", "event": "Logged In"}
    added = {"name": "tracks", "entity": "user", "type": "event_counter", "event_type": "track"}
    hour = datetime(2026, 10, 1, 10)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", hour, hour + timedelta(hours=2), PARTITIONS_START)
        for definitions, hours in (([first], 2), ([first, added], 1)):
            (tmp_path / "defs").mkdir(exist_ok=True)
            (tmp_path / "defs" / "t.yaml").write_text(yaml.safe_dump({"traits": definitions}))
            build_all(
                con, tmp_path / "landing", hour, hour + timedelta(hours=hours), tmp_path / "defs"
            )
        (earlier,) = trait_rows(con, "user", hour)
        assert (earlier["user_id"], earlier["logins"], earlier["tracks"]) == ("u1", 1, 1)
        (later,) = trait_rows(con, "user", hour + timedelta(hours=1))
        assert "tracks" not in later and later["logins"] == 2


@pytest.mark.parametrize(
    "edited",
    [
        None,  # removed, then defined again
        {"name": "nps", "entity": "user", "type": "event_counter", "event": "NPS"},  # retyped
    ],
)
def test_hours_whose_trait_values_are_gone_no_longer_count_as_computed(tmp_path, edited):
    """A trait removed (its column dropped) then defined again, or redefined so that its
    column changes type (avg 3.5 stored, then a counter: the stored hour would read 4), holds
    no values of its definition at the hours built before: `trait_hours` no longer lists them,
    so audiences refuse them rather than read nulls or converted values."""
    lines = [track("n1", "2026-10-01T10:10:00Z", "u1", "NPS", score=3),
             track("n2", "2026-10-01T10:20:00Z", "u1", "NPS", score=4)]  # fmt: skip
    write_lines(tmp_path / "landing" / "a.ndjson", lines)
    avg = {"name": "nps", "entity": "user", "type": "aggregation", "function": "avg",
           "event": "NPS", "property": "score"}  # fmt: skip
    other = {"name": "logins", "entity": "user", "type": "event_counter", "event": "Logged In"}
    steps = [[other, avg], [other], [other, avg]] if edited is None else [[other, avg], [edited]]
    hour = datetime(2026, 10, 1, 10)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", hour, hour + timedelta(hours=4), PARTITIONS_START)
        for offset, traits in enumerate(steps):
            (tmp_path / "defs").mkdir(exist_ok=True)
            (tmp_path / "defs" / "t.yaml").write_text(yaml.safe_dump({"traits": traits}))
            at = hour + timedelta(hours=offset)
            build_all(con, tmp_path / "landing", at, at + timedelta(hours=1), tmp_path / "defs")
        last = hour + timedelta(hours=len(steps) - 1)
        computed = con.execute("SELECT snapshot_hour FROM trait_hours WHERE trait = 'nps'")
        assert computed.fetchall() == [(last,)]
        scored = {"name": "scored", "entity": "user", "where": {"trait": "nps", "gte": 1}}
        (tmp_path / "defs" / "a.yaml").write_text(yaml.safe_dump({"audiences": [scored]}))
        catalog = load_catalog(tmp_path / "defs")
        with pytest.raises(NotComputedError, match="user trait 'nps' was not computed for 1 of"):
            build_audience(con, catalog, "scored", hour, hour + timedelta(hours=1))
        assert "nps" not in trait_rows(con, "user", hour)[0]


def test_hours_computed_by_another_definition_of_a_trait_do_not_count(tmp_path):
    """A trait edited under the same name and type (an average turned into a maximum) holds
    the old definition's values at the hours built before: audiences refuse those hours
    until they are built again, and a preview defaults to the newest hour the definition
    computed. Defined back as it was, its hours count again; a new description changes
    nothing."""
    lines = [track("n1", "2026-10-01T10:10:00Z", "u1", "NPS", score=3),
             track("n2", "2026-10-01T10:20:00Z", "u1", "NPS", score=4)]  # fmt: skip
    write_lines(tmp_path / "landing" / "a.ndjson", lines)
    avg = {"name": "nps", "entity": "user", "type": "aggregation", "function": "avg",
           "event": "NPS", "property": "score"}  # fmt: skip
    high = {"name": "high", "entity": "user", "where": {"trait": "nps", "gt": 3.5}}
    hour, later = datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11)

    def define(trait: dict):
        (tmp_path / "defs").mkdir(exist_ok=True)
        definitions = {"traits": [trait], "audiences": [high]}
        (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(definitions))
        return load_catalog(tmp_path / "defs")

    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", hour, later + timedelta(hours=1),
                      PARTITIONS_START)  # fmt: skip
        define(avg)
        build_all(con, tmp_path / "landing", hour, later + timedelta(hours=1), tmp_path / "defs")
        catalog = define(avg | {"function": "max"})
        build_all(con, tmp_path / "landing", later, later + timedelta(hours=1), tmp_path / "defs")
        assert stored(con, "user", hour, "nps") == {"u1": 3.5}  # (the average, kept)
        with pytest.raises(NotComputedError, match="'nps' was not computed for 1 of the 1 hours"):
            build_audience(con, catalog, "high", hour, hour + timedelta(hours=1))
        assert newest_evaluable_hour(con, catalog, "high") == later
        assert preview(con, catalog, "high", later)["members"] == 1
        with pytest.raises(NotComputedError, match="by its current definition"):
            newest_evaluable_hour(con, define(avg | {"function": "min"}), "high")
        catalog = define(avg | {"description": "the average score"})
        assert build_audience(con, catalog, "high", hour, hour + timedelta(hours=1)).sizes == {
            hour: 0
        }
        with pytest.raises(NotComputedError, match="'nps' was not computed for 1 of the 2 hours"):
            build_audience(con, catalog, "high", hour, later + timedelta(hours=1))


def test_a_trait_hours_kept_before_the_fingerprint_counts_for_any_definition(tmp_path):
    """A warehouse whose `trait_hours` predates its `definition` column (built by an earlier
    version, no trait run since the upgrade) is read as it is: its hours count for any
    definition; a preview or an audience does not fail on the missing column."""
    write_lines(tmp_path / "landing" / "a.ndjson", [track("t1", "2026-10-01T10:10:00Z", "u1")])
    logins = {"name": "logins", "entity": "user", "type": "event_counter", "event": "Logged In"}
    active = {"name": "active", "entity": "user", "where": {"trait": "logins", "gte": 1}}
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "d.yaml").write_text(
        yaml.safe_dump({"traits": [logins], "audiences": [active]})
    )
    hour = datetime(2026, 10, 1, 10)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", hour, hour + timedelta(hours=1), PARTITIONS_START)
        catalog = build_all(
            con, tmp_path / "landing", hour, hour + timedelta(hours=1), tmp_path / "defs"
        )
        con.execute("ALTER TABLE trait_hours DROP COLUMN definition")  # (as kept before)
        assert newest_evaluable_hour(con, catalog, "active") == hour
        assert preview(con, catalog, "active", hour)["members"] == 1
        assert build_audience(con, catalog, "active", hour, hour + timedelta(hours=1)).sizes == {
            hour: 1
        }


def test_small_and_unsigned_integers_and_fixed_size_arrays_are_profiled_by_kind():
    """A SMALLINT's zero is no value and it has number statistics; an INTEGER[2] (a fixed-size
    array) is profiled as a list (number statistics failed the trait asset)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT TIMESTAMP '2026-10-01 10:00' AS snapshot_hour, "
                "unnest([0, 4])::SMALLINT AS s, unnest([0, 4])::UINTEGER AS u, "
                "unnest([[1, 1], [1, 2]])::INTEGER[2] AS a")  # fmt: skip
    hour = datetime(2026, 10, 1, 10)
    for column in ("s", "u"):
        profile = profile_column(con, "t", column, hour)
        assert profile["fill_rate"] == 1 / 2 and profile["max"].value == 4.0
    arrays = profile_column(con, "t", "a", hour)
    assert "min" not in arrays and re.search(r"\| 1 +\| 3 +\|", arrays["top_values"].value)


def _sql_traits_warehouse(tmp_path, traits: list[dict]):
    write_lines(tmp_path / "landing" / "a.ndjson", [
        group_call("g1", "2026-10-01T10:00:00Z", "A", "u1"),
        group_call("g2", "2026-10-01T10:00:00Z", "B", "u2"),
    ])  # fmt: skip
    (tmp_path / "definitions").mkdir(exist_ok=True)
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": traits}))
    con = connect(tmp_path / "wh.duckdb")
    ingest_window(con, tmp_path / "landing", datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 12),
                  PARTITIONS_START)  # fmt: skip
    return con


def test_a_comment_in_a_sql_trait_is_no_sql(tmp_path):
    """A `--` comment is rendered as `/* ... */`: one holding `*/` ran the rest of it as SQL
    (here a table created and the events copied to a file, after a check that passed)."""
    leak = tmp_path / "leak.csv"
    sql = (f"SELECT account_id, 1 AS x FROM accounts -- */; CREATE TABLE pwned AS SELECT 1; "
           f"COPY (SELECT message_id FROM raw_events) TO '{leak}'; SELECT 1 /*\n")  # fmt: skip
    con = _sql_traits_warehouse(tmp_path, [{"name": "x", "entity": "account", "type": "sql",
                                            "sql": sql}])  # fmt: skip
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 12))
    build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    assert not leak.exists()
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'pwned'"
                       ).fetchone() == (0,)  # fmt: skip
    assert stored(con, "account", window[0], "x") == {"A": 1, "B": 1}
    con.close()


def test_sql_traits_named_like_the_views_or_each_others_tables_compute(tmp_path):
    """`view_events` (its rows were made in the name of the snapshot view of `events`), and
    `a_raw` before `a` (whose query result was made in the name of `a_raw`'s rows)."""
    traits = [{"name": name, "entity": "account", "type": "sql",
               "sql": f"SELECT account_id, {number} AS {column} FROM accounts"}
              for name, number, column in (("a_raw", 1, "y"), ("a", 2, "x"),
                                           ("view_events", 3, "n"))]  # fmt: skip
    con = _sql_traits_warehouse(tmp_path, traits)
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 12))
    build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    rows = con.execute("SELECT account_id, y, x, n FROM account_traits WHERE snapshot_hour = "
                       "$h ORDER BY 1", {"h": window[0]}).fetchall()  # fmt: skip
    assert rows == [("A", 1, 2, 3), ("B", 1, 2, 3)]
    con.close()


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("{'a': 1}", "5"),                      # STRUCT, then INTEGER: 5 was stored as null
        ("DATE '2026-01-01'", "5"),             # DATE, then INTEGER: likewise
        ("union_value(num := 2)", "{'a': 1}"),  # the write failed: DuckDB unites no UNION
        ("true", "5"),                          # BOOLEAN, then INTEGER: true was stored as 1
    ],
)  # fmt: skip
def test_a_sql_trait_whose_values_change_to_a_type_the_stored_one_cannot_hold(
    tmp_path, before, after
):
    """Hour 10 is built with `before`, then hour 11 with `after`: the column takes VARCHAR,
    which holds both (hour 10 keeps its value, hour 11's is not lost); then both hours again
    with `after` (the column may take `after`'s type again: it holds no other value)."""
    con = _sql_traits_warehouse(tmp_path, [])
    hour = datetime(2026, 10, 1, 10)

    def build(expression: str, start: datetime, end: datetime) -> list[tuple]:
        (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [
            {"name": "v", "entity": "account", "type": "sql",
             "sql": f"SELECT account_id, {expression} AS v FROM accounts"}]}))  # fmt: skip
        build_all(con, tmp_path / "landing", start, end, tmp_path / "definitions")
        return con.execute("SELECT DISTINCT hour(snapshot_hour), v::VARCHAR, typeof(v) "
                           "FROM account_traits ORDER BY 1").fetchall()  # fmt: skip

    (text_before,), (text_after,) = (con.execute(f"SELECT ({e})::VARCHAR").fetchone()
                                     for e in (before, after))  # fmt: skip
    build(before, hour, hour + timedelta(hours=1))
    assert build(after, hour + timedelta(hours=1), hour + timedelta(hours=2)) == [
        (10, text_before, "VARCHAR"),
        (11, text_after, "VARCHAR"),
    ]
    rebuilt = build(after, hour, hour + timedelta(hours=2))
    assert [(hour, value) for hour, value, _ in rebuilt] == [(10, text_after), (11, text_after)]
    con.close()


def test_a_trait_run_failing_while_it_writes_leaves_the_stored_hours(tmp_path, monkeypatch):
    """Both trait tables and `trait_hours` are written together or not at all: a failure
    writing `user_traits` (after its window's rows were deleted) left that hour without users."""
    con = _sql_traits_warehouse(tmp_path, [
        {"name": "u", "entity": "user", "type": "sql",
         "sql": "SELECT user_id, 1 AS u FROM users"},
        {"name": "a", "entity": "account", "type": "sql",
         "sql": "SELECT account_id, 2 AS a FROM accounts"}])  # fmt: skip
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11))
    build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    before = {table: con.execute(f"FROM {table} ORDER BY ALL").fetchall()
              for table in ("account_traits", "user_traits", "trait_hours")}  # fmt: skip
    align = compute._align_columns

    def failing(con, table, *args, **kwargs):
        if table == "user_traits":
            raise RuntimeError("the disk is full")
        return align(con, table, *args, **kwargs)

    monkeypatch.setattr(compute, "_align_columns", failing)
    with pytest.raises(RuntimeError):
        build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
    assert {table: con.execute(f"FROM {table} ORDER BY ALL").fetchall()
            for table in before} == before  # fmt: skip
    con.close()


@pytest.mark.parametrize(
    "expression",
    ["now()", "current_timestamp", "today()", "random()", "gen_random_uuid()", "txid_current()",
     "current_query()", "version()"],
)  # fmt: skip
def test_a_sql_trait_calling_the_time_of_the_run_or_random_is_refused(expression):
    """Its values would be those of the run, not of the snapshot's hour (a past hour built
    again would differ)."""
    with pytest.raises(SqlTraitError, match="not be reproducible for a past hour"):
        parse_trait_sql(f"SELECT account_id, {expression} AS x FROM accounts", "account")


@pytest.mark.parametrize("source", ["accounts USING SAMPLE 50%", "accounts TABLESAMPLE 10%",
                                    "(FROM accounts USING SAMPLE reservoir(1 ROWS))"])  # fmt: skip
def test_a_sql_trait_sampling_a_table_is_refused(source):
    with pytest.raises(SqlTraitError, match="samples a table"):
        parse_trait_sql(f"SELECT account_id, 1 AS x FROM {source}", "account")


def test_sql_trait_names_are_not_case_sensitive_as_in_duckdb(tmp_path):
    """A CTE named `Active` is read as `active`; `SELECT ACCOUNT_ID` (DuckDB names it
    `account_id`) and `1 AS X` (named `X`) give the columns `account_id` and `x`; a struct's
    keys keep their case."""
    sqls = {
        "cte": "WITH Active AS (FROM accounts) SELECT account_id, 1 AS cte FROM active",
        "upper": "WITH active AS (FROM accounts) SELECT Account_Id, 2 AS UPPER FROM ACTIVE",
        "quoted": 'SELECT "ACCOUNT_ID", {\'Key\': 3} AS "Quoted" FROM Accounts',
        "aliased": "WITH t AS (SELECT account_id AS Id, 4 AS Foo FROM accounts) "
        "SELECT ID AS ACCOUNT_ID, FOO AS aliased FROM t",
    }
    one_account_with(tmp_path, [{"name": name, "entity": "account", "type": "sql", "sql": sql}
                                for name, sql in sqls.items()])  # fmt: skip
    window = (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11))
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", *window, PARTITIONS_START)
        build_all(con, tmp_path / "landing", *window, tmp_path / "definitions")
        found = {name: stored(con, "account", window[0], name) for name in sqls}
    assert found == {"cte": {"A": 1}, "upper": {"A": 2}, "quoted": {"A": {"Key": 3}},
                     "aliased": {"A": 4}}  # fmt: skip


def test_a_sql_trait_matching_union_columns_by_name_is_refused():
    """`UNION BY NAME` may return columns no branch but a later one has, which the trait would
    silently leave out."""
    with pytest.raises(SqlTraitError, match="UNION BY NAME"):
        parse_trait_sql("SELECT account_id, 1 AS x FROM accounts UNION ALL BY NAME "
                        "SELECT account_id, 2 AS y FROM accounts", "account")  # fmt: skip


@pytest.mark.parametrize("parameter", ["$1", "?", "$name"])
def test_a_sql_trait_with_a_parameter_is_refused_at_load(parameter):
    """No value is given for it: the query would fail at every build."""
    with pytest.raises(SqlTraitError, match=re.escape(f"holds the parameter {parameter}")):
        parse_trait_sql(f"SELECT account_id, {parameter} AS x FROM accounts", "account")


def test_a_sql_trait_reading_secrets_is_refused():
    with pytest.raises(SqlTraitError, match="cannot read files or settings"):
        parse_trait_sql("SELECT account_id, which_secret('s3://b', 's3') AS x FROM accounts",
                        "account")  # fmt: skip


def test_a_sql_trait_with_a_map_key_naming_a_column_is_refused():
    """The query run is sqlglot's rendering of it, which reads the key `s` of `MAP {s: 1}` as
    the text 's' (and `MAP {a.s: 1}` as 's' too): the values would silently differ."""
    for key in ("account_id", "a.account_id"):
        with pytest.raises(SqlTraitError, match="names a column"):
            parse_trait_sql(f"SELECT account_id, MAP {{{key}: 1}} AS m FROM accounts a",
                            "account")  # fmt: skip
    parse_trait_sql("SELECT account_id, MAP {'k': account_id} AS m FROM accounts", "account")


def test_a_many_sql_trait_of_json_values_reads_them_as_values(tmp_path):
    """`traits` reads a JSON[] column's items as the values they hold, as it does a JSON
    column's (they were printed as their text: `["{\\"a\\":1}"]`)."""
    con = _sql_traits_warehouse(tmp_path, [
        {"name": "j", "entity": "account", "type": "sql", "many": True,
         "sql": "SELECT account_id, json_object('a', 1) AS j FROM accounts"}])  # fmt: skip
    hour = datetime(2026, 10, 1, 10)
    build_all(con, tmp_path / "landing", hour, hour + timedelta(hours=1), tmp_path / "definitions")
    assert [row["j"] for row in trait_rows(con, "account", hour)] == [[{"a": 1}], [{"a": 1}]]
    con.close()


@pytest.mark.parametrize("error", [duckdb.OutOfMemoryException, duckdb.IOException])
def test_a_sql_trait_meeting_a_machine_error_raises_it_as_it_is(tmp_path, error):
    """Running out of memory or a failed read is no fault of the trait's query: it is raised
    as DuckDB's error (which the assets' retry policy retries), with a note naming the trait,
    not as a `SqlTraitError` (which fails the run at once)."""
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"traits": [
        {"name": "seats", "entity": "account", "type": "sql",
         "sql": "SELECT account_id, 1 AS seats FROM accounts"}]}))  # fmt: skip
    (located,) = load_catalog(tmp_path).traits

    class Failing:
        def execute(self, *args: object) -> None:
            raise error("the machine's fault")

    run = compute.SqlTraitRun(Failing(), located)
    with pytest.raises(error, match="the machine's fault") as raised:
        run.run(datetime(2026, 10, 1, 10))
    assert raised.value.__notes__ == [
        f"(running {tmp_path / 't.yaml'}:2: SQL trait seats at 2026-10-01 10:00:00)"
    ]
