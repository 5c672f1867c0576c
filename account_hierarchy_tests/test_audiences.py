"""Audience memberships match an independent evaluation, on the sample and on edge cases."""

import itertools
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import duckdb
import ibis
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from account_hierarchy.audiences.describe import describe
from account_hierarchy.audiences.evaluate import Evaluator, NotComputedError
from account_hierarchy.audiences.memberships import build_audience, reason_texts
from account_hierarchy.audiences.queries import (
    explain,
    members,
    newest_evaluable_hour,
    newest_member_hour,
    preview,
)
from account_hierarchy.catalog.audience_models import CustomTraitTest, Performed, Quantified
from account_hierarchy.catalog.loader import DefinitionError, load_catalog
from account_hierarchy.cli import _echo_conditions, main
from account_hierarchy.hierarchy.queries import NotInSnapshotError
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.traits.compute import build_traits
from account_hierarchy.traits.tiles import tiles_current
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import (
    PARTITIONS_START,
    build_hour,
    group_call,
    strict_json,
    write_lines,
)
from account_hierarchy_tests.reference import read_events, snapshot
from account_hierarchy_tests.reference_audiences import ReferenceAudiences

DEFINITIONS = Path(__file__).parent.parent / "data" / "definitions"


def catalog_of(tmp_path: Path, definitions: dict):
    """The catalog of `definitions`, written to `tmp_path / "definitions"`."""
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "d.yaml").write_text(yaml.safe_dump(definitions))
    return load_catalog(tmp_path / "definitions")


def ingest_first_day(con, tmp_path: Path) -> None:
    """Ingest the landing lines of 1 October under `tmp_path / "landing"`."""
    ingest_window(con, tmp_path / "landing", datetime(2026, 10, 1), datetime(2026, 10, 2),
                  PARTITIONS_START)  # fmt: skip


def stored_members(con, name: str, hour: datetime) -> set[str]:
    rows = con.execute(
        "SELECT entity_id FROM audience_memberships WHERE audience = $n AND snapshot_hour = $h",
        {"n": name, "h": hour},
    ).fetchall()
    return {entity_id for (entity_id,) in rows}


