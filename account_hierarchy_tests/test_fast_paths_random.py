"""Randomised differential test of the fast paths: seeded random events (many on the same
millisecond, on hour and day edges, with context accounts, an account tree and a late file)
and random trait and audience definitions. What the hourly runs store (rolled up from tiles,
day tiles, day partials) must equal the direct computation over the events (compared as
`benchmarks.verify` does) and the plain-Python references of the tests, before and after
the late events make the caches stale. Seed 1 by default; `AH_RANDOM_SEEDS=2,3,4` runs
others (about a minute each)."""

import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import PARTITIONS_START, random_seeds, write_lines
from account_hierarchy_tests.reference import read_events, snapshot
from account_hierarchy_tests.reference_audiences import ReferenceAudiences
from account_hierarchy_tests.reference_traits import trait_values
from account_hierarchy_tests.test_hierarchy import assert_snapshot_matches_reference
from account_hierarchy_tests.test_traits import stored
from benchmarks.verify import direct_audiences, direct_traits, same

START = datetime(2026, 10, 1)
DAYS = 3
SEEDS = random_seeds("1")
ACCOUNTS = [f"acc_{n}" for n in range(1, 6)]
USERS = [f"user_{n}" for n in range(1, 13)]
FEATURES = ["reports", "export", "import", "report builder"]
# (MISSING: no score property; None: a JSON null)
SCORES = [1, 5, 6, 7, 7.5, 8, 9, 10, "10", "8", "n/a", True, {"v": 1}, None, "MISSING"]
WINDOWS = ["all time", "45 minutes", "90 minutes", "1 hours", "3 hours", "24 hours",
           "25 hours", "1 days", "36 hours", "2 days"]  # fmt: skip
CONDITIONS = [
    [],
    [{"property": "feature", "equals": "reports"}],
    [{"property": "feature", "contains": "report"}],
    [{"property": "feature", "in": ["export", "import"]}],
    [{"property": "score", "gte": 7}],
    [{"property": "score", "lt": 7}],
    [{"property": "score", "exists": False}],
    [{"property": "score", "not_equals": 10}],
]
# (type, selection, property) of the trait templates: event names and the properties they have.
SELECTIONS = [
    ("event", "Feature Used", "feature", CONDITIONS[:4]),
    ("event", "NPS Survey Submitted", "score", [CONDITIONS[0], *CONDITIONS[4:]]),
    ("event", "Logged In", None, [[]]),
    ("event_type", "page", "path", [[]]),
    ("event_type", "identify", "title", [[], [{"property": "title", "exists": True}]]),
]
TYPES = ["event_counter", "aggregation", "most_frequent", "first_value", "last_value",
         "unique_list", "unique_list_count", "unique_users"]  # fmt: skip


def moment(rng: random.Random, hours: int = DAYS * 24) -> str:
    """A timestamp that is often on an hour's edge, and often shared with other events."""
    hour = START + timedelta(hours=rng.randrange(hours))
    minute = rng.choice([0, 0, 0, 15, 59])
    second, millis = rng.choice([(0, 0), (0, 0), (59, 999), (30, 500)])
    at = hour + timedelta(minutes=minute, seconds=second, milliseconds=millis)
    return at.isoformat(timespec="milliseconds") + "Z"


def random_events(rng: random.Random) -> list[dict]:
    """Group, identify, track and page calls of the users of a small account tree."""
    events: list[dict] = []

    def add(kind: str, **fields: object) -> None:
        events.append({"type": kind, "messageId": f"m{len(events):04d}{rng.randrange(99)}",
                       "timestamp": moment(rng), **fields})  # fmt: skip

    for account in ACCOUNTS:
        traits = {"industry": rng.choice(["Software", "Retail"]), "plan": rng.choice(["trial",
                  "pro"]), "employees": rng.choice([10, 250])}  # fmt: skip
        add("group", anonymousId="crm", groupId=account, traits=traits)
    for child, parent in (("acc_2", "acc_1"), ("acc_4", "acc_2"), ("acc_5", "acc_4")):
        add("group", anonymousId="crm", groupId=child, traits={"parent_account_id": parent})
    # acc_3 moves around the tree, and at times closes a cycle (acc_1 under acc_5)
    for _ in range(4):
        add("group", anonymousId="crm", groupId=rng.choice(["acc_3", "acc_1"]),
            traits={"parent_account_id": rng.choice(["acc_1", "acc_5", "acc_3", ""])})  # fmt: skip
    for user in USERS:
        for account in rng.sample(ACCOUNTS, rng.choice([1, 1, 2])):
            add("group", userId=user, groupId=account, traits={})
        for _ in range(rng.randrange(1, 4)):
            traits = {"title": rng.choice(["CTO", "Dev", "PM"]),
                      "role": rng.choice(["Admin", "User"])}  # fmt: skip
            add("identify", userId=user, traits=traits)
    for _ in range(900):
        # (some events are anonymous: they belong to no user, so to no account)
        who = {"userId": rng.choice(USERS)} if rng.random() < 0.95 else {"anonymousId": "anon"}
        context = {"groupId": rng.choice(ACCOUNTS)} if rng.random() < 0.4 else {}
        kind = rng.random()
        if kind < 0.35:
            add("track", **who, event="Logged In", context=context)
        elif kind < 0.65:
            add("track", **who, event="Feature Used", context=context,
                properties={"feature": rng.choice(FEATURES)})  # fmt: skip
        elif kind < 0.85:
            score = rng.choice(SCORES)
            properties = {} if score == "MISSING" else {"score": score}
            add("track", **who, event="NPS Survey Submitted", context=context,
                properties=properties)  # fmt: skip
        else:
            add("page", **who, name="Docs", context=context,
                properties={"path": rng.choice(["/", "/docs", "/pricing"])})  # fmt: skip
    return events


