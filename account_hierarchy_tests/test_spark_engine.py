"""The `spark` engine gives the DuckDB engine's answers: traits, audience memberships and
activation diffs computed from the same definitions on Spark `local[2]` over the lake equal
the warehouse's, row for row and type for type. The sample runs through the Dagster assets on
both engines; the edge cases of the trait and audience tests run through the engines'
functions."""

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from pyspark.errors import AnalysisException

from account_hierarchy import settings
from account_hierarchy.activation.assets import build_diffs_asset
from account_hierarchy.audiences.assets import build_audience_assets
from account_hierarchy.audiences.evaluate import NotComputedError
from account_hierarchy.audiences.memberships import build_audience, member_frame
from account_hierarchy.catalog.loader import Catalog, load_catalog
from account_hierarchy.hierarchy.assets import hierarchy_snapshots
from account_hierarchy.hierarchy.snapshots import build_snapshots
from account_hierarchy.ingest.assets import raw_events
from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.moments import utc_sql
from account_hierarchy.partitions import hours_of
from account_hierarchy.resources import LandingFolder, Warehouse
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.spark import audiences, lake, stages
from account_hierarchy.spark.audiences import build_audience_on_spark
from account_hierarchy.spark.session import register_json_functions, spark_backend, spark_session
from account_hierarchy.spark.traits import INPUTS, build_traits_on_spark
from account_hierarchy.traits.assets import build_trait_assets
from account_hierarchy.traits.compute import build_traits
from account_hierarchy.traits.schemas import validate_trait_rows
from account_hierarchy.traits.sql_traits import SqlTraitError
from account_hierarchy.validation import FrameValidationError
from account_hierarchy.warehouse import EngineMismatchError, connect, in_memory
from account_hierarchy_tests import test_audiences as audience_cases
from account_hierarchy_tests import test_traits as trait_cases
from account_hierarchy_tests.conftest import (
    PARTITIONS_START,
    group_call,
    needs_java,
    warehouse_tables,
    write_lines,
)

START, END = datetime(2026, 10, 1, 20), datetime(2026, 10, 1, 22)
HISTORY_START = datetime(2000, 1, 1)
SAMPLE_DEFINITIONS = Path(__file__).parent.parent / "data" / "definitions"
# The warehouse stores reasons as JSON, the lake as their text.
MEMBERSHIP_COLUMNS = "snapshot_hour, audience, entity_type, entity_id, reason::VARCHAR AS reason"
DIFF_COLUMNS = ("snapshot_hour, kind, name, entity_type, entity_id, change, "
                "old_value::VARCHAR AS old_value, new_value::VARCHAR AS new_value")  # fmt: skip


@dataclass
class Engines:
    warehouse: Path  # the duckdb engine's
    lake_dir: str  # the spark engine's
    catalog: Catalog
    tables: dict[str, dict[str, list]]  # by engine: every warehouse table's rows
    kinds: dict[str, set[str]]  # by engine: the kinds of the trait assets


pytestmark = needs_java


@pytest.fixture(scope="module")
def spark():
    return spark_session("local[2]")


def both_engines(warehouse: Path, lake_dir: str, table: str, columns: str = "*"):
    """A table's rows in the lake (Spark) and in the warehouse (DuckDB), for the hours in the
    lake: (column names, types, sorted rows) of each."""
    with connect(warehouse, read_only=True) as con:
        on_spark = lake.read_with_duckdb(con, table, lake_dir).select(columns)
        hours = [hour for (hour,) in on_spark.select("snapshot_hour").distinct().fetchall()]
        names = ", ".join(f'"{c}"' for c in lake.read_with_duckdb(con, table, lake_dir).columns)
        on_duckdb = con.sql(
            f"SELECT {names} FROM {table} WHERE list_contains($hours, snapshot_hour)",
            params={"hours": hours},
        ).select(columns)
        return [(r.columns, r.types, [tuple(map(_comparable, row))
                                      for row in r.order("ALL").fetchall()])
                for r in (on_spark, on_duckdb)]  # fmt: skip


