"""Hierarchy snapshots match an independent computation, hour by hour, on edge cases."""

import json
import random
from datetime import datetime, timedelta

import dagster as dg
import pytest

from account_hierarchy.hierarchy import as_of, checks
from account_hierarchy.hierarchy.assets import hierarchy_snapshots
from account_hierarchy.hierarchy.entities import build_users
from account_hierarchy.hierarchy.tables import ensure_hierarchy_tables
from account_hierarchy.hierarchy.tree import build_hierarchy
from account_hierarchy.ingest.assets import raw_events
from account_hierarchy.resources import LandingFolder, Warehouse
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import write_lines
from account_hierarchy_tests.reference import _place, read_events, snapshot

HOURS = [datetime(2026, 10, 1, hour) for hour in range(10, 14)]


def group(mid, at, account, user="u1", **traits):
    message = {"type": "group", "messageId": mid, "groupId": account, "timestamp": at}
    message |= {"userId": user} if user else {"anonymousId": "crm-sync"}
    return message | {"traits": traits}


def identify(mid, at, user, **traits):
    return {"type": "identify", "messageId": mid, "userId": user, "timestamp": at, "traits": traits}


def track(mid, at, user, **fields):
    return {
        "type": "track",
        "event": "Logged In",
        "messageId": mid,
        "userId": user,
        "timestamp": at,
    } | fields


EDGE_CASES = [
    # a user in three accounts; a three-level chain A <- B <- C
    group("g1", "2026-10-01T10:00:00Z", "A", name="Alpha", industry="Software", employees=50),
    group("g2", "2026-10-01T10:05:00Z", "B", parent_account_id="A"),
    group("g3", "2026-10-01T10:06:00Z", "C", parent_account_id="B", plan="pro"),
    # an account with no users (anonymous group call)
    group("g4", "2026-10-01T10:07:00Z", "EMPTY", user=None, plan="free"),
    # a two-account cycle X <-> Y, and Z under the cycle
    group("g5", "2026-10-01T11:00:00Z", "X", user="u2", parent_account_id="Y"),
    group("g6", "2026-10-01T11:01:00Z", "Y", user="u2", parent_account_id="X"),
    group("g7", "2026-10-01T11:02:00Z", "Z", user="u3", parent_account_id="X"),
    # a parent that never sent a group call
    group("g8", "2026-10-01T11:03:00Z", "ORPHAN", user="u3", parent_account_id="GHOST"),
    # a trait changed twice within one hour, and a tie broken by messageId
    identify("i1", "2026-10-01T10:10:00Z", "u1", role="Member", seats=3),
    identify("i2", "2026-10-01T10:20:00Z", "u1", role="Admin"),
    identify("i3", "2026-10-01T10:40:00Z", "u1", role="Viewer", title="CTO"),
    group("g9", "2026-10-01T12:00:00Z", "A", plan="pro"),
    group("g9b", "2026-10-01T12:00:00Z", "A", plan="enterprise"),
    # u1 joins a third account later; a user only seen through track
    group("g10", "2026-10-01T12:30:00Z", "Z", user="u1"),
    track("t1", "2026-10-01T13:00:00Z", "u4"),
    # B re-parents to C's sibling position: B under ORPHAN at 13:00
    group("g11", "2026-10-01T13:10:00Z", "B", parent_account_id="ORPHAN"),
]
# events arriving out of order: a later file holds earlier events
LATE = [
    identify("i0", "2026-10-01T10:01:00Z", "u1", role="Owner", email="u1@example.com"),
    group("g0", "2026-10-01T09:59:00Z", "A", user="u5", industry="Retail"),
]


