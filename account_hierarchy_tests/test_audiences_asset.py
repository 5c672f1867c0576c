"""Audience assets through Dagster (lineage, size, entered/exited) and the audience commands."""

import json
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from account_hierarchy.audiences.assets import audience_key, build_audience_assets
from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.cli import main
from account_hierarchy.definitions import defs
from account_hierarchy.hierarchy.assets import hierarchy_snapshots
from account_hierarchy.ingest.assets import raw_events
from account_hierarchy.resources import LandingFolder, Warehouse
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.traits.assets import build_trait_assets, trait_key

DEFINITIONS = Path(__file__).parent.parent / "data" / "definitions"


def test_each_audience_is_an_asset_with_its_lineage():
    graph = defs.get_repository_def().asset_graph
    admins = graph.get(audience_key("software_admins"))
    assert admins.group_name == "audiences"
    assert {audience_key("software_industry"), dg.AssetKey("users"),
            dg.AssetKey("account_memberships")} <= set(admins.parent_keys)  # fmt: skip
    at_risk = graph.get(audience_key("at_risk_accounts"))
    assert trait_key("logins_past_30_days") in at_risk.parent_keys
    trials = graph.get(audience_key("trials_ready_to_upgrade"))
    assert audience_key("at_risk_accounts") in trials.parent_keys


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    root = tmp_path_factory.mktemp("audience_assets")
    generate_sample(root / "landing", seed=9, accounts=30, users=200, days=1)
    resources = {
        "warehouse": Warehouse(database=str(root / "wh.duckdb")),
        "landing": LandingFolder(path=str(root / "landing")),
    }
    catalog = load_catalog(DEFINITIONS)
    day = {"dagster/asset_partition_range_start": "2026-10-01-00:00",
           "dagster/asset_partition_range_end": "2026-10-01-23:00"}  # fmt: skip
    assert dg.materialize([raw_events, hierarchy_snapshots], resources=resources, tags=day).success
    evening = {"dagster/asset_partition_range_start": "2026-10-01-21:00",
               "dagster/asset_partition_range_end": "2026-10-01-23:00"}  # fmt: skip
    result = dg.materialize(
        [build_trait_assets(catalog), *build_audience_assets(catalog)],
        resources=resources, tags=evening,
    )  # fmt: skip
    assert result.success
    return root, result


def test_audience_metadata_has_size_and_changes(materialized):
    _, result = materialized
    events = {e.asset_key: e.event_specific_data.materialization
              for e in result.get_asset_materialization_events()}  # fmt: skip
    admins = events[audience_key("software_admins")].metadata
    assert admins["size"].value >= 1
    assert {"entered", "exited", "compiled_query", "preview", "dagster/row_count"} <= set(admins)
    columns = [column.name for column in admins["dagster/column_schema"].value.columns]
    assert columns[:4] == ["snapshot_hour", "audience", "entity_type", "entity_id"]
    assert "$audience = 'software_admins'" in admins["compiled_query"].value
    assert "json_object" in admins["compiled_query"].value.lower()  # (the reasons)
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_the_tiles_rebuilt_are_counted_by_the_op_that_rebuilt_them(materialized):
    """Audiences with `performed` conditions may run before the traits stage and rebuild the
    trait tiles: the run's ops together count every hour rebuilt, once."""
    _, result = materialized
    rebuilt = {event.asset_key.to_user_string():
               event.event_specific_data.materialization.metadata.get("tile_hours_rebuilt")
               for event in result.get_asset_materialization_events()}  # fmt: skip
    counts = {key: count.value for key, count in rebuilt.items() if count is not None}
    # (the traits op reports on both tables; a range's hours share their metadata)
    assert counts["user_traits"] == counts["account_traits"]
    by_audiences = sum(count for key, count in counts.items() if key.startswith("audiences/"))
    assert by_audiences + counts["account_traits"] == 24, counts  # (the day's hours)