def _comparable(value: object) -> object:
    """A value to compare with `==`: NaN (never equal to itself) as the text `NaN`."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return [_comparable(item) for item in value] if isinstance(value, list) else value


@pytest.fixture(scope="module")
def engines(tmp_path_factory, spark):
    """The sample through the Dagster assets, once with `AH_ENGINE=duckdb` and once with
    `AH_ENGINE=spark`: events and the hierarchy for its day, then two hours of traits,
    audiences and diffs. Each engine's warehouse tables, the asset kinds it declared, and where
    the warehouses and the Spark engine's lake are."""
    root = tmp_path_factory.mktemp("engines")
    generate_sample(root / "landing", seed=11, accounts=30, users=200, days=1)
    catalog = load_catalog(SAMPLE_DEFINITIONS)
    day = {"dagster/asset_partition_range_start": "2026-10-01-00:00",
           "dagster/asset_partition_range_end": "2026-10-01-23:00"}  # fmt: skip
    last = {"dagster/asset_partition_range_start": START.strftime("%Y-%m-%d-%H:%M"),
            "dagster/asset_partition_range_end": (END - timedelta(hours=1)).strftime(
                "%Y-%m-%d-%H:%M")}  # fmt: skip
    tables, kinds = {}, {}
    for engine in ("duckdb", "spark"):
        with pytest.MonkeyPatch.context() as env:
            env.setenv(settings.ENGINE_ENV, engine)
            env.setenv(settings.LAKE_DIR_ENV, str(root / f"lake_{engine}"))
            resources = {
                "warehouse": Warehouse(database=str(root / f"{engine}.duckdb")),
                "landing": LandingFolder(path=str(root / "landing")),
            }
            later = [build_trait_assets(catalog), *build_audience_assets(catalog),
                     build_diffs_asset(catalog)]  # fmt: skip
            kinds[engine] = later[0].specs_by_key[dg.AssetKey("user_traits")].kinds
            assert dg.materialize([raw_events, hierarchy_snapshots], resources=resources,
                                  tags=day).success  # fmt: skip
            assert dg.materialize(later, resources=resources, tags=last).success
        with connect(root / f"{engine}.duckdb", read_only=True) as con:
            tables[engine] = warehouse_tables(con)
    return Engines(root / "duckdb.duckdb", str(root / "lake_spark"), catalog, tables, kinds)


# List traits of numbers and of text, tested with `contains` (a text operand for numbers:
# DuckDB casts it; Spark compares no text to numbers).
LIST_TRAITS = {
    "traits": [{"name": "depths", "entity": "user", "type": "sql", "many": True,
                "sql": "SELECT m.user_id, h.depth AS depths FROM account_memberships AS m "
                       "JOIN account_hierarchy AS h USING (account_id)"},
               {"name": "account_ids", "entity": "user", "type": "sql", "many": True,
                "sql": "SELECT user_id, account_id AS account_ids FROM account_memberships"},
               {"name": "only_nulls", "entity": "user", "type": "sql", "many": True,
                "sql": "SELECT user_id, CAST(NULL AS VARCHAR) AS only_nulls FROM users"}],
    "audiences": [{"name": "at_depth_zero", "entity": "user",
                   "where": {"trait": "depths", "contains": "0"}},
                  {"name": "at_depth_x", "entity": "user",
                   "where": {"trait": "depths", "contains": "x"}},
                  {"name": "of_full", "entity": "user",
                   "where": {"trait": "account_ids", "contains": "FULL"}}],
}  # fmt: skip
# Typed SQL trait values every leaf of one audience tests (all accounts are members, so that
# the reasons show each leaf): NaN is no null, a number no time, an offset is converted, an
# untyped NULL is stored, a big integer beside nulls stays exact, and a list's NaN is null.
TYPED_SQL = {
    "traits": [{"name": "nan_value", "entity": "account", "type": "sql",
                "sql": "SELECT account_id, 'nan'::DOUBLE AS nan_value, 2001 AS year, "
                       "('2026-10-01 11:30:00+02'::TIMESTAMPTZ)::TIMESTAMP AS moved, "
                       "NULL AS nothing, ['nan'::DOUBLE, 1] AS nan_list, CASE WHEN account_id = "
                       "(SELECT min(account_id) FROM accounts) THEN 9007199254740993 END AS big, "
                       "[1, 2][5] AS past_the_end FROM accounts"},
               {"name": "cased", "entity": "account", "type": "sql",  # (names in any case)
                "sql": "WITH Active AS (FROM accounts) SELECT ACCOUNT_ID, 1 AS CASED FROM active"},
               # (functions Spark has namesakes of that mean other things)
               {"name": "first_track", "entity": "user", "type": "sql",
                "sql": "SELECT user_id, arg_min(CASE WHEN type = 'track' THEN event END, "
                       "message_id) AS first_track, arg_max(CASE WHEN type = 'track' THEN event "
                       "END, message_id) AS last_track, epoch(max(timestamp)) AS last_epoch, "
                       "max(extract(epoch FROM timestamp + INTERVAL 250 MILLISECOND)) AS late, "
                       "max(extract(hour FROM timestamp)) AS last_hour, "
                       "epoch(max(timestamp) - min(timestamp)) AS span, 1000 / (1 + "
                       "epoch(max(timestamp) - min(timestamp))) AS rate, "
                       "date_part('epoch', max(timestamp)) AS part_epoch, "
                       "date_part('hour', max(timestamp)) AS part_hour FROM events "
                       "GROUP BY user_id"}],
    "audiences": [{"name": "typed_sql_values", "entity": "account", "where": {"or": [
        {"trait": "nothing", "is_null": True}, {"trait": "nan_value", "is_null": True},
        {"trait": "nan_value", "exists": True}, {"trait": "nan_value", "not_equals": 7},
        {"trait": "year", "not_within_last": "1 days"}, {"trait": "big", "gt": 0},
        {"trait": "moved", "within_last": "1 hours"}, {"trait": "nan_list", "contains": 1}]}}],
}  # fmt: skip


def one_audience_of_leaves(audiences: list[dict]) -> list[dict]:
    """The account audiences as one (each Spark audience is a job): every account is a member,
    and its reason says whether each of their conditions held; the user audiences as they are."""
    conditions = [audience["where"] for audience in audiences if audience["entity"] == "account"]
    always = {"custom_trait": "a key never sent", "is_null": True}
    combined = {
        "name": "account_leaves",
        "entity": "account",
        "where": {"or": [always, *conditions]},
    }
    return [combined, *(audience for audience in audiences if audience["entity"] == "user")]