def test_an_hour_built_before_earlier_hours_were_loaded_fails_naming_them(tmp_path, landing):
    """The snapshot as of 12:00 alone would miss A (10:00) and flag B's parent as missing. An
    hour whose every line was quarantined counts as loaded (11:00, after the range run)."""
    write_lines(landing / "a.ndjson", [
        group("g1", "2026-10-01T10:00:00Z", "A"),
        {"type": "bogus", "messageId": "q", "timestamp": "2026-10-01T11:30:00Z"},
        group("g2", "2026-10-01T12:00:00Z", "B", user="u2", parent_account_id="A"),
    ])  # fmt: skip
    resources = {"warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
                 "landing": LandingFolder(path=str(landing))}  # fmt: skip
    alone = dg.materialize([raw_events, hierarchy_snapshots], resources=resources,
                           partition_key="2026-10-01-12:00", raise_on_error=False)  # fmt: skip
    assert not alone.success
    (failure,) = alone.get_step_failure_events()
    assert ("the landing files hold 2 lines of 2 hour(s) before 2026-10-01 13:00 that were "
            "never loaded (2026-10-01 10:00 to 2026-10-01 11:00)") in (
        failure.step_failure_data.error.message
    )  # fmt: skip
    tags = {"dagster/asset_partition_range_start": "2026-10-01-10:00",
            "dagster/asset_partition_range_end": "2026-10-01-11:00"}  # fmt: skip
    assert dg.materialize([raw_events], resources=resources, tags=tags).success
    again = dg.materialize([raw_events, hierarchy_snapshots], resources=resources,
                           partition_key="2026-10-01-12:00")  # fmt: skip
    assert again.success
    with connect(tmp_path / "wh.duckdb", read_only=True) as con:
        assert con.execute(
            "SELECT account_id, path, parent_missing FROM account_hierarchy ORDER BY 1"
        ).fetchall() == [("A", ["A"], False), ("B", ["A", "B"], False)]


@pytest.fixture
def warehouse(tmp_path, landing):
    write_lines(landing / "a.ndjson", EDGE_CASES)
    write_lines(landing / "b.ndjson", LATE)
    resources = {
        "warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
        "landing": LandingFolder(path=str(landing)),
    }
    tags = {
        "dagster/asset_partition_range_start": "2026-10-01-09:00",
        "dagster/asset_partition_range_end": "2026-10-01-13:00",
    }
    result = dg.materialize([raw_events, hierarchy_snapshots], resources=resources, tags=tags)
    assert result.success
    materialized = result.asset_materializations_for_node("hierarchy_snapshots")
    rebuilt = {m.asset_key.path[-1]: m.metadata["tile_hours_rebuilt"].value for m in materialized}
    assert rebuilt["users"] > 0  # a fresh warehouse tiles every hour of its events
    partials = {m.metadata["day_partials_rebuilt"].value for m in materialized}
    assert partials == {1}  # (the window lies in one day: one day's partials)
    tree = [m.metadata for m in materialized if m.asset_key.path[-1] == "account_hierarchy"][-1]
    # at 13:00: the X/Y cycle, ORPHAN's missing GHOST, and C under GHOST, ORPHAN and B
    assert [tree[key].value for key in ("cycle_members", "missing_parents", "max_depth")] == [
        2, 1, 3]  # fmt: skip
    found = {e.check_name: e for e in result.get_asset_check_evaluations()}
    evaluations = {name: evaluation.passed for name, evaluation in found.items()}
    assert evaluations["no_parent_cycles"] is False  # reported, not blocking
    cycles = found["no_parent_cycles"]
    assert cycles.description.startswith("6 offending rows in the window, the first 6 in "
                                         "`examples` (snapshot_hour, account_id, ")  # fmt: skip
    assert evaluations["parents_known"] is False
    assert all(
        passed
        for name, passed in evaluations.items()
        if name not in ("no_parent_cycles", "parents_known")
    )
    return tmp_path / "wh.duckdb", read_events(landing)


