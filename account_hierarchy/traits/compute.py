"""Computing every trait of accounts and users for each hour of a window, into
`account_traits` and `user_traits` (one row per entity and snapshot hour, one column per trait).

Every account (user) of the hour's snapshot gets a row, with the natural empty value of a trait
when nothing matched. Each entity's query (one aggregation per attribution class) is built and
compiled once per run, then run for every hour with the hour bound as a parameter; SQL traits,
checked and rendered once per run (`SqlTraitRun`), run once per hour against the snapshot views.
"""

import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import duckdb
import ibis
import ibis.expr.types as ir

from account_hierarchy.catalog.loader import Catalog, LocatedTrait
from account_hierarchy.catalog.models import ComputedTrait, MostFrequent, SqlTrait
from account_hierarchy.hierarchy.queries import require_hierarchy_built
from account_hierarchy.partitions import day_of, hours_of
from account_hierarchy.traits.compile import (
    AS_OF,
    ENTITY_ID,
    HOUR,
    Snapshot,
    aggregate,
    attribute,
    attributed_events,
    attribution_class,
    compile_hourly,
    empty_value,
    hourly_params,
    json_properties,
    most_frequent,
)
from account_hierarchy.traits.schemas import validate_traits
from account_hierarchy.traits.sql_traits import (
    SqlTraitError,
    against_views,
    create_snapshot_views,
    parse_trait_sql,
    raw_table,
    rows_table,
)
from account_hierarchy.traits.tiles import (
    TileRefresh,
    build_day_partials,
    combines_by_day,
    is_value_trait,
    performed_counters,
    refresh_tiles,
    rollup,
    rollup_values,
    tileable,
    tiles_as_of,
    value_selection,
)
from account_hierarchy.warehouse import in_memory, table_names, transaction

TRAIT_TABLES = {"account": "account_traits", "user": "user_traits"}
# DuckDB types that pandas cannot hold, in a column or nested: a SQL trait may not return them.
FRAMELESS_TYPES = {"uhugeint", "bignum", "varint", "time with time zone"}
NESTED_TYPES = {"list", "array", "struct", "map", "union"}
ENTITY_TABLES = {"account": "accounts", "user": "users"}
# Every hour each trait column was computed for, and by which definition: a trait added to
# the definitions and built for older hours only has a column at the newer ones too, but no
# values computed there; a trait edited holds the old definition's values until rebuilt.
TRAIT_HOURS_DDL = """
CREATE TABLE IF NOT EXISTS trait_hours (
    entity VARCHAR NOT NULL,
    trait VARCHAR NOT NULL,         -- a trait column
    snapshot_hour TIMESTAMP NOT NULL,
    definition VARCHAR              -- Catalog.trait_definitions' fingerprint
);
ALTER TABLE trait_hours ADD COLUMN IF NOT EXISTS definition VARCHAR;
"""


