"""The trait assets through Dagster: one asset per trait with its definition, compiled query,
fill rate and distribution; trait tables with one row per entity; the `traits` command."""

import json
import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.cli import main
from account_hierarchy.hierarchy.assets import hierarchy_snapshots
from account_hierarchy.ingest.assets import raw_events
from account_hierarchy.resources import LandingFolder, Warehouse
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.traits.assets import build_trait_assets, trait_key
from account_hierarchy.warehouse import connect

DEFINITIONS = Path(__file__).parent.parent / "data" / "definitions"


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    root = tmp_path_factory.mktemp("traits")
    generate_sample(root / "landing", seed=3, accounts=25, users=150, days=1)
    resources = {
        "warehouse": Warehouse(database=str(root / "wh.duckdb")),
        "landing": LandingFolder(path=str(root / "landing")),
    }
    everything = dg.materialize(
        [raw_events, hierarchy_snapshots],
        resources=resources,
        tags={
            "dagster/asset_partition_range_start": "2026-10-01-00:00",
            "dagster/asset_partition_range_end": "2026-10-01-23:00",
        },
    )
    assert everything.success
    traits = build_trait_assets(load_catalog(DEFINITIONS))
    result = dg.materialize(
        [traits],
        resources=resources,
        tags={
            "dagster/asset_partition_range_start": "2026-10-01-22:00",
            "dagster/asset_partition_range_end": "2026-10-01-23:00",
        },
    )
    assert result.success
    return root, result


def test_each_trait_is_an_asset_with_its_story(materialized):
    _, result = materialized
    by_key = {
        event.asset_key: event.event_specific_data.materialization
        for event in result.get_asset_materialization_events()
    }
    logins = by_key[trait_key("logins_past_30_days")].metadata
    assert "logins_past_30_days" in logins["compiled_query"].value
    assert "COUNT" in logins["compiled_query"].value.upper()
    assert 0.0 <= logins["fill_rate"].value <= 1.0
    assert logins["entities"].value > 0
    assert "max" in logins
    features = by_key[trait_key("top_feature")].metadata
    assert features["top_values"].value.split()[:5] == ["|", "value", "|", "entities", "|"]
    sql_trait = by_key[trait_key("active_users_past_month")].metadata
    assert "sql_trait_view_events" in sql_trait["compiled_query"].value
    table = by_key[dg.AssetKey("account_traits")].metadata
    assert table["dagster/row_count"].value > 0
    # the sample's one SQL trait is an account trait: its time is part of the account traits'
    assert 0 < table["sql_trait_seconds"].value < table["compute_seconds"].value
    users = by_key[dg.AssetKey("user_traits")].metadata
    assert users["sql_trait_seconds"].value == 0 < users["compute_seconds"].value
    checks = {c.asset_key.to_user_string(): c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"account_traits": True, "user_traits": True}


def test_trait_specs_carry_definition_and_lineage():
    traits = build_trait_assets(load_catalog(DEFINITIONS))
    spec = next(s for s in traits.specs if s.key == trait_key("first_landing_page"))
    assert "type: first_value" in spec.metadata["definition"].value
    assert "traits.yaml" in spec.metadata["definition"].value
    assert dg.AssetKey("account_memberships") in {dep.asset_key for dep in spec.deps}
    table = next(s for s in traits.specs if s.key == dg.AssetKey("account_traits"))
    assert trait_key("logins_past_30_days") in {dep.asset_key for dep in table.deps}


def test_traits_command(materialized, monkeypatch):
    root, _ = materialized
    monkeypatch.setenv("AH_WAREHOUSE", str(root / "wh.duckdb"))
    result = CliRunner().invoke(main, ["traits", "account", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert {row["snapshot_hour"] for row in rows} == {"2026-10-01T23:00:00"}
    assert all(isinstance(row["logins_past_30_days"], int) for row in rows)
    one = CliRunner().invoke(
        main, ["traits", "user", rows[0]["account_id"], "--as-of", "2026-10-01T22"]
    )
    assert one.exit_code == 1 and "No traits of user" in one.output


def test_a_sql_trait_failing_on_the_data_fails_the_run_without_retries(materialized, tmp_path):
    """A SQL trait giving an account several rows fails the same way however often it runs: the
    step fails at once (the retry policy is for transient errors)."""
    root, _ = materialized
    shutil.copy(root / "wh.duckdb", tmp_path / "wh.duckdb")
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "t.yaml").write_text(yaml.safe_dump({"traits": [
        {"name": "member", "entity": "account", "type": "sql",
         "sql": "SELECT account_id, user_id AS member FROM account_memberships"}]}))  # fmt: skip
    result = dg.materialize(
        [build_trait_assets(load_catalog(tmp_path / "definitions"))],
        partition_key="2026-10-01-23:00", raise_on_error=False,
        resources={"warehouse": Warehouse(database=str(tmp_path / "wh.duckdb"))},
    )  # fmt: skip
    assert not result.success
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in [e.event_type for e in result.all_events]
    (failure,) = result.get_step_failure_events()
    assert re.search(r"SQL trait member returned \d+ rows", failure.step_failure_data.error.message)


@pytest.mark.parametrize(
    ("broken", "hour", "message"),
    [
        ("SELECT 1", "2026-10-02-05:00", "The hierarchy snapshots are not built for 1 of the 1 "
         "hours from 2026-10-02 05:00:00"),
        ("INSERT INTO accounts SELECT * FROM accounts WHERE snapshot_hour = "
         "'2026-10-01 23:00' LIMIT 1", "2026-10-01-23:00", "one row per snapshot_hour"),
    ],
)  # fmt: skip
def test_traits_that_would_fail_again_fail_without_retries(materialized, tmp_path, broken, hour,
                                                           message):  # fmt: skip
    """An hour whose hierarchy is not built, or rows breaking the trait table's model (an
    account twice in its snapshot), fail at once, naming the cause."""
    root, _ = materialized
    shutil.copy(root / "wh.duckdb", tmp_path / "wh.duckdb")
    with connect(tmp_path / "wh.duckdb") as con:
        con.execute(broken)
    result = dg.materialize(
        [build_trait_assets(load_catalog(DEFINITIONS))], partition_key=hour, raise_on_error=False,
        resources={"warehouse": Warehouse(database=str(tmp_path / "wh.duckdb"))},
    )  # fmt: skip
    assert not result.success
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in [e.event_type for e in result.all_events]
    (failure,) = result.get_step_failure_events()
    assert message in failure.step_failure_data.error.message