def traits_on_both_engines(con, spark, catalog: Catalog, start, end, lake_dir: str) -> None:
    """The snapshots and traits of `[start, end)` in the warehouse, then the inputs of the
    traits copied into the lake (every event before `end`) and the traits on Spark."""
    build_snapshots(con, start, end, "parent_account_id")
    build_traits(con, catalog, start, end)
    for table in INPUTS:
        since = HISTORY_START if table == "raw_events" else start
        lake.export_from_warehouse(con, table, since, end, lake_dir)
    build_traits_on_spark(spark, catalog, start, end, lake_dir)


@pytest.fixture(scope="module")
def edge_cases(tmp_path_factory, spark):
    """The edge cases of the trait and audience tests (numeric strings, nested and missing
    properties, windows, context attribution of traits and of `performed`, child roll-ups,
    quantifiers, custom traits of mixed types, odd keys and times with offsets) on both
    engines."""
    root = tmp_path_factory.mktemp("edge_engines")
    # (each file's messageIds made its own: the tests' files reuse `g1`, ...)
    for name, events in (("traits", trait_cases.EDGE_EVENTS),
                         ("audiences", audience_cases.EDGE_EVENTS),
                         ("typed", audience_cases.TYPED_EVENTS),
                         ("context", audience_cases.CONTEXT_EVENTS)):  # fmt: skip
        write_lines(root / "landing" / f"{name}.ndjson",
                    [e | {"messageId": f"{name}-{e['messageId']}"} for e in events])  # fmt: skip
    (root / "definitions").mkdir()
    audiences, typed = audience_cases.EDGE_DEFINITIONS, audience_cases.TYPED_DEFINITIONS
    definitions = {"traits": trait_cases.EDGE_TRAITS + audiences["traits"] + typed["traits"]
                             + LIST_TRAITS["traits"] + TYPED_SQL["traits"],
                   "audiences": audiences["audiences"] + one_audience_of_leaves(typed["audiences"])
                                + LIST_TRAITS["audiences"] + TYPED_SQL["audiences"]
                                + audience_cases.CONTEXT_AUDIENCES}  # fmt: skip
    (root / "definitions" / "defs.yaml").write_text(yaml.safe_dump(definitions))
    catalog = load_catalog(root / "definitions")
    # The hours of the edge tests: one on 2026-09-25, then four in a row (one window).
    hours = sorted({*trait_cases.EDGE_HOURS, audience_cases.EDGE_HOUR, datetime(2026, 10, 1, 8)})
    one_hour = timedelta(hours=1)
    windows = [(hours[0], hours[0] + one_hour), (hours[1], hours[-1] + one_hour)]
    assert hours[1:] == hours_of(*windows[1]) and audience_cases.EDGE_HOUR in hours[1:]
    lake_dir = str(root / "lake")
    with connect(root / "wh.duckdb") as con:
        ingest_window(con, root / "landing", datetime(2026, 9, 1), datetime(2026, 10, 2),
                      PARTITIONS_START)  # fmt: skip
        assert con.execute("SELECT count(*) FROM duplicate_lines").fetchone() == (0,)
        for start, end in windows:
            traits_on_both_engines(con, spark, catalog, start, end, lake_dir)
        # The audiences' cases are all at one hour: each audience runs for that hour only.
        edge_hour = (audience_cases.EDGE_HOUR, audience_cases.EDGE_HOUR + one_hour)
        for located in catalog.audiences:
            build_audience(con, catalog, located.audience.name, *edge_hour)
            build_audience_on_spark(spark, catalog, located.audience.name, *edge_hour, lake_dir)
    return root / "wh.duckdb", lake_dir, catalog


@pytest.mark.parametrize("table", ["account_traits", "user_traits"])
def test_traits_are_identical_on_both_engines(engines, table):
    catalog = engines.catalog
    on_spark, on_duckdb = both_engines(engines.warehouse, engines.lake_dir, table)
    entity = table.removesuffix("_traits")
    assert set(on_spark[0]) == {"snapshot_hour", f"{entity}_id", *catalog.trait_columns(entity)}
    assert {row[0] for row in on_spark[2]} == {START + timedelta(hours=h) for h in range(2)}
    assert on_spark == on_duckdb


def test_audience_memberships_are_identical_on_both_engines(engines):
    on_spark, on_duckdb = both_engines(engines.warehouse, engines.lake_dir,
                                       "audience_memberships", MEMBERSHIP_COLUMNS)  # fmt: skip
    audiences = len(engines.catalog.audiences)
    assert len({row[1] for row in on_spark[2]}) >= audiences - 2  # some are empty
    assert on_spark == on_duckdb


def test_activation_diffs_are_identical_on_both_engines(engines):
    on_spark, on_duckdb = both_engines(engines.warehouse, engines.lake_dir, "activation_diffs",
                                       DIFF_COLUMNS)  # fmt: skip
    assert {(row[1], row[5]) for row in on_spark[2]} >= {("audience", "entered"),
                                                       ("trait", "changed")}  # fmt: skip
    assert on_spark == on_duckdb


