"""Random delivery histories converge: whatever fails along the way (server errors, rate
limits, rejected batches, responses lost after the server applied a batch, a crash between
sending and committing, calls taken off the destination and given back), once a sync in every
call succeeds the destination holds exactly the newest snapshot in every call: the audience
flags of its members and their users, and every synced trait value; and no user gets a second
`Audience Entered` without an `Audience Exited` between (unless a message about them went in a
sync that failed: whether the destination applied it is not known, so the next change goes in
every call).

Memberships and a windowed trait go back and forth between hours, so a value sent but never
confirmed may later return to the last confirmed one."""

import json
import random
from datetime import datetime, timedelta

import pytest
import yaml
from werkzeug import Request, Response

from account_hierarchy.activation import deliver
from account_hierarchy.activation.deliver import sync
from account_hierarchy.activation.transport import DestinationUnavailableError, sender_for
from account_hierarchy.catalog.destination_models import CALLS
from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import (
    PARTITIONS_START,
    build_hour,
    group_call,
    random_seeds,
    write_lines,
)

SEEDS = random_seeds("1,2,3,12")  # (12: a second entry before calls kept what they hold)
START, HOURS = datetime(2026, 10, 1, 10), 6
ACCOUNTS = [f"A{n}" for n in range(1, 5)]
USERS = [f"u{n}" for n in range(1, 7)]
# What the server does with one request: apply and answer 200, answer an error without
# applying, or apply and answer 500 (the response is lost: the sender retries).
BEHAVIOURS = ["ok", "ok", "ok", "500", "429", "400", "lost"]


class Crash(BaseException):
    """The process dies between a batch's sending and its commit."""


class ScriptedServer:
    """Answers each request with the next scripted behaviour (then "ok"), and remembers every
    batch it applied, in order."""

    def __init__(self):
        self.script: list[str] = []
        self.applied: list[dict] = []
        self.received: list[dict] = []  # (applied or not)

    def __call__(self, request: Request) -> Response:
        behaviour = self.script.pop(0) if self.script else "ok"
        self.received.extend(json.loads(request.data)["batch"])
        if behaviour in ("ok", "lost"):
            self.applied.extend(json.loads(request.data)["batch"])
        status = (
            {"ok": 200, "lost": 500}[behaviour] if behaviour in ("ok", "lost") else int(behaviour)
        )
        headers = {"Retry-After": "0"} if status == 429 else {}
        return Response(json.dumps({"success": status == 200}), status=status, headers=headers)


class CrashingSender:
    """Sends for real, then crashes after the `after`-th batch."""

    def __init__(self, real, after: int):
        self.real, self.after, self.sent = real, after, 0

    def send(self, batch):
        outcome = self.real.send(batch)
        self.sent += 1
        if self.sent == self.after:
            raise Crash
        return outcome


def random_events(rng: random.Random) -> list[dict]:
    """Group calls that move accounts in and out of the free plan, and logins, every hour."""
    lines = []
    for offset in range(HOURS):
        hour = START + timedelta(hours=offset)
        for account in ACCOUNTS:
            if rng.random() < 0.7:
                at = (hour + timedelta(minutes=rng.randrange(60))).isoformat() + "Z"
                plan = rng.choice(["free", "pro"])
                lines.append(
                    group_call(f"g{len(lines)}", at, account, rng.choice(USERS), plan=plan)
                )
        for user in rng.sample(USERS, rng.randrange(len(USERS))):
            at = (hour + timedelta(minutes=rng.randrange(60))).isoformat() + "Z"
            lines.append({"type": "track", "event": "Logged In", "messageId": f"t{len(lines)}",
                          "userId": user, "timestamp": at})  # fmt: skip
    return lines


def definitions(url: str, calls: list[str]) -> dict:
    return {
        "traits": [{"name": "recent_logins", "entity": "user", "type": "event_counter",
                    "event": "Logged In", "window": "2 hours"}],
        "audiences": [{"name": "free_accounts", "entity": "account",
                       "where": {"custom_trait": "plan", "equals": "free"}}],
        "destinations": [{"name": "crm", "type": "http", "url": url,
                          "write_key_env": "TEST_WRITE_KEY", "audiences": ["free_accounts"],
                          "traits": ["recent_logins"], "calls": calls,
                          "retry": {"max_seconds": 0.3, "initial_backoff_seconds": 0.01,
                                    "max_backoff_seconds": 0.05, "timeout_seconds": 2}}],
    }  # fmt: skip


