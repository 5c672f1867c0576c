"""Shared fixtures: a temporary warehouse and landing folder, and a writer of NDJSON lines."""

import gzip
import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from account_hierarchy.audiences.memberships import build_audience
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.spark.session import java_found
from account_hierarchy.traits.compute import build_traits
from account_hierarchy.warehouse import connect

PARTITIONS_START = datetime(2024, 1, 1)
# The tests' Spark sessions live for minutes over tiny tables: their JVM compiles with C1 only
# (in a code cache as large as the tiered default: Spark's generated code fills C1's) and
# collects garbage on one thread, which spends about a quarter less CPU, on a machine where
# another test worker wants the second core.
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:+UseSerialGC"
os.environ.setdefault(
    "PYSPARK_SUBMIT_ARGS", f'--driver-java-options "{TEST_JVM_OPTIONS}" pyspark-shell'
)


# The Spark tests start a local session, which needs Java: without it they are skipped, so
# that `make test` runs on a machine with only python3 and make.
needs_java = pytest.mark.skipif(
    not java_found(), reason="Spark needs Java 17 or 21 (JAVA_HOME or java on the PATH)"
)


# The test files that take minutes, longest first. They are collected first, so that the test
# workers start on them (`make test` keeps the collection order: `--no-loadscope-reorder`)
# rather than one worker finishing the last of them alone while the other waits.
LONG_FILES = (
    "test_spark_engine.py",
    "test_spark_stages.py",
    "test_end_to_end_dagster.py",
    "test_trait_tiles.py",
    "test_benchmarks.py",
    "test_fast_paths_random.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the long test files first (the others keep their order)."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)


def random_seeds(default: str) -> list[int]:
    """The seeds of the randomised tests: `AH_RANDOM_SEEDS` (comma-separated), else `default`."""
    return [int(seed) for seed in os.environ.get("AH_RANDOM_SEEDS", default).split(",")]


def message(message_id: str, timestamp: str = "2026-10-01T10:05:00.000Z", **fields: object) -> dict:
    """A valid track message unless fields say otherwise."""
    base = {
        "type": "track",
        "event": "Logged In",
        "messageId": message_id,
        "userId": "user_1",
        "timestamp": timestamp,
    }
    return base | fields


def build_hour(con, catalog, hour: datetime) -> None:
    """Hierarchy, traits and every audience of `catalog` for one hour (events ingested)."""
    window = (hour, hour + timedelta(hours=1))
    build_snapshots(con, *window, "parent_account_id")
    build_traits(con, catalog, *window)
    for located in catalog.audiences:
        build_audience(con, catalog, located.audience.name, *window)


def strict_json(text: str):
    """JSON as the standard has it: `NaN` and `Infinity`, which Python's reader accepts, are
    an error."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def group_call(mid: str, at: str, account: str, user: str | None, **traits: object) -> dict:
    """A group call of `user` (anonymous when None) for `account` with traits."""
    message = {"type": "group", "messageId": mid, "groupId": account, "timestamp": at}
    message |= {"userId": user} if user else {"anonymousId": "crm-sync"}
    return message | {"traits": traits}


def write_lines(
    path: Path, lines: list[dict | str], *, gz: bool = False, bom: bool = False
) -> Path:
    """Write dicts as JSON and strings verbatim, one per line (after a UTF-8 byte order mark
    with `bom`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((json.dumps(line) if isinstance(line, dict) else line) + "\n" for line in lines)
    data = ("\ufeff" if bom else "").encode() + text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def warehouse_tables(con) -> dict[str, list]:
    """Every table and view of the warehouse except the caches (tiles, day partials), its rows
    sorted (JSON as text), by name."""
    tables = {}
    for (table,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_catalog <> 'temp' "
        "AND table_name NOT LIKE '%tile%' AND table_name NOT LIKE '%partial%' ORDER BY 1"
    ).fetchall():
        columns = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = $t ORDER BY column_name",
            {"t": table},
        ).fetchall()
        names = ", ".join(f'"{name}"::VARCHAR' if kind == "JSON" else f'"{name}"'
                          for name, kind in columns)  # fmt: skip
        tables[table] = con.sql(f"SELECT {names} FROM {table}").order("ALL").fetchall()
    return tables


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()