def build_traits(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    *,
    describe: bool = False,
    use_tiles: bool = True,
) -> dict[str, Any]:
    """Write both trait tables for the window; return per entity the row count, the seconds
    taken (`seconds`, of which `sql_trait_seconds` running SQL traits) and (with `describe`)
    the SQL each trait compiled to for the window's last hour; under `tiles` what refreshing
    the tiles did, and under `day_partials_rebuilt` for how many days the day partials were.

    Each entity's query is built and compiled once, then run for every hour with the hour
    bound as a parameter. With `use_tiles` (the default) computed traits roll up hour tiles
    and day tiles or day partials (`tiles.py`); without, they read the events directly (the
    reference the tiles are tested against)."""
    backend = ibis.duckdb.from_connection(con)
    hours = hours_of(start, end)
    if not hours:
        return {}
    require_hierarchy_built(con, start, end)
    report: dict[str, Any] = {}
    tiled = tiled_traits(catalog) if use_tiles else []
    if tiled:
        report["tiles"] = refresh_window_tiles(con, catalog, end)
    by_day = day_partial_traits(catalog) if use_tiles else []
    report["day_partials_rebuilt"] = 0
    queries: dict[str, str] = {}
    seconds = dict.fromkeys(TRAIT_TABLES, 0.0)
    sql_seconds = dict.fromkeys(TRAIT_TABLES, 0.0)
    sql_traits = {entity: [SqlTraitRun(con, located) for located in catalog.traits_of(entity)
                           if isinstance(located.trait, SqlTrait)]
                  for entity in TRAIT_TABLES}  # fmt: skip
    for hour in hours:
        if by_day and (hour == hours[0] or hour.hour == 0):
            day = day_of(hour)
            report["day_partials_rebuilt"] += build_day_partials(con, by_day, day)
        views_cut = False
        for entity, table in TRAIT_TABLES.items():
            started = time.perf_counter()
            for sql_trait in sql_traits[entity]:
                if not views_cut:
                    create_snapshot_views(con, hour)
                    views_cut = True
                sql_trait.run(hour)
            sql_seconds[entity] += time.perf_counter() - started
            if entity not in queries:  # (the SQL traits' result tables must exist to build it)
                rows = entity_rows(backend, catalog, entity, tiled)
                queries[entity] = compile_hourly(backend, rows)
            sql, params = queries[entity], hourly_params(queries[entity], hour)
            if hour == hours[0]:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {table}_staged AS {sql}", params)
            else:
                con.execute(f"INSERT INTO {table}_staged BY NAME {sql}", params)
            seconds[entity] += time.perf_counter() - started
    for entity, table in TRAIT_TABLES.items():
        started = time.perf_counter()
        validate_traits(con, f"{table}_staged", entity, catalog)
        seconds[entity] += time.perf_counter() - started
    # (both tables and trait_hours together, or nothing: a failure after a table's rows of the
    # window were deleted must not leave it without them)
    with transaction(con):
        for entity in TRAIT_TABLES:
            started = time.perf_counter()
            _replace_window(con, catalog, entity, start, end)
            seconds[entity] += time.perf_counter() - started
        record_trait_hours(con, catalog, start, end)
    for entity, table in TRAIT_TABLES.items():
        (count,) = con.execute(f"SELECT count(*) FROM {table}_staged").fetchone()
        compiled = compiled_traits(backend, catalog, entity, hours[-1], tiled) if describe else {}
        report[entity] = {"rows": count, "compiled": compiled, "seconds": seconds[entity],
                          "sql_trait_seconds": sql_seconds[entity]}  # fmt: skip
    return report


def _replace_window(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, entity: str, start: datetime, end: datetime
) -> None:
    """Replace the rows of `[start, end)` of the entity's trait table with the staged ones,
    its columns following them."""
    table = TRAIT_TABLES[entity]
    staged = f"{table}_staged"
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS FROM {staged} WITH NO DATA")
    computed = {located.trait.name for located in catalog.traits_of(entity)
                if not isinstance(located.trait, SqlTrait)}  # fmt: skip
    # (columns first: DuckDB cannot commit a transaction that alters a table after deleting
    # from it)
    retyped = _align_columns(con, table, staged, computed, (start, end))
    con.execute(
        f"DELETE FROM {table} WHERE snapshot_hour >= $start AND snapshot_hour < $end",
        {"start": start, "end": end},
    )
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {staged} ORDER BY 1, 2")
    if retyped:  # (the stored hours hold another definition's values, converted)
        ensure_trait_hours(con)
        con.execute("DELETE FROM trait_hours WHERE entity = $entity AND "
                    "list_contains($retyped, trait)",
                    {"entity": entity, "retyped": sorted(retyped)})  # fmt: skip


def ensure_trait_hours(con: duckdb.DuckDBPyConnection) -> None:
    """Create `trait_hours` if it does not exist yet."""
    con.execute(TRAIT_HOURS_DDL)


def computed_by(recorded: ir.Table, definitions: Iterable[str]) -> ir.BooleanValue:
    """Which rows of `trait_hours` (`recorded`) were computed by one of `definitions`
    (`Catalog.trait_definitions` fingerprints): rows recorded before the fingerprint was
    kept (without one, or in a table the read-only CLI reads before a trait run adds the
    column) by any."""
    if "definition" not in recorded.columns:
        return ibis.literal(True)
    return recorded.definition.isnull() | recorded.definition.isin(list(definitions))


def newest_trait_hours(
    con: duckdb.DuckDBPyConnection, catalog: Catalog
) -> dict[tuple[str, str], datetime | None]:
    """(entity, trait column) -> the newest hour it was computed for by its definition in
    `catalog`, as `trait_hours` records (None: by other definitions only; an entity missing
    from it has trait tables built before the table was kept)."""
    if "trait_hours" not in table_names(con):
        return {}
    recorded = ibis.duckdb.from_connection(con).table("trait_hours")
    current = computed_by(recorded, catalog.trait_definitions().values())
    newest = recorded.group_by("entity", "trait").aggregate(
        hour=recorded.snapshot_hour.max(where=current)
    )
    return {(row["entity"], row["trait"]): row["hour"] for row in newest.to_pyarrow().to_pylist()}