def test_members_preview_explain_commands(materialized, monkeypatch):
    root, _ = materialized
    monkeypatch.setenv("AH_WAREHOUSE", str(root / "wh.duckdb"))
    runner = CliRunner()
    stored = runner.invoke(main, ["members", "at_risk_accounts", "--as-of", "2026-10-01T23",
                                  "--format", "jsonl"])  # fmt: skip
    assert stored.exit_code == 0, stored.output
    ids = [json.loads(line)["entity_id"] for line in stored.output.splitlines()]
    assert ids
    shown = runner.invoke(main, ["preview", "at_risk_accounts", "--as-of", "2026-10-01T23",
                                 "--format", "jsonl"])  # fmt: skip
    summary = json.loads(shown.output)
    assert summary["members"] == len(ids) and "users_reached" in summary
    why = runner.invoke(main, ["explain", "at_risk_accounts", ids[0], "--as-of",
                               "2026-10-01T23"])  # fmt: skip
    assert why.exit_code == 0
    assert f"account {ids[0]} is a member of at_risk_accounts" in why.output
    assert "[yes] logins_past_30_days < 10" in why.output
    early = runner.invoke(main, ["preview", "at_risk_accounts", "--as-of", "2026-10-01T05"])
    assert early.exit_code == 1 and "account_traits has no snapshot for" in early.output
    not_built = runner.invoke(main, ["members", "at_risk_accounts", "--as-of", "2026-10-02T05"])
    assert not_built.exit_code == 1
    assert "'at_risk_accounts' was not materialized for 2026-10-02 05:00 UTC" in not_built.output
    assert "not materialized" in runner.invoke(main, ["members", "nope"]).output
    unknown = runner.invoke(main, ["explain", "nope", "x"])
    assert unknown.exit_code == 1 and "No audience 'nope'" in unknown.output
    typo = runner.invoke(main, ["preview", "at_risk_acounts"])
    assert typo.output.endswith("; did you mean 'at_risk_accounts'?\n")
    stored = runner.invoke(main, ["members", "at_risk_acounts"])
    assert stored.output.endswith(
        "Audience 'at_risk_acounts' was not materialized for any hour yet (did you mean "
        "'at_risk_accounts'?).\n"
    )
    destination = runner.invoke(main, ["sync", "crm_outbx", "--dry-run"])
    assert destination.output.endswith("; did you mean 'crm_outbox'?\n")


def test_explain_shows_lists_as_compact_json(materialized, monkeypatch):
    """The readable output shows lists and nulls as compact JSON, not Python's repr
    (`['acct_1']`, `None`)."""
    root, _ = materialized
    monkeypatch.setenv("AH_WAREHOUSE", str(root / "wh.duckdb"))
    runner = CliRunner()
    stored = runner.invoke(main, ["members", "software_admins", "--as-of", "2026-10-01T23",
                                  "--format", "jsonl"])  # fmt: skip
    member = json.loads(stored.output.splitlines()[0])
    (accounts,) = [c["accounts"] for c in member["reason"]["conditions"] if "accounts" in c]
    why = runner.invoke(main, ["explain", "software_admins", member["entity_id"],
                               "--as-of", "2026-10-01T23"])  # fmt: skip
    assert why.exit_code == 0, why.output
    assert f"(accounts: {json.dumps(accounts, separators=(',', ':'))})" in why.output
    assert "['" not in why.output and "None" not in why.output


def test_audience_on_a_warehouse_without_its_tables_fails_without_retries(tmp_path):
    """Before the hierarchy or the traits were ever built, their tables do not exist: the
    audience fails at once, naming the table."""
    result = dg.materialize(
        build_audience_assets(load_catalog(DEFINITIONS)),
        selection=[audience_key("at_risk_accounts")], partition_key="2026-10-01-10:00",
        resources={"warehouse": Warehouse(database=str(tmp_path / "wh.duckdb"))},
        raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in [e.event_type for e in result.all_events]
    (failure,) = result.get_step_failure_events()
    assert "accounts is not built yet" in failure.step_failure_data.error.message


def test_audience_of_hours_without_traits_fails_without_retries(materialized):
    """Traits not computed for the hour fail the audience at once: retrying before they are
    materialized cannot help (the retry policy is for transient errors)."""
    root, _ = materialized
    resources = {"warehouse": Warehouse(database=str(root / "wh.duckdb"))}
    catalog = load_catalog(DEFINITIONS)
    result = dg.materialize(
        build_audience_assets(catalog), selection=[audience_key("at_risk_accounts")],
        partition_key="2026-10-01-10:00", resources=resources, raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    types = [event.event_type for event in result.all_events]
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in types
    (failure,) = result.get_step_failure_events()
    assert "account_traits has no snapshot" in failure.step_failure_data.error.message
