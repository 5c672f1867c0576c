"""Verify the fast paths at scale: what the hourly runs store (traits rolled up from hour
tiles, day tiles and day partials; audiences whose `performed` conditions count with them) is
compared with two references, for windows chosen to cross their edge cases:

- the direct computation over the events, for every entity and hour of the window (traits:
  `build_traits(use_tiles=False)`; audiences: the `Evaluator` without tiles);
- pandas (`pandas_traits`, an implementation of the computed trait semantics of its own), for
  the window's last hour, on every k-th account: those accounts' traits, and the user traits
  of their users, need only the events of their users (and of their subsidiaries' users),
  which are loaded whole, so the values compared are exact.

The windows: a run of three hours across the last midnight (the day partials are rebuilt at
midnight), the last day's first hour, an ordinary hour, the last hour (it ends a day) and an
hour mid-month, each run as its own hourly run would be. One row per window and reference,
with the cells compared and how many differ (numbers within 1e-9 relative); any difference,
or a check that compared no cell, makes the command exit with status 1 after printing the
table and the first differences.

    python -m benchmarks.verify [--events 10000000] [--definitions data/definitions]
                                [--windows "an ordinary hour,..."] [--format jsonl]

`--definitions` verifies other traits and audiences (your own) on the scale's sample events;
their tiles are built on the way. `--windows` verifies only the windows named (comma-separated).
"""

import math
import sys
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import ibis
import pandas as pd

from account_hierarchy.audiences.evaluate import Evaluator
from account_hierarchy.audiences.memberships import build_audience, membership_rows_sql
from account_hierarchy.catalog.loader import Catalog, DefinitionError, load_catalog
from account_hierarchy.catalog.models import (
    ComputedTrait,
    EventCounter,
    UniqueList,
    UniqueListCount,
    UniqueUsers,
)
from account_hierarchy.traits.compile import ENTITY_ID
from account_hierarchy.traits.compute import TRAIT_TABLES, build_traits
from account_hierarchy.warehouse import connect
from benchmarks import pandas_traits
from benchmarks.common import figure_arguments, print_rows, timed
from benchmarks.pipeline import all_tiles, computed_traits, hierarchy_snapshots, pandas_values
from benchmarks.scale import DEFINITIONS, Scale

PANDAS_EVENTS = 1_000_000


def windows(last_hour: datetime) -> list[tuple[str, datetime, datetime]]:
    """(what, start, end) of the windows verified, for a sample whose last hour ends a day."""
    midnight = last_hour.replace(hour=0)
    one = timedelta(hours=1)
    mid_month = midnight - timedelta(days=14) + 13 * one
    return [
        ("3 hours across midnight", midnight - 2 * one, midnight + one),
        ("the day's first hour", midnight, midnight + one),
        ("an ordinary hour", last_hour - 9 * one, last_hour - 8 * one),
        ("the hour ending the day", last_hour, last_hour + one),
        ("an hour mid-month", mid_month, mid_month + one),
    ]


def measure(
    scale: Scale, definitions: Path = DEFINITIONS, only: list[str] | None = None
) -> tuple[list[dict], list[str]]:
    """Rows (window, reference, cells compared, differing, seconds) and the first differences
    found, for the traits and audiences of the `definitions` folder, in every window or
    those named in `only`."""
    catalog = load_catalog(definitions)
    rows: list[dict] = []
    examples: list[str] = []
    with connect(scale.ingested()) as con:
        all_tiles(con, catalog)
        for what, start, end in windows(scale.last_hour):
            if only and what not in only:
                continue
            hierarchy_snapshots(con, start, end)
            last = end - timedelta(hours=1)
            checks = (
                ("traits: direct from the events", direct_traits, (start, end)),
                ("audiences: direct from the events", direct_audiences, (start, end)),
                ("traits: pandas, last hour, 1 in k accounts", _pandas_traits, (last,)),
            )
            for reference, check, hours in checks:
                seconds, (cells, found) = timed(partial(check, con, catalog, *hours))
                if not cells:
                    found.append(f"{what}: {reference}: no cell was compared")
                rows.append({"window": what, "reference": reference, "cells compared": cells,
                             "differing": len(found), "seconds": seconds})  # fmt: skip
                examples += found[:5]
    return rows, examples


