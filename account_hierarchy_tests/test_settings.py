"""Warehouse connections follow the settings."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from account_hierarchy import settings
from account_hierarchy.warehouse import connect

ROOT = Path(__file__).parent.parent


def test_memory_limit_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AH_DUCKDB_MEMORY_LIMIT", "300MB")
    con = connect(tmp_path / "wh.duckdb")
    (limit,) = con.execute("SELECT current_setting('memory_limit')").fetchone()
    assert limit in ("286.1 MiB", "300.0 MB")
    con.close()


def test_a_malformed_memory_limit_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("AH_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="AH_DUCKDB_MEMORY_LIMIT='lots'"):
        connect(tmp_path / "wh.duckdb")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AH_PARTITIONS_START", "2026-10-01", "expected an hour like 2024-01-01-00:00"),
        ("AH_PARTITIONS_START", "2026-10-01-00:30", "expected an hour like 2024-01-01-00:00"),
        ("AH_DUCKDB_MEMORY_LIMIT", "lots", "expected an amount like 4GB or 500MB"),
        # (the form of an amount, out of DuckDB's range)
        (
            "AH_DUCKDB_MEMORY_LIMIT",
            "99999999999999999999TB",
            "expected an amount like 4GB or 500MB",
        ),
        ("AH_DUCKDB_MEMORY_LIMIT", "0GB", "expected an amount like 4GB or 500MB"),
        # (settings the command does not read stop it too)
        ("AH_ENGINE", "pandas", "expected one of duckdb, spark"),
        ("AH_PARENT_TRAIT", 'a"b', "expected a trait name without quotes"),
        ("AH_SPARK_MASTER", "bogus", "expected a Spark master URL such as local[*], local[4], "
         "spark://host:7077, yarn or k8s://https://host:443"),
    ],
)  # fmt: skip
def test_a_setting_that_cannot_be_used_is_one_line_from_the_console_script(
    tmp_path, variable, value, message
):
    connect(tmp_path / "wh.duckdb").close()
    environment = {**os.environ, "AH_WAREHOUSE": str(tmp_path / "wh.duckdb"), variable: value}
    script = "from account_hierarchy.console import main; main()"
    done = subprocess.run([sys.executable, "-c", script, "show", "account", "x"],
                          env=environment, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == f"Error: {variable}={value!r}: {message}\n"


def test_a_lake_path_holding_glob_characters_is_refused_on_spark(tmp_path, monkeypatch):
    """Reading the lake's files back would take them for a pattern (and find no files)."""
    folder = tmp_path / "proj[1]"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("AH_LAKE_DIR", raising=False)
    settings.check_all()  # (the DuckDB engine reads no lake)
    monkeypatch.setenv("AH_ENGINE", "spark")
    for lake in (None, "lake", "/data/lake*"):
        if lake:
            monkeypatch.setenv("AH_LAKE_DIR", lake)
        with pytest.raises(settings.SettingError, match="would take for a pattern"):
            settings.check_all()
    monkeypatch.setenv("AH_LAKE_DIR", "s3a://bucket/lake")
    settings.check_all()


def test_an_empty_location_is_its_default_and_a_local_lake_is_absolute(monkeypatch):
    for variable in ("AH_LANDING_DIR", "AH_WAREHOUSE", "AH_DEFINITIONS_DIR", "AH_LAKE_DIR"):
        monkeypatch.setenv(variable, "")
    assert settings.landing_dir() == Path("data/landing")
    assert settings.warehouse_path() == Path("data/warehouse.duckdb")
    assert settings.definitions_dir() == Path("data/definitions")
    assert settings.lake_dir() == str(Path.cwd() / "data" / "lake")
    monkeypatch.setenv("AH_LAKE_DIR", "s3a://bucket/lake")
    assert settings.lake_dir() == "s3a://bucket/lake"


SPARK_MASTERS = ["local", "local[*]", "local[2]", "local[4,3]", "spark://host:7077", "yarn",
                 "k8s://https://host:443"]  # fmt: skip


@pytest.mark.parametrize("master", SPARK_MASTERS)
def test_spark_master_urls(monkeypatch, master):
    monkeypatch.setenv("AH_SPARK_MASTER", master)
    assert settings.spark_master() == master


def test_the_instance_retries_crashed_runs_not_failed_steps(tmp_path):
    """A step has its own retries, and errors no retry can mend fail it at once: the run is
    not run again for a failed step, only for a crashed run worker."""
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert (instance.run_monitoring_enabled, instance.run_retries_max_retries) == (True, 2)
        assert instance.run_retries_retry_on_asset_or_op_failure is False


def test_sensor_ticks_are_purged(tmp_path):
    """Each tick stores the sensor's cursor, an entry per landing file: none is kept forever."""
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus

    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        kept = instance.get_tick_retention_settings(InstigatorType.SENSOR)
    assert kept[TickStatus.SKIPPED] == 1
    assert kept[TickStatus.SUCCESS] == kept[TickStatus.FAILURE] == 30
