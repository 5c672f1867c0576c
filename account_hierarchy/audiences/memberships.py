"""Audience memberships of every hour of a window, with the reason each member qualifies,
stored in `audience_memberships`."""

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import ibis
import numpy as np
import pandas as pd

from account_hierarchy.audiences.evaluate import (
    Evaluated,
    Evaluator,
    NotComputedError,
    require_snapshots,
)
from account_hierarchy.audiences.schemas import validate_memberships
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.partitions import hours_of
from account_hierarchy.traits.compile import AS_OF, HOUR, compile_hourly, hourly_params

MEMBERSHIPS_DDL = """
CREATE TABLE IF NOT EXISTS audience_memberships (
    snapshot_hour TIMESTAMP NOT NULL,
    audience VARCHAR NOT NULL,
    entity_type VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    reason JSON NOT NULL
)
"""


@dataclass
class AudienceReport:
    """Sizes per hour, and who entered and exited at the window's last hour."""

    sizes: dict[datetime, int] = field(default_factory=dict)
    entered: int = 0
    exited: int = 0
    compiled: str = ""


def plain(value: Any, integer: bool = False) -> Any:
    """A value from a result frame as plain JSON-able Python; from an `integer` column, an
    integer (an engine may hand over a nullable integer column as floats)."""
    if isinstance(value, np.ndarray | list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    if integer and isinstance(value, float):
        return int(value)
    return value


def reasons(evaluated: Evaluated, frame: pd.DataFrame) -> list[dict]:
    """Per row: each leaf condition, whether it held, and the values that decided it."""
    schema = evaluated.table.schema()
    integers = {name for name, kind in schema.items() if kind.is_integer()}
    leaves = []
    for leaf in evaluated.leaves:
        prefix, held = f"{leaf.id}_", f"{leaf.id}_held"
        values = [
            (column.removeprefix(prefix), _plain_column(frame[column], column in integers))
            for column in frame.columns
            if column.startswith(prefix) and column != held
        ]
        leaves.append((leaf.label, [bool(value) for value in frame[held].tolist()], values))
    return [
        {
            "conditions": [
                {"condition": label, "held": held[row]} | {key: got[row] for key, got in values}
                for label, held, values in leaves
            ]
        }
        for row in range(len(frame))
    ]


def _plain_column(column: pd.Series, integer: bool) -> list:
    """A result column's values as `plain` gives them, converted a column at a time where its
    type allows (numbers), value by value otherwise."""
    kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else "O"
    if kind in "biu":
        return column.tolist()
    if kind == "f":
        return [None if v != v else int(v) if integer else v for v in column.tolist()]
    return [plain(value, integer) for value in column.tolist()]


def member_frame(evaluated: Evaluated, frame: pd.DataFrame, hour: datetime) -> pd.DataFrame:
    """The members (rows of an evaluated audience) as rows of `audience_memberships`."""
    frame = frame.sort_values("entity_id")
    return pd.DataFrame(
        {
            "snapshot_hour": pd.Series([hour] * len(frame), dtype="datetime64[us]"),
            "audience": evaluated.name,
            "entity_type": evaluated.entity,
            "entity_id": frame.entity_id.astype(str).to_numpy(),
            "reason": [json.dumps(reason) for reason in reasons(evaluated, frame)],
        }
    )


def build_audience(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, name: str, start: datetime, end: datetime
) -> AudienceReport:
    """Write the audience's members for every hour of `[start, end)` (one compiled query, run
    once per hour)."""
    con.execute(MEMBERSHIPS_DDL)
    backend = ibis.duckdb.from_connection(con)
    report = AudienceReport()
    evaluated = Evaluator(backend, catalog).audience(name)
    require_snapshots(backend, evaluated, start, end)
    sql = compile_hourly(backend, evaluated.table.filter(evaluated.table.member))
    frames = []
    for hour in hours_of(start, end):
        found = con.execute(sql, hourly_params(sql, hour)).df()
        frames.append(member_frame(evaluated, found, hour))
        report.sizes[hour] = len(frames[-1])
    last_hour = {HOUR: end - timedelta(hours=1), AS_OF: end}
    report.compiled = str(backend.compile(evaluated.table, params=last_hour))
    members = pd.concat(frames, ignore_index=True)
    con.register("new_memberships", members)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE new_memberships_typed AS SELECT "
        "CAST(snapshot_hour AS TIMESTAMP) AS snapshot_hour, CAST(audience AS VARCHAR) AS audience, "
        "CAST(entity_type AS VARCHAR) AS entity_type, CAST(entity_id AS VARCHAR) AS entity_id, "
        "CAST(reason AS JSON) AS reason FROM new_memberships"
    )
    con.unregister("new_memberships")
    validate_memberships(con, "new_memberships_typed")
    con.execute(
        "DELETE FROM audience_memberships WHERE audience = $name AND snapshot_hour >= $start "
        "AND snapshot_hour < $end",
        {"name": name, "start": start, "end": end},
    )
    con.execute("INSERT INTO audience_memberships SELECT * FROM new_memberships_typed")
    last = end - timedelta(hours=1)
    now = set(members.entity_id[members.snapshot_hour == last])
    before = _members_at(con, evaluated, sql, last - timedelta(hours=1))
    report.entered, report.exited = len(now - before), len(before - now)
    return report


def changes_at(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, name: str, members: set[str], hour: datetime
) -> tuple[int, int]:
    """How many of the audience's `members` at `hour` entered, and how many exited, since the
    previous hour's members (stored, else evaluated)."""
    backend = ibis.duckdb.from_connection(con)
    evaluated = Evaluator(backend, catalog).audience(name)
    sql = compile_hourly(backend, evaluated.table.filter(evaluated.table.member))
    before = _members_at(con, evaluated, sql, hour - timedelta(hours=1))
    return len(members - before), len(before - members)


def _members_at(con, evaluated: Evaluated, sql: str, hour: datetime) -> set[str]:
    """Members at `hour`: stored if that hour was materialized, else evaluated with the run's
    compiled query `sql` (none if that hour has no snapshot to evaluate)."""
    stored = con.execute(
        "SELECT entity_id FROM audience_memberships WHERE audience = $name "
        "AND snapshot_hour = $hour",
        {"name": evaluated.name, "hour": hour},
    ).fetchall()
    if stored:
        return {entity_id for (entity_id,) in stored}
    try:
        backend = ibis.duckdb.from_connection(con)
        require_snapshots(backend, evaluated, hour, hour + timedelta(hours=1))
    except NotComputedError:
        return set()
    return set(con.execute(sql, hourly_params(sql, hour)).df().entity_id)
