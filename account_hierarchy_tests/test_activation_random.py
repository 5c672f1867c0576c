"""Random delivery histories converge: whatever fails along the way (server errors, rate
limits, rejected batches, responses lost after the server applied a batch, a crash between
sending and committing), once a sync succeeds the destination holds exactly the newest
snapshot: the audience flags of its members and their users, and every synced trait value.

Memberships and a windowed trait go back and forth between hours, so a value sent but never
confirmed may later return to the last confirmed one."""

import contextlib
import json
import random
from datetime import datetime, timedelta

import pytest
import yaml
from werkzeug import Request, Response

from account_hierarchy.activation import deliver
from account_hierarchy.activation.deliver import sync
from account_hierarchy.activation.transport import DestinationUnavailableError, sender_for
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

SEEDS = random_seeds("1,2,3,4")
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

    def __call__(self, request: Request) -> Response:
        behaviour = self.script.pop(0) if self.script else "ok"
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


def definitions(url: str) -> dict:
    return {
        "traits": [{"name": "recent_logins", "entity": "user", "type": "event_counter",
                    "event": "Logged In", "window": "2 hours"}],
        "audiences": [{"name": "free_accounts", "entity": "account",
                       "where": {"custom_trait": "plan", "equals": "free"}}],
        "destinations": [{"name": "crm", "type": "http", "url": url,
                          "write_key_env": "TEST_WRITE_KEY", "audiences": ["free_accounts"],
                          "traits": ["recent_logins"],
                          "retry": {"max_seconds": 0.3, "initial_backoff_seconds": 0.01,
                                    "max_backoff_seconds": 0.05, "timeout_seconds": 2}}],
    }  # fmt: skip


def destination_view(applied: list[dict]) -> dict[tuple, object]:
    """What the destination holds after applying each message id once, in order of receipt:
    (call, entity id, trait) -> value. A re-sent message id must repeat the first copy."""
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
    return view


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
            | {("identify", u, "free_accounts"): True for u in users}
            | {("identify", u, "recent_logins"): v for u, v in values.items()})  # fmt: skip


@pytest.mark.parametrize("seed", SEEDS)
def test_random_failures_converge_on_the_newest_snapshot(seed, tmp_path, monkeypatch, httpserver):
    rng = random.Random(seed)
    monkeypatch.setenv("TEST_WRITE_KEY", "key")
    monkeypatch.setattr(deliver, "MAX_BATCH_BYTES", 1200)  # a few messages a batch
    server = ScriptedServer()
    httpserver.expect_request("/v1/batch", method="POST").respond_with_handler(server)
    write_lines(tmp_path / "landing" / "events.ndjson", random_events(rng))
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "d.yaml").write_text(
        yaml.safe_dump(definitions(httpserver.url_for("/").rstrip("/")))
    )
    catalog = load_catalog(tmp_path / "defs")
    destination = catalog.destinations[0].destination
    con = connect(tmp_path / "wh.duckdb")
    end = START + timedelta(hours=HOURS)
    ingest_window(con, tmp_path / "landing", START, end, PARTITIONS_START)
    for offset in range(HOURS):
        build_hour(con, catalog, START + timedelta(hours=offset))
        for _ in range(rng.randrange(1, 4)):
            server.script = [rng.choice(BEHAVIOURS) for _ in range(rng.randrange(12))]
            crash_after = rng.choice([0, 0, 1, 2, 3])
            sender = sender_for(destination)
            if crash_after:
                sender = CrashingSender(sender, crash_after)
            with contextlib.suppress(DestinationUnavailableError, Crash):
                sync(con, catalog, destination, sender)
    server.script = []
    sync(con, catalog, destination, sender_for(destination))
    view = destination_view(server.applied)
    wanted = newest_snapshot(con, end - timedelta(hours=1))
    held = {key: value for key, value in view.items() if value is not False}
    assert held == wanted
    assert sync(con, catalog, destination, sender_for(destination)).messages == 0
    con.close()
