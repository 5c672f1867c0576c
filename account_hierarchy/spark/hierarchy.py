"""The hierarchy on the `spark` engine: users, accounts, memberships and the account tree as of
each hour of a window, from the lake's `raw_events`, by the DuckDB engine's code
(`hierarchy/entities.py`, `hierarchy/tree.py`).

Every row of those tables depends on the events of one key only, so Spark spreads the keys
over tasks and each task builds its keys' rows with the DuckDB engine's functions, in a
private in-memory DuckDB:

- users: the events with a userId, partitioned by userId;
- memberships and accounts: the group calls, partitioned by groupId (an account's user count
  needs its memberships, which come from its own group calls);
- the account tree: the accounts' parents, partitioned by snapshot hour.

A typed trait column must have the same type in every task, so the key types are gathered
from every task first (`trait_columns.py`), then handed to all of them. Each task validates
its rows with the table's pandera model; its keys are its own, so the union is valid too.
"""

from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial

import duckdb
import pyarrow as pa
import sqlglot.expressions as exp
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
)

from account_hierarchy.hierarchy.entities import build_accounts, build_memberships, build_users
from account_hierarchy.hierarchy.tables import ACCOUNT_COLUMNS, USER_COLUMNS
from account_hierarchy.hierarchy.tiles import CUSTOM_TRAIT_KEY_TILES, KEY_TYPES_SQL
from account_hierarchy.hierarchy.trait_columns import TYPE_OF_KEYS_SQL, choose_trait_columns
from account_hierarchy.hierarchy.tree import build_hierarchy
from account_hierarchy.spark import lake
from account_hierarchy.spark.session import TASK_THREADS
from account_hierarchy.tile_cache import STALE_HOURS
from account_hierarchy.warehouse import in_memory

HIERARCHY_TABLES = ("account_memberships", "users", "accounts", "account_hierarchy")
SPARK_TYPES: dict[str, DataType] = {
    "VARCHAR": StringType(),
    "JSON": StringType(),
    "BIGINT": LongType(),
    "INTEGER": IntegerType(),
    "DOUBLE": DoubleType(),
    "BOOLEAN": BooleanType(),
    "TIMESTAMP": TimestampNTZType(),
    "VARCHAR[]": ArrayType(StringType()),
}
FIXED_TYPES = {
    "snapshot_hour": "TIMESTAMP",
    "user_id": "VARCHAR",
    "account_id": "VARCHAR",
    "first_seen_at": "TIMESTAMP",
    "last_seen_at": "TIMESTAMP",
    "first_associated_at": "TIMESTAMP",
    "last_associated_at": "TIMESTAMP",
    "user_count": "BIGINT",
    "parent_account_id": "VARCHAR",
    "traits": "JSON",
    "ultimate_parent_id": "VARCHAR",
    "depth": "INTEGER",
    "path": "VARCHAR[]",
    "in_cycle": "BOOLEAN",
    "parent_missing": "BOOLEAN",
}
MEMBERSHIP_COLUMNS = (
    "snapshot_hour",
    "user_id",
    "account_id",
    "first_associated_at",
    "last_associated_at",
)
TREE_COLUMNS = (
    "snapshot_hour",
    "account_id",
    "parent_account_id",
    "ultimate_parent_id",
    "depth",
    "path",
    "in_cycle",
    "parent_missing",
)
# The events' columns the hierarchy reads.
EVENT_COLUMNS = ("message_id", "type", "user_id", "group_id", "timestamp", "traits", "event_hour")
KEY_TILE_SCHEMA = StructType(
    [
        StructField("message_type", StringType()),
        StructField("tile_hour", TimestampNTZType()),
        StructField("key", StringType()),
        StructField("json_types", ArrayType(StringType())),
        StructField("all_timestamps", BooleanType()),
    ]
)


def build_hierarchy_on_spark(
    session: SparkSession,
    start: datetime,
    end: datetime,
    parent_trait: str,
    lake_dir: str | None = None,
) -> dict[str, int]:
    """Write the four hierarchy tables' hours `[start, end)` to the lake; their row counts."""
    events = lake.read(session, "raw_events", lake_dir).select(*EVENT_COLUMNS)
    by_user = events.filter(F.col("user_id").isNotNull()).repartition("user_id").cache()
    by_account = events.filter(F.col("type") == "group").repartition("group_id").cache()
    user_traits, account_traits = _trait_columns(events)
    columns = {
        "users": _columns(USER_COLUMNS, user_traits),
        "account_memberships": _columns(MEMBERSHIP_COLUMNS),
        "accounts": _columns(ACCOUNT_COLUMNS, account_traits),
    }

    def build(frame: DataFrame, table: str, traits: dict[str, str] | None = None) -> DataFrame:
        prepare = partial(_build_entities, table, start, end, parent_trait, traits)
        query, schema = _select(table, columns[table]), _schema(columns[table])
        return _run_in_tasks(frame, prepare, query, schema)

    frames = {
        "account_memberships": build(by_account, "account_memberships"),
        "users": build(by_user, "users", user_traits),
        "accounts": build(by_account, "accounts", account_traits),
    }
    parents = frames["accounts"].select("snapshot_hour", "account_id", "parent_account_id")
    tree_columns = _columns(TREE_COLUMNS)
    frames["account_hierarchy"] = _run_in_tasks(
        parents.repartition("snapshot_hour"),
        partial(_build_tree, start, end),
        _select("account_hierarchy", tree_columns),
        _schema(tree_columns),
    )
    counts = {}
    for table in HIERARCHY_TABLES:
        frame = frames[table].cache()
        lake.write(frame, table, start, end, lake_dir)
        counts[table] = frame.count()
    for frame in (*frames.values(), by_user, by_account):
        frame.unpersist()
    return counts


