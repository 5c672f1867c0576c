"""Activation diffs: per hour, who entered and exited each synced audience since the previous
hour's snapshot, and which synced traits changed value (`activation_diffs`).

A previous hour that has no snapshot counts as empty: everyone enters; an hour of the run that
a synced audience or trait was not built for fails the run. A trait changes when its
value differs from the previous hour's (a null value and no row are the same). Each change is
one Ibis expression per synced audience or trait, compiled once and run for every hour on
either engine; the old and new values are stored as JSON text.
"""

import json
from datetime import datetime

import duckdb
import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from account_hierarchy.activation.plan import input_hours
from account_hierarchy.activation.schemas import validate_diffs
from account_hierarchy.audiences.evaluate import NotComputedError
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.json_text import fetch_rows
from account_hierarchy.output import plain
from account_hierarchy.partitions import hours_of
from account_hierarchy.traits.compile import HOUR, compile_hourly, hourly_params, timestamp
from account_hierarchy.warehouse import transaction

DIFFS_DDL = """
CREATE TABLE IF NOT EXISTS activation_diffs (
    snapshot_hour TIMESTAMP NOT NULL,
    kind VARCHAR NOT NULL,          -- audience or trait
    name VARCHAR NOT NULL,
    entity_type VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    change VARCHAR NOT NULL,        -- entered, exited or changed
    old_value JSON,
    new_value JSON
)
"""
DIFF_COLUMNS = ["snapshot_hour", "kind", "name", "entity_type", "entity_id", "change",
                "old_value", "new_value"]  # fmt: skip
PREVIOUS = HOUR - ibis.interval(hours=1)


def synced(catalog: Catalog) -> tuple[list[str], dict[str, str]]:
    """The audiences and traits (trait -> entity) some destination receives."""
    audiences = sorted({a for d in catalog.destinations for a in d.destination.audiences})
    traits = {}
    for located in catalog.destinations:
        for trait in located.destination.traits:
            entity = "account" if trait in catalog.trait_columns("account") else "user"
            traits[trait] = entity
    return audiences, traits


def require_inputs(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, start: datetime, end: datetime
) -> None:
    """Fail clearly when a synced audience or trait was not built for every hour of
    `[start, end)`: its diffs would read it as empty there (every member exiting). The hour
    before `start` may be missing (everyone enters)."""
    expected = len(hours_of(start, end))
    inputs = {}
    for located in catalog.destinations:
        inputs |= input_hours(con, catalog, located.destination)
    for name, built in sorted(inputs.items()):
        if name.endswith(" traits"):  # (a trait table: each trait's own hours are checked)
            continue
        inside = built.filter(
            (built.snapshot_hour >= timestamp(start)) & (built.snapshot_hour < timestamp(end))
        )
        found = inside.snapshot_hour.nunique().to_pyarrow().as_py()
        if found < expected:
            raise NotComputedError(
                f"{name} has no snapshot for {expected - found} of the {expected} hours from "
                f"{start} to {end}: materialize it first."
            )


def audience_changes(backend: ibis.BaseBackend, audience: str) -> ir.Table:
    """Who entered (`before` false, `after` true) or exited the audience at `HOUR`."""
    members = backend.table("audience_memberships")
    members = members.filter(members.audience == audience)
    now = members.filter(members.snapshot_hour == HOUR).select("entity_id", "entity_type")
    before = members.filter(members.snapshot_hour == PREVIOUS).select(
        before_id="entity_id", before_type="entity_type"
    )
    rows = now.outer_join(before, now.entity_id == before.before_id)
    rows = rows.filter(rows.entity_id.isnull() | rows.before_id.isnull())
    return rows.select(
        entity_type=ibis.coalesce(rows.entity_type, rows.before_type),
        entity_id=ibis.coalesce(rows.entity_id, rows.before_id),
        change=ibis.ifelse(rows.before_id.isnull(), "entered", "exited"),
        before=rows.before_id.notnull(),
        after=rows.entity_id.notnull(),
    )


def trait_changes(backend: ibis.BaseBackend, trait: str, entity: str) -> ir.Table:
    """The entities whose trait value at `HOUR` differs from the previous hour's."""
    table = backend.table(f"{entity}_traits")
    id_column = f"{entity}_id"
    now = table.filter(table.snapshot_hour == HOUR).select(
        entity_id=table[id_column], after=table[trait]
    )
    before = table.filter(table.snapshot_hour == PREVIOUS).select(
        before_id=table[id_column], before=table[trait]
    )
    rows = now.outer_join(before, now.entity_id == before.before_id)
    rows = rows.filter(~rows.after.identical_to(rows.before))
    return rows.select(
        entity_type=ibis.literal(entity),
        entity_id=ibis.coalesce(rows.entity_id, rows.before_id),
        change=ibis.literal("changed"),
        before=rows.before,
        after=rows.after,
    )


