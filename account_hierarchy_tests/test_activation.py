"""Activation against a real HTTP server on 127.0.0.1: diffs, first and later syncs, retries,
an unreachable server, a crash between sending and committing, oversized messages."""

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import duckdb
import pytest
import requests
import yaml
from click.testing import CliRunner
from werkzeug import Request, Response

from account_hierarchy.activation import deliver
from account_hierarchy.activation.deliver import SyncReport, batches_of, sync
from account_hierarchy.activation.diffs import build_diffs
from account_hierarchy.activation.plan import NothingToSyncError
from account_hierarchy.activation.state import (
    Held,
    ensure_state_tables,
    held_state,
    in_flight_changes,
)
from account_hierarchy.activation.transport import (
    DestinationUnavailableError,
    Outcome,
    Sender,
    _retry_after,
    sender_for,
)
from account_hierarchy.audiences.memberships import build_audience
from account_hierarchy.catalog.destination_models import CALLS
from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.cli import main
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.traits.compute import build_traits
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import (
    PARTITIONS_START,
    build_hour,
    group_call,
    message,
    strict_json,
    write_lines,
)

H10, H11 = datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11)
ALL_CALLS = ["group", "identify", "track"]
WRITE_KEY = "secret-write-key"


def events():
    login = {"type": "track", "event": "Logged In", "messageId": "t1", "userId": "u3",
             "timestamp": "2026-10-01T11:30:00Z"}  # fmt: skip
    return [
        group_call("g1", "2026-10-01T10:00:00Z", "ACME", "u1", plan="free", industry="Software"),
        group_call("g2", "2026-10-01T10:00:00Z", "ACME", "u2"),
        group_call("g3", "2026-10-01T10:00:00Z", "GLOBEX", "u3", plan="pro"),
        # at 11:00 ACME upgrades (leaves the audience) and GLOBEX downgrades (enters it)
        group_call("g4", "2026-10-01T11:00:00Z", "ACME", "u1", plan="pro"),
        group_call("g5", "2026-10-01T11:00:00Z", "GLOBEX", "u3", plan="free"),
        login,
    ]


def definitions(url: str, **retry) -> dict:
    return {
        # (`last_feature` is null for every account: an output column without a value)
        "traits": [{"name": "logins", "entity": "user", "type": "event_counter",
                    "event": "Logged In"},
                   {"name": "last_feature", "entity": "account", "type": "last_value",
                    "event": "Feature Used", "property": "feature"}],
        "audiences": [{"name": "free_accounts", "entity": "account",
                       "where": {"custom_trait": "plan", "equals": "free"}}],
        "destinations": [{"name": "crm", "type": "http", "url": url,
                          "write_key_env": "TEST_WRITE_KEY", "audiences": ["free_accounts"],
                          "traits": ["logins"], "output_columns": ["industry", "last_feature"],
                          "retry": {"max_seconds": 2, "initial_backoff_seconds": 0.01,
                                    "max_backoff_seconds": 0.05, "timeout_seconds": 2} | retry}],
    }  # fmt: skip


class Receiver:
    """Collects batches; answers each request with the next scripted status (then 200)."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.batches: list[list[dict]] = []
        self.authorizations: list[str] = []

    def __call__(self, request: Request) -> Response:
        status, headers = self.statuses.pop(0) if self.statuses else (200, {})
        self.authorizations.append(request.headers.get("Authorization", ""))
        if status == 200:
            self.batches.append(json.loads(request.data)["batch"])
        return Response(json.dumps({"success": status == 200}), status=status, headers=headers)

    @property
    def messages(self) -> list[dict]:
        return [message for batch in self.batches for message in batch]


@pytest.fixture
def world(tmp_path, monkeypatch, httpserver):
    monkeypatch.setenv("TEST_WRITE_KEY", WRITE_KEY)
    write_lines(tmp_path / "landing" / "a.ndjson", events())
    con = connect(tmp_path / "wh.duckdb")
    ingest_window(con, tmp_path / "landing", H10, H11 + timedelta(hours=1), PARTITIONS_START)

    def build(hour, url=None, **retry):
        url = url or httpserver.url_for("/").rstrip("/")
        (tmp_path / "defs").mkdir(exist_ok=True)
        (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(definitions(url, **retry)))
        catalog = load_catalog(tmp_path / "defs")
        build_hour(con, catalog, hour)
        return catalog, catalog.destinations[0].destination

    yield con, build, httpserver
    con.close()


def calls(messages: list[dict]) -> set[tuple]:
    result = set()
    for m in messages:
        if m["type"] == "group":
            result.add(("group", m["groupId"], json.dumps(m["traits"], sort_keys=True)))
        elif m["type"] == "identify":
            result.add(("identify", m["userId"], json.dumps(m["traits"], sort_keys=True)))
        else:
            result.add(
                ("track", m["userId"], m["event"], json.dumps(m["properties"], sort_keys=True))
            )
    return result


def test_first_sync_then_a_membership_change_sends_exactly_the_changes(world):
    con, build, server = world
    receiver = Receiver()
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    catalog, destination = build(H10)
    report = sync(con, catalog, destination, sender_for(destination))
    assert report.snapshot_hour == H10
    assert calls(receiver.messages) == {
        ("group", "ACME", '{"free_accounts": true, "industry": "Software"}'),
        ("identify", "u1", '{"free_accounts": true}'),
        ("identify", "u2", '{"free_accounts": true}'),
        ("track", "u1", "Audience Entered", '{"audience_key": "free_accounts", '
         '"free_accounts": true}'),
        ("track", "u2", "Audience Entered", '{"audience_key": "free_accounts", '
         '"free_accounts": true}'),
        ("identify", "u1", '{"logins": 0}'), ("identify", "u2", '{"logins": 0}'),
        ("identify", "u3", '{"logins": 0}'),
        ("track", "u1", "Trait Computed", '{"logins": 0, "trait_key": "logins"}'),
        ("track", "u2", "Trait Computed", '{"logins": 0, "trait_key": "logins"}'),
        ("track", "u3", "Trait Computed", '{"logins": 0, "trait_key": "logins"}'),
    }  # fmt: skip
    assert receiver.authorizations[0] == "Basic " + base64.b64encode(
        f"{WRITE_KEY}:".encode()).decode()  # fmt: skip
    first = len(receiver.messages)
    assert sync(con, catalog, destination, sender_for(destination)).messages == 0  # same hour

    catalog, destination = build(H11)
    sync(con, catalog, destination, sender_for(destination))
    assert calls(receiver.messages[first:]) == {
        ("group", "ACME", '{"free_accounts": false}'),
        ("identify", "u1", '{"free_accounts": false}'),
        ("identify", "u2", '{"free_accounts": false}'),
        ("track", "u1", "Audience Exited", '{"audience_key": "free_accounts", '
         '"free_accounts": false}'),
        ("track", "u2", "Audience Exited", '{"audience_key": "free_accounts", '
         '"free_accounts": false}'),
        ("group", "GLOBEX", '{"free_accounts": true}'),
        ("identify", "u3", '{"free_accounts": true}'),
        ("track", "u3", "Audience Entered", '{"audience_key": "free_accounts", '
         '"free_accounts": true}'),
        ("identify", "u3", '{"logins": 1}'),
        ("track", "u3", "Trait Computed", '{"logins": 1, "trait_key": "logins"}'),
    }  # fmt: skip
    ids = [m["messageId"] for m in receiver.messages]
    assert len(ids) == len(set(ids))
    assert WRITE_KEY not in json.dumps(con.execute("SELECT * FROM delivery_log").fetchall(),
                                       default=str)  # fmt: skip


def test_diffs_record_entered_exited_and_changed(world):
    con, build, _ = world
    catalog, _ = build(H10)
    catalog, _ = build(H11)
    assert build_diffs(con, catalog, H11, H11 + timedelta(hours=1)) == {
        "entered": 1, "exited": 1, "changed": 1}  # fmt: skip
    rows = con.execute(
        "SELECT kind, name, entity_id, change, old_value, new_value FROM activation_diffs "
        "ORDER BY ALL"
    ).fetchall()
    assert rows == [
        ("audience", "free_accounts", "ACME", "exited", "true", "false"),
        ("audience", "free_accounts", "GLOBEX", "entered", "false", "true"),
        ("trait", "logins", "u3", "changed", "0", "1"),
    ]


class InsertFails:
    """A warehouse connection on which inserting into `table` fails: a crash between the
    delete of the hours rebuilt and the insert of their new rows."""

    def __init__(self, con, table: str):
        self.con, self.table = con, table

    def execute(self, sql: str, *args):
        if sql.startswith(f"INSERT INTO {self.table} "):
            raise duckdb.IOException("the disk went away")
        return self.con.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.con, name)


def test_a_rebuild_failing_midway_leaves_the_hours_stored_as_they_were(world):
    con, build, _ = world
    catalog, _ = build(H10)
    catalog, _ = build(H11)
    window = (H11, H11 + timedelta(hours=1))
    build_diffs(con, catalog, *window)
    tables = ("activation_diffs", "audience_memberships", "audience_hours")
    before = {table: con.sql(f"FROM {table} ORDER BY ALL").fetchall() for table in tables}
    assert all(before.values())
    with pytest.raises(duckdb.IOException):
        build_diffs(InsertFails(con, "activation_diffs"), catalog, *window)
    with pytest.raises(duckdb.IOException):
        build_audience(InsertFails(con, "audience_memberships"), catalog, "free_accounts", *window)
    assert {table: con.sql(f"FROM {table} ORDER BY ALL").fetchall() for table in tables} == before


def test_500s_then_429_then_success_delivers_each_message_once(world):
    con, build, server = world
    receiver = Receiver([(500, {}), (503, {}), (429, {"Retry-After": "0"})])
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    catalog, destination = build(H10)
    report = sync(con, catalog, destination, sender_for(destination))
    assert report.accepted == report.messages == len(receiver.messages) == 11
    assert len(receiver.authorizations) == 4
    (attempts,) = con.execute("SELECT DISTINCT attempts FROM delivery_log").fetchone()
    assert attempts == 4


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [("2.5", 2.5, 2.5), ("in a while", 9, 9), ("-3", 0, 0), ("DATE+30", 28, 30),
     ("DATE-30", 0, 0)],
)  # fmt: skip
def test_retry_after_is_seconds_or_an_http_date(header, low, high):
    """A 429's `Retry-After`: seconds, or an HTTP date (RFC 9110); else the backoff (9 here)."""
    if header.startswith("DATE"):
        moment = datetime.now(UTC) + timedelta(seconds=int(header[4:]))
        header = format_datetime(moment, usegmt=True)
    response = requests.Response()
    response.headers["Retry-After"] = header
    assert low <= _retry_after(response, 9) <= high