@pytest.mark.parametrize("table", ["account_traits", "user_traits", "audience_memberships"])
def test_edge_cases_are_identical_on_both_engines(edge_cases, table):
    warehouse, lake_dir, _ = edge_cases
    columns = MEMBERSHIP_COLUMNS if table == "audience_memberships" else "*"
    on_spark, on_duckdb = both_engines(warehouse, lake_dir, table, columns)
    assert len(on_spark[2]) > 0
    assert on_spark == on_duckdb
    if table == "audience_memberships":
        audiences = {row[1] for row in on_spark[2]}
        assert "at_depth_zero" in audiences and "at_depth_x" not in audiences
        context = {(row[1], row[3]) for row in on_spark[2]
                   if row[1].startswith("ctx_") and row[3] in ("CA", "CB", "CC", "CD")}  # fmt: skip
        assert context == {("ctx_any", "CA"), ("ctx_strict", "CA"), ("ctx_strict", "CB"),
                           ("ctx_all", "CB"), ("ctx_none", "CC"), ("ctx_none", "CD"),
                           ("ctx_rare", "CA"), ("ctx_rare", "CC")}  # fmt: skip
        leaves = [json.loads(row[4])["conditions"] for row in on_spark[2]
                  if row[1] == "account_leaves"]  # fmt: skip
        assert {len(conditions) for conditions in leaves} == {27}
        assert {leaf["held"] for conditions in leaves for leaf in conditions[1:]} == {True, False}
        typed = [json.loads(row[4]) for row in on_spark[2] if row[1] == "typed_sql_values"]
        held = {
            (leaf["condition"], leaf["held"]) for reason in typed for leaf in reason["conditions"]
        }
        assert held >= {
            ("nan_value is null", False),
            ("nan_value exists", True),
            ("nan_value != 7", True),
            ("year not within the last 1 days", False),
            ("moved within the last 1 hours", True),
            ("nan_list contains 1", True),
        }
        values = {leaf["condition"]: leaf["value"] for leaf in typed[0]["conditions"]}
        assert values["big > 0"] == 9007199254740993 and values["nan_list contains 1"] == [None, 1]


def test_the_lake_holds_one_folder_per_hour(engines):
    traits = Path(lake.location("account_traits", engines.lake_dir))
    folders = sorted(p.name for p in traits.iterdir())
    assert folders == ["hour=2026-10-01T20", "hour=2026-10-01T21"]


def test_rewriting_an_hour_replaces_its_rows(engines, spark):
    build_traits_on_spark(spark, engines.catalog, END - timedelta(hours=1), END, engines.lake_dir)
    on_spark, on_duckdb = both_engines(engines.warehouse, engines.lake_dir, "user_traits")
    assert on_spark == on_duckdb and {row[0] for row in on_spark[2]} == set(hours_of(START, END))


def test_spark_rows_are_validated_with_pandera(engines, spark):
    catalog = engines.catalog
    rows = lake.read(spark, "user_traits", engines.lake_dir)
    rows.unionByName(rows.limit(1)).createOrReplaceTempView("doubled_user_traits")
    with pytest.raises(FrameValidationError, match="one row per snapshot_hour, user_id"):
        validate_trait_rows(spark_backend(spark).table("doubled_user_traits"), "user", catalog)


def test_spark_memberships_are_validated_before_they_are_written(engines, spark, monkeypatch):
    """An audience's rows are validated on the driver, where Spark collected them: rows that
    break a rule fail the run and leave the lake's rows as they were."""

    def written() -> list:
        with connect(engines.warehouse, read_only=True) as con:
            rows = lake.read_with_duckdb(con, "audience_memberships", engines.lake_dir)
            return rows.select(MEMBERSHIP_COLUMNS).order("ALL").fetchall()

    def doubled(evaluated, rows: pd.DataFrame, hour: datetime) -> pd.DataFrame:
        return pd.concat([member_frame(evaluated, rows, hour)] * 2)

    before = written()
    monkeypatch.setattr(audiences, "member_frame", doubled)
    with pytest.raises(FrameValidationError, match="one row per snapshot_hour, audience"):
        build_audience_on_spark(spark, engines.catalog, "software_industry", START, END,
                                engines.lake_dir)  # fmt: skip
    assert written() == before and any(row[1] == "software_industry" for row in before)


def test_a_local_session_keeps_its_catalog_out_of_the_working_directory(spark):
    register_json_functions(spark)
    catalog_folder = spark.conf.get("spark.sql.warehouse.dir").removeprefix("file:")
    assert not Path(catalog_folder).resolve().is_relative_to(Path.cwd())
    assert not (Path.cwd() / "spark-warehouse").exists()


def test_engine_setting(monkeypatch):
    monkeypatch.delenv(settings.ENGINE_ENV, raising=False)
    assert settings.engine() == "duckdb"
    monkeypatch.setenv(settings.ENGINE_ENV, "Spark")
    assert settings.engine() == "spark"
    monkeypatch.setenv(settings.ENGINE_ENV, "flink")
    with pytest.raises(ValueError, match="AH_ENGINE='flink'"):
        settings.engine()


