"""The activation assets through Dagster on the sample definitions (the offline JSONL
destination), and `account-hierarchy sync --dry-run`."""

import json
from pathlib import Path

import dagster as dg
import yaml
from click.testing import CliRunner

from account_hierarchy.activation.assets import build_activation_assets, build_destination_asset
from account_hierarchy.audiences.assets import build_audience_assets
from account_hierarchy.catalog.loader import load_catalog
from account_hierarchy.cli import main
from account_hierarchy.definitions import defs
from account_hierarchy.hierarchy.assets import hierarchy_snapshots
from account_hierarchy.ingest.assets import raw_events
from account_hierarchy.partitions import HOURLY
from account_hierarchy.resources import LandingFolder, Warehouse
from account_hierarchy.sample.generator import generate_sample
from account_hierarchy.traits.assets import build_trait_assets
from account_hierarchy.warehouse import connect
from account_hierarchy_tests.conftest import group_call, write_lines

SAMPLE = Path(__file__).parent.parent / "data" / "definitions"


def test_activation_assets_in_the_graph():
    graph = defs.get_repository_def().asset_graph
    diffs = graph.get(dg.AssetKey("activation_diffs"))
    assert diffs.group_name == "activation"
    assert dg.AssetKey(["audiences", "at_risk_accounts"]) in diffs.parent_keys
    assert dg.AssetKey(["destinations", "crm_outbox"]) in graph.get_all_asset_keys()


def test_a_range_of_input_hours_maps_to_the_same_hours_of_diffs():
    """Dagster adds the hours its partition mappings map a backfill's range to: a mapping
    saying the diffs read the previous hour made a UI backfill of 00:00 to 02:00 build the
    diffs of 03:00, whose inputs were not built."""
    graph = defs.get_repository_def().asset_graph
    diffs = dg.AssetKey("activation_diffs")
    hours = ["2026-10-01-00:00", "2026-10-01-01:00", "2026-10-01-02:00"]
    for parent in graph.get(diffs).parent_keys:
        mapped = graph.get_partition_mapping(
            diffs, parent
        ).get_downstream_partitions_for_partitions(
            HOURLY.subset_with_partition_keys(hours), HOURLY, HOURLY
        )
        assert sorted(mapped.get_partition_keys()) == hours, parent


def sample_definitions(tmp_path: Path) -> Path:
    """The sample definitions, their JSONL destination writing under `tmp_path`."""
    folder = tmp_path / "defs"
    folder.mkdir()
    for path in SAMPLE.glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        for destination in document.get("destinations", []):
            destination["folder"] = str(tmp_path / "outbox")
        (folder / path.name).write_text(yaml.safe_dump(document))
    return folder