def test_unreachable_server_fails_the_run_and_the_next_run_delivers(world, httpserver):
    con, build, _ = world
    catalog, destination = build(H10, url="http://127.0.0.1:9", max_seconds=0.2)
    with pytest.raises(DestinationUnavailableError, match="giving up") as failure:
        sync(con, catalog, destination, sender_for(destination))
    assert con.execute("SELECT count(*) FROM destination_state").fetchone()[0] == 0
    logged = con.execute("SELECT DISTINCT status, attempts FROM delivery_log").fetchall()
    assert logged == [("failed", failure.value.attempts)] and failure.value.attempts >= 1
    receiver = Receiver()
    httpserver.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    catalog, destination = build(H10)
    report = sync(con, catalog, destination, sender_for(destination))
    assert report.accepted == 11 == len(receiver.messages)


class CrashAfterSending:
    """Sends for real, then the process dies before committing what was accepted."""

    def __init__(self, real):
        self.real = real

    def send(self, batch):
        self.real.send(batch)
        raise KeyboardInterrupt


def sync_then_crash(con, catalog, destination) -> None:
    with pytest.raises(KeyboardInterrupt):
        sync(con, catalog, destination, CrashAfterSending(sender_for(destination)))


def test_crash_after_sending_resends_the_same_message_ids_only(world):
    con, build, server = world
    receiver = Receiver()
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    catalog, destination = build(H10)
    sync_then_crash(con, catalog, destination)
    sync(con, catalog, destination, sender_for(destination))
    first, second = receiver.batches
    assert [m["messageId"] for m in first] == [m["messageId"] for m in second]
    # (each change accepted once: version 1, as without the crash, so later ones get its ids)
    assert con.sql("SELECT DISTINCT version FROM destination_state").fetchall() == [(1,)]
    assert sync(con, catalog, destination, sender_for(destination)).messages == 0


def test_a_change_resent_at_a_later_hour_keeps_its_message_ids(world):
    """A crash after sending at 10:00; the next sync runs at 11:00. Changes still the same go
    again with the ids (and bodies) they went with, so the receiver drops them; the changes
    of 11:00 get new ones."""
    con, build, server = world
    receiver = Receiver()
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    catalog, destination = build(H10)
    sync_then_crash(con, catalog, destination)
    catalog, destination = build(H11)
    sync(con, catalog, destination, sender_for(destination))
    first, second = receiver.batches
    by_id = {m["messageId"]: m for m in first}
    repeated = [m for m in second if m["messageId"] in by_id]
    assert all(m == by_id[m["messageId"]] for m in repeated)
    # u2's logins (still 0) and u1's (0) went unchanged; ACME left and GLOBEX entered at 11:00
    assert calls(repeated) >= {("identify", "u2", '{"logins": 0}')}
    assert calls(second) - calls(repeated) >= {("group", "GLOBEX", '{"free_accounts": true}')}
    assert not calls(repeated) & calls([m for m in second if m["messageId"] not in by_id])


def test_a_resent_change_whose_content_changed_gets_new_ids(world, tmp_path):
    """Sent at 10:00 without confirmation; a late event changes ACME's industry (an output
    column) within 10:00: the entering group call goes again with a new id and the new
    industry (the receiver would drop a repeated id), the unchanged calls with their ids."""
    con, build, server = world
    receiver = Receiver()
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    catalog, destination = build(H10)
    sync_then_crash(con, catalog, destination)
    late = group_call("g9", "2026-10-01T10:30:00Z", "ACME", "u1", industry="Retail")
    write_lines(tmp_path / "landing" / "late.ndjson", [late])
    ingest_window(con, tmp_path / "landing", H10, H11, PARTITIONS_START)
    catalog, destination = build(H10)
    sync(con, catalog, destination, sender_for(destination))
    first, second = receiver.batches
    group = [[m for m in batch if m["type"] == "group"] for batch in (first, second)]
    assert group[1][0]["traits"] == {"free_accounts": True, "industry": "Retail"}
    assert group[1][0]["messageId"] != group[0][0]["messageId"]
    identifies = [
        {m["messageId"] for m in batch if m["type"] == "identify"} for batch in (first, second)
    ]
    assert identifies[0] == identifies[1]