def random_traits(rng: random.Random) -> list[dict]:
    traits = []
    for number in range(16):
        kind, selected, prop, conditions = rng.choice(SELECTIONS)
        entity = rng.choice(["account", "user"])
        trait_type = rng.choice(TYPES if prop else ["event_counter", "unique_users"])
        if trait_type == "unique_users":
            entity = "account"
        if trait_type == "aggregation" and prop != "score":
            trait_type = "event_counter"
        trait = {"name": f"t{number}_{trait_type}", "entity": entity, "type": trait_type,
                 kind: selected, "window": rng.choice(WINDOWS),
                 "where": rng.choice(conditions)}  # fmt: skip
        if trait_type not in ("event_counter", "unique_users"):
            trait["property"] = prop
        if trait_type == "aggregation":
            trait["function"] = rng.choice(["sum", "avg", "min", "max"])
        if entity == "account":
            trait["attribution"] = rng.choice(["all_users", "context"])
            if trait["attribution"] == "context":
                trait["context_fallback"] = rng.choice(["all_accounts", "none"])
            trait["include_child_accounts"] = rng.random() < 0.3
        traits.append(trait)
    return traits


def random_audiences(rng: random.Random, traits: list[dict]) -> list[dict]:
    """Audiences over the random traits, custom traits and `performed` conditions (in the
    account's context too), with every quantifier, `not`, `or`, audiences of audiences and the
    account passthrough."""

    def trait_test(entity: str) -> dict:
        trait = rng.choice([t for t in traits if t["entity"] == entity] or [None])
        if trait is None:
            return custom(entity)
        kind, name = trait["type"], trait["name"]
        if kind == "unique_list":
            return {"trait": name, "contains": rng.choice([*FEATURES, "8", "/docs", "CTO"])}
        if kind in ("most_frequent", "first_value", "last_value"):
            return rng.choice([{"trait": name, "is_null": rng.random() < 0.5},
                               {"trait": name, rng.choice(["equals", "not_equals"]):
                                rng.choice(["reports", "8", 8, "/docs", "CTO"])},
                               {"trait": name, "in": ["export", "9", 10, "/", "PM"]}])  # fmt: skip
        operator = rng.choice(["gt", "gte", "lt", "lte", "equals", "not_equals"])
        return {"trait": name, operator: rng.choice([0, 1, 2, 3, 7.5])}

    def custom(entity: str) -> dict:
        if entity == "user":
            return rng.choice([{"custom_trait": "role", "equals": "Admin"},
                               {"custom_trait": "title", "in": ["CTO", "PM"]},
                               {"custom_trait": "title", "is_null": True}])  # fmt: skip
        return rng.choice([{"custom_trait": "industry", "equals": "Software"},
                           {"custom_trait": "plan", "not_equals": "trial"},
                           {"custom_trait": "employees", "gte": 100}])  # fmt: skip

    def performed(in_context: bool = False) -> dict:
        where = rng.choice([[], [{"property": "feature", "equals": "reports"}]])
        bounds = rng.choice([{"at_least": rng.choice([1, 2, 3])}, {"at_most": 1}])
        context = {}
        if in_context:  # (under a users quantifier: the events in the account's context)
            context = {"attribution": "context",
                       "context_fallback": rng.choice(["all_accounts", "none"])}  # fmt: skip
        return {"performed": rng.choice(["Logged In", "Feature Used"]), "where": where,
                "window": rng.choice(WINDOWS[1:]), **bounds, **context}  # fmt: skip

    quantifier = rng.choice([{"users": "any"}, {"users": "all"}, {"users": "none"},
                             {"at_least": 2}, {"at_least_percent": 50}])  # fmt: skip
    return [
        {"name": "performers", "entity": "user", "where": performed()},
        {"name": "accounts_of_users", "entity": "account", "where": {**quantifier, "where":
            rng.choice([performed(), trait_test("user"), custom("user")])}},
        {"name": "accounts_by_context", "entity": "account", "where": {**rng.choice(
            [{"users": "any"}, {"users": "all"}, {"at_least": 2}]), "where": {"and": [
                performed(in_context=True), {"not": custom("user")}]}}},
        {"name": "mixed_accounts", "entity": "account",
         "where": {"and": [trait_test("account"), {"not": custom("account")}]}},
        {"name": "either_accounts", "entity": "account",
         "where": {"or": [{"audience": "mixed_accounts"}, trait_test("account")]}},
        {"name": "users_of_accounts", "entity": "user",
         "where": {"and": [{"in_account_audience": "accounts_of_users"},
                           {"not": trait_test("user")}]}},
        {"name": "users_by_account", "entity": "user",
         "where": {"or": [{"account": trait_test("account")}, performed()]}},
    ]  # fmt: skip


