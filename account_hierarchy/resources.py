"""Dagster resources: the DuckDB warehouse and the landing folder, located by settings."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from account_hierarchy import settings


class Warehouse(DuckDBResource):
    """The DuckDB warehouse; connections work in UTC like the rest of the project."""

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection (retried while another process holds the file lock)."""
        with super().get_connection() as con:
            con.execute("SET TimeZone = 'UTC'")
            yield con


class LandingFolder(dg.ConfigurableResource):
    """The folder where Segment NDJSON files land."""

    path: str

    @property
    def root(self) -> Path:
        """The folder as a path."""
        return Path(self.path)


def warehouse_resource() -> Warehouse:
    """The DuckDB warehouse at `AH_WAREHOUSE`."""
    path = settings.warehouse_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return Warehouse(database=str(path), connection_config=settings.duckdb_config())


def landing_resource() -> LandingFolder:
    """The landing folder at `AH_LANDING_DIR`."""
    return LandingFolder(path=str(settings.landing_dir()))