@pytest.mark.parametrize("confirmed", [True, False])
def test_an_audience_removed_from_the_definitions_sends_its_exits(world, tmp_path, confirmed):
    """What the destination holds (or may hold: sent, not confirmed) of an audience no longer
    defined is taken back, with the calls it was sent with (a group call for the account)."""
    con, build, server = world
    receiver = Receiver()
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    catalog, destination = build(H10)
    if confirmed:
        sync(con, catalog, destination, sender_for(destination))
    else:
        sync_then_crash(con, catalog, destination)
    document = yaml.safe_load((tmp_path / "defs" / "d.yaml").read_text())
    document["audiences"] = []
    document["destinations"][0]["audiences"] = []
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(document))
    catalog = load_catalog(tmp_path / "defs")
    first = len(receiver.messages)
    sync(con, catalog, catalog.destinations[0].destination, sender_for(destination))
    sent = calls(receiver.messages[first:])
    # (unconfirmed, the trait values sent with the audience are owed again too)
    assert (sent if confirmed else {c for c in sent if "logins" not in c[-1]}) == {
        ("group", "ACME", '{"free_accounts": false}'),
        ("identify", "u1", '{"free_accounts": false}'),
        ("identify", "u2", '{"free_accounts": false}'),
        ("track", "u1", "Audience Exited", '{"audience_key": "free_accounts", '
         '"free_accounts": false}'),
        ("track", "u2", "Audience Exited", '{"audience_key": "free_accounts", '
         '"free_accounts": false}'),
    }  # fmt: skip


def test_rejected_batches_are_recorded_and_owed_again(world):
    con, build, server = world
    receiver = Receiver([(400, {})])
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    catalog, destination = build(H10)
    report = sync(con, catalog, destination, sender_for(destination))
    assert (report.rejected, report.committed_items) == (11, 0)
    assert (
        con.execute(
            "SELECT count(*) FROM delivery_log WHERE status = 'rejected' AND response_code = 400"
        ).fetchone()[0]
        == 11
    )
    assert sync(con, catalog, destination, sender_for(destination)).accepted == 11


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_acceptance(world, status):
    """requests would follow it (a 303 as a GET without the batch) and report that answer."""
    con, build, server = world
    receiver = Receiver([(status, {"Location": "/moved/v1/batch"})])
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    server.expect_request("/moved/v1/batch").respond_with_data("{}", status=200)
    catalog, destination = build(H10)
    report = sync(con, catalog, destination, sender_for(destination))
    assert (report.accepted, report.rejected, report.committed_items) == (0, 11, 0)
    (response,) = con.execute("SELECT DISTINCT response FROM delivery_log").fetchone()
    assert response.startswith("redirected to /moved/v1/batch: not delivered")
    assert sync(con, catalog, destination, sender_for(destination)).accepted == 11


def test_backfilled_old_hours_do_not_replay_stale_transitions(world):
    con, build, server = world
    receiver = Receiver()
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    build(H10)
    catalog, destination = build(H11)
    sync(con, catalog, destination, sender_for(destination))
    seen = len(receiver.messages)
    catalog, destination = build(H10)  # a backfill re-materializes the older hour
    report = sync(con, catalog, destination, sender_for(destination))
    assert report.snapshot_hour == H11 and report.messages == 0
    assert len(receiver.messages) == seen
    assert ("group", "ACME", '{"free_accounts": true, "industry": "Software"}') not in calls(
        receiver.messages)  # fmt: skip


def test_oversized_messages_are_recorded_not_sent_and_do_not_block(world):
    con, build, server = world
    receiver = Receiver()
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    catalog, destination = build(H10)  # then ACME gets a huge output column
    con.execute(
        "UPDATE accounts SET traits = json_object('plan', 'free', 'industry', repeat('x', 40000))"
        " WHERE account_id = 'ACME'"
    )
    dry = sync(con, catalog, destination, None, dry_run=True)
    report = sync(con, catalog, destination, sender_for(destination))
    assert report.oversized == 1 and report.accepted == 10
    assert (dry.oversized, len(dry.planned)) == (1, 10)  # a dry run lists what goes out
    (reason,) = con.execute(
        "SELECT response FROM delivery_log WHERE status = 'oversized'").fetchone()  # fmt: skip
    assert "over 32768 bytes" in reason
    assert all(m["type"] != "group" for m in receiver.messages)


@pytest.mark.parametrize(("count", "blob"), [(60, 20_000), (5_000, 100)])
def test_batches_stay_under_the_size_limit_and_never_split_an_item(count, blob):
    """Big messages, and many small ones (the separators between them count too), two to an
    item (an identify and a track call) or one."""
    messages = [{"messageId": str(i), "blob": "x" * blob} for i in range(count)]
    items = [messages[i : i + 2] for i in range(0, count, 3)] + [[m] for m in messages[2::3]]
    batches = batches_of(items)
    assert len(batches) > 1 and sum(len(b) for b in batches) == sum(map(len, items))
    assert all(len(json.dumps({"batch": b, "sentAt": "2026-10-01T00:00:00.000Z"}))
               < 500_000 for b in batches)  # fmt: skip
    batch_of = {m["messageId"]: number for number, b in enumerate(batches) for m in b}
    assert all(len({batch_of[m["messageId"]] for m in item}) == 1 for item in items)


KILLED_SYNC = """
import os, signal, sys
from pathlib import Path
from account_hierarchy.activation.deliver import sync
from account_hierarchy.activation.transport import sender_for
from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.warehouse import connect

catalog = load_catalog(Path(sys.argv[2]))
destination = catalog.destinations[0].destination
real = sender_for(destination)

class DiesAfterSending:
    def send(self, batch):
        real.send(batch)
        os.kill(os.getpid(), signal.SIGKILL)

sync(connect(Path(sys.argv[1])), catalog, destination, DiesAfterSending())
"""


def test_a_killed_process_loses_nothing_and_duplicates_only_message_ids(world, tmp_path):
    con, build, server = world
    receiver = Receiver()
    server.expect_request("/v1/batch", method="POST").respond_with_handler(receiver)
    catalog, destination = build(H10)
    con.close()
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SYNC, str(tmp_path / "wh.duckdb"), str(tmp_path / "defs")],
        env={**os.environ, "TEST_WRITE_KEY": WRITE_KEY}, capture_output=True,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    with connect(tmp_path / "wh.duckdb") as again:
        report = sync(again, catalog, destination, sender_for(destination))
        assert report.accepted == 11
        assert sync(again, catalog, destination, sender_for(destination)).messages == 0
    first, second = receiver.batches
    assert sorted(m["messageId"] for m in first) == sorted(m["messageId"] for m in second)


def test_account_traits_reach_the_accounts_users_and_values_json_cannot_carry_are_none(tmp_path):
    at = "2026-10-01T10:{:02d}:00Z".format
    write_lines(tmp_path / "landing" / "a.ndjson", [
        # (1e999 is valid JSON, read as an infinity; DuckDB also reads -inf)
        '{"type": "group", "messageId": "g1", "groupId": "ACME", "userId": "u1", '
        f'"timestamp": "{at(0)}", "traits": {{"plan": "free", "big": 1e999, "low": -inf}}}}',
        group_call("g2", at(1), "ACME", "u2"),
        group_call("g3", at(2), "GLOBEX", "u2"), group_call("g4", at(3), "GLOBEX", "u3"),
        message("t1", at(10), userId="u1", event="Logged In"),
        message("t2", at(11), userId="u3", event="Logged In"),
        message("t3", at(12), userId="u3", event="Logged In"),
    ])  # fmt: skip
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump({
        "traits": [{"name": "account_logins", "entity": "account", "type": "event_counter",
                    "event": "Logged In"},
                   {"name": "weird", "entity": "account", "type": "sql",
                    "sql": "SELECT account_id, 'nan'::DOUBLE AS weird FROM accounts"}],
        "audiences": [{"name": "free_accounts", "entity": "account",
                       "where": {"custom_trait": "plan", "equals": "free"}}],
        "destinations": [{"name": "box", "type": "jsonl", "folder": str(tmp_path / "out"),
                          "audiences": ["free_accounts"], "traits": ["account_logins", "weird"],
                          "output_columns": ["big", "low", "weird"]}],
    }))  # fmt: skip
    catalog = load_catalog(tmp_path / "defs")
    destination = catalog.destinations[0].destination
    con = connect(tmp_path / "wh.duckdb")
    ingest_window(con, tmp_path / "landing", H10, H11, PARTITIONS_START)
    build_hour(con, catalog, H10)

    entered = '{"audience_key": "free_accounts", "free_accounts": true}'
    expected = {
        ("group", "ACME", '{"free_accounts": true}'),
        ("identify", "u1", '{"free_accounts": true}'),
        ("identify", "u2", '{"free_accounts": true}'),
        ("track", "u1", "Audience Entered", entered),
        ("track", "u2", "Audience Entered", entered),
        ("group", "ACME", '{"account_logins": 1}'),
        ("group", "GLOBEX", '{"account_logins": 2}'),
    }
    # each user of an account gets its value; u2, of both, gets ACME's (the first by id)
    for user, logins in (("u1", 1), ("u2", 1), ("u3", 2)):
        expected.add(("identify", user, f'{{"account_logins": {logins}}}'))
        properties = f'{{"account_logins": {logins}, "trait_key": "account_logins"}}'
        expected.add(("track", user, "Trait Computed", properties))
    assert calls(sync(con, catalog, destination, None, dry_run=True).planned) == expected
    sync(con, catalog, destination, sender_for(destination))

    sent = [strict_json(line)
            for path in (tmp_path / "out").glob("*.jsonl") for line in path.open()]  # fmt: skip
    assert calls(sent) == expected
    build_diffs(con, catalog, H10, H11)
    assert con.execute("SELECT count(*) FROM activation_diffs WHERE name = 'weird'").fetchone() == (
        0,
    )