WINDOWS_COMPARED = [
    (datetime(2026, 10, 1, 22), datetime(2026, 10, 2, 1)),  # a run across midnight
    (datetime(2026, 10, 2, 0), datetime(2026, 10, 2, 1)),  # a day's first hour
    (datetime(2026, 10, 2, 13), datetime(2026, 10, 2, 14)),  # an ordinary hour
    (datetime(2026, 10, 2, 23), datetime(2026, 10, 3, 0)),  # the hour ending a day
    (datetime(2026, 10, 3, 20), datetime(2026, 10, 4, 0)),  # the last hours
]


def differences(con, catalog, landing: Path, traits: list, audiences: list) -> tuple[int, list]:
    """Cells compared and differences found: the stored tables of each window against the
    direct computation, and at each window's last hour against the references (the
    hierarchy's are asserted)."""
    cells, found = 0, []
    events = read_events(landing)
    for start, end in WINDOWS_COMPARED:
        build_snapshots(con, start, end, "parent_account_id")
        for check in (direct_traits, direct_audiences):
            checked, wrong = check(con, catalog, start, end)
            cells, found = cells + checked, found + wrong
        hour = end - timedelta(hours=1)
        assert_snapshot_matches_reference(con, events, hour)
        snap = snapshot(events, hour)
        for trait in traits:
            expected = trait_values(events, hour, trait, snap)
            values = stored(con, trait["entity"], hour, trait["name"])
            cells += len(expected)
            found += [f"{trait['name']} {hour} {key}: stored {values.get(key)!r}, reference "
                      f"{value!r}" for key, value in expected.items()
                      if not same(values.get(key), value)]  # fmt: skip
        reference = ReferenceAudiences(events, hour, snap, traits, audiences)
        for audience in audiences:
            name = audience["name"]
            members = {entity for (entity,) in con.execute(
                "SELECT entity_id FROM audience_memberships WHERE audience = $name AND "
                "snapshot_hour = $hour", {"name": name, "hour": hour}).fetchall()}  # fmt: skip
            cells += 1
            if members != reference.members(name):
                found.append(f"{name} {hour}: stored {sorted(members)}, reference "
                             f"{sorted(reference.members(name))}")  # fmt: skip
    return cells, found


@pytest.mark.parametrize("seed", SEEDS)
def test_fast_paths_equal_the_direct_computation_on_random_data(seed: int, tmp_path: Path):
    rng = random.Random(seed)
    traits = random_traits(rng)
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "traits.yaml").write_text(yaml.safe_dump({"traits": traits}))
    audiences = random_audiences(rng, traits)
    (folder / "audiences.yaml").write_text(yaml.safe_dump({"audiences": audiences}))
    catalog = load_catalog(folder)
    events = random_events(rng)
    rng.shuffle(events)
    landing = tmp_path / "landing"
    late = len(events) * 3 // 4
    write_lines(landing / "early.ndjson", events[:late])
    end = START + timedelta(days=DAYS)
    con = connect(tmp_path / "warehouse.duckdb")
    ingest_window(con, landing, START, end, PARTITIONS_START)
    cells, found = differences(con, catalog, landing, traits, audiences)
    assert cells > 1000 and not found, found[:10]
    # Late events for every hour: each cache the runs above built is stale now.
    write_lines(landing / "late.ndjson.gz", events[late:], gz=True)
    ingest_window(con, landing, START, end, PARTITIONS_START)
    (loaded,) = con.execute("SELECT count(*) FROM raw_events").fetchone()
    assert loaded == len(events)
    cells, found = differences(con, catalog, landing, traits, audiences)
    assert cells > 1000 and not found, found[:10]