def definitions(folder: Path) -> tuple[list, list]:
    traits, audiences = [], []
    for path in sorted(folder.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        traits += document.get("traits", [])
        audiences += document.get("audiences", [])
    return traits, audiences


SAMPLE_HOURS = [datetime(2026, 10, 2, 12), datetime(2026, 10, 2, 23)]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("audiences")
    generate_sample(root / "landing", seed=5, accounts=40, users=300, days=2)
    con = connect(root / "wh.duckdb")
    ingest_window(con, root / "landing", datetime(2026, 10, 1), datetime(2026, 10, 3),
                  PARTITIONS_START)  # fmt: skip
    catalog = load_catalog(DEFINITIONS)
    for hour in SAMPLE_HOURS:
        build_hour(con, catalog, hour)
    yield con, catalog, read_events(root / "landing")
    con.close()


@pytest.mark.parametrize("hour", SAMPLE_HOURS)
def test_sample_audiences_match_reference(sample, hour):
    con, _, events = sample
    traits, audiences = definitions(DEFINITIONS)
    reference = ReferenceAudiences(events, hour, snapshot(events, hour), traits, audiences)
    for audience in audiences:
        assert stored_members(con, audience["name"], hour) == reference.members(audience["name"]), (
            audience["name"]
        )


def test_stored_reasons_equal_reasons_of_fetched_rows(sample):
    """The warehouse builds reasons inside its query; rows fetched to Python (from Spark, for a
    preview) get theirs from the same expression: the texts are the same."""
    con, catalog, _ = sample
    hour = SAMPLE_HOURS[-1]
    compared = 0
    for located in catalog.audiences:
        name = located.audience.name
        stored = con.execute(
            "SELECT entity_id, reason::VARCHAR FROM audience_memberships "
            "WHERE audience = $n AND snapshot_hour = $h ORDER BY entity_id",
            {"n": name, "h": hour},
        ).fetchall()
        evaluated = Evaluator(ibis.duckdb.from_connection(con), catalog, hour).audience(name)
        fetched = evaluated.table.filter(evaluated.table.member).execute()
        fetched = fetched.sort_values("entity_id")
        assert stored == list(
            zip(fetched.entity_id, reason_texts(evaluated, fetched), strict=True)
        ), name
        compared += len(stored)
    assert compared > 0


def test_no_rows_have_no_reasons(sample):
    """An audience nobody qualifies for (a preview of an hour long after the last events)
    fetches an empty frame, whose list columns pandas types as floats: no reasons, no error."""
    con, catalog, _ = sample
    for located in catalog.audiences:
        evaluator = Evaluator(ibis.duckdb.from_connection(con), catalog, SAMPLE_HOURS[-1])
        evaluated = evaluator.audience(located.audience.name)
        nobody = evaluated.table.filter(ibis.literal(False)).execute()
        assert reason_texts(evaluated, nobody) == [], located.audience.name


def test_preview_agrees_with_materialization(sample):
    con, catalog, _ = sample
    hour = SAMPLE_HOURS[-1]
    for located in catalog.audiences:
        name = located.audience.name
        result = preview(con, catalog, name, hour)
        assert result["members"] == len(stored_members(con, name, hour))
        assert {s["entity_id"] for s in result["sample"]} <= stored_members(con, name, hour)


def test_reasons_say_which_conditions_held(sample):
    con, _, _ = sample
    (reason,) = con.execute(
        "SELECT reason FROM audience_memberships WHERE audience = 'at_risk_accounts' LIMIT 1"
    ).fetchone()
    (condition,) = yaml.safe_load(reason)["conditions"]
    assert condition["condition"] == "logins_past_30_days < 10"
    assert condition["held"] is True and condition["value"] < 10


def test_reasons_give_plain_json_values():
    """Reason values are plain JSON: integers handed over as floats are integers again, missing
    values are null, times are ISO text (as Python's `isoformat`) and arrays are lists."""
    frame = pd.DataFrame(
        {
            "entity_id": ["a", "b"],
            "c1_held": [True, False],
            "c1_value": [3.0, float("nan")],
            "c1_at": pd.to_datetime(
                ["2026-10-01 10:00:00", "2026-10-01 10:00:00.25"], format="ISO8601"
            ),
            "c2_held": np.array([True, True]),
            "c2_values": [np.array(["x", "y"]), None],
            "c2_share": [0.5, float("nan")],
            "c2_count": np.array([1, 2], dtype=np.int64),
            "c2_on": [date(2026, 10, 1), None],
        }
    )
    table = ibis.table(
        {"entity_id": "string", "c1_held": "boolean", "c1_value": "int64", "c1_at": "timestamp",
         "c2_held": "boolean", "c2_values": "array<string>", "c2_share": "float64",
         "c2_count": "int64", "c2_on": "date"},
        name="evaluated",
    )  # fmt: skip
    leaves = [SimpleNamespace(id="c1", label="x < 4"), SimpleNamespace(id="c2", label="y")]
    texts = reason_texts(SimpleNamespace(table=table, leaves=leaves), frame)
    first = {"condition": "x < 4", "held": True, "value": 3, "at": "2026-10-01T10:00:00"}
    second = {"condition": "y", "held": True, "values": ["x", "y"], "share": 0.5, "count": 1,
              "on": "2026-10-01"}  # fmt: skip
    assert json.dumps([json.loads(text) for text in texts]) == json.dumps(
        [
            {"conditions": [first, second]},
            {"conditions": [
                {"condition": "x < 4", "held": False, "value": None,
                 "at": "2026-10-01T10:00:00.250000"},
                {"condition": "y", "held": True, "values": None, "share": None, "count": 2,
                 "on": None},
            ]},
        ]
    )  # fmt: skip


def account(mid, group, user=None, **traits):
    message = {
        "type": "group",
        "messageId": mid,
        "groupId": group,
        "timestamp": "2026-10-01T08:00:00Z",
        "traits": traits,
    }
    return message | ({"userId": user} if user else {"anonymousId": "crm"})


def person(mid, user, **traits):
    return {
        "type": "identify",
        "messageId": mid,
        "userId": user,
        "timestamp": "2026-10-01T08:30:00Z",
        "traits": traits,
    }


EDGE_EVENTS = [
    account("a1", "FULL", "u1", plan="pro", seats=10),
    account("a2", "FULL", "u2"),
    account("a3", "HALF", "u2", plan="trial"),
    account("a4", "HALF", "u3"),
    account("a5", "EMPTY", plan="free", seats="many"),  # no users; seats not a number
    account("a6", "SOLO", "u4", plan="pro", seats=2),
    person("p1", "u1", role="Admin"),
    person("p2", "u2", role="Admin"),
    person("p3", "u3", role="Viewer"),  # u4 never identifies: role is null
    {
        "type": "track",
        "event": "Logged In",
        "messageId": "t1",
        "userId": "u3",
        "timestamp": "2026-10-01T09:00:00Z",
    },
]
EDGE_DEFINITIONS = {
    "traits": [
        {"name": "logins", "entity": "user", "type": "event_counter", "event": "Logged In"},
    ],
    "audiences": [
        {"name": "any_admin", "entity": "account",
         "where": {"users": "any", "where": {"custom_trait": "role", "equals": "Admin"}}},
        {"name": "all_admin", "entity": "account",
         "where": {"users": "all", "where": {"custom_trait": "role", "equals": "Admin"}}},
        {"name": "no_admin", "entity": "account",
         "where": {"users": "none", "where": {"custom_trait": "role", "equals": "Admin"}}},
        {"name": "two_admins", "entity": "account",
         "where": {"at_least": 2, "where": {"custom_trait": "role", "equals": "Admin"}}},
        {"name": "half_admins", "entity": "account",
         "where": {"at_least_percent": 50, "where": {"custom_trait": "role", "equals": "Admin"}}},
        {"name": "few_seats", "entity": "account", "where": {"custom_trait": "seats", "lt": 5}},
        {"name": "not_few_seats", "entity": "account",
         "where": {"not": {"custom_trait": "seats", "lt": 5}}},
        {"name": "no_seats_known", "entity": "account",
         "where": {"custom_trait": "seats", "is_null": True}},
        {"name": "seats_not_10", "entity": "account",
         "where": {"custom_trait": "seats", "not_equals": 10}},
        {"name": "not_pro", "entity": "account",
         "where": {"custom_trait": "plan", "not_equals": "pro"}},
        {"name": "admin_accounts_not_full", "entity": "account",
         "where": {"and": [{"audience": "any_admin"}, {"not": {"audience": "all_admin"}}]}},
        {"name": "admins_of_admin_accounts", "entity": "user",
         "where": {"and": [{"custom_trait": "role", "equals": "Admin"},
                           {"in_account_audience": "all_admin"}]}},
        {"name": "users_of_trials", "entity": "user",
         "where": {"account": {"custom_trait": "plan", "equals": "trial"}}},
        {"name": "active_or_unknown_role", "entity": "user",
         "where": {"or": [{"trait": "logins", "gte": 1},
                          {"custom_trait": "role", "is_null": True}]}},
        {"name": "never_logged_in", "entity": "user",
         "where": {"performed": "Logged In", "at_most": 0}},  # (at_least is then 0)
        # `tier` is a trait no call ever set: every account's value is null.
        {"name": "gold_tier", "entity": "account",
         "where": {"custom_trait": "tier", "equals": "gold"}},
        {"name": "tier_not_gold", "entity": "account",
         "where": {"custom_trait": "tier", "not_equals": "gold"}},
        {"name": "not_gold_tier", "entity": "account",
         "where": {"not": {"custom_trait": "tier", "equals": "gold"}}},
        {"name": "users_of_gold_tier", "entity": "user",
         "where": {"account": {"custom_trait": "tier", "equals": "gold"}}},
    ],
}  # fmt: skip
EDGE_HOUR = datetime(2026, 10, 1, 9)


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge_audiences")
    write_lines(root / "landing" / "a.ndjson", EDGE_EVENTS)
    (root / "definitions").mkdir()
    (root / "definitions" / "defs.yaml").write_text(yaml.safe_dump(EDGE_DEFINITIONS))
    con = connect(root / "wh.duckdb")
    ingest_window(con, root / "landing", datetime(2026, 10, 1), datetime(2026, 10, 2),
                  PARTITIONS_START)  # fmt: skip
    catalog = load_catalog(root / "definitions")
    build_hour(con, catalog, EDGE_HOUR)
    yield con, catalog, read_events(root / "landing")
    con.close()


EXPECTED = {
    "any_admin": {"FULL", "HALF"},
    "all_admin": {"FULL"},  # EMPTY has no users: `all` does not hold
    "no_admin": {"EMPTY", "SOLO"},  # `none` holds for an account with no users
    "two_admins": {"FULL"},
    "half_admins": {"FULL", "HALF"},
    "few_seats": {"SOLO"},
    "not_few_seats": {"FULL", "HALF", "EMPTY"},  # null or "many": `seats < 5` is false
    "no_seats_known": {"HALF"},
    "seats_not_10": {"SOLO", "EMPTY"},  # "many" is not 10; HALF's null seats are not compared
    "not_pro": {"HALF", "EMPTY"},  # FULL's plan is pro; HALF is trial
    "admin_accounts_not_full": {"HALF"},
    "admins_of_admin_accounts": {"u1", "u2"},
    "users_of_trials": {"u2", "u3"},
    "active_or_unknown_role": {"u3", "u4"},
    "never_logged_in": {"u1", "u2", "u4"},
    "gold_tier": set(),
    "tier_not_gold": set(),  # like any null value: `not_equals` does not hold either
    "not_gold_tier": {"FULL", "HALF", "EMPTY", "SOLO"},
    "users_of_gold_tier": set(),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_edge_audiences(edge, name):
    con, _, events = edge
    reference = ReferenceAudiences(
        events,
        EDGE_HOUR,
        snapshot(events, EDGE_HOUR),
        EDGE_DEFINITIONS["traits"],
        EDGE_DEFINITIONS["audiences"],
    )
    assert stored_members(con, name, EDGE_HOUR) == EXPECTED[name] == reference.members(name)


def test_conditions_nested_as_deep_as_allowed_are_evaluated(tmp_path):
    """16 levels of `account` and `users: any` in turn (each a query inside another, deeper
    than Python's default recursion limit lets Ibis compile) and a preview of them agree with
    the reference; an audience referring to it goes over the limit."""
    where = {"custom_trait": "plan", "equals": "trial"}
    for level in range(16):
        where = {"account": where} if level % 2 == 0 else {"users": "any", "where": where}
    definitions = {"audiences": [{"name": "deep", "entity": "account", "where": where}]}
    write_lines(tmp_path / "landing" / "a.ndjson", EDGE_EVENTS)
    catalog = catalog_of(tmp_path, definitions)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_first_day(con, tmp_path)
        build_hour(con, catalog, EDGE_HOUR)
        members = stored_members(con, "deep", EDGE_HOUR)
        assert preview(con, catalog, "deep", EDGE_HOUR)["members"] == len(members)
    events = read_events(tmp_path / "landing")
    reference = ReferenceAudiences(
        events, EDGE_HOUR, snapshot(events, EDGE_HOUR), [], definitions["audiences"]
    )
    assert members == reference.members("deep") == {"HALF", "FULL"}  # (HALF's u2 is FULL's)
    definitions["audiences"].append(
        {"name": "deeper", "entity": "account", "where": {"not": {"audience": "deep"}}}
    )
    (tmp_path / "definitions" / "d.yaml").write_text(yaml.safe_dump(definitions))
    with pytest.raises(DefinitionError, match=r"audience deeper\.where: conditions nest 18 levels"):
        load_catalog(tmp_path / "definitions")


def test_an_audience_referred_to_many_times_is_one_query(tmp_path):
    """A chain of audiences each referring three times to the one before compiles to a query
    that grows by the same amount at each link (each audience is built once, not once per
    reference: 3^n copies), and each has the first one's members."""
    chain = [{"name": "a0", "entity": "account",
              "where": {"custom_trait": "plan", "equals": "trial"}}]  # fmt: skip
    for n in range(1, 7):
        chain.append({"name": f"a{n}", "entity": "account",
                      "where": {"or": [{"audience": f"a{n - 1}"}] * 3}})  # fmt: skip
    write_lines(tmp_path / "landing" / "a.ndjson", EDGE_EVENTS)
    catalog = catalog_of(tmp_path, {"audiences": chain})
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_first_day(con, tmp_path)
        build_hour(con, catalog, EDGE_HOUR)
        assert stored_members(con, "a6", EDGE_HOUR) == stored_members(con, "a0", EDGE_HOUR)
        assert stored_members(con, "a0", EDGE_HOUR)
        backend = ibis.duckdb.from_connection(con)
        sizes = [
            ibis.to_sql(Evaluator(backend, catalog, EDGE_HOUR).audience(f"a{n}").table).count(
                "FROM"
            )
            for n in range(7)
        ]
    growth = {later - earlier for earlier, later in itertools.pairwise(sizes[1:])}
    assert len(growth) == 1, sizes


# Custom traits are read from each entity's traits as sent, whatever type their column has:
# `band` is text in one account and a number in another (a JSON column), `renewal` looks like
# a date (a TIMESTAMP column), `Plan Tier` is no identifier and `user_count` clashes with a
# column of the accounts table (neither has a column of its own).
TYPED_EVENTS = [
    {
        "type": "group",
        "messageId": "g1",
        "groupId": "ONE",
        "userId": "u1",
        "timestamp": "2026-10-01T08:00:00Z",
        "traits": {
            "band": "gold",
            "Plan Tier": "gold",
            "user_count": 99,
            "renewal": "2026-09-30",
            "tags": ["alpha", "beta"],
            "renewed_at": "2026-10-01T10:30:00+02:00",
            "a:b": "colon",
            "$k": "dollar",
            "Industry": "Retail",
            "industry": "Software",
            "address": {"city": "Paris"},
            "duration": "5d",
            "big": "1_000",
            "flag": "TRUE",
            "codes": [1, 2.5, True, "7.0", "x"],
            "seen_at": "2026-10-01t08:20z",
        },
    },
    {
        "type": "group",
        "messageId": "g2",
        "groupId": "TWO",
        "anonymousId": "crm",
        "timestamp": "2026-10-01T08:00:00Z",
        "traits": {
            "band": 2,
            "tags": "alphabet",
            "renewed_at": "2026-10-01T06:30:00Z",
            "k": "dollar",
            "a": {"b": "colon"},
            "score": "NaN",
            "flag": True,
            "duration": "\t7\n",
            "codes": ["1", 2, "true", "x,2.5,y"],
            "seen_at": "2026-10-01T08:40+01:00",
        },
    },
    {
        "type": "track",
        "event": "Renewed",
        "messageId": "t1",
        "userId": "u1",
        "timestamp": "2026-10-01T08:10:00Z",
        "properties": {"at": "2026-10-01T10:30:00+02:00"},
    },
]
TYPED_DEFINITIONS = {
    "traits": [{"name": "last_renewal", "entity": "user", "type": "last_value",
                "event": "Renewed", "property": "at"}],
    "audiences": [
        {"name": "band_gold", "entity": "account",
         "where": {"custom_trait": "band", "equals": "gold"}},
        {"name": "band_not_gold", "entity": "account",
         "where": {"custom_trait": "band", "not_equals": "gold"}},
        {"name": "band_in", "entity": "account",
         "where": {"custom_trait": "band", "in": ["gold", 2]}},
        {"name": "band_over_1", "entity": "account", "where": {"custom_trait": "band", "gt": 1}},
        {"name": "plan_tier_gold", "entity": "account",
         "where": {"custom_trait": "Plan Tier", "equals": "gold"}},
        {"name": "sent_user_count", "entity": "account",
         "where": {"custom_trait": "user_count", "equals": 99}},
        {"name": "renewal_day", "entity": "account",
         "where": {"custom_trait": "renewal", "equals": "2026-09-30"}},
        {"name": "tagged_alp", "entity": "account",
         "where": {"custom_trait": "tags", "contains": "alp"}},
        {"name": "tagged_alpha", "entity": "account",
         "where": {"custom_trait": "tags", "contains": "alpha"}},
        {"name": "renewed_lately", "entity": "account",
         "where": {"custom_trait": "renewed_at", "within_last": "1 hours"}},
        {"name": "colon_key", "entity": "account",
         "where": {"custom_trait": "a:b", "equals": "colon"}},
        {"name": "dollar_key", "entity": "account",
         "where": {"custom_trait": "$k", "equals": "dollar"}},
        {"name": "both_cases", "entity": "account",
         "where": {"and": [{"custom_trait": "industry", "equals": "Software"},
                           {"custom_trait": "Industry", "equals": "Retail"}]}},
        {"name": "in_paris", "entity": "account",
         "where": {"custom_trait": "address.city", "equals": "Paris"}},
        {"name": "long_duration", "entity": "account",
         "where": {"custom_trait": "duration", "gt": 3}},
        {"name": "big_number", "entity": "account", "where": {"custom_trait": "big", "gte": 1000}},
        {"name": "huge_score", "entity": "account", "where": {"custom_trait": "score", "gt": 100}},
        {"name": "flagged", "entity": "account", "where": {"custom_trait": "flag", "equals": True}},
        {"name": "code_1", "entity": "account", "where": {"custom_trait": "codes", "contains": 1}},
        {"name": "code_1_text", "entity": "account",
         "where": {"custom_trait": "codes", "contains": "1.0"}},
        {"name": "code_2_5", "entity": "account",
         "where": {"custom_trait": "codes", "contains": 2.5}},
        {"name": "code_7", "entity": "account", "where": {"custom_trait": "codes", "contains": 7}},
        {"name": "code_true", "entity": "account",
         "where": {"custom_trait": "codes", "contains": True}},
        {"name": "code_x", "entity": "account",
         "where": {"custom_trait": "codes", "contains": "x"}},
        {"name": "seen_lately", "entity": "account",
         "where": {"custom_trait": "seen_at", "within_last": "1 hour"}},
        {"name": "renewal_in_last_hour", "entity": "user",
         "where": {"trait": "last_renewal", "within_last": "1 hours"}},
    ],
}  # fmt: skip
TYPED_EXPECTED = {
    "band_gold": {"ONE"},
    "band_not_gold": {"TWO"},
    "band_in": {"ONE", "TWO"},
    "band_over_1": {"TWO"},
    "plan_tier_gold": {"ONE"},
    "sent_user_count": {"ONE"},
    "renewal_day": {"ONE"},
    "tagged_alp": {"TWO"},  # an element of a list, a substring of text
    "tagged_alpha": {"ONE", "TWO"},
    "renewed_lately": {"ONE"},  # 08:30 UTC; TWO's 06:30 is older than [08:00, 09:00)
    "colon_key": {"ONE"},  # not TWO's nested a.b
    "dollar_key": {"ONE"},  # not TWO's k
    "both_cases": {"ONE"},
    "in_paris": {"ONE"},
    "long_duration": {"TWO"},  # "\t7\n" is a number, "5d" is not
    "big_number": set(),  # "1_000" is not a number
    "huge_score": set(),  # nor is "NaN"
    "flagged": {"TWO"},  # the boolean true; the string "TRUE" is text
    "renewal_in_last_hour": {"u1"},  # 08:30 UTC (10:30 where it was sent)
    # A list's elements equal to the operand: numbers by value, text in decimal notation too.
    "code_1": {"ONE", "TWO"},
    "code_1_text": {"ONE", "TWO"},
    "code_2_5": {"ONE"},  # (not the text "x,2.5,y")
    "code_7": {"ONE"},
    "code_true": {"ONE", "TWO"},  # the boolean, and the text `true`
    "code_x": {"ONE"},
    "seen_lately": {"ONE"},  # 08:20 UTC (RFC 3339's lower case, to the minute); TWO's 07:40
}


def test_custom_traits_are_tested_as_sent(tmp_path):
    write_lines(tmp_path / "landing" / "a.ndjson", TYPED_EVENTS)
    catalog = catalog_of(tmp_path, TYPED_DEFINITIONS)
    con = connect(tmp_path / "wh.duckdb")
    ingest_first_day(con, tmp_path)
    hour = datetime(2026, 10, 1, 8)
    build_hour(con, catalog, hour)
    events = read_events(tmp_path / "landing")
    reference = ReferenceAudiences(
        events, hour, snapshot(events, hour), *TYPED_DEFINITIONS.values()
    )
    for name, expected in TYPED_EXPECTED.items():
        assert stored_members(con, name, hour) == expected == reference.members(name), name
        assert preview(con, catalog, name, hour)["members"] == len(expected), name
    con.close()


def test_explain_lists_users_of_a_quantified_condition(edge):
    con, catalog, _ = edge
    result = explain(con, catalog, "two_admins", "HALF", EDGE_HOUR)
    assert result["member"] is False
    (condition,) = result["conditions"]
    assert condition["satisfying_users"] == ["u2"]
    assert (condition["matching_users"], condition["users"]) == (1, 2)


def test_hours_before_any_event_have_empty_audiences(tmp_path):
    """Hours before the first event have empty snapshots (no rows at all), which count as
    built: their audiences are empty rather than "not materialized"."""
    write_lines(tmp_path / "landing" / "a.ndjson", EDGE_EVENTS)
    catalog = catalog_of(tmp_path, EDGE_DEFINITIONS)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_first_day(con, tmp_path)
        window = (datetime(2026, 10, 1, 6), EDGE_HOUR + timedelta(hours=1))
        build_snapshots(con, *window, "parent_account_id")
        build_traits(con, catalog, *window)
        reports = {name: build_audience(con, catalog, name, *window) for name in EXPECTED}
        for name, expected in EXPECTED.items():
            early = [reports[name].sizes[datetime(2026, 10, 1, h)] for h in (6, 7)]
            assert early == [0, 0], name
            assert stored_members(con, name, EDGE_HOUR) == expected
        # Before the hierarchy of an hour with events is built, the hour is still refused.
        later = (EDGE_HOUR + timedelta(hours=1), EDGE_HOUR + timedelta(hours=2))
        with pytest.raises(NotComputedError, match="has no snapshot for 1 of the 1 hours"):
            build_audience(con, catalog, "users_of_trials", *later)


def login(mid: str, user: str, at: str) -> dict:
    return {"type": "track", "event": "Logged In", "messageId": mid, "userId": user,
            "timestamp": at}  # fmt: skip


TWO_LOGINS = {
    "traits": [{"name": "logins", "entity": "user", "type": "event_counter", "event": "Logged In"}],
    "audiences": [
        {"name": "two_logins", "entity": "user",
         "where": {"performed": "Logged In", "at_least": 2, "window": "7 days"}},
    ],
}  # fmt: skip


def test_performed_counts_events_the_traits_have_not_tiled_yet(tmp_path):
    """`performed` conditions count with the trait tiles, which the traits stage keeps; an
    audience built (or previewed) before the traits of its hours (a Dagster run may order
    them so) still counts every event: new hours, and days not yet rolled into day tiles."""
    landing = tmp_path / "landing"
    catalog = catalog_of(tmp_path, TWO_LOGINS)
    first, same_day, next_day = (datetime(2026, 10, 1, 9), datetime(2026, 10, 1, 10),
                                 datetime(2026, 10, 2, 1))  # fmt: skip
    write_lines(landing / "a.ndjson", [login("l1", "u1", "2026-10-01T09:05:00Z"),
                                       login("l2", "u2", "2026-10-01T09:06:00Z")])  # fmt: skip
    with connect(tmp_path / "wh.duckdb") as con:

        def build(hour: datetime, traits: bool) -> None:
            ingest_window(con, landing, datetime(2026, 10, 1), datetime(2026, 10, 3),
                          PARTITIONS_START)  # fmt: skip
            window = (hour, hour + timedelta(hours=1))
            build_snapshots(con, *window, "parent_account_id")
            if traits:
                build_traits(con, catalog, *window)
            preview_members = preview(con, catalog, "two_logins", hour)["members"]
            build_audience(con, catalog, "two_logins", *window)
            assert preview_members == len(stored_members(con, "two_logins", hour))

        build(first, traits=True)  # the tiles now exist, up to this hour
        assert stored_members(con, "two_logins", first) == set()
        write_lines(landing / "b.ndjson", [login("l3", "u1", "2026-10-01T10:10:00Z")])
        build(same_day, traits=False)
        assert stored_members(con, "two_logins", same_day) == {"u1"}
        assert tiles_current(con, same_day + timedelta(hours=1))  # refreshed, so counted there
        write_lines(landing / "c.ndjson", [login("l4", "u2", "2026-10-02T01:30:00Z")])
        build(next_day, traits=False)
        assert stored_members(con, "two_logins", next_day) == {"u1", "u2"}


PERFORMED_BY_DAY = {
    "audiences": [
        {"name": "logged_in_twice_in_a_day", "entity": "user",
         "where": {"performed": "Logged In", "at_least": 2, "window": "1 day"}},
        {"name": "logged_in_thrice_in_two_days", "entity": "user",
         "where": {"performed": "Logged In", "at_least": 3, "window": "2 days"}},
        {"name": "accounts_of_feature_users", "entity": "account",
         "where": {"at_least": 2, "where": {"performed": "Feature Used", "at_least": 6}}},
    ],
}  # fmt: skip


def test_performed_conditions_read_day_partials_across_midnight(tmp_path):
    """Counters of whole-day windows (and all time) read the day partials of the hour's day
    when a run's hours lie in one day (the hourly runs), and the day tiles in longer runs:
    both equal the reference at every hour across midnight."""
    generate_sample(tmp_path / "landing", seed=11, accounts=12, users=80, days=3)
    catalog = catalog_of(tmp_path, PERFORMED_BY_DAY)
    events = read_events(tmp_path / "landing")
    window = (datetime(2026, 10, 2, 21), datetime(2026, 10, 3, 3))
    hours = [window[0] + timedelta(hours=n) for n in range(6)]
    names = [located.audience.name for located in catalog.audiences]
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", datetime(2026, 10, 1), datetime(2026, 10, 4),
                      PARTITIONS_START)  # fmt: skip
        build_snapshots(con, *window, "parent_account_id")
        references = {hour: ReferenceAudiences(events, hour, snapshot(events, hour), [],
                                               PERFORMED_BY_DAY["audiences"])
                      for hour in hours}  # fmt: skip
        found = 0
        for name in names:
            report = build_audience(con, catalog, name, *window)
            assert "trait_day_partials" not in report.compiled
            for hour in hours:
                assert stored_members(con, name, hour) == references[hour].members(name)
            for hour in hours:
                report = build_audience(con, catalog, name, hour, hour + timedelta(hours=1))
                assert "trait_day_partials" in report.compiled
                members = stored_members(con, name, hour)
                assert members == references[hour].members(name), (name, hour)
                found += len(members)
            # The hour before midnight, not stored, is evaluated for who entered and exited:
            # on its own day, so without the partials of the run's day.
            midnight, before_midnight = datetime(2026, 10, 3), datetime(2026, 10, 2, 23)
            for table in ("audience_memberships", "audience_hours"):
                con.execute(
                    f"DELETE FROM {table} WHERE audience = $n AND snapshot_hour = $h",
                    {"n": name, "h": before_midnight},
                )
            report = build_audience(con, catalog, name, midnight, midnight + timedelta(hours=1))
            now, before = (references[hour].members(name) for hour in (midnight, before_midnight))
            assert (report.entered, report.exited) == (len(now - before), len(before - now))
        assert found > 0


def test_entered_counts_against_a_stored_hour_without_members(tmp_path):
    """An hour stored with no members is that hour's membership, even when the definition
    has changed since: not evaluated again with the new one."""
    write_lines(tmp_path / "landing" / "a.ndjson", EDGE_EVENTS)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_first_day(con, tmp_path)
        catalogs = []
        for number, where in enumerate(
            [{"custom_trait": "tier", "equals": "gold"},
             {"not": {"custom_trait": "tier", "equals": "gold"}}]
        ):  # fmt: skip
            folder = tmp_path / f"definitions{number}"
            folder.mkdir()
            audience = {"name": "x", "entity": "account", "where": where}
            (folder / "d.yaml").write_text(yaml.safe_dump({"audiences": [audience]}))
            catalogs.append(load_catalog(folder))
        build_hour(con, catalogs[0], EDGE_HOUR)
        assert stored_members(con, "x", EDGE_HOUR) == set()
        later = EDGE_HOUR + timedelta(hours=1)
        build_snapshots(con, later, later + timedelta(hours=1), "parent_account_id")
        build_traits(con, catalogs[1], later, later + timedelta(hours=1))
        report = build_audience(con, catalogs[1], "x", later, later + timedelta(hours=1))
        assert stored_members(con, "x", later) == {"FULL", "HALF", "EMPTY", "SOLO"}
        assert (report.entered, report.exited) == (4, 0)


def test_a_custom_time_without_a_zone_is_utc_after_one_with_a_zone_name(tmp_path):
    sent = {"A": "2026-10-01T04:10:00 America/New_York", "B": "2026-10-01T08:10:00",
            "C": "2026-10-01T06:10:00", "D": "2026-10-01T09:10:00 Europe/Paris",
            "E": "2026-10-01T08:30Z", "F": "2026-10-01t08:40:00z",
            "G": "2026-10-01\t08:20:00", "H": "2026-10-01\t06:20:00"}  # fmt: skip
    write_lines(
        tmp_path / "landing" / "a.ndjson",
        [account(f"g{group}", group, renewed_at=text) for group, text in sent.items()],
    )
    recent = {"name": "recent", "entity": "account",
              "where": {"custom_trait": "renewed_at", "within_last": "1 hour"}}  # fmt: skip
    catalog = catalog_of(tmp_path, {"audiences": [recent]})
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_first_day(con, tmp_path)
        build_hour(con, catalog, datetime(2026, 10, 1, 8))
        # In [08:00, 09:00) UTC: A (08:10 UTC), B, E and F (RFC 3339 forms ingestion reads
        # too) and G (a tab before its time: still no zone); D (07:10 UTC), C and H not.
        members = stored_members(con, "recent", datetime(2026, 10, 1, 8))
        assert members == {"A", "B", "E", "F", "G"}


CASES_HOUR = datetime(2026, 10, 1, 8)


def build_cases(tmp_path: Path, trait: dict, cases: dict[str, tuple[dict, set[str]]]):
    """`trait` (a user trait) and a user audience per case (name: (where, expected members)),
    built at `CASES_HOUR` from the landing lines of 1 October into `tmp_path / "wh.duckdb"`:
    the catalog, and the members stored and expected of each case."""
    definitions = {
        "traits": [trait],
        "audiences": [{"name": name, "entity": "user", "where": where}
                      for name, (where, _) in cases.items()],
    }  # fmt: skip
    catalog = catalog_of(tmp_path, definitions)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_first_day(con, tmp_path)
        build_hour(con, catalog, CASES_HOUR)
        found = {name: stored_members(con, name, CASES_HOUR) for name in cases}
    return catalog, found, {name: expected for name, (_, expected) in cases.items()}


def test_lists_pass_contains_with_equal_elements_only(tmp_path):
    """A list (a custom trait's or a typed SQL trait's) contains an element equal to the
    operand, however the engine writes the number; any other operator on it is false."""
    write_lines(tmp_path / "landing" / "a.ndjson", [
        person("p1", "u1", v=[-0.0, 1e20, 1.5e-7, "\u001f"]),
        person("p2", "u2", v=["a", "b"]),
        person("p3", "u3", v="a"),
        *({"type": "track", "event": "N", "userId": user, "messageId": f"n{user}",
           "timestamp": "2026-10-01T08:40:00Z", "properties": {"n": n, "b": b}}
          for user, n, b in (("u1", 8, False), ("u2", 1, True))),
    ])  # fmt: skip
    sql = (
        "SELECT user_id, CAST(json_extract(properties, '$.n') AS BIGINT) AS nums, "
        "CAST(json_extract(properties, '$.b') AS BOOLEAN) AS bools FROM events"
    )
    cases = {
        "zero": ({"custom_trait": "v", "contains": 0}, {"u1"}),
        "big": ({"custom_trait": "v", "contains": 1e20}, {"u1"}),
        "small": ({"custom_trait": "v", "contains": 1.5e-7}, {"u1"}),
        "control": ({"custom_trait": "v", "contains": "\u001f"}, {"u1"}),
        "a": ({"custom_trait": "v", "contains": "a"}, {"u2", "u3"}),
        "not_x": ({"custom_trait": "v", "not_equals": "x"}, {"u3"}),
        "empty_text": ({"custom_trait": "v", "in": ['["a","b"]', "a"]}, {"u3"}),
        "nums_7_5": ({"trait": "nums", "contains": 7.5}, set()),
        "nums_8": ({"trait": "nums", "contains": "8"}, {"u1"}),
        "nums_true": ({"trait": "nums", "contains": True}, set()),
        "bools_1": ({"trait": "bools", "contains": 1}, set()),
        "bools_yes": ({"trait": "bools", "contains": "yes"}, set()),
        "bools_true": ({"trait": "bools", "contains": True}, {"u2"}),
        "bools_false": ({"trait": "bools", "contains": "false"}, {"u1"}),
    }
    trait = {"name": "lists", "entity": "user", "type": "sql", "many": True, "sql": sql}
    _, found, expected = build_cases(tmp_path, trait, cases)
    assert found == expected


def test_a_boolean_trait_is_no_number(tmp_path):
    """A SQL trait's boolean passes tests of `true` / `false` (or their text), never tests of
    numbers: `true` is not 1, and differs from it."""
    write_lines(tmp_path / "landing" / "a.ndjson", [
        {"type": "track", "event": "N", "userId": user, "messageId": f"n{user}",
         "timestamp": "2026-10-01T08:40:00Z", "properties": {"b": b}}
        for user, b in (("u1", False), ("u2", True))
    ])  # fmt: skip
    sql = "SELECT user_id, CAST(json_extract(properties, '$.b') AS BOOLEAN) AS flag FROM events"
    cases = {
        "equals_1": ({"trait": "flag", "equals": 1}, set()),
        "gt_0": ({"trait": "flag", "gt": 0}, set()),
        "lt_1": ({"trait": "flag", "lt": 1}, set()),
        "in_1": ({"trait": "flag", "in": [1, 0]}, set()),
        "not_equals_1": ({"trait": "flag", "not_equals": 1}, {"u1", "u2"}),
        "equals_true": ({"trait": "flag", "equals": True}, {"u2"}),
        "equals_false_text": ({"trait": "flag", "equals": "false"}, {"u1"}),
        "in_true": ({"trait": "flag", "in": [True]}, {"u2"}),
    }
    trait = {"name": "flag", "entity": "user", "type": "sql", "sql": sql}
    _, found, expected = build_cases(tmp_path, trait, cases)
    assert found == expected


def test_json_nan_and_other_types_of_sql_traits(tmp_path):
    """A SQL trait's JSON is tested as a custom trait's (a string as its text, a list by its
    elements); NaN is no number; preview and explain give the reasons a materialization
    stores, whatever the types."""
    write_lines(tmp_path / "landing" / "a.ndjson", [
        {"type": "identify", "userId": "u1", "messageId": "i1",
         "timestamp": "2026-10-01T08:40:00Z", "traits": {}},
    ])  # fmt: skip
    sql = ("SELECT user_id, '\"abc\"'::JSON AS j_text, '[1, \"x\"]'::JSON AS j_list, "
           "'nan'::DOUBLE AS d_nan, 7 AS n_int, 7.0::DOUBLE AS n_double, INTERVAL 3 DAY AS span, "
           "['nan'::DOUBLE, 1] AS nan_list, [TIMESTAMP '2026-10-01 10:00:00'] AS times, "
           "'inf'::DOUBLE AS d_inf, ['-inf'::DOUBLE, 1] AS inf_list, "
           "'12345678-1234-5678-1234-567812345678'::UUID AS id FROM users")  # fmt: skip
    cases = {
        "text_equals": ({"trait": "j_text", "equals": "abc"}, {"u1"}),
        "text_contains": ({"trait": "j_text", "contains": "b"}, {"u1"}),
        "list_contains_1": ({"trait": "j_list", "contains": 1}, {"u1"}),
        "list_contains_part": ({"trait": "j_list", "contains": ", "}, set()),
        "list_equals": ({"trait": "j_list", "equals": '[1,"x"]'}, set()),
        "list_not_equals": ({"trait": "j_list", "not_equals": "zzz"}, set()),
        "nan_gt_0": ({"trait": "d_nan", "gt": 0}, set()),
        "nan_gte_huge": ({"trait": "d_nan", "gte": 1e308}, set()),
        "nan_not_5": ({"trait": "d_nan", "not_equals": 5}, {"u1"}),
        "int_quoted_7": ({"trait": "n_int", "equals": "7"}, {"u1"}),
        "double_quoted_7": ({"trait": "n_double", "equals": "7"}, set()),
        "double_7": ({"trait": "n_double", "in": [7]}, {"u1"}),
        "span": ({"trait": "span", "equals": "3 days"}, {"u1"}),
        "nan_list": ({"trait": "nan_list", "contains": 1}, {"u1"}),
        "inf_gt_0": ({"trait": "d_inf", "gt": 0}, {"u1"}),
        "inf_list": ({"trait": "inf_list", "contains": 1}, {"u1"}),
        "times": ({"trait": "times", "contains": "2026-10-01 10:00:00"}, {"u1"}),
        "id": ({"trait": "id", "equals": "12345678-1234-5678-1234-567812345678"}, {"u1"}),
    }
    trait = {"name": "typed", "entity": "user", "type": "sql", "sql": sql}
    catalog, found, expected = build_cases(tmp_path, trait, cases)
    assert found == expected
    with connect(tmp_path / "wh.duckdb") as con:
        values = con.execute(
            "SELECT audience, reason -> '$.conditions[0].value' FROM audience_memberships "
            "WHERE audience IN ('nan_list', 'times', 'inf_gt_0', 'inf_list')"
        ).fetchall()
        assert dict(values) == {"nan_list": "[null,1.0]", "times": '["2026-10-01T10:00:00"]',
                                "inf_gt_0": "null", "inf_list": "[null,1.0]"}  # fmt: skip
        for name in cases:
            stored = con.execute(
                "SELECT reason::VARCHAR FROM audience_memberships WHERE audience = $n",
                {"n": name},
            ).fetchall()
            why = explain(con, catalog, name, "u1", CASES_HOUR)
            assert why["member"] == bool(stored), name
            sample = preview(con, catalog, name, CASES_HOUR)["sample"]
            if stored:
                (sample_reason,) = sample
                assert strict_json(stored[0][0]) == {"conditions": why["conditions"]}, name
                assert sample_reason == {"entity_id": "u1", "conditions": why["conditions"]}


def test_default_hours_are_the_audiences_own(edge):
    con, catalog, _ = edge
    assert newest_member_hour(con, "any_admin") == EDGE_HOUR
    assert newest_evaluable_hour(con, catalog, "any_admin") == EDGE_HOUR
    with pytest.raises(NotInSnapshotError, match="'nope' was not materialized for any hour"):
        newest_member_hour(con, "nope")
    with pytest.raises(NotInSnapshotError, match="did you mean 'any_admin'"):
        newest_member_hour(con, "any_admins")
    with pytest.raises(NotInSnapshotError, match="did you mean 'any_admin'"):
        members(con, "any_admins", EDGE_HOUR)
    with duckdb.connect() as empty, pytest.raises(NotInSnapshotError) as nothing_built:
        newest_member_hour(empty, "any_admin")
    assert str(nothing_built.value) == "Audience 'any_admin' was not materialized for any hour yet."


def test_preview_with_a_new_trait_not_materialized_yet(edge, tmp_path):
    """A trait just added: audiences using it are refused clearly, the others still work."""
    con, _, _ = edge
    definitions = {
        "traits": [*EDGE_DEFINITIONS["traits"],
                   {"name": "new_logins", "entity": "user", "type": "event_counter",
                    "event": "Logged In", "window": "1 days"}],
        "audiences": [*EDGE_DEFINITIONS["audiences"],
                      {"name": "uses_new", "entity": "user",
                       "where": {"trait": "new_logins", "gte": 1}}],
    }  # fmt: skip
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(definitions))
    catalog = load_catalog(tmp_path)
    with pytest.raises(NotComputedError, match="trait 'new_logins' has not been materialized"):
        preview(con, catalog, "uses_new", EDGE_HOUR)
    assert preview(con, catalog, "active_or_unknown_role", EDGE_HOUR)["members"] == 2