class Recorder:
    """A sender keeping what it was given; rejecting every batch while `rejecting`."""

    def __init__(self):
        self.rejecting = False
        self.messages: list[dict] = []

    def send(self, batch: list[dict]) -> Outcome:
        self.messages += batch
        return Outcome(not self.rejecting, 400 if self.rejecting else 200, "", 1)


class AppliedThenLost(Recorder):
    """Applies each batch, then the answer is lost."""

    def send(self, batch: list[dict]) -> Outcome:
        super().send(batch)
        raise DestinationUnavailableError("the answer was lost", attempts=1)


@pytest.fixture
def box(tmp_path):
    """A warehouse (call `load` with the events of the hours 10 and 11), and the definitions
    of a destination with the given calls (catalog and destination)."""
    (tmp_path / "defs").mkdir()

    def destination_with(calls, audiences=("free_accounts",), traits=()):
        box = {"name": "box", "type": "jsonl", "folder": str(tmp_path / "out"),
               "audiences": list(audiences), "traits": list(traits), "calls": calls}  # fmt: skip
        document = definitions("http://unused") | {"destinations": [box]}
        (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(document))
        catalog = load_catalog(tmp_path / "defs")
        return catalog, catalog.destinations[0].destination

    with connect(tmp_path / "wh.duckdb") as con:

        def load(lines: list[dict]) -> None:
            write_lines(tmp_path / "landing" / "a.ndjson", lines)
            ingest_window(con, tmp_path / "landing", H10, H11 + timedelta(hours=1),
                          PARTITIONS_START)  # fmt: skip

        yield con, destination_with, load


def test_calls_added_to_a_destination_send_what_it_holds_in_those_calls(box):
    con, destination_with, load = box
    load(events()[:3])
    catalog, destination = destination_with(["track"])
    build_hour(con, catalog, H10)
    sync(con, catalog, destination, sender_for(destination))
    catalog, destination = destination_with(ALL_CALLS)
    planned = sync(con, catalog, destination, None, dry_run=True).planned
    assert calls(planned) == {
        ("group", "ACME", '{"free_accounts": true}'),
        ("identify", "u1", '{"free_accounts": true}'),
        ("identify", "u2", '{"free_accounts": true}'),
    }  # (the track calls went already)
    sync(con, catalog, destination, sender_for(destination))
    assert sync(con, catalog, destination, sender_for(destination)).messages == 0


def test_added_calls_rejected_once_go_again_as_they_went(box):
    """The added calls' messages, rejected at a later hour, are owed again as they went (same
    ids), in the added calls only: the track calls, which went already, do not go again."""
    con, destination_with, load = box
    load(events()[:3])  # (nothing changes at 11:00)
    catalog, destination = destination_with(["track"])
    build_hour(con, catalog, H10)
    sync(con, catalog, destination, Recorder())
    catalog, destination = destination_with(ALL_CALLS)
    build_hour(con, catalog, H11)
    recorder = Recorder()
    recorder.rejecting = True
    sync(con, catalog, destination, recorder)
    rejected = recorder.messages
    assert {m["type"] for m in rejected} == {"group", "identify"}
    recorder.rejecting, recorder.messages = False, []
    sync(con, catalog, destination, recorder)
    assert recorder.messages == rejected
    assert sync(con, catalog, destination, recorder).messages == 0


def test_calls_removed_then_added_again_carry_what_changed_meanwhile(box):
    """Changes made while a call was not wanted reach it when it is wanted again."""
    con, destination_with, load = box
    load(events())
    catalog, destination = destination_with(ALL_CALLS)
    build_hour(con, catalog, H10)
    sync(con, catalog, destination, Recorder())
    catalog, destination = destination_with(["track"])
    build_hour(con, catalog, H11)
    recorder = Recorder()
    sync(con, catalog, destination, recorder)
    assert {m["type"] for m in recorder.messages} == {"track"}
    catalog, destination = destination_with(ALL_CALLS)
    recorder.messages = []
    sync(con, catalog, destination, recorder)
    assert calls(recorder.messages) == {
        ("group", "ACME", '{"free_accounts": false}'),
        ("identify", "u1", '{"free_accounts": false}'),
        ("identify", "u2", '{"free_accounts": false}'),
        ("group", "GLOBEX", '{"free_accounts": true}'),
        ("identify", "u3", '{"free_accounts": true}'),
    }
    assert sync(con, catalog, destination, recorder).messages == 0
    # (the exits now carried by every call)
    exits = con.execute("SELECT DISTINCT calls FROM destination_state WHERE value IS NULL")
    assert exits.fetchall() == [('["group", "identify", "track"]',)]


def free_pro_free(con, tmp_path) -> None:
    """Ingest ACME (u1, u2) free at 10:00, upgrading at 11:00, free again at 12:00."""
    write_lines(tmp_path / "landing" / "a.ndjson", [
        group_call("g1", "2026-10-01T10:00:00Z", "ACME", "u1", plan="free"),
        group_call("g2", "2026-10-01T10:00:00Z", "ACME", "u2"),
        group_call("g3", "2026-10-01T11:00:00Z", "ACME", "u1", plan="pro"),
        group_call("g4", "2026-10-01T12:00:00Z", "ACME", "u1", plan="free"),
    ])  # fmt: skip
    ingest_window(con, tmp_path / "landing", H10, H11 + timedelta(hours=2), PARTITIONS_START)


def sync_hours(con, destination_with, calls_wanted: list[str], hours: list[datetime]) -> None:
    catalog, destination = destination_with(calls_wanted)
    for hour in hours:
        build_hour(con, catalog, hour)
        sync(con, catalog, destination, Recorder())


def test_a_change_undone_while_a_call_was_off_is_not_sent_again_in_it(box, tmp_path):
    """Entered in every call; exited and entered again while track was off: track still holds
    the entry, so it gets no second Audience Entered when it is back."""
    con, destination_with, _ = box
    free_pro_free(con, tmp_path)
    sync_hours(con, destination_with, ALL_CALLS, [H10])
    sync_hours(con, destination_with, ["group", "identify"], [H11, H11 + timedelta(hours=1)])
    catalog, destination = destination_with(ALL_CALLS)
    assert sync(con, catalog, destination, Recorder()).messages == 0
    held = held_state(con, "box")[("audience_user", "free_accounts", "user", "u1")]
    assert (held.value, held.calls, held.left) == ("true", frozenset(CALLS), {})


