"""Audience memberships of every hour of a window, with the reason each member qualifies,
stored in `audience_memberships`."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import ibis
import ibis.expr.datatypes as dt
import pandas as pd
import pyarrow as pa
from ibis.common.exceptions import TableNotFound
from sqlglot import exp

from account_hierarchy.audiences.evaluate import (
    Evaluated,
    Evaluator,
    NotComputedError,
    require_snapshots,
)
from account_hierarchy.audiences.schemas import validate_memberships
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.partitions import day_of, hours_of
from account_hierarchy.traits.compile import compile_hourly, hourly_params
from account_hierarchy.traits.compute import day_partial_traits, refresh_window_tiles
from account_hierarchy.traits.tiles import (
    build_day_partials,
    combines_by_day,
    performed_counters,
    tileable,
)
from account_hierarchy.warehouse import in_memory, transaction

MEMBERSHIPS_DDL = """
CREATE TABLE IF NOT EXISTS audience_memberships (
    snapshot_hour TIMESTAMP NOT NULL,
    audience VARCHAR NOT NULL,
    entity_type VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    reason JSON NOT NULL
)
"""
# Every hour an audience was evaluated for, empty ones included (they have no membership rows).
HOURS_DDL = """
CREATE TABLE IF NOT EXISTS audience_hours (
    audience VARCHAR NOT NULL,
    snapshot_hour TIMESTAMP NOT NULL,
    members BIGINT NOT NULL
)
"""


def ensure_audience_hours(con: duckdb.DuckDBPyConnection) -> None:
    """Create `audience_hours` if it does not exist yet (with the Spark engine,
    `audience_memberships` is a view of the lake, so it is left to the audience stages)."""
    con.execute(HOURS_DDL)


@dataclass
class AudienceReport:
    """Sizes per hour, and who entered and exited at the window's last hour."""

    sizes: dict[datetime, int] = field(default_factory=dict)
    entered: int = 0
    exited: int = 0
    compiled: str = ""
    """The membership query (with its reasons), and its parameters for the last hour."""
    tile_hours_rebuilt: int = 0
    """Hours whose trait tiles it rebuilt (for its `performed` conditions, when it ran before
    the traits stage of its run)."""


def reason_expression(evaluated: Evaluated) -> exp.Expression:
    """Each row's reason, as DuckDB SQL over the columns of `evaluated.table`: per leaf
    condition, its label, whether it held, and the values that decided it, as plain JSON
    (times as ISO text, lists as arrays, NaN and infinities as null)."""
    schema = evaluated.table.schema()
    conditions = []
    for leaf in evaluated.leaves:
        prefix, held = f"{leaf.id}_", f"{leaf.id}_held"
        fields = {
            "condition": exp.Literal.string(leaf.label),
            "held": exp.func("coalesce", _column(held), exp.false()),
        }
        fields |= {
            name.removeprefix(prefix): _plain(name, kind)
            for name, kind in schema.items()
            if name.startswith(prefix) and name != held
        }
        conditions.append(_json_object(fields))
    return _json_object({"conditions": exp.Anonymous(this="json_array", expressions=conditions)})


def _json_object(fields: dict[str, exp.Expression]) -> exp.Expression:
    pairs = [part for key, value in fields.items() for part in (exp.Literal.string(key), value)]
    return exp.Anonymous(this="json_object", expressions=pairs)