def destination_view(applied: list[dict], unsure: set[tuple]) -> dict[tuple, object]:
    """What the destination holds after applying each message id once, in order of receipt:
    (call, entity id, trait) -> value (a track's: its flag or value). A re-sent message id
    must repeat the first copy; a user entering an audience must have left it since the last
    time they entered it (unless their key is `unsure`: a message about it went in a sync that
    failed)."""
    first: dict[str, dict] = {}
    view: dict[tuple, object] = {}
    for message in applied:
        if message["messageId"] in first:
            assert message == first[message["messageId"]]
            continue
        first[message["messageId"]] = message
        if message["type"] == "group":
            for key, value in message["traits"].items():
                view[("group", message["groupId"], key)] = value
        elif message["type"] == "identify":
            for key, value in message["traits"].items():
                view[("identify", message["userId"], key)] = value
        else:
            properties = message["properties"]
            key = properties.get("audience_key") or properties["trait_key"]
            where = ("track", message["userId"], key)
            if message["event"] == "Audience Entered" and where not in unsure:
                assert view.get(where) is not True, f"a second entry without an exit: {where}"
            view[where] = properties[key]
    return view


def track_key(message: dict) -> tuple:
    """("track", user id, audience or trait) of a message about a user."""
    traits = message.get("traits") or message.get("properties") or {}
    key = traits.get("audience_key") or traits.get("trait_key") or next(iter(traits), None)
    return ("track", message.get("userId"), key)


def newest_snapshot(con, hour: datetime) -> dict[tuple, object]:
    """The view a destination should hold at `hour`: true flags for the audience's accounts
    and their users, and every user's trait value."""
    members = {account for (account,) in con.execute(
        "SELECT entity_id FROM audience_memberships WHERE audience = 'free_accounts' "
        "AND snapshot_hour = $h", {"h": hour}).fetchall()}  # fmt: skip
    users = {user for user, account in con.execute(
        "SELECT user_id, account_id FROM account_memberships WHERE snapshot_hour = $h",
        {"h": hour}).fetchall() if account in members}  # fmt: skip
    values = dict(con.execute(
        "SELECT user_id, recent_logins FROM user_traits WHERE snapshot_hour = $h "
        "AND recent_logins IS NOT NULL", {"h": hour}).fetchall())  # fmt: skip
    return ({("group", a, "free_accounts"): True for a in members}
            | {(call, u, "free_accounts"): True for u in users for call in ("identify", "track")}
            | {(call, u, "recent_logins"): v for u, v in values.items()
               for call in ("identify", "track")})  # fmt: skip


@pytest.mark.parametrize("seed", SEEDS)
def test_random_failures_converge_on_the_newest_snapshot(seed, tmp_path, monkeypatch, httpserver):
    rng = random.Random(seed)
    monkeypatch.setenv("TEST_WRITE_KEY", "key")
    monkeypatch.setattr(deliver, "MAX_BATCH_BYTES", 1200)  # a few messages a batch
    server = ScriptedServer()
    httpserver.expect_request("/v1/batch", method="POST").respond_with_handler(server)
    write_lines(tmp_path / "landing" / "events.ndjson", random_events(rng))
    (tmp_path / "defs").mkdir()

    def destination_with(calls: list[str]):
        document = definitions(httpserver.url_for("/").rstrip("/"), calls)
        (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(document))
        catalog = load_catalog(tmp_path / "defs")
        return catalog, catalog.destinations[0].destination

    catalog, destination = destination_with(list(CALLS))
    con = connect(tmp_path / "wh.duckdb")
    end = START + timedelta(hours=HOURS)
    ingest_window(con, tmp_path / "landing", START, end, PARTITIONS_START)
    unsure: set[tuple] = set()  # (the track keys of messages sent in syncs that failed)
    for offset in range(HOURS):
        build_hour(con, catalog, START + timedelta(hours=offset))
        for _ in range(rng.randrange(1, 4)):
            if rng.random() < 0.3:  # (some calls taken off, or given back)
                calls = sorted(rng.sample(CALLS, rng.randrange(1, len(CALLS) + 1)))
                catalog, destination = destination_with(calls)
            server.script = [rng.choice(BEHAVIOURS) for _ in range(rng.randrange(12))]
            crash_after = rng.choice([0, 0, 1, 2, 3])
            sender = sender_for(destination)
            if crash_after:
                sender = CrashingSender(sender, crash_after)
            before = len(server.received)
            try:
                sync(con, catalog, destination, sender)
            except (DestinationUnavailableError, Crash):
                unsure.update(track_key(message) for message in server.received[before:])
    server.script = []
    catalog, destination = destination_with(list(CALLS))
    sync(con, catalog, destination, sender_for(destination))
    view = destination_view(server.applied, unsure)
    wanted = newest_snapshot(con, end - timedelta(hours=1))
    held = {key: value for key, value in view.items() if value is not False}
    assert held == wanted
    assert sync(con, catalog, destination, sender_for(destination)).messages == 0
    con.close()