def test_a_call_back_in_the_sync_that_undoes_a_change_is_not_sent_it(box, tmp_path):
    """Exited while track was off, entered again in the sync that wants track again: the
    entry goes in the calls that carried the exit, not in track, which holds it still."""
    con, destination_with, _ = box
    free_pro_free(con, tmp_path)
    sync_hours(con, destination_with, ALL_CALLS, [H10])
    sync_hours(con, destination_with, ["group", "identify"], [H11])
    catalog, destination = destination_with(ALL_CALLS)
    build_hour(con, catalog, H11 + timedelta(hours=1))
    recorder = Recorder()
    sync(con, catalog, destination, recorder)
    assert calls(recorder.messages) == {("group", "ACME", '{"free_accounts": true}')} | {
        ("identify", user, '{"free_accounts": true}') for user in ("u1", "u2")
    }
    assert sync(con, catalog, destination, recorder).messages == 0


def test_a_call_off_while_an_entity_came_and_went_gets_no_exit(box, tmp_path):
    """Entered and exited while track was off: track never carried the entry, so it gets no
    Audience Exited when it is back; a change while it is off that it did carry reaches it."""
    con, destination_with, _ = box
    free_pro_free(con, tmp_path)
    sync_hours(con, destination_with, ["group", "identify"], [H10, H11])
    catalog, destination = destination_with(ALL_CALLS)
    assert sync(con, catalog, destination, Recorder()).messages == 0
    sync_hours(con, destination_with, ["group"], [H11 + timedelta(hours=1)])
    catalog, destination = destination_with(ALL_CALLS)
    recorder = Recorder()
    sync(con, catalog, destination, recorder)
    assert calls(recorder.messages) == {
        ("identify", user, '{"free_accounts": true}') for user in ("u1", "u2")
    } | {("track", user, "Audience Entered", '{"audience_key": "free_accounts", '
          '"free_accounts": true}') for user in ("u1", "u2")}  # fmt: skip


def test_a_user_stays_in_while_any_of_their_accounts_is_a_member(box):
    """u1 belongs to ACME and GLOBEX, both free; ACME upgrades: its group call says false, and
    so do u2's calls (ACME's only other user), while u1, still of a free account, gets none."""
    con, destination_with, load = box
    load([group_call("g1", "2026-10-01T10:00:00Z", "ACME", "u1", plan="free"),
          group_call("g2", "2026-10-01T10:00:00Z", "ACME", "u2"),
          group_call("g3", "2026-10-01T10:00:00Z", "GLOBEX", "u1", plan="free"),
          group_call("g4", "2026-10-01T11:00:00Z", "ACME", "u2", plan="pro")])  # fmt: skip
    catalog, destination = destination_with(ALL_CALLS)
    build_hour(con, catalog, H10)
    sync(con, catalog, destination, Recorder())
    build_hour(con, catalog, H11)
    recorder = Recorder()
    sync(con, catalog, destination, recorder)
    assert calls(recorder.messages) == {
        ("group", "ACME", '{"free_accounts": false}'),
        ("identify", "u2", '{"free_accounts": false}'),
        ("track", "u2", "Audience Exited", '{"audience_key": "free_accounts", '
         '"free_accounts": false}'),
    }  # fmt: skip


def test_state_of_a_warehouse_keeping_one_list_of_calls_per_destination_is_migrated(tmp_path):
    with connect(tmp_path / "wh.duckdb") as con:
        con.execute(
            "CREATE TABLE destination_state (destination VARCHAR, kind VARCHAR, name VARCHAR, "
            "entity_type VARCHAR, entity_id VARCHAR, value JSON, accepted_hour TIMESTAMP)"
        )
        con.execute("CREATE TABLE destination_calls (destination VARCHAR, calls VARCHAR)")
        # (changes in flight from before their entity type was recorded)
        con.execute(
            "CREATE TABLE destination_in_flight (destination VARCHAR, kind VARCHAR, "
            "name VARCHAR, entity_id VARCHAR, snapshot_hour TIMESTAMP)"
        )
        con.execute(
            "INSERT INTO destination_in_flight VALUES ('box', 'audience', 'a', 'ACME', "
            "'2026-10-01 11:00'), ('box', 'trait_user', 't', 'u1', '2026-10-01 11:00'), "
            "('box', 'trait', 't', 'NEW', '2026-10-01 11:00')"
        )
        con.execute("INSERT INTO destination_calls VALUES ('box', '[\"track\"]')")
        for destination in ("box", "crm"):
            con.execute(
                "INSERT INTO destination_state VALUES "
                "($d, 'audience', 'a', 'account', 'ACME', 'true', '2026-10-01 10:00')",
                {"d": destination},
            )
        ensure_state_tables(con)
        assert held_state(con, "box") == {
            ("audience", "a", "account", "ACME"): Held("true", {"track"}, 0, left=None)
        }
        assert held_state(con, "crm")[("audience", "a", "account", "ACME")].calls == set(CALLS)
        assert sorted(in_flight_changes(con, "box")) == [
            ("audience", "a", None, "ACME"), ("trait", "t", None, "NEW"),
            ("trait_user", "t", None, "u1"),
        ]  # fmt: skip
        assert con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'destination_calls'"
        ).fetchone() == (0,)


def test_a_change_in_flight_from_before_entity_types_were_kept_goes_as_the_definitions_say(
    tmp_path,
):
    """A user trait's change recorded in flight without an entity type goes again as an
    identify call (the trait is a user's), and settles."""
    box = {"name": "box", "type": "jsonl", "folder": str(tmp_path / "out"), "traits": ["logins"]}
    (tmp_path / "defs").mkdir()
    document = definitions("http://unused") | {"destinations": [box]}
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(document))
    catalog = load_catalog(tmp_path / "defs")
    recorder = Recorder()
    with connect(tmp_path / "wh.duckdb") as con:
        write_lines(tmp_path / "landing" / "a.ndjson", events())
        ingest_window(con, tmp_path / "landing", H10, H11 + timedelta(hours=1), PARTITIONS_START)
        build_hour(con, catalog, H11)
        ensure_state_tables(con)
        con.execute(
            "INSERT INTO destination_in_flight (destination, kind, name, entity_id, "
            "snapshot_hour) VALUES ('box', 'trait', 'logins', 'u3', '2026-10-01 11:00')"
        )
        sync(con, catalog, catalog.destinations[0].destination, recorder)
        assert con.execute("SELECT count(*) FROM destination_in_flight").fetchone() == (0,)
    sent = {(m["type"], m.get("groupId") or m["userId"]) for m in recorder.messages}
    assert ("identify", "u3") in sent and not any(call == "group" for call, _ in sent)


def with_pro_accounts(folder: Path):
    """The box's definitions with a new audience `pro_accounts` the destination receives."""
    document = yaml.safe_load((folder / "d.yaml").read_text())
    document["audiences"].append({"name": "pro_accounts", "entity": "account",
                                  "where": {"custom_trait": "plan", "equals": "pro"}})  # fmt: skip
    document["destinations"][0]["audiences"].append("pro_accounts")
    (folder / "d.yaml").write_text(yaml.safe_dump(document))
    return load_catalog(folder)


def test_an_input_built_only_for_older_hours_does_not_take_the_sync_back(box, tmp_path):
    """A destination given a new audience backfilled for older hours only waits for it: the
    older snapshot would send it changes its newer one has undone."""
    con, destination_with, load = box
    load(events())
    catalog, destination = destination_with(ALL_CALLS)
    build_hour(con, catalog, H10)
    build_hour(con, catalog, H11)
    sync(con, catalog, destination, Recorder())
    catalog = with_pro_accounts(tmp_path / "defs")
    destination = catalog.destinations[0].destination
    build_audience(con, catalog, "pro_accounts", H10, H11)
    recorder = Recorder()
    with pytest.raises(
        NothingToSyncError, match="audience pro_accounts reach only 2026-10-01 10:00"
    ):
        sync(con, catalog, destination, recorder)
    assert recorder.messages == []
    build_audience(con, catalog, "pro_accounts", H11, H11 + timedelta(hours=1))
    sync(con, catalog, destination, recorder)
    entered = '{"audience_key": "pro_accounts", "pro_accounts": true}'
    assert calls(recorder.messages) == {
        ("group", "ACME", '{"pro_accounts": true}'),
        *(("identify", user, '{"pro_accounts": true}') for user in ("u1", "u2")),
        *(("track", user, "Audience Entered", entered) for user in ("u1", "u2")),
    }  # (GLOBEX was pro at 10:00 only)


