"""Where things live: every location comes from an environment variable with a default.

Relative paths are taken from the current working directory (the project root when started
through the Makefile).
"""

import os
import re
from pathlib import Path

LANDING_DIR_ENV = "AH_LANDING_DIR"
WAREHOUSE_ENV = "AH_WAREHOUSE"
DEFINITIONS_DIR_ENV = "AH_DEFINITIONS_DIR"
PARTITIONS_START_ENV = "AH_PARTITIONS_START"
PARENT_TRAIT_ENV = "AH_PARENT_TRAIT"
MEMORY_LIMIT_ENV = "AH_DUCKDB_MEMORY_LIMIT"

DEFAULT_LANDING_DIR = "data/landing"
DEFAULT_WAREHOUSE = "data/warehouse.duckdb"
DEFAULT_DEFINITIONS_DIR = "data/definitions"
# First hourly partition. Events before it cannot be placed in a partition and are quarantined.
DEFAULT_PARTITIONS_START = "2024-01-01-00:00"
DEFAULT_PARENT_TRAIT = "parent_account_id"
# DuckDB keeps within this much memory and spills larger work to `<warehouse>.tmp/`.
DEFAULT_MEMORY_LIMIT = "4GB"


def landing_dir() -> Path:
    """Folder where Segment NDJSON files land (`AH_LANDING_DIR`)."""
    return Path(os.environ.get(LANDING_DIR_ENV, DEFAULT_LANDING_DIR))


def warehouse_path() -> Path:
    """DuckDB warehouse file (`AH_WAREHOUSE`)."""
    return Path(os.environ.get(WAREHOUSE_ENV, DEFAULT_WAREHOUSE))


def definitions_dir() -> Path:
    """Folder of YAML trait, audience and destination definitions (`AH_DEFINITIONS_DIR`)."""
    return Path(os.environ.get(DEFINITIONS_DIR_ENV, DEFAULT_DEFINITIONS_DIR))


def partitions_start() -> str:
    """First hour of the hourly partitions (`AH_PARTITIONS_START`, format YYYY-MM-DD-HH:MM)."""
    return os.environ.get(PARTITIONS_START_ENV, DEFAULT_PARTITIONS_START)


def parent_trait() -> str:
    """The group trait naming an account's parent account (`AH_PARENT_TRAIT`)."""
    return os.environ.get(PARENT_TRAIT_ENV, DEFAULT_PARENT_TRAIT)


def duckdb_config() -> dict[str, str]:
    """Settings of every warehouse connection: DuckDB's memory limit
    (`AH_DUCKDB_MEMORY_LIMIT`, e.g. `4GB` or `500MB`)."""
    limit = os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT)
    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*[KMGT]i?B\s*", limit, re.IGNORECASE):
        raise ValueError(f"{MEMORY_LIMIT_ENV}={limit!r}: expected an amount like 4GB or 500MB")
    return {"memory_limit": limit}