def _column(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _plain(name: str, kind: dt.DataType) -> exp.Expression:
    """A result column as a plain JSON value (ISO text for times, as Python's `isoformat`;
    NaN and infinities, which JSON cannot carry, as null), a list's elements too."""
    return _plain_value(_column(name), kind)


def _plain_value(value: exp.Expression, kind: dt.DataType, depth: int = 0) -> exp.Expression:
    if kind.is_timestamp():
        microseconds = exp.Mod(
            this=exp.func("epoch_us", value), expression=exp.Literal.number(1_000_000)
        )
        whole = exp.EQ(this=microseconds, expression=exp.Literal.number(0))
        return (
            exp.case()
            .when(whole, _strftime(value, "%Y-%m-%dT%H:%M:%S"))
            .else_(_strftime(value, "%Y-%m-%dT%H:%M:%S.%f"))
        )
    if kind.is_date():
        return _strftime(value, "%Y-%m-%d")
    if kind.is_floating():
        return exp.case().when(exp.not_(exp.func("isfinite", value)), exp.null()).else_(value)
    if kind.is_json():
        return exp.cast(value, "VARCHAR")
    if kind.is_array():
        element = exp.to_identifier(f"element_{depth}")
        plain = _plain_value(exp.column(element), kind.value_type, depth + 1)
        if plain != exp.column(element):
            return exp.func("list_transform", value, exp.Lambda(this=plain, expressions=[element]))
    return value


def _strftime(column: exp.Expression, pattern: str) -> exp.Expression:
    return exp.Anonymous(this="strftime", expressions=[column, exp.Literal.string(pattern)])


def reason_texts(evaluated: Evaluated, rows: pd.DataFrame | pa.Table) -> list[str]:
    """The reasons (JSON text) of rows of `evaluated.table` fetched from Spark (a frame) or
    from the warehouse (Arrow, which keeps every DuckDB type), in their order:
    `reason_expression` run in a private DuckDB."""
    if len(rows) == 0:  # (pandas types an empty list column as floats, which Arrow rejects)
        return []
    schema = evaluated.table.schema()
    if isinstance(rows, pd.DataFrame):
        rows = pa.Table.from_pandas(
            rows[list(schema.names)], schema=schema.to_pyarrow(), preserve_index=False
        )
    reason = reason_expression(evaluated).sql("duckdb")
    with in_memory(threads=1) as con:
        con.register("result_rows", rows)
        return [text for (text,) in con.execute(f"SELECT {reason} FROM result_rows").fetchall()]


def member_frame(evaluated: Evaluated, frame: pd.DataFrame, hour: datetime) -> pd.DataFrame:
    """The members (rows of an evaluated audience) as rows of `audience_memberships`."""
    frame = frame.sort_values("entity_id")
    return pd.DataFrame(
        {
            "snapshot_hour": pd.Series([hour] * len(frame), dtype="datetime64[us]"),
            "audience": evaluated.name,
            "entity_type": evaluated.entity,
            "entity_id": frame.entity_id.astype(str).to_numpy(),
            "reason": reason_texts(evaluated, frame),
        }
    )


def membership_rows_sql(evaluated: Evaluated, members_sql: str) -> str:
    """`audience_memberships` rows of the members that `members_sql` (a `compile_hourly` query
    of the evaluated audience's members) finds, for the hour bound as `$snapshot_hour`."""
    reason = reason_expression(evaluated).sql("duckdb")
    return (
        "SELECT CAST($snapshot_hour AS TIMESTAMP) AS snapshot_hour, $audience AS audience, "
        "$entity_type AS entity_type, CAST(entity_id AS VARCHAR) AS entity_id, "
        f"CAST({reason} AS JSON) AS reason FROM ({members_sql}) AS members ORDER BY entity_id"
    )


def build_audience(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, name: str, start: datetime, end: datetime
) -> AudienceReport:
    """Write the audience's members for every hour of `[start, end)` (one compiled query, run
    once per hour).

    `performed` conditions count with the trait tiles, refreshed first (the traits stage keeps
    them, but a run may build this audience before the traits of its hours). When the hours
    lie in one day (the hourly runs), those whose window is all time or whole days read the
    day's partials, shared with the traits stage (`build_day_partials`). Longer runs read the
    day tiles: the partials hold one day, and rebuilding them for every day of a backfill,
    after the traits stage did the same, costs more than it saves."""
    con.execute(MEMBERSHIPS_DDL)
    backend = ibis.duckdb.from_connection(con)
    report = AudienceReport()
    hours = hours_of(start, end)
    counters = [c for c in performed_counters([catalog.audience(name)]) if tileable(c)]
    one_day = bool(hours) and hours[0].date() == hours[-1].date()
    by_day = day_partial_traits(catalog) if one_day and any(map(combines_by_day, counters)) else []
    if counters:
        report.tile_hours_rebuilt = refresh_window_tiles(con, catalog, end).hours_rebuilt
    if by_day:
        build_day_partials(con, by_day, day_of(hours[0]))
    try:
        evaluated, sql = _members_query(backend, catalog, name, end, day_partials=bool(by_day))
    except TableNotFound as error:
        raise NotComputedError(f"{error} is not built yet: materialize it first.") from None
    require_snapshots(backend, evaluated, start, end)
    rows_sql = membership_rows_sql(evaluated, sql)
    con.execute("CREATE OR REPLACE TEMP TABLE new_memberships AS FROM audience_memberships "
                "WITH NO DATA")  # fmt: skip

    def params(hour: datetime) -> dict:
        bound = {"snapshot_hour": hour, "audience": name, "entity_type": evaluated.entity}
        return hourly_params(sql, hour) | bound

    for hour in hours:
        con.execute(f"INSERT INTO new_memberships {rows_sql}", params(hour))
    sizes = con.execute("SELECT snapshot_hour, count(*) FROM new_memberships GROUP BY ALL")
    report.sizes = dict.fromkeys(hours, 0) | dict(sizes.fetchall())
    last = end - timedelta(hours=1)
    values = ", ".join(f"${key} = {value if isinstance(value, datetime) else repr(value)}"
                       for key, value in params(last).items())  # fmt: skip
    report.compiled = f"-- run for the last hour with {values}\n{rows_sql}"
    validate_memberships(con, "new_memberships")
    with transaction(con):  # (a crash between them would leave built hours without members)
        con.execute(
            "DELETE FROM audience_memberships WHERE audience = $name AND snapshot_hour >= $start "
            "AND snapshot_hour < $end",
            {"name": name, "start": start, "end": end},
        )
        con.execute("INSERT INTO audience_memberships SELECT * FROM new_memberships")
        record_audience_hours(con, name, start, end, report.sizes)
    now = {
        entity_id
        for (entity_id,) in con.execute(
            "SELECT entity_id FROM new_memberships WHERE snapshot_hour = $last", {"last": last}
        ).fetchall()
    }
    # (the previous hour may be on another day than the day partials: compiled without them)
    before = _members_at(
        con,
        evaluated,
        lambda: sql if not by_day else _members_query(backend, catalog, name, last)[1],
        last - timedelta(hours=1),
    )
    report.entered, report.exited = len(now - before), len(before - now)
    return report


def record_audience_hours(
    con: duckdb.DuckDBPyConnection,
    name: str,
    start: datetime,
    end: datetime,
    sizes: dict[datetime, int],
) -> None:
    """Replace the audience's rows of `[start, end)` in `audience_hours` with `sizes` (its
    member count at every hour it was evaluated for, empty hours included)."""
    ensure_audience_hours(con)
    con.execute(
        "DELETE FROM audience_hours WHERE audience = $name AND snapshot_hour >= $start "
        "AND snapshot_hour < $end",
        {"name": name, "start": start, "end": end},
    )
    con.execute(
        "INSERT INTO audience_hours SELECT $name, unnest($hours), unnest($sizes)",
        {"name": name, "hours": list(sizes), "sizes": list(sizes.values())},
    )


def _members_query(
    backend: ibis.BaseBackend,
    catalog: Catalog,
    name: str,
    window_end: datetime,
    day_partials: bool = False,
) -> tuple[Evaluated, str]:
    """The audience evaluated for the hour parameter, and its members' query compiled (see
    `Evaluator` for `window_end` and `day_partials`)."""
    evaluator = Evaluator(backend, catalog, window_end=window_end, day_partials=day_partials)
    evaluated = evaluator.audience(name)
    return evaluated, compile_hourly(backend, evaluated.table.filter(evaluated.table.member))


def changes_at(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, name: str, members: set[str], hour: datetime
) -> tuple[int, int]:
    """How many of the audience's `members` at `hour` entered, and how many exited, since the
    previous hour's members (stored, else evaluated)."""
    backend = ibis.duckdb.from_connection(con)
    evaluated, sql = _members_query(backend, catalog, name, hour)
    before = _members_at(con, evaluated, lambda: sql, hour - timedelta(hours=1))
    return len(members - before), len(before - members)


def _members_at(
    con: duckdb.DuckDBPyConnection,
    evaluated: Evaluated,
    members_sql: Callable[[], str],
    hour: datetime,
) -> set[str]:
    """Members at `hour`: stored if that hour was materialized (an empty one is only in
    `audience_hours`), else evaluated with the query `members_sql()` gives (none if that
    hour has no snapshot to evaluate)."""
    stored = con.execute(
        "SELECT entity_id FROM audience_memberships WHERE audience = $name "
        "AND snapshot_hour = $hour",
        {"name": evaluated.name, "hour": hour},
    ).fetchall()
    evaluated_then = con.execute(
        "SELECT count(*) FROM audience_hours WHERE audience = $name AND snapshot_hour = $hour",
        {"name": evaluated.name, "hour": hour},
    ).fetchone()[0]
    if stored or evaluated_then:
        return {entity_id for (entity_id,) in stored}
    try:
        backend = ibis.duckdb.from_connection(con)
        require_snapshots(backend, evaluated, hour, hour + timedelta(hours=1))
    except NotComputedError:
        return set()
    sql = members_sql()
    return set(con.execute(sql, hourly_params(sql, hour)).df().entity_id)