def test_the_dagster_assets_on_spark_write_what_duckdb_writes(engines):
    """Every warehouse table the same (Spark's as views over the lake, their columns in the
    same order), and the lake readable; the duckdb engine writes no lake."""
    tables = engines.tables
    orders = {path: column_order(path) for path in (engines.warehouse.parent / "spark.duckdb",
                                                    engines.warehouse)}  # fmt: skip
    spark_order, duckdb_order = ({table: order[table] for table in tables["duckdb"]}
                                 for order in orders.values())  # fmt: skip
    assert spark_order == duckdb_order
    assert engines.kinds == {"duckdb": {"duckdb"}, "spark": {"spark"}}
    assert not (engines.warehouse.parent / "lake_duckdb").exists()
    assert set(tables["spark"]) == set(tables["duckdb"])
    for table in ("account_traits", "user_traits", "audience_memberships", "activation_diffs"):
        assert tables["spark"][table], table
    for table, rows in tables["duckdb"].items():
        assert tables["spark"][table] == rows, table
    published = ("raw_events", "quarantined_lines", "duplicate_lines", "account_hierarchy")
    with connect(engines.warehouse, read_only=True) as con:
        for table in published:
            found = lake.read_with_duckdb(con, table, engines.lake_dir).aggregate("count(*)")
            assert found.fetchone()[0] == len(tables["duckdb"][table]) > 0, table


def column_order(warehouse: Path) -> dict[str, list[str]]:
    """Each table's (view's) column names, in their order."""
    with connect(warehouse, read_only=True) as con:
        return dict(con.execute(
            "SELECT table_name, list(column_name ORDER BY ordinal_position) "
            "FROM information_schema.columns WHERE table_schema = 'main' GROUP BY 1"
        ).fetchall())  # fmt: skip


def test_a_window_without_rows_leaves_a_readable_table(spark, tmp_path):
    """An audience without members still gives the warehouse a view with its columns."""
    lake_dir = str(tmp_path / "lake")
    empty = spark.sql(
        "SELECT TIMESTAMP_NTZ'2026-10-01 10:00:00' AS snapshot_hour, 'x' AS entity_id"
    )
    lake.write(empty.limit(0), "audience_memberships", START, END, lake_dir, {"audience": "none"})
    with connect(tmp_path / "wh.duckdb") as con:
        lake.attach_views(con, ["audience_memberships"], lake_dir)
        view = con.sql("SELECT * FROM audience_memberships")
        assert (view.columns, view.fetchall()) == (["snapshot_hour", "entity_id", "audience"], [])
    assert lake.read(spark, "audience_memberships", lake_dir).count() == 0


def test_a_window_without_rows_copied_from_the_warehouse_is_a_readable_table(spark, tmp_path):
    """A warehouse history without accounts yet, copied into the lake, still gives Spark a
    table with the columns (an empty folder is no table Spark can read)."""
    lake_dir = str(tmp_path / "lake")
    with connect(tmp_path / "wh.duckdb") as con:
        con.execute("CREATE TABLE accounts (snapshot_hour TIMESTAMP, account_id VARCHAR)")
        assert lake.export_from_warehouse(con, "accounts", START, END, lake_dir) == 0
    frame = lake.read(spark, "accounts", lake_dir)
    assert (frame.columns, frame.count()) == (["snapshot_hour", "account_id"], 0)


def test_a_view_is_made_again_only_when_its_files_change(spark, tmp_path, monkeypatch):
    lake_dir, hour = str(tmp_path / "lake"), timedelta(hours=1)

    def write_account(at: datetime, account: str) -> None:
        row = spark.sql(f"SELECT TIMESTAMP_NTZ'{at}' AS snapshot_hour, '{account}' AS account_id")
        lake.write(row, "accounts", at, at + hour, lake_dir)

    reads, read = [], lake.read
    monkeypatch.setattr(lake, "read", lambda *args: reads.append(args) or read(*args))
    write_account(START, "a")
    lake.register(spark, ["accounts"], lake_dir)
    lake.register(spark, ["accounts"], lake_dir)
    assert len(reads) == 1
    write_account(START + hour, "b")
    lake.register(spark, ["accounts"], lake_dir)
    assert len(reads) == 2 and spark.table("accounts").count() == 2


def accounts_of(spark, at: datetime, *columns: str):
    """One account row at `at`, with `columns` (text) as well."""
    extra = "".join(f", '{column} value' AS {column}" for column in columns)
    return spark.sql(f"SELECT TIMESTAMP_NTZ'{at}' AS snapshot_hour, 'a' AS account_id{extra}")


def test_a_lake_table_has_the_columns_added_since_older_hours(spark, tmp_path):
    """A trait added later is a column of the table, null in the hours written before."""
    lake_dir, hour = str(tmp_path / "lake"), timedelta(hours=1)
    lake.write(accounts_of(spark, START, "plan"), "accounts", START, START + hour, lake_dir)
    lake.write(accounts_of(spark, END, "plan", "added"), "accounts", END, END + hour, lake_dir)
    rows = lake.read(spark, "accounts", lake_dir).orderBy("snapshot_hour").collect()
    assert [(row.plan, row.added) for row in rows] == [("plan value", None),
                                                       ("plan value", "added value")]  # fmt: skip