def direct_traits(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, start: datetime, end: datetime
) -> tuple[int, list[str]]:
    """Both trait tables of the window computed from the events, then as the hourly run does
    (which leaves them stored), compared cell by cell."""
    build_traits(con, catalog, start, end, use_tiles=False)
    for table in TRAIT_TABLES.values():
        con.execute(f"CREATE OR REPLACE TEMP TABLE direct_{table} AS FROM {table} "
                    "WHERE snapshot_hour >= $start AND snapshot_hour < $end",
                    {"start": start, "end": end})  # fmt: skip
    build_traits(con, catalog, start, end)
    cells, found = 0, []
    for entity, table in TRAIT_TABLES.items():
        id_column = ENTITY_ID[entity]
        stored = _rows(con, f"FROM {table} WHERE snapshot_hour >= $start AND snapshot_hour "
                       "< $end", {"start": start, "end": end})  # fmt: skip
        direct = _rows(con, f"FROM direct_{table}", {})
        keys = ("snapshot_hour", id_column)
        table_cells, table_found = compare(stored, direct, keys, table)
        cells, found = cells + table_cells, found + table_found
    return cells, found


def direct_audiences(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, start: datetime, end: datetime
) -> tuple[int, list[str]]:
    """Every audience of the window as the hourly run stores it, against its members and
    reasons evaluated hour by hour without tiles."""
    backend = ibis.duckdb.from_connection(con)
    cells, found = 0, []
    for located in catalog.audiences:
        name = located.audience.name
        build_audience(con, catalog, name, start, end)
        hour = start
        while hour < end:
            at = {"hour": hour, "audience": name}
            stored = _rows(con, "SELECT entity_id, CAST(reason AS VARCHAR) AS reason FROM "
                           "audience_memberships WHERE audience = $audience AND snapshot_hour "
                           "= $hour", at)  # fmt: skip
            evaluated = Evaluator(backend, catalog, hour, use_tiles=False).audience(name)
            members = str(backend.compile(evaluated.table.filter(evaluated.table.member)))
            direct = _rows(
                con,
                "SELECT entity_id, CAST(reason AS VARCHAR) AS reason FROM "
                f"({membership_rows_sql(evaluated, members)})",
                {"snapshot_hour": hour, "audience": name, "entity_type": evaluated.entity},
            )
            hour_cells, hour_found = compare(stored, direct, ("entity_id",), f"{name} {hour}")
            cells, found = cells + hour_cells, found + hour_found
            hour += timedelta(hours=1)
    return cells, found