def test_an_hour_an_input_was_not_built_for_does_not_read_as_empty(box):
    """Hour 11 has its traits but not its audience, hour 12 its audience but not its traits
    (a step failed in each run): the sync stays at the newest hour both have, instead of
    reading the audience as empty at 11 (a false exit), and moves on once both reach 12."""
    con, destination_with, load = box
    load([*events()[:3], events()[5]])  # (ACME is free at every hour; u3 logs in at 11:30)
    catalog, destination = destination_with(ALL_CALLS, traits=["logins"])
    build_hour(con, catalog, H10)
    sync(con, catalog, destination, Recorder())
    h12 = H11 + timedelta(hours=1)
    build_snapshots(con, H11, h12, "parent_account_id")
    build_traits(con, catalog, H11, h12)
    build_snapshots(con, h12, h12 + timedelta(hours=1), "parent_account_id")
    build_audience(con, catalog, "free_accounts", h12, h12 + timedelta(hours=1))
    recorder = Recorder()
    assert sync(con, catalog, destination, recorder).snapshot_hour == H10
    assert recorder.messages == []
    build_traits(con, catalog, h12, h12 + timedelta(hours=1))
    assert sync(con, catalog, destination, recorder).snapshot_hour == h12
    computed = '{"logins": 1, "trait_key": "logins"}'
    assert calls(recorder.messages) == {
        ("identify", "u3", '{"logins": 1}'),
        ("track", "u3", "Trait Computed", computed),
    }


def test_an_input_not_built_yet_is_named_in_what_the_sync_waits_for(box, tmp_path):
    """A destination given a new audience that no run has built yet says which input it waits
    for, not that all its audiences and traits are unbuilt."""
    con, destination_with, load = box
    load(events())
    catalog, destination = destination_with(ALL_CALLS)
    build_hour(con, catalog, H10)
    sync(con, catalog, destination, Recorder())
    catalog = with_pro_accounts(tmp_path / "defs")
    destination = catalog.destinations[0].destination
    with pytest.raises(NothingToSyncError) as raised:
        sync(con, catalog, destination, Recorder())
    assert str(raised.value) == (
        "destination box: audience pro_accounts has not been materialized yet"
    )


def test_a_trait_built_only_for_older_hours_does_not_take_the_sync_back(box, tmp_path):
    """A destination given a new trait computed for older hours only waits for it, although
    the trait table's newer hours have its column (without values computed there); so it
    does for a trait edited and built again for older hours only."""
    con, destination_with, load = box
    load(events())
    catalog, destination = destination_with(ALL_CALLS, traits=["logins"])
    build_hour(con, catalog, H10)
    build_hour(con, catalog, H11)
    sync(con, catalog, destination, Recorder())
    document = yaml.safe_load((tmp_path / "defs" / "d.yaml").read_text())
    document["traits"].append({"name": "all_logins", "entity": "user", "type": "event_counter",
                               "event": "Logged In"})  # fmt: skip
    document["destinations"][0]["traits"].append("all_logins")
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(document))
    catalog = load_catalog(tmp_path / "defs")
    destination = catalog.destinations[0].destination
    build_traits(con, catalog, H10, H11)
    recorder = Recorder()
    with pytest.raises(NothingToSyncError, match="user trait all_logins reach only 2026-10-01 10"):
        sync(con, catalog, destination, recorder)
    assert recorder.messages == []
    build_traits(con, catalog, H11, H11 + timedelta(hours=1))
    sync(con, catalog, destination, recorder)
    assert ("identify", "u3", '{"all_logins": 1}') in calls(recorder.messages)
    # (edited, a trait's hours built by its old definition do not count either)
    document["traits"][-1]["window"] = "30 days"
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(document))
    catalog = load_catalog(tmp_path / "defs")
    build_traits(con, catalog, H10, H11)
    with pytest.raises(NothingToSyncError, match="user trait all_logins reach only 2026-10-01 10"):
        sync(con, catalog, catalog.destinations[0].destination, recorder)


def dry_run_and_diffs(tmp_path, lines: list[dict], document: dict) -> tuple[SyncReport, dict]:
    """A dry run of the destination of `document` at hour 10 of `lines`, and the new values
    the diffs record, by name."""
    write_lines(tmp_path / "landing" / "a.ndjson", lines)
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(document))
    catalog = load_catalog(tmp_path / "defs")
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", H10, H11, PARTITIONS_START)
        build_hour(con, catalog, H10)
        planned = sync(con, catalog, catalog.destinations[0].destination, None, dry_run=True)
        build_diffs(con, catalog, H10, H11)
        diffs = dict(con.execute("SELECT name, new_value FROM activation_diffs").fetchall())
    return planned, diffs


def test_an_account_trait_no_account_has_yet_does_not_hold_up_the_audiences(tmp_path):
    lines = [message("i1", "2026-10-01T10:05:00Z", type="identify", traits={"role": "Admin"})]
    admins = {"name": "admins", "entity": "user",
              "where": {"custom_trait": "role", "equals": "Admin"}}  # fmt: skip
    box = {"name": "box", "type": "jsonl", "folder": str(tmp_path / "out"),
           "audiences": ["admins"], "traits": ["last_feature"]}  # fmt: skip
    document = definitions("http://unused") | {"audiences": [admins], "destinations": [box]}
    report, _ = dry_run_and_diffs(tmp_path, lines, document)
    assert report.snapshot_hour == H10


def test_a_sync_that_sent_exits_only_still_holds_its_hour(box, tmp_path):
    """The destination holds the snapshot of its last sync even when that sync sent only exits
    or nothing: a new input built for an older hour waits."""
    con, destination_with, load = box
    load([*events()[:3], group_call("g4", "2026-10-01T11:00:00Z", "ACME", "u1", plan="pro")])
    catalog, destination = destination_with(ALL_CALLS)
    build_hour(con, catalog, H10)
    sync(con, catalog, destination, Recorder())
    build_hour(con, catalog, H11)
    recorder = Recorder()
    sync(con, catalog, destination, recorder)  # (ACME leaves: exits only)
    assert recorder.messages and {m.get("event") for m in recorder.messages} >= {"Audience Exited"}
    catalog = with_pro_accounts(tmp_path / "defs")
    build_audience(con, catalog, "pro_accounts", H10, H11)
    with pytest.raises(NothingToSyncError, match="audience pro_accounts reach only"):
        sync(con, catalog, catalog.destinations[0].destination, recorder)


def test_unconfirmed_messages_go_again_as_they_went_when_calls_are_removed(box):
    """A lost answer, then a call removed: the calls still wanted repeat their messages, ids
    and all, so the destination drops what it already applied."""
    con, destination_with, load = box
    load(events()[:3])
    catalog, destination = destination_with(ALL_CALLS)
    build_hour(con, catalog, H10)
    applied = AppliedThenLost()
    with pytest.raises(DestinationUnavailableError):
        sync(con, catalog, destination, applied)
    catalog, destination = destination_with(["track"])
    build_hour(con, catalog, H11)
    again = Recorder()
    sync(con, catalog, destination, again)
    tracks = [m for m in applied.messages if m["type"] == "track"]
    assert tracks and again.messages == tracks


