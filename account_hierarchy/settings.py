"""Where things live: every location comes from an environment variable with a default.

Relative paths are taken from the current working directory (the project root when started
through the Makefile).
"""

import os
import re
from datetime import datetime
from pathlib import Path

import duckdb

LANDING_DIR_ENV = "AH_LANDING_DIR"
WAREHOUSE_ENV = "AH_WAREHOUSE"
DEFINITIONS_DIR_ENV = "AH_DEFINITIONS_DIR"
PARTITIONS_START_ENV = "AH_PARTITIONS_START"
PARENT_TRAIT_ENV = "AH_PARENT_TRAIT"
MEMORY_LIMIT_ENV = "AH_DUCKDB_MEMORY_LIMIT"
ENGINE_ENV = "AH_ENGINE"
LAKE_DIR_ENV = "AH_LAKE_DIR"
SPARK_MASTER_ENV = "AH_SPARK_MASTER"
SPARK_REMOTE_ENV = "AH_SPARK_REMOTE"

DEFAULT_LANDING_DIR = "data/landing"
DEFAULT_WAREHOUSE = "data/warehouse.duckdb"
DEFAULT_DEFINITIONS_DIR = "data/definitions"
# First hourly partition. Events before it cannot be placed in a partition and are quarantined.
DEFAULT_PARTITIONS_START = "2024-01-01-00:00"
DEFAULT_PARENT_TRAIT = "parent_account_id"
# DuckDB keeps within this much memory and spills larger work to `<warehouse>.tmp/`.
DEFAULT_MEMORY_LIMIT = "4GB"
ENGINES = ("duckdb", "spark")
DEFAULT_LAKE_DIR = "data/lake"
# Characters DuckDB's and Hadoop's file listings read as patterns.
GLOB_CHARACTERS = "*?[]{}"
DEFAULT_SPARK_MASTER = "local[*]"


def is_hidden(relative: Path) -> bool:
    """True for a path, relative to the landing or definitions folder, in or under a hidden name
    (starting with `.`: an editor's lock or backup file, `.git/`); such files are never read."""
    return any(part.startswith(".") for part in relative.parts)


class SettingError(ValueError):
    """An environment variable with a value that cannot be used (the message names it)."""


def _location(name: str, default: str) -> str:
    """A location's variable, or its default when unset or empty (an empty path would name
    the working directory, or the root under a lake's tables)."""
    return os.environ.get(name) or default


def landing_dir() -> Path:
    """Folder where Segment NDJSON files land (`AH_LANDING_DIR`)."""
    return Path(_location(LANDING_DIR_ENV, DEFAULT_LANDING_DIR))


def warehouse_path() -> Path:
    """DuckDB warehouse file (`AH_WAREHOUSE`)."""
    return Path(_location(WAREHOUSE_ENV, DEFAULT_WAREHOUSE))


def definitions_dir() -> Path:
    """Folder of YAML trait, audience and destination definitions (`AH_DEFINITIONS_DIR`)."""
    return Path(_location(DEFINITIONS_DIR_ENV, DEFAULT_DEFINITIONS_DIR))


def partitions_start() -> str:
    """First hour of the hourly partitions (`AH_PARTITIONS_START`, format YYYY-MM-DD-HH:00,
    UTC)."""
    text = os.environ.get(PARTITIONS_START_ENV, DEFAULT_PARTITIONS_START)
    try:
        moment = datetime.strptime(text, "%Y-%m-%d-%H:%M")
    except ValueError:
        moment = None
    if moment is None or moment.minute:
        raise SettingError(
            f"{PARTITIONS_START_ENV}={text!r}: expected an hour like 2024-01-01-00:00"
        )
    return text


def parent_trait() -> str:
    """The group trait naming an account's parent account (`AH_PARENT_TRAIT`): a top-level
    key, taken as it is (`$` and `.` are no path syntax)."""
    name = os.environ.get(PARENT_TRAIT_ENV, DEFAULT_PARENT_TRAIT)
    if not name or '"' in name:
        raise SettingError(f"{PARENT_TRAIT_ENV}={name!r}: expected a trait name without quotes")
    return name