def test_a_trait_built_for_older_hours_only_is_not_read_at_newer_ones(tmp_path):
    """A trait added and built for an older hour only has a column, without values, at the
    newer hours of the trait table: preview and explain do not take those hours for
    computed (a confident "not a member, value null"); they refuse them, and by default take
    the newest hour the trait was computed for. A materialization refuses them too."""
    logins = [login("l1", "u1", "2026-10-01T08:10:00Z"), login("l2", "u1", "2026-10-01T09:10:00Z")]
    write_lines(tmp_path / "landing" / "a.ndjson", logins)
    anyone = {"name": "anyone", "entity": "user", "where": {"custom_trait": "r", "exists": False}}
    old = catalog_of(tmp_path, {"audiences": [anyone]})
    con = connect(tmp_path / "wh.duckdb")
    start = datetime(2026, 10, 1, 8)
    ingest_window(con, tmp_path / "landing", start, start + timedelta(hours=2), PARTITIONS_START)
    for hour in (start, start + timedelta(hours=1)):
        build_hour(con, old, hour)
    logged_in = {"name": "logged_in", "entity": "user", "where": {"trait": "logins", "gte": 1}}
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "d.yaml").write_text(
        yaml.safe_dump(TWO_LOGINS | {"audiences": [logged_in]})
    )
    new = load_catalog(tmp_path / "new")
    build_traits(con, new, start, start + timedelta(hours=1))  # (the older hour only)
    assert preview(con, new, "logged_in", start)["members"] == 1
    assert newest_evaluable_hour(con, new, "logged_in") == start
    later = start + timedelta(hours=1)
    with pytest.raises(NotComputedError, match="trait 'logins' was not computed"):
        explain(con, new, "logged_in", "u1", later)
    with pytest.raises(NotComputedError, match="trait 'logins' was not computed"):
        preview(con, new, "logged_in", later)
    with pytest.raises(NotComputedError, match="user trait 'logins' was not computed for 1 of"):
        build_audience(con, new, "logged_in", later, later + timedelta(hours=1))