def test_an_hour_left_without_rows_holds_none_in_an_object_store_lake(spark, tmp_path):
    """Written again, a window's hours that have no rows any more lose their old rows in a
    lake given as a URI (as in an object store) too."""
    hour = timedelta(hours=1)
    for lake_dir in (str(tmp_path / "local"), f"file://{tmp_path}/uri"):
        both = accounts_of(spark, START).unionByName(accounts_of(spark, START + hour))
        lake.write(both, "accounts", START, END, lake_dir)
        lake.write(accounts_of(spark, START), "accounts", START, END, lake_dir)
        hours = [row.snapshot_hour for row in lake.read(spark, "accounts", lake_dir).collect()]
        assert hours == [START], lake_dir


def test_the_lake_folders_named_like_partitions_are_no_columns(spark, tmp_path):
    lake_dir = str(tmp_path / "env=prod" / "lake")
    lake.write(accounts_of(spark, START), "accounts", START, END, lake_dir)
    with connect(tmp_path / "wh.duckdb") as con:
        lake.attach_views(con, ["accounts"], lake_dir)
        assert con.sql("FROM accounts").columns == ["snapshot_hour", "account_id"]


def test_a_table_not_written_yet_gets_no_view(spark, tmp_path):
    """On a fresh lake an audience that reads no trait may run before the traits: registering
    its inputs passes over the trait tables, and a view left from another lake goes."""
    lake_dir = str(tmp_path / "lake")
    spark.sql("SELECT 1 AS x").createOrReplaceTempView("user_traits")
    lake.register(spark, ["user_traits"], lake_dir)
    assert not spark.catalog.tableExists("user_traits")
    with pytest.raises(AnalysisException, match="user_traits"):
        spark.table("user_traits")


def test_a_warehouse_of_the_duckdb_engine_is_refused_before_spark_starts(tmp_path, monkeypatch):
    """Its tables are not replaced by views, and the step fails at once, not retried, before
    anything is written to the lake."""
    with connect(tmp_path / "wh.duckdb") as con:
        con.execute("CREATE TABLE account_traits (snapshot_hour TIMESTAMP)")
        with pytest.raises(EngineMismatchError, match="made by the duckdb engine"):
            lake.attach_views(con, ["account_traits"], str(tmp_path / "lake"))
    write_lines(
        tmp_path / "landing" / "a.ndjson", [group_call("g1", "2026-10-01T10:00:00Z", "A", "u")]
    )
    resources = {"warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
                 "landing": LandingFolder(path=str(tmp_path / "landing"))}  # fmt: skip
    hour = "2026-10-01-10:00"
    assert dg.materialize([raw_events], resources=resources, partition_key=hour).success
    monkeypatch.setenv(settings.ENGINE_ENV, "spark")
    monkeypatch.setenv(settings.LAKE_DIR_ENV, str(tmp_path / "lake"))
    result = dg.materialize(
        [raw_events], resources=resources, partition_key=hour, raise_on_error=False
    )
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in [e.event_type for e in result.all_events]
    (failure,) = result.get_step_failure_events()
    assert ("the warehouse holds tables duplicate_lines, quarantined_lines, raw_events made by "
            "the duckdb engine") in failure.step_failure_data.error.message  # fmt: skip
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT user_id, list(type ORDER BY timestamp) AS calls FROM events GROUP BY user_id",
        "SELECT user_id, traits ->> ' plan' AS calls FROM users",
    ],
)
def test_a_sql_trait_spark_cannot_run_fails_naming_the_trait(tmp_path: Path, spark, sql):
    """DuckDB SQL with no Spark equivalent (an ordered aggregate, a JSON key Spark reads
    otherwise) fails the trait stage naming the trait's file and line, as a failing query does
    on DuckDB, not with Spark's bare error."""
    write_lines(tmp_path / "landing" / "a.ndjson",
                [group_call("g1", "2026-10-01T10:00:00Z", "A", "u1")])  # fmt: skip
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump({"traits": [
        {"name": "calls", "entity": "user", "type": "sql", "sql": sql}]}))  # fmt: skip
    catalog = load_catalog(tmp_path / "defs")
    start, end = datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", start, end, PARTITIONS_START)
        build_snapshots(con, start, end, "parent_account_id")
        for table in INPUTS:
            lake.export_from_warehouse(con, table, HISTORY_START, end, str(tmp_path / "lake"))
    with pytest.raises(SqlTraitError, match=r"d.yaml:2: SQL trait calls failed on Spark at "):
        build_traits_on_spark(spark, catalog, start, end, str(tmp_path / "lake"))