def entered_at_ten(box, sender: Sender) -> Sender:
    """ACME and its users enter `free_accounts` at 10:00, synced in every call to `sender`
    (which may lose its answers)."""
    con, destination_with, load = box
    load(events()[:3])
    catalog, destination = destination_with(ALL_CALLS)
    build_hour(con, catalog, H10)
    with contextlib.suppress(DestinationUnavailableError):
        sync(con, catalog, destination, sender)
    return sender


def test_unconfirmed_messages_recorded_as_contents_only_go_again_as_they_went(box):
    """In-flight rows from before messages were kept whole (their contents only) still give
    the same messages again, made for the hour they were made for."""
    con, destination_with, _ = box
    rejected = Recorder()
    rejected.rejecting = True
    entered_at_ten(box, rejected)
    catalog, destination = destination_with(ALL_CALLS)
    for (sent,) in con.execute("SELECT DISTINCT sent FROM destination_in_flight").fetchall():
        contents = [{k: v for k, v in m.items() if k not in ("messageId", "timestamp")}
                    for m in json.loads(sent)]  # fmt: skip
        con.execute("UPDATE destination_in_flight SET sent = $c WHERE sent = $s",
                    {"c": json.dumps(contents, sort_keys=True), "s": sent})  # fmt: skip
    build_hour(con, catalog, H11)
    again = Recorder()
    sync(con, catalog, destination, again)
    assert sorted(again.messages, key=str) == sorted(rejected.messages, key=str)


@pytest.mark.parametrize("exits_sender", [Recorder, AppliedThenLost])
def test_entering_again_within_the_same_hour_is_a_new_message(box, exits_sender):
    """An audience taken off a destination and given back within one snapshot hour: its
    exits, then its entries again, each with new ids (the receiver drops repeated ids), also
    when the exits' answer was lost (the destination may have applied them, so the entries
    go as a change of their own)."""
    con, destination_with, _ = box
    first = entered_at_ten(box, Recorder())
    catalog, destination = destination_with(ALL_CALLS, audiences=[], traits=["logins"])
    exits = exits_sender()
    with contextlib.suppress(DestinationUnavailableError):
        sync(con, catalog, destination, exits)
    assert "Audience Exited" in {m.get("event") for m in exits.messages}
    catalog, destination = destination_with(ALL_CALLS)
    again = Recorder()
    sync(con, catalog, destination, again)
    entries = [m for m in again.messages if "free_accounts" in json.dumps(m)]
    assert calls(entries) == calls(first.messages)
    assert not {m["messageId"] for m in entries} & {m["messageId"] for m in first.messages}


def test_a_user_gets_the_first_account_value_json_can_carry(tmp_path):
    """u1's first account (by id) has NaN, its second a number: u1 gets the number."""
    lines = [group_call("g1", "2026-10-01T10:00:00Z", "A0", "u1"),
             group_call("g2", "2026-10-01T10:01:00Z", "A1", "u1")]  # fmt: skip
    report, _ = dry_run_and_diffs(tmp_path, lines, {
        "traits": [{"name": "score", "entity": "account", "type": "sql",
                    "sql": "SELECT account_id, CASE account_id WHEN 'A0' THEN 'nan'::DOUBLE "
                           "ELSE 5.0 END AS score FROM accounts"}],
        "destinations": [{"name": "box", "type": "jsonl", "folder": str(tmp_path / "out"),
                          "traits": ["score"], "calls": ["group", "identify"]}],
    })  # fmt: skip
    assert calls(report.planned) == {
        ("group", "A1", '{"score": 5.0}'),
        ("identify", "u1", '{"score": 5.0}'),
    }


def test_a_dry_run_tells_the_changes_that_need_no_message_apart(tmp_path):
    """u1's change of an account trait goes in identify calls, which the destination does not
    take: of the two changes, only A0's is sent, and the CLI's summary says so."""
    lines = [group_call("g1", "2026-10-01T10:00:00Z", "A0", "u1")]
    report, _ = dry_run_and_diffs(tmp_path, lines, {
        "traits": [{"name": "score", "entity": "account", "type": "sql",
                    "sql": "SELECT account_id, 5 AS score FROM accounts"}],
        "destinations": [{"name": "box", "type": "jsonl", "folder": str(tmp_path / "out"),
                          "traits": ["score"], "calls": ["group"]}],
    })  # fmt: skip
    assert (report.items, report.silent_items, len(report.planned)) == (2, 1, 1)
    environment = {"AH_WAREHOUSE": str(tmp_path / "wh.duckdb"),
                   "AH_DEFINITIONS_DIR": str(tmp_path / "defs")}  # fmt: skip
    shown = CliRunner().invoke(main, ["sync", "box", "--dry-run"], env=environment)
    assert shown.exit_code == 0, shown.output
    summary = (
        "1 messages for 1 changes would be sent (snapshot 2026-10-01 10:00 UTC); "
        "1 changes need no message and would only be recorded; nothing was sent."
    )
    assert summary in shown.output
    machine = CliRunner().invoke(main, ["sync", "box", "--dry-run", "--format", "jsonl"],
                                 env=environment)  # fmt: skip
    assert [json.loads(line)["groupId"] for line in machine.stdout.splitlines()] == ["A0"]
    assert machine.stderr.strip() == summary  # (standard output holds only the messages)


def test_a_dry_run_table_shows_values_as_json(tmp_path):
    lines = [group_call("g1", "2026-10-01T10:00:00Z", "A0", "u1", plan="free")]
    dry_run_and_diffs(tmp_path, lines, {
        "audiences": [{"name": "free_accounts", "entity": "account",
                       "where": {"custom_trait": "plan", "equals": "free"}}],
        "destinations": [{"name": "box", "type": "jsonl", "folder": str(tmp_path / "out"),
                          "audiences": ["free_accounts"], "output_columns": ["plan", "seats"],
                          "calls": ["group", "track"]}],
    })  # fmt: skip
    environment = {"AH_WAREHOUSE": str(tmp_path / "wh.duckdb"),
                   "AH_DEFINITIONS_DIR": str(tmp_path / "defs")}  # fmt: skip
    shown = CliRunner().invoke(main, ["sync", "box", "--dry-run"], env=environment)
    assert shown.exit_code == 0, shown.output
    assert "free_accounts=true, plan=free" in shown.output, shown.output
    # (a track call names its audience: a user's entries of two audiences differ)
    assert "Audience Entered: audience_key=free_accounts, " in shown.output, shown.output


def test_trait_values_are_sent_as_the_diffs_record_them(tmp_path):
    """Times and dates as ISO text, durations as seconds, JSON as the value it holds: the
    same JSON in the calls and the diffs."""
    lines = [group_call("g1", "2026-10-01T10:00:00Z", "A0", "u1")]
    sql = ("SELECT account_id, TIMESTAMP '2026-10-01 10:00:00' AS seen, INTERVAL 3 DAY AS took, "
           "DATE '2026-09-30' AS renews, 'infinity'::DATE AS ends, "
           "'{\"tier\": \"gold\"}'::JSON AS meta FROM accounts")  # fmt: skip
    names = ["seen", "took", "renews", "ends", "meta"]
    report, diffs = dry_run_and_diffs(tmp_path, lines, {
        "traits": [{"name": "seen", "entity": "account", "type": "sql", "sql": sql}],
        "destinations": [{"name": "box", "type": "jsonl", "folder": str(tmp_path / "out"),
                          "traits": names, "calls": ["group"]}],
    })  # fmt: skip
    assert diffs == {"seen": '"2026-10-01T10:00:00"', "took": "259200.0",
                     "renews": '"2026-09-30"', "ends": '"9999-12-31"',
                     "meta": '{"tier":"gold"}'}  # fmt: skip
    assert calls(report.planned) == {
        ("group", "A0", json.dumps({name: json.loads(diffs[name])})) for name in names
    }