def test_the_default_hour_of_a_preview_skips_tables_built_without_rows(tmp_path):
    """Accounts only from anonymous CRM calls: `account_memberships` is built but empty, and
    holds for every hour; the preview takes the newest hour of the tables that have rows."""
    at = "2026-10-01T08:00:00Z"
    write_lines(tmp_path / "landing" / "a.ndjson", [
        {"type": "group", "messageId": "g1", "groupId": "E1", "anonymousId": "crm",
         "timestamp": at, "traits": {"industry": "Software"}},
        {"type": "identify", "messageId": "i1", "userId": "lonely", "timestamp": at,
         "traits": {"role": "Admin"}},
    ])  # fmt: skip
    (tmp_path / "defs").mkdir()
    admins = {"custom_trait": "role", "equals": "Admin"}
    audience = {"name": "no_admins", "entity": "account",
                "where": {"users": "none", "where": admins}}  # fmt: skip
    (tmp_path / "defs" / "a.yaml").write_text(yaml.safe_dump({"audiences": [audience]}))
    catalog = load_catalog(tmp_path / "defs")
    con = connect(tmp_path / "wh.duckdb")
    start = datetime(2026, 10, 1, 8)
    ingest_window(con, tmp_path / "landing", start, start + timedelta(hours=2), PARTITIONS_START)
    for hour in (start, start + timedelta(hours=1)):
        build_hour(con, catalog, hour)
    assert con.execute("SELECT count(*) FROM account_memberships").fetchone() == (0,)
    newest = newest_evaluable_hour(con, catalog, "no_admins")
    assert newest == start + timedelta(hours=1)
    assert preview(con, catalog, "no_admins", newest)["members"] == 1