def duckdb_config() -> dict[str, str]:
    """Settings of every warehouse connection: DuckDB's memory limit
    (`AH_DUCKDB_MEMORY_LIMIT`, e.g. `4GB` or `500MB`)."""
    limit = os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT)
    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*[KMGT]i?B\s*", limit, re.IGNORECASE):
        raise SettingError(f"{MEMORY_LIMIT_ENV}={limit!r}: expected an amount like 4GB or 500MB")
    return {"memory_limit": limit}


def engine() -> str:
    """The engine that computes the tables (`AH_ENGINE`: `duckdb`, the default, or `spark`)."""
    name = os.environ.get(ENGINE_ENV, "duckdb").strip().lower()
    if name not in ENGINES:
        raise SettingError(f"{ENGINE_ENV}={name!r}: expected one of {', '.join(ENGINES)}")
    return name


def check_all() -> None:
    """Read every setting that has a form (raising `SettingError` for one that cannot be
    used), so that it stops a command or the code location at once, whatever they read (the
    lake's path only on the Spark engine, the one that uses it)."""
    partitions_start()
    parent_trait()
    _memory_limit_usable(duckdb_config()["memory_limit"])
    engine()
    spark_master()
    if on_spark():
        lake_dir()


def _memory_limit_usable(limit: str) -> None:
    """An amount DuckDB takes and can run a query in (`99999999999999999999TB` has the form of
    one, and is not; `0GB` is one, and no query runs)."""
    try:
        with duckdb.connect(":memory:", config={"memory_limit": limit}) as con:
            con.execute("SELECT current_setting('memory_limit')").fetchone()
    except duckdb.Error:
        raise SettingError(
            f"{MEMORY_LIMIT_ENV}={limit!r}: expected an amount like 4GB or 500MB"
        ) from None


def lake_dir() -> str:
    """Where the Spark engine keeps its tables as Parquet partitioned by hour (`AH_LAKE_DIR`):
    a local folder (made absolute, as the warehouse's views over it keep the path) or an
    object store URI such as `s3a://bucket/lake`."""
    lake = _location(LAKE_DIR_ENV, DEFAULT_LAKE_DIR)
    lake = lake if "://" in lake else str(Path(lake).absolute())
    if glob := set(lake) & set(GLOB_CHARACTERS):
        raise SettingError(
            f"{LAKE_DIR_ENV}: the lake's path {lake!r} holds {''.join(sorted(glob))}, which "
            "reading its files back would take for a pattern: choose a path without "
            f"{' '.join(GLOB_CHARACTERS)}"
        )
    return lake


# Spark's master URLs: local[N], local[*] or local[N,F] (F task failures allowed), a
# standalone cluster, YARN, Kubernetes.
_SPARK_MASTER = re.compile(r"local(\[(\*|[1-9][0-9]*)(,[1-9][0-9]*)?\])?|yarn|(spark|k8s)://.+")


def spark_master() -> str:
    """The Spark master a session is built on (`AH_SPARK_MASTER`, default `local[*]`)."""
    master = _location(SPARK_MASTER_ENV, DEFAULT_SPARK_MASTER)
    if not _SPARK_MASTER.fullmatch(master):
        raise SettingError(
            f"{SPARK_MASTER_ENV}={master!r}: expected a Spark master URL such as local[*], "
            "local[4], spark://host:7077, yarn or k8s://https://host:443"
        )
    return master


def spark_remote() -> str | None:
    """A Spark Connect address (`AH_SPARK_REMOTE`, e.g. `sc://spark.internal:15002`); when set
    it is used instead of `AH_SPARK_MASTER`."""
    return os.environ.get(SPARK_REMOTE_ENV) or None


def on_spark() -> bool:
    """Whether the stages run on the Spark engine (`AH_ENGINE=spark`)."""
    return engine() == "spark"