def change_queries(backend: ibis.BaseBackend, catalog: Catalog) -> dict[tuple[str, str], ir.Table]:
    """Per synced (kind, name), the query of its changes at `HOUR`."""
    audiences, traits = synced(catalog)
    queries = {("audience", name): audience_changes(backend, name) for name in audiences}
    for trait, entity in traits.items():
        queries["trait", trait] = trait_changes(backend, trait, entity)
    return queries


def json_text(value: object, integer: bool) -> str | None:
    """A value as compact JSON text (None for null); `integer` columns give integers."""
    value = plain(value)
    if value is None:
        return None
    if integer and isinstance(value, float):  # (an engine may give nullable integers as floats)
        value = int(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def diff_rows(
    kind: str, name: str, query: ir.Table, found: pd.DataFrame, hour: datetime
) -> pd.DataFrame:
    """One hour's changes of a synced audience or trait as rows of `activation_diffs`."""
    integer = query.schema()["after"].is_integer()
    found = found.sort_values("entity_id")
    found["old_value"] = pd.Series([json_text(v, integer) for v in found.before], dtype=object,
                                   index=found.index)  # fmt: skip
    found["new_value"] = pd.Series([json_text(v, integer) for v in found.after], dtype=object,
                                   index=found.index)  # fmt: skip
    # (a change JSON cannot tell apart, such as from null to NaN, is none)
    pairs = zip(found.old_value, found.new_value, strict=True)
    found = found.loc[np.array([old != new for old, new in pairs], dtype=bool)]
    return pd.DataFrame(
        {
            "snapshot_hour": pd.Series([hour] * len(found), dtype="datetime64[us]"),
            "kind": kind,
            "name": name,
            "entity_type": found.entity_type.astype(str).to_numpy(),
            "entity_id": found.entity_id.astype(str).to_numpy(),
            "change": found.change.astype(str).to_numpy(),
            # (object columns keep None as null, in this frame and when frames are concatenated)
            "old_value": pd.Series(found.old_value.to_numpy(), dtype=object),
            "new_value": pd.Series(found.new_value.to_numpy(), dtype=object),
        },
        columns=DIFF_COLUMNS,
    )


def build_diffs(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, start: datetime, end: datetime
) -> dict[str, int]:
    """Write `activation_diffs` for every hour of `[start, end)`; return counts per change."""
    con.execute(DIFFS_DDL)
    backend = ibis.duckdb.from_connection(con)
    frames = []
    for (kind, name), query in change_queries(backend, catalog).items():
        sql = compile_hourly(backend, query)
        for hour in hours_of(start, end):
            cursor = con.execute(sql, hourly_params(sql, hour))
            # (rows as delivery reads them: dates as dates, JSON as the values it holds)
            columns = [column for column, *_ in cursor.description]
            found = pd.DataFrame(fetch_rows(cursor), columns=columns, dtype=object)
            frames.append(diff_rows(kind, name, query, found, hour))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DIFF_COLUMNS)
    con.register("found_diffs", rows)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE new_diffs AS SELECT CAST(snapshot_hour AS TIMESTAMP) AS "
        "snapshot_hour, kind::VARCHAR AS kind, name::VARCHAR AS name, entity_type::VARCHAR AS "
        "entity_type, entity_id::VARCHAR AS entity_id, change::VARCHAR AS change, "
        "CAST(old_value AS JSON) AS old_value, CAST(new_value AS JSON) AS new_value "
        "FROM found_diffs"
    )
    con.unregister("found_diffs")
    validate_diffs(con, "new_diffs")
    with transaction(con):  # (a crash between them would leave built hours without diffs)
        con.execute(
            "DELETE FROM activation_diffs WHERE snapshot_hour >= $start AND snapshot_hour < $end",
            {"start": start, "end": end},
        )
        con.execute("INSERT INTO activation_diffs SELECT * FROM new_diffs ORDER BY ALL")
    counts = dict(con.execute("SELECT change, count(*) FROM new_diffs GROUP BY 1").fetchall())
    return {change: counts.get(change, 0) for change in ("entered", "exited", "changed")}