def rows(con, sql, hour):
    cursor = con.execute(sql, {"hour": hour})
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.mark.parametrize("hour", HOURS)
def test_snapshots_match_reference(warehouse, hour):
    path, events = warehouse
    with connect(path, read_only=True) as con:
        assert_snapshot_matches_reference(con, events, hour)


def assert_snapshot_matches_reference(con, events: list[dict], hour: datetime) -> None:
    """The four hierarchy tables of `hour` equal `reference.snapshot` of the events."""
    expected = snapshot(events, hour)
    users = rows(con, "SELECT * FROM users WHERE snapshot_hour = $hour", hour)
    accounts = rows(con, "SELECT * FROM accounts WHERE snapshot_hour = $hour", hour)
    members = rows(con, "SELECT * FROM account_memberships WHERE snapshot_hour = $hour", hour)
    tree = rows(con, "SELECT * FROM account_hierarchy WHERE snapshot_hour = $hour", hour)
    assert {
        u["user_id"]: (u["first_seen_at"], u["last_seen_at"], json.loads(u["traits"]))
        for u in users
    } == {k: (v["first"], v["last"], v["traits"]) for k, v in expected["users"].items()}
    assert {
        a["account_id"]: (
            a["first_seen_at"],
            a["last_seen_at"],
            json.loads(a["traits"]),
            a["parent_account_id"],
            a["user_count"],
        )
        for a in accounts
    } == {
        k: (v["first"], v["last"], v["traits"], v["parent"], v["users"])
        for k, v in expected["accounts"].items()
    }
    assert {
        (m["user_id"], m["account_id"]): (m["first_associated_at"], m["last_associated_at"])
        for m in members
    } == {k: (v["first"], v["last"]) for k, v in expected["memberships"].items()}
    assert {
        t["account_id"]: {
            "ultimate": t["ultimate_parent_id"],
            "depth": t["depth"],
            "path": t["path"],
            "cycle": t["in_cycle"],
        }
        for t in tree
    } == expected["hierarchy"]


def test_edge_cases_at_the_last_hour(warehouse):
    path, _ = warehouse
    hour = HOURS[-1]
    with connect(path, read_only=True) as con:
        tree = {
            r["account_id"]: r
            for r in rows(con, "SELECT * FROM account_hierarchy WHERE snapshot_hour = $hour", hour)
        }
        user = rows(
            con, "SELECT * FROM users WHERE snapshot_hour = $hour AND user_id = 'u1'", hour
        )[0]
        a = rows(
            con, "SELECT * FROM accounts WHERE snapshot_hour = $hour AND account_id = 'A'", hour
        )[0]
        empty = rows(
            con,
            "SELECT user_count FROM accounts WHERE snapshot_hour = $hour AND account_id = 'EMPTY'",
            hour,
        )[0]
        u1_accounts = rows(
            con,
            "SELECT account_id FROM account_memberships "
            "WHERE snapshot_hour = $hour AND user_id = 'u1' ORDER BY 1",
            hour,
        )
    assert tree["C"]["path"] == ["GHOST", "ORPHAN", "B", "C"]  # B moved under ORPHAN
    assert tree["ORPHAN"]["parent_missing"] and tree["ORPHAN"]["ultimate_parent_id"] == "GHOST"
    assert tree["X"]["in_cycle"] and tree["Y"]["in_cycle"] and not tree["Z"]["in_cycle"]
    assert tree["Z"]["path"] == ["X", "Z"]
    assert user["role"] == "Viewer" and user["seats"] == 3 and user["email"] == "u1@example.com"
    assert a["plan"] == "enterprise"  # same timestamp: the greatest messageId wins
    assert a["employees"] == 50 and isinstance(a["employees"], int)  # numbers stay numbers
    assert a["industry"] == "Software"  # the late, earlier Retail call does not override
    assert empty["user_count"] == 0
    assert [r["account_id"] for r in u1_accounts] == ["A", "B", "C", "Z"]