def _pandas_traits(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, hour: datetime
) -> tuple[int, list[str]]:
    """The stored computed traits of every k-th account at `hour`, and the user traits of the
    users of those accounts, against pandas over the whole event history of the users that
    can count for them."""
    (events,) = con.execute("SELECT count(*) FROM raw_events").fetchone()
    share = max(1, math.ceil(events / PANDAS_EVENTS))
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE sampled_accounts AS
        SELECT account_id FROM accounts
        WHERE snapshot_hour = $h AND hash(account_id) % $k = 0
        """,
        {"h": hour, "k": share},
    )
    # the users of the sampled accounts and of every account below one of them
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE sampled_users AS
        SELECT DISTINCT m.user_id FROM account_memberships AS m
        JOIN account_hierarchy AS t ON t.account_id = m.account_id AND t.snapshot_hour = $h
        WHERE m.snapshot_hour = $h
          AND list_has_any(t.path, (SELECT list(account_id) FROM sampled_accounts))
        """,
        {"h": hour},
    )
    frame = con.execute(
        "SELECT * FROM raw_events WHERE user_id IN (SELECT user_id FROM sampled_users)"
    ).df()
    traits = computed_traits(catalog)
    values = pandas_values(con, pandas_traits.prepare(frame), traits, hour)
    cells, found = 0, []
    for entity, sample in (("account", "sampled_accounts"), ("user", "sampled_users")):
        table, id_column = TRAIT_TABLES[entity], ENTITY_ID[entity]
        names = [t.name for t in traits if t.entity == entity]
        stored = _rows(con, f"SELECT {id_column}, {', '.join(names)} FROM {table} WHERE "
                       f"snapshot_hour = $h AND {id_column} IN (FROM {sample})",
                       {"h": hour})  # fmt: skip
        sampled = [entity_id for (entity_id,) in con.execute(f"FROM {sample}").fetchall()]
        expected = [
            {id_column: entity_id,
             **{t.name: _pandas_value(values[t.name], t, entity_id) for t in traits
                if t.entity == entity}}
            for entity_id in sampled
        ]  # fmt: skip
        entity_cells, entity_found = compare(stored, expected, (id_column,), f"{table} {hour}")
        cells, found = cells + entity_cells, found + entity_found
    return cells, found


def _pandas_value(values: pd.Series, trait: ComputedTrait, entity_id: str) -> Any:
    """An entity's value from pandas, or the trait's empty value when nothing matched."""
    if entity_id in values.index:
        value = values[entity_id]
        return sorted(value) if isinstance(trait, UniqueList) else value
    if isinstance(trait, EventCounter | UniqueUsers | UniqueListCount):
        return 0
    if isinstance(trait, UniqueList):
        return []
    return 0.0 if getattr(trait, "function", None) == "sum" else None


def _rows(con: duckdb.DuckDBPyConnection, query: str, params: dict) -> list[dict]:
    cursor = con.execute(query, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def compare(
    left: list[dict], right: list[dict], keys: tuple[str, ...], label: str
) -> tuple[int, list[str]]:
    """Cells compared and a description of each difference between two sets of rows matched
    on `keys` (a row on one side only is one difference)."""
    by_key = {tuple(row[k] for k in keys): row for row in right}
    cells, found = 0, []
    for row in left:
        key = tuple(row[k] for k in keys)
        other = by_key.pop(key, None)
        if other is None:
            found.append(f"{label}: {key} stored but not in the reference")
            continue
        for column, value in row.items():
            cells += 1
            if not same(value, other.get(column)):
                found.append(f"{label}: {key} {column}: stored {value!r}, "
                             f"reference {other.get(column)!r}")  # fmt: skip
    found += [f"{label}: {key} in the reference but not stored" for key in by_key]
    return cells, found


def same(left: Any, right: Any) -> bool:
    """Equal values; numbers within 1e-9 relative, and NaN or None equal to each other."""
    if _missing(left) or _missing(right):
        return _missing(left) and _missing(right)
    if isinstance(left, int | float) and isinstance(right, int | float):
        return math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-12)
    if hasattr(right, "item"):  # (numpy scalars from pandas)
        return same(left, right.item())
    return left == right


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def main() -> None:
    args = figure_arguments(__doc__, 10_000_000, definitions=DEFINITIONS, windows="")
    scale = Scale(args.events, args.work_dir)
    only = [name.strip() for name in args.windows.split(",") if name.strip()]
    known = [what for what, _, _ in windows(scale.last_hour)]
    if unknown := [name for name in only if name not in known]:
        sys.exit(f"unknown window(s) {', '.join(map(repr, unknown))}; choose from "
                 f"{', '.join(map(repr, known))}")  # fmt: skip
    try:  # (the definitions load first, before anything is ingested)
        rows, examples = measure(scale, args.definitions, only)
    except DefinitionError as error:
        sys.exit(str(error))
    print_rows(rows, args.format)
    if examples:
        print("\n".join(["", "first differences:", *examples]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