def record_trait_hours(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, start: datetime, end: datetime
) -> None:
    """Replace the rows of `[start, end)` in `trait_hours` with every trait column of
    `catalog` at every hour, computed by its definition there."""
    ensure_trait_hours(con)
    definitions = catalog.trait_definitions()
    entities, columns = [entity for entity, _ in definitions], [col for _, col in definitions]
    window = {"start": start, "end": end}
    con.execute(
        "DELETE FROM trait_hours WHERE snapshot_hour >= $start AND snapshot_hour < $end", window
    )
    # (a trait no longer defined has lost its column, and the values of every hour with it)
    for entity in TRAIT_TABLES:
        con.execute(
            "DELETE FROM trait_hours WHERE entity = $entity AND NOT list_contains($columns, trait)",
            {"entity": entity, "columns": [col for of, col in definitions if of == entity]},
        )
    con.execute(
        "INSERT INTO trait_hours BY NAME SELECT entity, trait, hour AS snapshot_hour, definition "
        "FROM (SELECT unnest($entities) AS entity, unnest($columns) AS trait, "
        "unnest($definitions) AS definition) "
        "CROSS JOIN (SELECT unnest(range($start, $end, INTERVAL 1 HOUR)) AS hour)",
        {**window, "entities": entities, "columns": columns,
         "definitions": list(definitions.values())},
    )  # fmt: skip


def _snapshot(backend: ibis.BaseBackend) -> Snapshot:
    return Snapshot(
        events=json_properties(backend.table("raw_events")),
        memberships=_at(backend.table("account_memberships")),
        hierarchy=_at(backend.table("account_hierarchy")),
        hour=HOUR,
        as_of=AS_OF,
    )


def tiled_traits(catalog: Catalog) -> list[ComputedTrait]:
    """The computed traits of both entities, and the counters of the audiences' `performed`
    conditions, that roll up from tiles."""
    traits = [
        located.trait for located in catalog.traits if not isinstance(located.trait, SqlTrait)
    ]
    counters = performed_counters([located.audience for located in catalog.audiences])
    return [trait for trait in traits + counters if tileable(trait)]


def refresh_window_tiles(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, end: datetime
) -> TileRefresh:
    """Bring the tiles of every tiled trait and counter up to date for the snapshots of a
    window ending at `end`: every hour's, and the day tiles of the days before `end`'s day
    (the ones those snapshots read)."""
    end_day = day_of(end)
    return refresh_tiles(con, tiled_traits(catalog), days_before=end_day)


def day_partial_traits(catalog: Catalog) -> list[ComputedTrait]:
    """The tiled traits and counters that combine by day: the traits stage and the audiences
    build the day partials (`build_day_partials`) of this same list, so they share them."""
    return [trait for trait in tiled_traits(catalog) if combines_by_day(trait)]


def entity_rows(
    backend: ibis.BaseBackend, catalog: Catalog, entity: str, tiled: list[ComputedTrait]
) -> ir.Table:
    """One entity's trait rows for the hour `HOUR` (a parameter), on any Ibis backend: SQL
    traits are read from the tables `rows_table(name)` the caller made for the hour, and
    tiled traits that combine by day from the day partials of the hour's day."""
    snapshot = _snapshot(backend)
    id_column = ENTITY_ID[entity]
    entities = _at(backend.table(ENTITY_TABLES[entity]))
    classes: dict[tuple, list[ComputedTrait]] = defaultdict(list)
    parts = []
    for located in catalog.traits_of(entity):
        if isinstance(located.trait, SqlTrait):
            parts.append(backend.table(rows_table(located.trait.name)))
        else:
            classes[attribution_class(located.trait)].append(located.trait)
    for key, traits in classes.items():
        parts += _class_parts(backend, snapshot, key, traits, tiled)
    # (one chain of joins, each part on its own key, is one SELECT however many parts there
    # are; a projection after each join would nest them as deep as there are parts)
    rows = entities.select(entity_id=entities[id_column])
    for number, part in enumerate(parts):
        key = f"_part_key_{number}"  # (no trait name starts with _)
        part = part.rename({key: "entity_id"})
        rows = rows.left_join(part, rows.entity_id == part[key])
    fills = {}
    for located in catalog.traits_of(entity):
        if not isinstance(located.trait, SqlTrait):
            empty = empty_value(located.trait)
            if empty is not None:
                fills[located.trait.name] = ibis.coalesce(rows[located.trait.name], empty)
    rows = rows.mutate(**fills) if fills else rows
    columns = [column for located in catalog.traits_of(entity) for column in located.columns]
    return rows.select(
        snapshot_hour=HOUR,
        **{id_column: rows.entity_id},
        **{column: rows[column] for column in columns},
    )