def test_trait_changed_twice_within_an_hour_keeps_the_last(warehouse):
    path, _ = warehouse
    with connect(path, read_only=True) as con:
        roles = con.execute(
            "SELECT snapshot_hour, role FROM users WHERE user_id = 'u1' ORDER BY 1"
        ).fetchall()
    assert roles[0] == (datetime(2026, 10, 1, 10), "Viewer")
    assert [hour for hour, _ in roles] == [
        datetime(2026, 10, 1, 10) + timedelta(hours=i) for i in range(4)
    ]


def test_trait_objects_built_a_share_of_the_users_at_a_time_are_the_same(warehouse, monkeypatch):
    path, _ = warehouse
    start, end = datetime(2026, 10, 1, 9), datetime(2026, 10, 1, 13)
    con = connect(path)
    whole = con.execute("SELECT * FROM users ORDER BY ALL").fetchall()
    monkeypatch.setattr(as_of, "OBJECT_ROWS_PER_BATCH", 2)  # several shares
    build_users(con, start, end)
    assert con.execute("SELECT * FROM users ORDER BY ALL").fetchall() == whole
    con.close()


@pytest.mark.parametrize("parent_trait", ["parent_account_id", "$parent", "*", "a/b~c"])
def test_parents_by_numeric_id_and_a_key_given_twice(tmp_path, monkeypatch, parent_trait):
    """A numeric parent id is the text ingestion makes of the same numeric groupId (a number
    that is not finite names no parent); of a key given twice in one call the first value
    counts; the parent trait is a key, not a path; a parent id is trimmed of white space as
    ids are."""
    at = "2026-10-01T10:00:00Z"
    lines = [
        {"type": "group", "messageId": "p", "anonymousId": "crm", "groupId": 1e16,
         "timestamp": at},
        f'{{"type": "group", "messageId": "c", "anonymousId": "crm", "groupId": "child", '
        f'"timestamp": "{at}", "traits": {{"{parent_trait}": 1e16, "parent": "WRONG", '
        '"plan": "first", "plan": "second", "seats": 3, "seats": "many"}}',
        f'{{"type": "group", "messageId": "n", "anonymousId": "crm", "groupId": "no parent", '
        f'"timestamp": "{at}", "traits": {{"{parent_trait}": NaN}}}}',
        {"type": "group", "messageId": "g", "anonymousId": "crm", "groupId": "grandchild",
         "timestamp": at, "traits": {parent_trait: "\t child\r\n"}},
    ]  # fmt: skip
    write_lines(tmp_path / "landing" / "a.ndjson", lines)
    monkeypatch.setenv("AH_PARENT_TRAIT", parent_trait)
    path = tmp_path / "wh.duckdb"
    resources = {"landing": LandingFolder(path=str(tmp_path / "landing")),
                 "warehouse": Warehouse(database=str(path))}  # fmt: skip
    result = dg.materialize([raw_events, hierarchy_snapshots], resources=resources,
                            partition_key="2026-10-01-10:00")  # fmt: skip
    assert result.success
    with connect(path, read_only=True) as con:
        rows = con.execute(
            "SELECT a.account_id, a.parent_account_id, a.plan, a.traits ->> 'plan', a.seats, "
            "h.ultimate_parent_id, h.parent_missing FROM accounts AS a "
            "JOIN account_hierarchy AS h USING (snapshot_hour, account_id) ORDER BY 1"
        ).fetchall()
        seats_type = con.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'accounts' AND column_name = 'seats'"
        )
        assert seats_type.fetchone() == ("BIGINT",)  # (the ignored "many" types nothing)
    assert rows == [("1e+16", None, None, None, None, "1e+16", False),
                    ("child", "1e+16", "first", "first", 3, "1e+16", False),
                    ("grandchild", "child", None, None, None, "1e+16", False),
                    ("no parent", None, None, None, None, "no parent", False)]  # fmt: skip