def test_numbers_in_text_are_read_alike_on_both_engines(tmp_path: Path, spark):
    """A property or custom trait padded with ASCII white space (`"\\t7\\n"`) reads as a
    number on both engines, one followed by a Unicode line separator on neither (Java's `$`
    matches before it); a list holds a number only outside its strings (`"a,7,b"`, one with
    12,000 escaped quotes, which Java's regular expressions may not recurse through)."""
    scores = {"u1": "\t7\n", "u2": " 7 ", "u3": "7\r", "u4": "7\u2028"}
    tags = {"u1": ["a,7,b"], "u2": [7, "a"], "u3": ['x",7,"' + '"' * 12_000], "u4": ["7.0"]}
    write_lines(tmp_path / "landing" / "a.ndjson", [
        {"type": "group", "userId": "u1", "groupId": "acc", "messageId": "g1",
         "timestamp": "2026-10-01T10:00:30Z"},
        *({"type": "track", "userId": user, "event": "NPS", "messageId": f"m{user}",
           "timestamp": "2026-10-01T10:02:00Z", "properties": {"score": score}}
          for user, score in scores.items()),
        *({"type": "identify", "userId": user, "messageId": f"i{user}",
           "timestamp": "2026-10-01T10:03:00Z", "traits": {"score": score, "tags": tags[user]}}
          for user, score in scores.items()),
    ])  # fmt: skip
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump({
        "traits": [{"name": "nps_sum", "entity": "user", "type": "aggregation",
                    "function": "sum", "event_type": "track", "event": "NPS",
                    "property": "score"}],
        "audiences": [{"name": "promoters", "entity": "user", "where": {"or": [
            {"performed": "NPS", "where": [{"property": "score", "gte": 7}]},
            {"custom_trait": "score", "equals": 7}]}},
            {"name": "tagged_7", "entity": "user",
             "where": {"custom_trait": "tags", "contains": 7}}],
    }))  # fmt: skip
    catalog = load_catalog(tmp_path / "defs")
    start, end = datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11)
    lake_dir = str(tmp_path / "lake")
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", start, end, PARTITIONS_START)
        traits_on_both_engines(con, spark, catalog, start, end, lake_dir)
        query = "SELECT user_id, nps_sum FROM user_traits ORDER BY 1"
        on_duckdb = con.sql(query).fetchall()
        on_spark = lake.read_with_duckdb(con, "user_traits", lake_dir).select(
            "user_id, nps_sum").order("1").fetchall()  # fmt: skip
        assert on_duckdb == [("u1", 7.0), ("u2", 7.0), ("u3", 7.0), ("u4", 0.0)]
        assert on_spark == on_duckdb
        expected = {"promoters": {"u1", "u2", "u3"}, "tagged_7": {"u2", "u4"}}  # (u4: as text)
        for audience, members in expected.items():
            build_audience(con, catalog, audience, start, end)
            _, on_spark = build_audience_on_spark(spark, catalog, audience, start, end, lake_dir)
            stored = con.execute(
                "SELECT entity_id FROM audience_memberships WHERE audience = $a", {"a": audience}
            ).fetchall()
            assert {entity_id for (entity_id,) in stored} == on_spark == members, audience


def test_a_sql_trait_reads_a_json_key_as_duckdb_does_on_both_engines(tmp_path: Path, spark):
    """`->> 'utm.source'` reads the key `utm.source` (text starting with neither `$` nor `/`
    is one key on DuckDB), not the path `$.utm.source`; `'$.utm.source'` is that path. `->`
    in a function's arguments reads JSON too (sqlglot reads it as a lambda)."""
    traits = {"utm.source": "flat", "utm": {"source": "nested"}, "a:b": 1, "é.x": 2, "[0]": 3,
              "tags": ["x", "y"]}  # fmt: skip
    write_lines(tmp_path / "landing" / "a.ndjson", [
        {"type": "identify", "userId": "u1", "messageId": "i1",
         "timestamp": "2026-10-01T10:03:00Z", "traits": traits}])  # fmt: skip
    (tmp_path / "defs").mkdir()
    sql = ("SELECT user_id, traits ->> 'utm.source' AS flat, traits ->> '$.utm.source' AS nested, "
           "json_extract_string(traits, 'a:b') AS colon, traits ->> 'é.x' AS accented, "
           "traits ->> '[0]' AS bracket, json_array_length(traits -> 'tags') AS tag_count, "
           "coalesce(traits -> 'utm' ->> 'source', 'none') AS in_function FROM users")  # fmt: skip
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump(
        {"traits": [{"name": "flat", "entity": "user", "type": "sql", "sql": sql}]}))  # fmt: skip
    catalog = load_catalog(tmp_path / "defs")
    start, end = datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11)
    lake_dir = str(tmp_path / "lake")
    columns = "user_id, flat, nested, colon, accented, bracket, tag_count, in_function"
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", start, end, PARTITIONS_START)
        traits_on_both_engines(con, spark, catalog, start, end, lake_dir)
        on_duckdb = con.sql(f"SELECT {columns} FROM user_traits").fetchall()
        on_spark = lake.read_with_duckdb(con, "user_traits", lake_dir).select(columns).fetchall()
    assert on_duckdb == on_spark == [("u1", "flat", "nested", "1", "2", "3", 2, "nested")]