def _class_parts(
    backend: ibis.BaseBackend,
    snapshot: Snapshot,
    key: tuple,
    traits: list[ComputedTrait],
    tiled: list,
) -> list[ir.Table]:
    """Tables by `entity_id` holding the columns of `traits` (all of one attribution class):
    rolled up from tiles for the `tiled` ones (value traits with the same selection and
    window in one pass), aggregated from the events for the others. A roll-up whose traits
    all combine by day reads the day partials instead of the day tiles."""
    parts = []
    direct = [t for t in traits if t not in tiled]
    if direct:
        events = attributed_events(snapshot, key)
        plain = [t for t in direct if not isinstance(t, MostFrequent)]
        parts += [aggregate(events, plain, AS_OF)] if plain else []
        parts += [most_frequent(events, t, AS_OF) for t in direct if isinstance(t, MostFrequent)]
    rolled = [t for t in traits if t in tiled]
    plain = [t for t in rolled if not is_value_trait(t)]
    if plain:
        by_day = all(combines_by_day(t) for t in plain)
        tiles = attribute(tiles_as_of(backend, AS_OF, plain, day_partials=by_day), snapshot, key)
        parts.append(rollup(tiles, plain, AS_OF))
    shared: dict[tuple, list[ComputedTrait]] = defaultdict(list)
    for trait in rolled:
        if is_value_trait(trait):
            shared[value_selection(trait), trait.window_length].append(trait)
    for group in shared.values():
        by_day = combines_by_day(group[0])
        values = tiles_as_of(backend, AS_OF, group, values_of=group[0], day_partials=by_day)
        parts.append(rollup_values(attribute(values, snapshot, key), group, AS_OF))
    return parts


def compiled_traits(
    backend: ibis.BaseBackend,
    catalog: Catalog,
    entity: str,
    hour: datetime,
    tiled: list,
    dialect: str = "duckdb",
) -> dict[str, str]:
    """Each trait's own query for `hour`, as SQL of the backend's engine (shown in the UI)."""
    snapshot = _snapshot(backend)
    params = {HOUR: hour, AS_OF: hour + timedelta(hours=1)}
    compiled = {}
    for located in catalog.traits_of(entity):
        trait = located.trait
        if isinstance(trait, SqlTrait):
            compiled[trait.name] = against_views(parse_trait_sql(trait.sql, entity)[0], dialect)
        else:
            key = attribution_class(trait)
            (part,) = _class_parts(backend, snapshot, key, [trait], tiled)
            compiled[trait.name] = str(backend.compile(part, params=params))
    return compiled


def _at(table: ir.Table) -> ir.Table:
    return table.filter(table.snapshot_hour == HOUR)