class Applier:
    """A receiver applying each message once (repeated ids dropped), in arrival order; with
    `lose`, it applies a batch and then the answer is lost."""

    def __init__(self):
        self.seen: set[str] = set()
        self.holds: dict[tuple[str, str], dict] = {}
        self.tracks: list[tuple[str, str]] = []
        self.lose = False
        self.refuse: Callable[[list[dict]], bool] = lambda _batch: False

    def send(self, batch: list[dict]) -> Outcome:
        if self.refuse(batch):
            return Outcome(False, 400, "refused", 1)
        for sent in batch:
            if sent["messageId"] in self.seen:
                continue
            self.seen.add(sent["messageId"])
            if sent["type"] == "track":
                self.tracks.append((sent["userId"], sent["event"]))
            else:
                entity = sent.get("groupId") or sent["userId"]
                self.holds.setdefault((sent["type"], entity), {}).update(sent["traits"])
        if self.lose:
            raise DestinationUnavailableError("the answer was lost", attempts=1)
        return Outcome(True, 200, "", 1)


@pytest.mark.parametrize("retractions_refused", [False, True])
def test_a_trait_and_an_audience_moved_to_user_level_end_with_the_users_values(
    tmp_path, monkeypatch, retractions_refused
):
    """`logins` and `vip` turn from account into user definitions of the same names: the
    retractions of the account-level values go before the users' own values, which the
    destination ends holding, for a user whose id is also the account's too. Retractions
    refused (each change in a batch of its own) while the new values are taken go again, and
    the values they overwrite go again after them."""

    def definitions_at(entity: str):
        where = {"custom_trait": "plan", "equals": "free"}
        document = {
            "traits": [{"name": "logins", "entity": entity, "type": "event_counter",
                        "event": "Logged In"}],
            "audiences": [{"name": "vip", "entity": entity,
                           "where": where if entity == "account" else {"account": where}}],
            "destinations": [{"name": "box", "type": "jsonl", "folder": str(tmp_path / "out"),
                              "audiences": ["vip"], "traits": ["logins"]}],
        }  # fmt: skip
        (tmp_path / "defs").mkdir(exist_ok=True)
        (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(document))
        catalog = load_catalog(tmp_path / "defs")
        return catalog, catalog.destinations[0].destination

    logins = [message(f"t{n}", f"2026-10-01T10:1{n}:00Z", event="Logged In", userId=user)
              for n, user in enumerate(["u1", "u1", "u2", "A0", "A0", "A0"])]  # fmt: skip
    write_lines(tmp_path / "landing" / "a.ndjson", [
        group_call("g1", "2026-10-01T10:00:00Z", "A0", "u1", plan="free"),
        group_call("g2", "2026-10-01T10:01:00Z", "A0", "u2"),
        group_call("g3", "2026-10-01T10:02:00Z", "A0", "A0"), *logins,
    ])  # fmt: skip
    applier = Applier()
    if retractions_refused:
        monkeypatch.setattr(deliver, "MAX_BATCH_BYTES", 1)  # (one item's messages a batch)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", H10, H11 + timedelta(hours=1), PARTITIONS_START)
        for hour, entity in ((H10, "account"), (H11, "user")):
            catalog, destination = definitions_at(entity)
            build_hour(con, catalog, hour)
            if entity == "user" and retractions_refused:
                applier.refuse = lambda batch: any(
                    value in (None, False) for sent in batch if sent["type"] == "identify"
                    for value in sent["traits"].values()
                )  # fmt: skip
            report = sync(con, catalog, destination, applier)
        assert report.rejected == (12 if retractions_refused else 0)  # (3 users, 2 keys, 2 calls)
        applier.refuse = lambda _batch: False
        sync(con, catalog, destination, applier)
        assert sync(con, catalog, destination, applier).messages == 0
    assert applier.holds[("identify", "u1")] == {"vip": True, "logins": 2}
    assert applier.holds[("identify", "u2")] == {"vip": True, "logins": 1}
    assert applier.holds[("identify", "A0")] == {"vip": True, "logins": 3}
    assert applier.holds[("group", "A0")] == {"vip": False, "logins": None}
    entries = [event for user, event in applier.tracks if user == "u1" and "Audience" in event]
    assert entries[-1] == "Audience Entered"


def test_changes_back_and_forth_within_an_hour_while_unconfirmed_end_as_the_snapshot(box, tmp_path):
    """Taken off the destination (answer lost), given back (lost), taken off again: every
    change goes under ids never used, so the receiver ends without the audience."""
    con, destination_with, _ = box
    receiver = entered_at_ten(box, Applier())
    for audiences, lost in ((["free_accounts"], False), ([], True), (["free_accounts"], True),
                            ([], False)):  # fmt: skip
        catalog, destination = destination_with(ALL_CALLS, audiences, traits=["logins"])
        receiver.lose = lost
        with contextlib.suppress(DestinationUnavailableError):
            sync(con, catalog, destination, receiver)
    assert {entity: traits.get("free_accounts") for entity, traits in receiver.holds.items()} == {
        ("group", "ACME"): False, ("identify", "u1"): False, ("identify", "u2"): False,
        ("identify", "u3"): None,
    }  # fmt: skip


def test_an_answer_cut_off_is_retried_then_fails_the_run_cleanly(world):
    """A 200 whose body ends early (the connection closed mid-answer) is no acceptance."""
    con, build, _ = world
    with socket.create_server(("127.0.0.1", 0)) as server:

        def answer_cut_off() -> None:
            with contextlib.suppress(OSError):
                while True:
                    connection, _ = server.accept()
                    with connection:
                        connection.recv(1 << 20)
                        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}")

        threading.Thread(target=answer_cut_off, daemon=True).start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        catalog, destination = build(H10, url=url, max_seconds=0.3)
        with pytest.raises(DestinationUnavailableError, match="ChunkedEncodingError"):
            sync(con, catalog, destination, sender_for(destination))
    assert con.execute("SELECT DISTINCT status FROM delivery_log").fetchall() == [("failed",)]
    assert con.execute("SELECT count(*) FROM destination_state").fetchone() == (0,)


@pytest.mark.parametrize("answers_without_track", [[True], [False], [True, True, False]])
def test_a_track_unconfirmed_when_its_call_was_removed_goes_as_it_went_when_it_is_back(
    box, answers_without_track
):
    """Entered, every answer lost (the receiver applied it all); track calls removed, the
    rest synced, its answers lost or not; track calls back an hour later: the entry's track
    goes again under its id, and the receiver has one Audience Entered per user."""
    con, destination_with, _ = box
    receiver = Applier()
    receiver.lose = True
    entered_at_ten(box, receiver)
    assert not con.execute("SELECT count(*) FROM destination_state").fetchone()[0]
    catalog, destination = destination_with(["group", "identify"])
    for lost in answers_without_track:
        receiver.lose = lost
        with contextlib.suppress(DestinationUnavailableError):
            sync(con, catalog, destination, receiver)
    receiver.lose = False
    catalog, destination = destination_with(ALL_CALLS)
    build_hour(con, catalog, H11)
    sync(con, catalog, destination, receiver)
    entered = [user for user, event in receiver.tracks if event == "Audience Entered"]
    assert sorted(entered) == ["u1", "u2"]
    assert sync(con, catalog, destination, receiver).messages == 0


def test_a_track_unconfirmed_goes_as_it_went_after_the_event_names_were_renamed(box, tmp_path):
    """Its id names the change, not the event's name: the receiver that applied it drops it."""
    con, _, _ = box
    receiver = entered_at_ten(box, AppliedThenLost())
    document = yaml.safe_load((tmp_path / "defs" / "d.yaml").read_text())
    document["destinations"][0]["event_names"] = {"entered": "Joined", "exited": "Left"}
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(document))
    catalog = load_catalog(tmp_path / "defs")
    again = Recorder()
    sync(con, catalog, catalog.destinations[0].destination, again)
    assert sorted(again.messages, key=str) == sorted(receiver.messages, key=str)