def test_definitions_cannot_read_settings_or_the_environment_on_spark(tmp_path: Path, spark):
    """Spark replaces `${env:NAME}`, `${system:name}` and `${spark.key}` in SQL text, inside
    string literals too, unless told not to: a SQL trait or an event name would read them."""
    substituted = "${env:PATH}|${system:user.home}|${spark.sql.session.timeZone}"
    write_lines(tmp_path / "landing" / "a.ndjson", [
        group_call("g1", "2026-10-01T10:00:00Z", "A", "u1"),
        {"type": "track", "userId": "u1", "event": "UTC", "messageId": "t1",
         "timestamp": "2026-10-01T10:01:00Z"}])  # fmt: skip
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "d.yaml").write_text(yaml.safe_dump({"traits": [
        {"name": "text", "entity": "user", "type": "sql",
         "sql": f"SELECT user_id, '{substituted}' AS text FROM users"},
        {"name": "utc_events", "entity": "user", "type": "event_counter",
         "event": "${spark.sql.session.timeZone}"}]}))  # fmt: skip
    catalog = load_catalog(tmp_path / "defs")
    start, end = datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11)
    lake_dir = str(tmp_path / "lake")
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", start, end, PARTITIONS_START)
        traits_on_both_engines(con, spark, catalog, start, end, lake_dir)
        on_duckdb = con.sql("SELECT user_id, text, utc_events FROM user_traits").fetchall()
        on_spark = lake.read_with_duckdb(con, "user_traits", lake_dir).select(
            "user_id, text, utc_events").fetchall()  # fmt: skip
    assert on_duckdb == on_spark == [("u1", substituted, 0)]


def test_spark_reads_the_moments_duckdb_reads(spark):
    """Text times as the warehouse reads them (`moments.utc_sql`): slashes, white space repeated,
    the hour 24, offsets, lower-case `t` and `z`, times to the minute, leap seconds, and text
    that is no moment (offsets RFC 3339 refuses)."""
    texts = ["2026/10/01 09:30:00", "2026/10/01", "2026/9/3", "2026-10-01  09:30:00",
             "2026-09-30T24:00:00Z", "2026-09-30 24:00:00", "2026-09-30T24:00:00+02:00",
             "2026-09-30T24:00Z", "2026-09-30T24:00:00.000Z", "2026-09-30T24:30:00Z",
             "2026/10/01T09:30:00+02:00", "2026-10-01  09:30:00+02:00", "2026-10-01t09:30z",
             "2026-10-01T09:30:00Z", " 2026-10-01 09:30:00 ", "2001", "soon",
             "2026-13-01", "2026-10-01\t09:30:00", "2026-10-01 \t\f09:30:00+02:00",
             "2026-10-01\r\n09:30:00 America/New_York", "2026-10-01\v09:30",
             "2026-10-01T\t09:30:00", "2016-12-31T23:59:60Z", "2016-12-31 23:59:60.5",
             "2016-12-31T23:59:60+01:00", "2026-10-01T09:30:00+99:99",
             "2026-10-01T09:30:00+14:00", "2026-10-01T09:30:00+00:75",
             "2026-10-01T09:30:00+05:30:60"]  # fmt: skip
    with in_memory() as con:
        expected = [con.execute(f"SELECT {utc_sql('$t')}", {"t": text}).fetchone()[0]
                    for text in texts]  # fmt: skip
    register_json_functions(spark)
    frame = spark.createDataFrame([(text,) for text in texts], "text STRING")
    read = [row[0] for row in frame.selectExpr("utc_moment(text)").collect()]
    assert dict(zip(texts, read, strict=True)) == dict(zip(texts, expected, strict=True))
    assert expected[4] == datetime(2026, 10, 1) and expected[6] == datetime(2026, 9, 30, 22)
    assert expected[-7:] == [datetime(2017, 1, 1), datetime(2017, 1, 1, 0, 0, 0, 500000),
                             datetime(2016, 12, 31, 23), None, datetime(2026, 9, 30, 19, 30),
                             None, None]  # fmt: skip


def test_a_spark_audience_refuses_the_hours_of_an_edited_trait(tmp_path, monkeypatch):
    """The lake has no `trait_hours`: the Spark stage checks the warehouse's before Spark
    runs, so an audience refuses the hours a trait was computed for by another definition,
    as with the DuckDB engine."""
    nps = trait_cases.track("n1", "2026-10-01T10:10:00Z", "u1", "NPS", score=3)
    write_lines(tmp_path / "landing" / "a.ndjson", [nps])
    avg = {"name": "nps", "entity": "user", "type": "aggregation", "function": "avg",
           "event": "NPS", "property": "score"}  # fmt: skip
    high = {"name": "high", "entity": "user", "where": {"trait": "nps", "gt": 3.5}}
    definitions = tmp_path / "defs" / "d.yaml"
    definitions.parent.mkdir()
    start, end = datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 11)
    with connect(tmp_path / "wh.duckdb") as con:
        ingest_window(con, tmp_path / "landing", start, end, PARTITIONS_START)
        definitions.write_text(yaml.safe_dump({"traits": [avg], "audiences": [high]}))
        trait_cases.build_all(con, None, start, end, definitions.parent)
        edited = {"traits": [avg | {"function": "max"}], "audiences": [high]}
        definitions.write_text(yaml.safe_dump(edited))
        monkeypatch.setattr(stages, "spark_session", lambda: pytest.fail("Spark started"))
        with pytest.raises(NotComputedError, match="'nps' was not computed for 1 of the 1"):
            stages.audience(con, load_catalog(definitions.parent), "high", start, end)