class SqlTraitRun:
    """A SQL trait prepared for the hours of a run: checked and rendered against the snapshot
    views once, and the SQL that makes its rows by entity compiled at its first hour."""

    def __init__(self, con: duckdb.DuckDBPyConnection, located: LocatedTrait) -> None:
        self.con, self.located, self.trait = con, located, located.trait
        query, self.values = parse_trait_sql(self.trait.sql, self.trait.entity)
        self.query_sql = against_views(query)
        self.table = rows_table(self.trait.name)
        self.raw_table = raw_table(self.trait.name)
        self.rows_sql: str | None = None
        self.repeated_sql: str | None = None

    def run(self, hour: datetime) -> None:
        """The trait's rows at `hour` into the temp table `rows_table(name)`, by `entity_id`
        (the snapshot views must be cut at `hour`). DuckDB's error (a column that no table
        has, say), or an entity given several rows without `many`, names the trait and its
        file; one of the machine's (out of memory, a failed read or write), which a retry
        may not meet, is raised as it is, with a note naming them."""
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {self.raw_table} AS {self.query_sql}")
        except duckdb.OperationalError as error:
            error.add_note(f"(running {self.located.file}:{self.located.line}: SQL trait "
                           f"{self.trait.name} at {hour})")  # fmt: skip
            raise
        except duckdb.Error as error:
            raise sql_trait_error(self.located, f"failed at {hour}: {error}") from None
        if self.rows_sql is None:  # (the raw table's types are the query's, the same each hour)
            self._check_value_types()
            backend = ibis.duckdb.from_connection(self.con)
            raw = backend.table(self.raw_table)
            self.rows_sql = str(backend.compile(sql_trait_rows(raw, self.trait, self.values)))
            if not self.trait.many:
                self.repeated_sql = str(backend.compile(repeated_id(raw, self.trait)))
        if self.repeated_sql and (found := self.con.execute(self.repeated_sql).fetchone()):
            raise sql_trait_error(self.located, repeated_id_message(self.trait, *found, hour))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {self.table} AS {self.rows_sql}")

    def _check_value_types(self) -> None:
        """Refuse a value column of a type frames cannot hold (the rows are validated and
        previewed as pandas frames), before anything is stored."""
        raw = self.con.table(self.raw_table)
        for column, kind in zip(raw.columns, raw.types, strict=True):
            if column.lower() in self.values and (found := _frameless(kind)):
                raise sql_trait_error(
                    self.located,
                    f"returns {column} as {kind}, and no trait can hold {found} values: cast "
                    "them (to DOUBLE, HUGEINT or VARCHAR, say)",
                )


def _frameless(kind: Any) -> str | None:
    """The type frames cannot hold that `kind` (a DuckDB type) is or holds (a list's elements,
    a struct's fields, ...; not a struct's key names), or None."""
    if kind.id in FRAMELESS_TYPES:
        return str(kind)
    if kind.id in NESTED_TYPES:
        for _, child in kind.children:  # (an array's size is a child too, a number)
            if hasattr(child, "id") and (found := _frameless(child)):
                return found
    return None


def sql_trait_error(located: LocatedTrait, message: str) -> SqlTraitError:
    """An error of a SQL trait at run time, naming the trait and where it is defined."""
    return SqlTraitError(f"{located.file}:{located.line}: SQL trait {located.trait.name} {message}")


def sql_trait_rows(raw: ir.Table, trait: SqlTrait, values: list[str]) -> ir.Table:
    """A SQL trait's result by `entity_id`: rows without an id left out, and with `many` each
    value column as the sorted list of the entity's distinct values (without `many`, check
    first that no entity has several rows: `repeated_id`). Ids are text (`SELECT 1 AS
    account_id` names the account `1`)."""
    id_column = ENTITY_ID[trait.entity]
    rows = _with_text_ids(raw, id_column)
    # (an untyped `NULL AS x` is an INTEGER, as DuckDB types it: Spark's VOID cannot be stored)
    rows = rows.cast({value: "int32" for value in values if rows[value].type().is_null()})
    if trait.many:
        lists = rows.group_by(entity_id=rows[id_column]).aggregate(
            **{value: rows[value].collect(distinct=True).sort() for value in values}
        )
        # (only nulls is no value, as no row is: Spark would collect an empty list)
        return lists.mutate(**{value: ibis.ifelse(lists[value].length() > 0, lists[value], None)
                               for value in values})  # fmt: skip
    return rows.select(entity_id=rows[id_column], **{value: rows[value] for value in values})


def repeated_id(raw: ir.Table, trait: SqlTrait) -> ir.Table:
    """The first entity id a SQL trait's result has several rows for, and how many
    (`times`); no row when every entity has at most one."""
    id_column = ENTITY_ID[trait.entity]
    rows = _with_text_ids(raw, id_column)
    counts = rows.group_by(id_column).aggregate(times=rows.count())
    return counts.filter(counts.times > 1).order_by(id_column).limit(1)


def repeated_id_message(trait: SqlTrait, entity_id: str, times: int, hour: datetime) -> str:
    """What to say of an entity a SQL trait without `many` gave several rows."""
    id_column = ENTITY_ID[trait.entity]
    return (
        f"returned {times} rows for {id_column} {entity_id!r} at {hour}; return one row per "
        f"{id_column}, or set `many: true` to collect the values as lists"
    )