def test_a_run_before_any_event_succeeds_with_nothing_to_deliver(tmp_path, monkeypatch):
    """The schedule's runs while the landing folder is still empty: no entity, no message."""
    folder = sample_definitions(tmp_path)
    catalog = load_catalog(folder)
    monkeypatch.setenv("AH_WAREHOUSE", str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("AH_DEFINITIONS_DIR", str(folder))
    resources = {"warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
                 "landing": LandingFolder(path=str(tmp_path / "landing"))}  # fmt: skip
    assets = [raw_events, hierarchy_snapshots, build_trait_assets(catalog),
              *build_audience_assets(catalog), *build_activation_assets(catalog)]  # fmt: skip
    result = dg.materialize(assets, resources=resources, partition_key="2026-10-01-10:00")
    assert result.success
    (delivered,) = [e.event_specific_data.materialization.metadata
                    for e in result.get_asset_materialization_events()
                    if e.asset_key == dg.AssetKey(["destinations", "crm_outbox"])]  # fmt: skip
    # (its audiences were evaluated, empty, and its trait tables have no rows to wait for)
    assert (delivered["snapshot_hour"].value, delivered["messages"].value) == (
        "2026-10-01T10:00:00", 0)  # fmt: skip


def test_a_destination_whose_inputs_are_not_built_says_what_it_waits_for(tmp_path):
    folder = sample_definitions(tmp_path)
    catalog = load_catalog(folder)
    (crm,) = [d for d in catalog.destinations if d.destination.name == "crm_outbox"]
    resources = {"warehouse": Warehouse(database=str(tmp_path / "wh.duckdb"))}
    result = dg.materialize([build_destination_asset(crm, catalog)], resources=resources,
                            partition_key="2026-10-01-10:00")  # fmt: skip
    assert result.success
    (materialization,) = result.asset_materializations_for_node("destinations__crm_outbox")
    metadata = materialization.metadata
    assert metadata["snapshot_hour"].value == "none yet"
    assert "have not been materialized yet" in metadata["waiting_for"].value


def test_a_destination_waiting_for_a_new_input_names_the_snapshot_it_holds(tmp_path, monkeypatch):
    folder = sample_definitions(tmp_path)
    monkeypatch.setenv("AH_DEFINITIONS_DIR", str(folder))
    resources = {"warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
                 "landing": LandingFolder(path=str(tmp_path / "landing"))}  # fmt: skip

    def everything(catalog):
        return [raw_events, hierarchy_snapshots, build_trait_assets(catalog),
                *build_audience_assets(catalog), *build_activation_assets(catalog)]  # fmt: skip

    assert dg.materialize(everything(load_catalog(folder)), resources=resources,
                          partition_key="2026-10-01-10:00").success  # fmt: skip
    (folder / "new.yaml").write_text(
        "audiences:\n  - {name: any_account, entity: account, where: {trait: logins_past_30_days,"
        " gte: 0}}\n"
    )
    crm = yaml.safe_load((folder / "destinations.yaml").read_text())
    crm["destinations"][0]["audiences"].append("any_account")
    (folder / "destinations.yaml").write_text(yaml.safe_dump(crm))
    catalog = load_catalog(folder)
    (located,) = [d for d in catalog.destinations if d.destination.name == "crm_outbox"]
    result = dg.materialize([build_destination_asset(located, catalog)], resources=resources,
                            partition_key="2026-10-01-11:00")  # fmt: skip
    (materialization,) = result.asset_materializations_for_node("destinations__crm_outbox")
    metadata = materialization.metadata
    assert metadata["waiting_for"].value.endswith(
        "audience any_account has not been materialized yet"
    )
    assert metadata["snapshot_hour"].value == "2026-10-01T10:00:00"


def test_diffs_fail_for_an_hour_their_inputs_were_not_built_for(tmp_path, monkeypatch):
    """Read as empty, the audiences would have every member exiting (the previous hour may be
    missing: everyone enters)."""
    folder = sample_definitions(tmp_path)
    catalog = load_catalog(folder)
    lines = [group_call("g1", "2026-10-01T10:00:00Z", "A0", "u1", industry="Software")]
    write_lines(tmp_path / "landing" / "a.ndjson", lines)
    monkeypatch.setenv("AH_DEFINITIONS_DIR", str(folder))
    resources = {"warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
                 "landing": LandingFolder(path=str(tmp_path / "landing"))}  # fmt: skip
    assets = [raw_events, hierarchy_snapshots, build_trait_assets(catalog),
              *build_audience_assets(catalog), *build_activation_assets(catalog)]  # fmt: skip
    assert dg.materialize(assets, resources=resources, partition_key="2026-10-01-10:00").success
    (diffs,) = [a for a in build_activation_assets(catalog) if a.key.path == ["activation_diffs"]]
    later = dg.materialize([diffs], resources=resources, partition_key="2026-10-01-11:00",
                           raise_on_error=False)  # fmt: skip
    assert not later.success
    (failure,) = later.get_step_failure_events()
    assert "has no snapshot for 1 of the 1 hours" in failure.step_failure_data.error.message
    assert failure.step_failure_data.user_failure_data is not None  # (a Failure, not retried)
    assert later.get_asset_materialization_events() == []


def test_materialize_and_dry_run(tmp_path, monkeypatch):
    folder = sample_definitions(tmp_path)
    catalog = load_catalog(folder)
    generate_sample(tmp_path / "landing", seed=4, accounts=25, users=120, days=1)
    resources = {
        "warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
        "landing": LandingFolder(path=str(tmp_path / "landing")),
    }
    day = {"dagster/asset_partition_range_start": "2026-10-01-00:00",
           "dagster/asset_partition_range_end": "2026-10-01-23:00"}  # fmt: skip
    assert dg.materialize([raw_events, hierarchy_snapshots], resources=resources, tags=day).success
    last = {"dagster/asset_partition_range_start": "2026-10-01-22:00",
            "dagster/asset_partition_range_end": "2026-10-01-23:00"}  # fmt: skip
    monkeypatch.setenv("AH_WAREHOUSE", str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("AH_DEFINITIONS_DIR", str(folder))
    assets = [build_trait_assets(catalog), *build_audience_assets(catalog)]
    assert dg.materialize(assets, resources=resources, tags=last).success

    dry = CliRunner().invoke(main, ["sync", "crm_outbox", "--dry-run", "--format", "jsonl"])
    assert dry.exit_code == 0, dry.output
    planned = [json.loads(line) for line in dry.stdout.splitlines()]
    assert planned and {m["type"] for m in planned} == {"group", "identify", "track"}
    assert not (tmp_path / "outbox").exists()  # a dry run sends nothing

    result = dg.materialize(
        [*assets, *build_activation_assets(catalog)], resources=resources, tags=last
    )
    assert result.success
    events = {e.asset_key: e.event_specific_data.materialization.metadata
              for e in result.get_asset_materialization_events()}  # fmt: skip
    delivered = events[dg.AssetKey(["destinations", "crm_outbox"])]
    assert delivered["accepted"].value == len(planned)
    with connect(tmp_path / "wh.duckdb", read_only=True) as con:
        (held,) = con.execute(
            "SELECT count(*) FROM destination_state "
            "WHERE destination = 'crm_outbox' AND value IS NOT NULL"
        ).fetchone()
    assert delivered["dagster/row_count"].value == held > 0
    assert events[dg.AssetKey("activation_diffs")]["entered"].value > 0
    written = [json.loads(line) for path in (tmp_path / "outbox").glob("*.jsonl")
               for line in path.read_text().splitlines()]  # fmt: skip
    assert sorted(m["messageId"] for m in written) == sorted(m["messageId"] for m in planned)
    again = CliRunner().invoke(main, ["sync", "crm_outbox", "--format", "jsonl"])
    assert json.loads(again.output)["messages"] == 0


def test_a_destination_refuses_a_range_that_is_no_run_of_hours(tmp_path):
    """It delivers the newest snapshot whatever its hours, but a range ending before it starts
    fails as every other asset's does, not as a success recorded for no hour."""
    catalog = load_catalog(sample_definitions(tmp_path))
    asset = build_destination_asset(catalog.destinations[0], catalog)
    keys = {"dagster/asset_partition_range_start": "2026-10-01-12:00",
            "dagster/asset_partition_range_end": "2026-10-01-10:00"}  # fmt: skip
    result = dg.materialize([asset], tags=keys, raise_on_error=False, resources={
        "warehouse": Warehouse(database=str(tmp_path / "wh.duckdb"))})  # fmt: skip
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    assert "ends before it starts" in str(failure.step_failure_data.error)