def test_explain_goes_inside_account_conditions(tmp_path, monkeypatch):
    at = "2026-10-01T10:00:00Z"
    write_lines(tmp_path / "landing" / "a.ndjson", [
        {"type": "group", "messageId": f"g{n}", "groupId": account, "userId": user,
         "timestamp": at, "traits": {"industry": "Software"}}
        for n, (account, user) in enumerate([("A1", "u1"), ("A2", "u2"), ("A2", "u3")])
    ] + [
        {"type": "identify", "messageId": f"i{user}", "userId": user, "timestamp": at,
         "traits": {"role": role}}
        for user, role in (("u1", "Admin"), ("u2", "Viewer"), ("u3", "Admin"))
    ])  # fmt: skip
    account_condition = {"and": [
        {"custom_trait": "industry", "equals": "Software"},
        {"users": "all", "where": {"custom_trait": "role", "equals": "Admin"}}]}  # fmt: skip
    audience = {"name": "admin_shops", "entity": "user", "where": {"account": account_condition}}
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "a.yaml").write_text(yaml.safe_dump({"audiences": [audience]}))
    catalog = load_catalog(tmp_path / "defs")
    con = connect(tmp_path / "wh.duckdb")
    hour = datetime(2026, 10, 1, 10)
    ingest_window(con, tmp_path / "landing", hour, hour + timedelta(hours=1), PARTITIONS_START)
    build_hour(con, catalog, hour)

    (checked,) = explain(con, catalog, "admin_shops", "u2", hour)["conditions"]
    assert checked["held"] is False
    (account,) = checked["accounts_checked"]
    assert (account["account_id"], account["held"]) == ("A2", False)
    industry, all_admins = account["conditions"]
    assert industry["held"] and not all_admins["held"]
    assert all_admins["satisfying_users"] == ["u3"]
    (checked,) = explain(con, catalog, "admin_shops", "u1", hour)["conditions"]
    assert [(a["account_id"], a["held"]) for a in checked["accounts_checked"]] == [("A1", True)]
    con.close()

    monkeypatch.setenv("AH_WAREHOUSE", str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("AH_DEFINITIONS_DIR", str(tmp_path / "defs"))
    shown = CliRunner().invoke(main, ["explain", "admin_shops", "u2"])
    assert shown.exit_code == 0, shown.output
    assert "account A2 does not satisfy it:" in shown.output
    assert "users satisfying it: u3" in shown.output


def test_explain_keeps_ids_and_values_on_their_lines(capsys):
    users = {"condition": "users: any", "held": False, "satisfying_users": ["u\n1", "u\t2"]}
    account = {"account_id": "A\n1", "held": False, "conditions": [users]}
    _echo_conditions([{"condition": "account: ...", "held": False, "value": "x\ny",
                       "accounts_checked": [account]}], "  ")  # fmt: skip
    assert capsys.readouterr().out.splitlines() == [
        "  [no ] account: ...  (value: x\\ny)",
        "        account A\\n1 does not satisfy it:",
        "          [no ] users: any",
        "                users satisfying it: u\\n1, u\\t2",
    ]


def test_a_performed_condition_is_described_with_its_window_however_all_time_is_written():
    described = [describe(Performed(performed="Logged In", at_most=2, window=window))
                 for window in ("All Time", "2 days")]  # fmt: skip
    assert described == [
        "performed 'Logged In' at most 2 times",
        "performed 'Logged In' at most 2 times in the past 2 days",
    ]


def test_operands_are_described_as_the_condition_tests_them():
    """Thresholds in full (not `1.23457e+06`), a `contains` operand as the text it looks
    for (`7.0`, not `7`), booleans as YAML writes them (`true`, not Python's `True`)."""
    where = {"trait": "user_logins", "gt": 0}
    quantified = [Quantified.model_validate({amount: number, "where": where})
                  for amount, number in [("at_least", 1234567), ("at_least_percent", 33.3333333),
                                         ("at_least_percent", 50.0)]]  # fmt: skip
    assert [describe(condition).split(" of the users")[0] for condition in quantified] == [
        "at least 1234567", "at least 33.3333333%", "at least 50%",
    ]  # fmt: skip
    tests = [CustomTraitTest.model_validate({"custom_trait": "n", operator: 7.0})
             for operator in ("contains", "equals")]  # fmt: skip
    assert [describe(test) for test in tests] == ["n contains 7.0", "n = 7"]
    operands = ({"equals": True}, {"in": ["a", False, 2]}, {"not_equals": "x"})
    tests = [CustomTraitTest.model_validate({"custom_trait": "n", **test}) for test in operands]
    assert [describe(test) for test in tests] == ["n = true", "n in ['a', false, 2]", "n != 'x'"]


def test_a_user_with_no_account_has_an_empty_list_of_qualifying_accounts(tmp_path):
    """The reason of a passthrough lists the user's qualifying accounts: none is `[]`, whether
    the user has accounts that fail or no account at all."""
    lines = [
        {"type": "group", "messageId": "g1", "userId": "u1", "groupId": "A",
         "timestamp": "2026-10-01T10:00:00Z", "traits": {"plan": "free"}},
        login("l1", "u2", "2026-10-01T10:05:00Z"),
    ]  # fmt: skip
    write_lines(tmp_path / "landing" / "a.ndjson", lines)
    catalog = catalog_of(tmp_path, {"audiences": [
        {"name": "pro", "entity": "account", "where": {"custom_trait": "plan", "equals": "pro"}},
        {"name": "not_pro_users", "entity": "user",
         "where": {"not": {"in_account_audience": "pro"}}},
        {"name": "not_of_pro", "entity": "user",
         "where": {"not": {"account": {"custom_trait": "plan", "equals": "pro"}}}},
    ]})  # fmt: skip
    hour = datetime(2026, 10, 1, 10)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_first_day(con, tmp_path)
        build_hour(con, catalog, hour)
        for audience in ("not_pro_users", "not_of_pro"):
            reasons = dict(con.execute(
                "SELECT entity_id, reason FROM audience_memberships WHERE audience = $a",
                {"a": audience},
            ).fetchall())  # fmt: skip
            assert set(reasons) == {"u1", "u2"}
            for reason in reasons.values():
                (leaf,) = json.loads(reason)["conditions"]
                assert (leaf["held"], leaf["accounts"]) == (False, []), reason


def test_explain_says_when_the_stored_membership_of_the_hour_is_out_of_date(tmp_path, monkeypatch):
    """A late login for 10:20 lands after hours 10 and 11 were built, and only hour 10 is built
    again: explaining hour 11 counts the login, and says the membership stored for 11 (built
    before it) differs."""
    write_lines(tmp_path / "landing" / "a.ndjson",
                [login("l1", "u1", "2026-10-01T10:10:00Z"),
                 login("l2", "u1", "2026-10-01T11:10:00Z")])  # fmt: skip
    three = {"name": "three_logins", "entity": "user",
             "where": {"performed": "Logged In", "at_least": 3}}  # fmt: skip
    catalog = catalog_of(tmp_path, {"audiences": [three]})
    ten, eleven = datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_first_day(con, tmp_path)
        for hour in (ten, eleven):
            build_hour(con, catalog, hour)
        write_lines(
            tmp_path / "landing" / "late.ndjson", [login("l3", "u1", "2026-10-01T10:20:00Z")]
        )
        ingest_first_day(con, tmp_path)
        build_hour(con, catalog, ten)
        explained = explain(con, catalog, "three_logins", "u1", eleven)
        assert (explained["member"], explained["stored_member"]) == (True, False)
        assert explain(con, catalog, "three_logins", "u1", ten)["stored_member"] is False
    monkeypatch.setenv("AH_WAREHOUSE", str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("AH_DEFINITIONS_DIR", str(tmp_path / "definitions"))
    shown = CliRunner().invoke(main, ["explain", "three_logins", "u1", "--as-of", "2026-10-01T11"])
    assert shown.exit_code == 0, shown.output
    assert "note: the membership stored for this hour says it is not a member" in shown.output
    agreeing = CliRunner().invoke(
        main, ["explain", "three_logins", "u1", "--as-of", "2026-10-01T10"]
    )
    assert "note:" not in agreeing.output


def used(mid: str, user: str, context: str | None) -> dict:
    """A `Feature Used` event of `user` at 09:30 on 1 October, in `context` (a groupId)."""
    event = {"type": "track", "event": "Feature Used", "messageId": mid, "userId": user,
             "timestamp": "2026-10-01T09:30:00Z"}  # fmt: skip
    return event | ({"context": {"groupId": context}} if context else {})


def in_context(**options: object) -> dict:
    return {"performed": "Feature Used", "attribution": "context", **options}


CONTEXT_AUDIENCES = [
    {"name": "ctx_any", "entity": "account",
     "where": {"users": "any", "where": in_context(at_least=3)}},
    {"name": "ctx_strict", "entity": "account",
     "where": {"users": "any", "where": in_context(at_least=2, context_fallback="none")}},
    {"name": "all_any", "entity": "account",
     "where": {"users": "any", "where": {"performed": "Feature Used", "at_least": 3}}},
    {"name": "ctx_all", "entity": "account", "where": {"users": "all", "where": {
        "and": [in_context(at_least=2), {"custom_trait": "role", "is_null": True}]}}},
    {"name": "ctx_none", "entity": "account",
     "where": {"users": "none", "where": {"not": {"not": in_context(context_fallback="none")}}}},
    {"name": "ctx_rare", "entity": "account",
     "where": {"users": "any", "where": in_context(at_most=1)}},
    {"name": "users_of_ctx", "entity": "user",
     "where": {"account": {"users": "any", "where": in_context(at_least=3)}}},
]  # fmt: skip


# ca1, in CA and CB, used a feature 3 times in CA, once in CB, once in no account and once in
# CC (not one of theirs); ca2 (in CA) twice in CB and once in none; ca3 (in CB) twice in CB.
CONTEXT_EVENTS = [
    group_call("g1", "2026-10-01T09:00:00Z", "CA", "ca1"),
    group_call("g2", "2026-10-01T09:00:01Z", "CB", "ca1"),
    group_call("g3", "2026-10-01T09:00:02Z", "CA", "ca2"),
    group_call("g4", "2026-10-01T09:00:03Z", "CB", "ca3"),
    group_call("g5", "2026-10-01T09:00:04Z", "CC", "ca4"),
    group_call("g6", "2026-10-01T09:00:05Z", "CD", None),
    *(used(f"a{n}", "ca1", "CA") for n in range(3)),
    used("b1", "ca1", "CB"), used("n1", "ca1", None), used("c1", "ca1", "CC"),
    used("b2", "ca2", "CB"), used("b3", "ca2", "CB"), used("n2", "ca2", None),
    used("b4", "ca3", "CB"), used("b5", "ca3", "CB"),
]  # fmt: skip


def test_performed_in_context_counts_the_events_naming_the_account(tmp_path):
    """Under a users quantifier, `attribution: context` counts for each account only the
    user's events whose `context.groupId` names it (and those naming none, unless
    `context_fallback: none`)."""
    write_lines(tmp_path / "landing" / "a.ndjson", CONTEXT_EVENTS)
    catalog = catalog_of(tmp_path, {"audiences": CONTEXT_AUDIENCES})
    hour = datetime(2026, 10, 1, 9)
    expected = {"ctx_any": {"CA"}, "ctx_strict": {"CA", "CB"}, "all_any": {"CA", "CB"},
                "ctx_all": {"CB"}, "ctx_none": {"CC", "CD"}, "ctx_rare": {"CA", "CC"},
                "users_of_ctx": {"ca1", "ca2"}}  # fmt: skip
    events = read_events(tmp_path / "landing")
    reference = ReferenceAudiences(events, hour, snapshot(events, hour), [], CONTEXT_AUDIENCES)
    assert {name: reference.members(name) for name in expected} == expected
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_first_day(con, tmp_path)
        build_snapshots(con, hour, hour + timedelta(hours=1), "parent_account_id")
        from_events = Evaluator(ibis.duckdb.from_connection(con), catalog, hour, use_tiles=False)
        for name in expected:  # (without tiles: from the events)
            table = from_events.audience(name).table
            assert set(table.filter(table.member).execute().entity_id) == expected[name], name
        build_hour(con, catalog, hour)  # (the traits stage's tiles)
        assert {name: stored_members(con, name, hour) for name in expected} == expected
        why = explain(con, catalog, "ctx_any", "CA", hour)
        assert why["conditions"][0]["satisfying_users"] == ["ca1"]
        assert explain(con, catalog, "all_any", "CB", hour)["conditions"][0][
            "satisfying_users"] == ["ca1"]  # fmt: skip
    assert describe(catalog.audience("ctx_strict").where.where) == (
        "performed 'Feature Used' at least 2 times (counting events in the account's context only)"
    )


@pytest.mark.parametrize(("where", "problem"), [
    (in_context(), r"a\.where\.attribution: attribution: context applies under a users "
                   "quantifier only"),
    ({"and": [in_context()]}, r"a\.where\.and\[0\]\.attribution: attribution: context"),
    ({"performed": "X", "context_fallback": "none"},
     r"a\.where\.context_fallback: context_fallback applies with attribution: context only"),
])  # fmt: skip
def test_context_attribution_of_performed_is_checked_at_load_time(tmp_path, where, problem):
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(
        {"audiences": [{"name": "a", "entity": "user", "where": where}]}))  # fmt: skip
    with pytest.raises(DefinitionError, match=problem):
        load_catalog(tmp_path)