def _columns(fixed: tuple[str, ...], traits: dict[str, str] | None = None) -> dict[str, str]:
    """A table's columns and their DuckDB types: the fixed ones, then the trait columns."""
    return {name: FIXED_TYPES[name] for name in fixed} | (traits or {})


def _schema(columns: dict[str, str]) -> StructType:
    return StructType([StructField(name, SPARK_TYPES[kind]) for name, kind in columns.items()])


def _run_in_tasks(
    frame: DataFrame,
    prepare: Callable[[duckdb.DuckDBPyConnection, pa.Table], None],
    query: str,
    schema: StructType,
) -> DataFrame:
    """`frame` worked on a partition at a time: each task hands its whole partition to
    `prepare(con, rows)` in a private DuckDB, then returns the rows of `query` there, in
    `schema`."""
    arrow_schema = to_arrow_schema(schema)

    def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        collected = list(batches)
        if not collected:
            return
        with in_memory(TASK_THREADS) as con:
            prepare(con, pa.Table.from_batches(collected))
            result = con.execute(query).to_arrow_table()
        yield from result.cast(arrow_schema).to_batches()

    return frame.mapInArrow(task, schema)


def _trait_columns(events: DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """The typed trait columns of `users` and of `accounts`, from the key types of every
    task's identify and group calls (as the DuckDB engine infers them from its key tiles)."""
    calls = events.filter(F.col("type").isin("identify", "group"))
    tiles = _run_in_tasks(calls, _stage_every_hour, KEY_TYPES_SQL, KEY_TILE_SCHEMA)
    with in_memory() as con:
        con.register("gathered", tiles.toArrow())
        con.execute(f"CREATE TABLE {CUSTOM_TRAIT_KEY_TILES} AS SELECT * FROM gathered")
        users, accounts = (
            choose_trait_columns(con.execute(TYPE_OF_KEYS_SQL, {"type": kind}).fetchall(), fixed)
            for kind, fixed in (("identify", USER_COLUMNS), ("group", ACCOUNT_COLUMNS))
        )
    return users, accounts


def _load_events(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    """The task's events as the private DuckDB's `raw_events` (`traits` typed JSON again)."""
    con.register("task_events", rows)
    con.execute(
        "CREATE TABLE raw_events AS SELECT * REPLACE (traits::JSON AS traits) FROM task_events"
    )


def _stage_every_hour(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    """Load the task's events, every hour of them marked for tiling (`KEY_TYPES_SQL` reads
    those)."""
    _load_events(con, rows)
    con.execute(
        f"CREATE TABLE {STALE_HOURS} AS SELECT DISTINCT event_hour AS tile_hour FROM raw_events"
    )


def _build_entities(
    table: str,
    start: datetime,
    end: datetime,
    parent_trait: str,
    trait_columns: dict[str, str] | None,
    con: duckdb.DuckDBPyConnection,
    rows: pa.Table,
) -> None:
    """Build `table` in the task's DuckDB for the keys of its events."""
    _load_events(con, rows)
    if table == "users":
        build_users(con, start, end, trait_columns)
    else:
        build_memberships(con, start, end)
    if table == "accounts":
        build_accounts(con, start, end, parent_trait, trait_columns)


def _build_tree(
    start: datetime, end: datetime, con: duckdb.DuckDBPyConnection, rows: pa.Table
) -> None:
    """Build `account_hierarchy` in the task's DuckDB from its accounts' parents."""
    con.register("task_accounts", rows)
    con.execute("CREATE TABLE accounts AS SELECT * FROM task_accounts")
    build_hierarchy(con, start, end)


def _select(table: str, columns: dict[str, str]) -> str:
    """A private table's columns in order, JSON as text."""
    selected = [exp.column(name, quoted=True) for name in columns]
    selected = [exp.alias_(exp.cast(column, "VARCHAR"), column.name, quoted=True)
                if kind == "JSON" else column
                for column, kind in zip(selected, columns.values(), strict=True)]  # fmt: skip
    return exp.select(*selected).from_(table).sql("duckdb")