@pytest.mark.parametrize(
    ("corruption", "problem"),
    [
        # an A/B cycle whose flags were lost (each row still looks like a root of itself)
        ("UPDATE account_hierarchy SET in_cycle = false WHERE account_id IN ('X', 'Y')",
         "does not follow from its parent"),
        ("UPDATE account_hierarchy SET parent_missing = false WHERE account_id = 'ORPHAN'",
         "parent missing but not flagged so"),
        ("UPDATE account_hierarchy SET depth = 5 WHERE account_id = 'C'",
         "does not follow from its parent"),
        ("DELETE FROM account_hierarchy WHERE account_id = 'C'", "no hierarchy row"),
        ("UPDATE account_hierarchy SET in_cycle = true, depth = 0, path = [account_id], "
         "ultimate_parent_id = account_id WHERE account_id = 'C'",
         "flagged in a cycle it is not in"),
        # Z hangs off the X/Y cycle: its parent is flagged, but no flagged account is its child
        ("UPDATE account_hierarchy SET in_cycle = true, depth = 0, path = [account_id], "
         "ultimate_parent_id = account_id WHERE account_id = 'Z'",
         "flagged in a cycle it is not in"),
    ],
)  # fmt: skip
def test_the_hierarchy_check_finds_rows_that_do_not_follow_their_parents(
    warehouse, corruption, problem
):
    path, _ = warehouse
    window = (HOURS[0] - timedelta(hours=1), HOURS[-1] + timedelta(hours=1))
    with connect(path) as con:
        assert checks.hierarchy_not_following_parents(con, *window).count == 0
        con.execute(corruption)
        finding = checks.hierarchy_not_following_parents(con, *window)
    assert finding.count > 0 and any(problem in example for example in finding.examples)


def _random_parents(rng: random.Random, size: int) -> dict[str, str | None]:
    """Accounts a0.. with random parents: roots, ghosts, self-parents, cycles and the trees
    and tails leading into them."""
    accounts = [f"a{index}" for index in range(size)]
    return {
        account: rng.choice([None, f"ghost{rng.randrange(3)}", account, *rng.sample(accounts, 3)])
        for account in accounts
    }


def test_paths_follow_the_parents_in_random_graphs_and_a_deep_chain(tmp_path):
    rng = random.Random(7)
    deep = {f"d{index}": f"d{index - 1}" if index else None for index in range(600)}
    tail = {f"t{index}": f"t{index + 1}" for index in range(300)} | {"t300": "c1"}
    deep |= tail | {"c0": "c1", "c1": "c2", "c2": "c0"}  # a 300-long tail into a cycle
    graphs = {hour: _random_parents(rng, 40) for hour in HOURS[:3]} | {HOURS[3]: deep}
    with connect(tmp_path / "wh.duckdb") as con:
        ensure_hierarchy_tables(con)
        edges = [(h, a, p) for h, parents in graphs.items() for a, p in parents.items()]
        con.execute(
            "INSERT INTO accounts SELECT e.h, e.a, e.h, e.h, 0, e.p, '{}' "
            "FROM (SELECT unnest($edges, recursive := true)) AS e",
            {"edges": [{"h": h, "a": a, "p": p} for h, a, p in edges]},
        )
        build_hierarchy(con, HOURS[0], HOURS[-1] + timedelta(hours=1))
        rows = con.execute(
            "SELECT snapshot_hour, account_id, ultimate_parent_id, depth, path, in_cycle, "
            "parent_missing FROM account_hierarchy"
        ).fetchall()
    built = {(hour, account): rest for hour, account, *rest in rows}
    expected = {}
    for hour, parents in graphs.items():
        for account, parent in parents.items():
            place = _place(account, {a: {"parent": p} for a, p in parents.items()})
            missing = parent is not None and parent not in parents
            expected[hour, account] = [
                place["ultimate"],
                place["depth"],
                place["path"],
                place["cycle"],
                missing,
            ]
    assert built == expected
