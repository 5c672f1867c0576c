"""End to end through a real Dagster webserver and daemon (`dg dev`) on a temporary
DAGSTER_HOME: landing files make the sensor launch a run of the whole chain; a range run
launched through GraphQL, and the same range launched from the CLI (`dg launch`), give the same
tables."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import group_call, message, write_lines

ROOT = Path(__file__).parent.parent
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
TABLES = ("raw_events", "quarantined_lines", "users", "accounts", "account_memberships",
          "account_hierarchy", "account_traits", "user_traits", "audience_memberships")  # fmt: skip
RANGE = ("2026-10-01-10:00", "2026-10-01-11:00")

LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
RUNS = """{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"""
SCHEDULES = """
query($location: String!) {
  schedulesOrError(repositorySelector: {repositoryLocationName: $location,
                                        repositoryName: "__repository__"}) {
    ... on Schedules { results { name scheduleState { id status } } }
  }
}"""
STOP_SCHEDULE = """
mutation($id: String!) {
  stopRunningSchedule(id: $id) { __typename ... on PythonError { message } }
}"""
LAUNCH = """
mutation($tags: [ExecutionTag!], $location: String!) {
  launchRun(executionParams: {
    selector: {repositoryLocationName: $location, repositoryName: "__repository__",
               jobName: "pipeline_job"},
    executionMetadata: {tags: $tags}}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def landing_files(folder: Path) -> None:
    write_lines(folder / "a.ndjson", [
        group_call("g1", "2026-10-01T10:00:00Z", "ACME", "u1", industry="Software", plan="free"),
        {"type": "identify", "messageId": "i1", "userId": "u1",
         "timestamp": "2026-10-01T10:01:00Z", "traits": {"role": "Admin"}},
        message("t1", "2026-10-01T10:30:00Z", userId="u1"),
    ])  # fmt: skip
    write_lines(folder / "b.ndjson", [
        group_call("g2", "2026-10-01T11:00:00Z", "GLOBEX", "u2", industry="Retail"),
        message("t2", "2026-10-01T11:30:00Z", userId="u2"), "not json",
    ])  # fmt: skip
    shutil.copy(folder / "a.ndjson", folder / "a-again.ndjson")  # the same file landed twice


def dump(path: Path) -> dict:
    with connect(path, read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


@pytest.fixture
def dagster(tmp_path):
    home, landing, definitions = tmp_path / "home", tmp_path / "landing", tmp_path / "defs"
    home.mkdir()
    landing.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    definitions.mkdir()
    for path in (ROOT / "data" / "definitions").glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        for destination in document.get("destinations", []):
            destination["folder"] = str(tmp_path / "outbox")
        (definitions / path.name).write_text(yaml.safe_dump(document))
    env = {**os.environ, "DAGSTER_HOME": str(home), "AH_LANDING_DIR": str(landing),
           "AH_WAREHOUSE": str(tmp_path / "wh.duckdb"), "AH_DEFINITIONS_DIR": str(definitions),
           "VIRTUAL_ENV": str(BIN.parent), "PATH": f"{BIN}:{os.environ['PATH']}"}  # fmt: skip
    port = free_port()
    with (tmp_path / "dagster.log").open("w") as log:
        server = subprocess.Popen(
            [str(BIN / "dg"), "dev", "--port", str(port)], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/graphql"

    def graphql(query: str, variables: dict | None = None) -> dict:
        response = requests.post(url, json={"query": query, "variables": variables or {}},
                                 timeout=30)  # fmt: skip
        return response.json()["data"]

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                graphql("{ version }")
                break
            except (requests.ConnectionError, KeyError, ValueError):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "dagster.log").read_text()[-3000:]) from None
                time.sleep(1)
        stop_schedules(graphql)
        yield graphql, landing, tmp_path, env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def stop_schedules(graphql) -> None:
    """Stops the schedules, which are running by default, so that a schedule tick falling
    inside the test (the hourly one at five past any hour) adds no run of its own."""
    (location,) = graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
    schedules = graphql(SCHEDULES, {"location": location["name"]})["schedulesOrError"]["results"]
    assert schedules, "the code location defines schedules"
    for schedule in schedules:
        stopped = graphql(STOP_SCHEDULE, {"id": schedule["scheduleState"]["id"]})
        assert stopped["stopRunningSchedule"]["__typename"] == "ScheduleStateResult", stopped
    schedules = graphql(SCHEDULES, {"location": location["name"]})["schedulesOrError"]["results"]
    assert {s["scheduleState"]["status"] for s in schedules} == {"STOPPED"}


def wait_for_runs(graphql, done, seconds: float = 420) -> list[dict]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = graphql(RUNS)["runsOrError"]["results"]
        if done(runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"runs did not finish: {json.dumps(runs)[:2000]}")


def tags_of(run: dict) -> dict:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def test_sensor_runs_the_chain_and_a_graphql_range_equals_the_cli(dagster):
    graphql, landing, tmp_path, env = dagster
    landing_files(landing)
    runs = wait_for_runs(graphql, lambda runs: any(
        tags_of(r).get("dagster/sensor_name") == "landing_files_sensor"
        and r["status"] in ("SUCCESS", "FAILURE") for r in runs))  # fmt: skip
    (sensor_run,) = [r for r in runs if tags_of(r).get("dagster/sensor_name")]
    assert sensor_run["status"] == "SUCCESS", (tmp_path / "dagster.log").read_text()[-3000:]
    tags = tags_of(sensor_run)
    assert (tags["dagster/asset_partition_range_start"],
            tags["dagster/asset_partition_range_end"]) == RANGE  # fmt: skip
    after_sensor = dump(tmp_path / "wh.duckdb")
    assert len(after_sensor["raw_events"]) == 5 and len(after_sensor["quarantined_lines"]) == 1
    hours = {row[0].hour for row in after_sensor["audience_memberships"]}
    assert hours <= {10, 11} and after_sensor["audience_memberships"]
    assert list((tmp_path / "outbox").glob("*.jsonl")), "the destination received batches"

    (location,) = graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
    launched = graphql(LAUNCH, {"location": location["name"], "tags": [
        {"key": "dagster/asset_partition_range_start", "value": RANGE[0]},
        {"key": "dagster/asset_partition_range_end", "value": RANGE[1]}]})  # fmt: skip
    assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["launchRun"]["run"]["runId"]
    wait_for_runs(graphql, lambda runs: any(r["runId"] == run_id and r["status"] == "SUCCESS"
                                            for r in runs))  # fmt: skip
    assert dump(tmp_path / "wh.duckdb") == after_sensor

    cli = subprocess.run(
        [str(BIN / "dg"), "launch", "--job", "pipeline_job", "--partition-range",
         f"{RANGE[0]}...{RANGE[1]}"],
        cwd=ROOT, env={**env, "AH_WAREHOUSE": str(tmp_path / "cli.duckdb"),
                       "DAGSTER_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert dump(tmp_path / "cli.duckdb") == after_sensor