def _with_text_ids(raw: ir.Table, id_column: str) -> ir.Table:
    """The result with lower-case column names, as `parse_trait_sql` gives them (DuckDB names
    `SELECT ACCOUNT_ID` after the table's `account_id`, but `1 AS X` `X`), ids as text."""
    raw = raw.rename({column.lower(): column for column in raw.columns})
    rows = raw.mutate(**{id_column: raw[id_column].cast("string")})
    return rows.filter(rows[id_column].notnull())


def _align_columns(
    con: duckdb.DuckDBPyConnection,
    table: str,
    staged: str,
    computed: set[str],
    window: tuple[datetime, datetime],
) -> set[str]:
    """Give `table` the columns of `staged`, adding or dropping them (the rows of `window`,
    which `staged` replaces, do not count). A column whose type differs takes, for a computed
    trait, the type its definition gives (it changed: stored values convert where they can,
    else are null); for a SQL trait (its values of this run, say, are decimals where earlier
    hours' were integers), a type holding both, and the stored hours keep their values;
    `staged` is converted to it too. Returns the computed traits whose column changed type."""
    wanted, existing = _column_types(con, staged), _column_types(con, table)
    retyped = set()
    for name, kind in wanted.items():
        quoted = f'"{name}"'
        if name not in existing:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {quoted} {kind}")
        elif existing[name] != kind:
            retyped |= {name} & computed
            common = (
                kind
                if name in computed
                else _common_type(con, window, (table, staged), quoted, existing[name], kind)
            )
            for target, was in ((table, existing[name]), (staged, kind)):
                if was == common:
                    continue
                # (to JSON, a value is converted; a cast would parse text as JSON)
                using = (
                    f"to_json({quoted})" if common == "JSON" else f"TRY_CAST({quoted} AS {common})"
                )
                con.execute(f"ALTER TABLE {target} ALTER COLUMN {quoted} SET DATA TYPE {common} "
                            f"USING {using}")  # fmt: skip
    for name in existing.keys() - wanted.keys():
        con.execute(f'ALTER TABLE {table} DROP COLUMN "{name}"')
    return retyped


def _common_type(
    con: duckdb.DuckDBPyConnection,
    window: tuple[datetime, datetime],
    tables: tuple[str, str],
    quoted: str,
    stored: str,
    new: str,
) -> str:
    """The type DuckDB unites `stored` and `new` in (BIGINT and DOUBLE: DOUBLE; a DECIMAL, as
    DuckDB reads `2.5`, and another number: DOUBLE too), if every value of `tables` (the
    stored table's outside the `window` its rows are replaced in, and the staged ones)
    converts to it; else VARCHAR, which holds any value. A list and anything
    else (or a JSON value and anything else): JSON, which holds both. A truth value or a bit
    string and anything else: VARCHAR (DuckDB would turn true into 1, and 5 into bits)."""
    if "JSON" in (stored, new) or stored.endswith("]") or new.endswith("]"):
        return "JSON"
    if stored.startswith("UNION(") or new.startswith("UNION("):
        return "VARCHAR"  # (DuckDB unites a UNION with no other type: it raises, even TRY_CAST)
    if {stored, new} & {"BOOLEAN", "BIT"}:
        return "VARCHAR"
    with in_memory(threads=1) as types:  # (a private DuckDB: no error aborts the run's work)
        try:
            (common,) = types.execute(
                f"SELECT typeof(x) FROM (SELECT NULL::{stored} AS x UNION ALL "
                f"SELECT NULL::{new}) LIMIT 1"
            ).fetchone()
        except duckdb.Error:  # (types DuckDB cannot unite)
            return "VARCHAR"
    if common.startswith("DECIMAL"):
        common = "DOUBLE"
    stored_table, staged = tables
    kept = "(snapshot_hour < $start OR snapshot_hour >= $end) AND "
    for table, where, params in (
        (stored_table, kept, {"start": window[0], "end": window[1]}),
        (staged, "", {}),
    ):
        (lost,) = con.execute(
            f"SELECT count(*) FROM {table} WHERE {where}{quoted} IS NOT NULL "
            f"AND TRY_CAST({quoted} AS {common}) IS NULL",
            params,
        ).fetchone()
        if lost:
            return "VARCHAR"
    return common


def _column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $t "
        "ORDER BY ordinal_position",
        {"t": table},
    ).fetchall()
    return dict(rows)
