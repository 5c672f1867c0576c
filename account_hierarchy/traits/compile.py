"""Computed traits compiled to Ibis expressions: one aggregation per entity and attribution
class covers every trait and window of that class in a single pass over the events.

Semantics, for a snapshot hour `h` (`as_of` = end of `h`, exclusive):

- events: `timestamp < as_of`, and inside a trait's window when it has one:
  `as_of - window <= timestamp`;
- matching: `event_type`, `event` (a track event's name, a page's or screen's name) and every
  `where` condition; a property is read from `properties`, or from `traits` for identify and
  group calls, and a missing property satisfies no condition but `exists: false`;
- a user trait runs over the user's events (`userId`);
- an account trait runs over the events of the users associated with the account in the
  snapshot (`account_memberships`). With `attribution: context` a user's event counts only for
  the account named in its `context.groupId` (an event without one counts for all the user's
  accounts, or none with `context_fallback: none`). With `include_child_accounts: true` the
  users (and context accounts) of every descendant account count for the account too; an event
  is still counted once per account.

Values: counts and sums are 0 and unique lists empty when nothing matched; averages, minimums,
maximums, most frequent, first and last values are null. First and last take the earliest /
latest matching event that has the property (ties: the smaller / greater messageId); most
frequent takes the value with the highest count (ties: the value that sorts first). Property
values are read as text, and as numbers for aggregations (numeric strings count).
"""

import hashlib
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir
import sqlglot

from account_hierarchy.catalog.models import (
    Aggregation,
    ComputedTrait,
    EventCounter,
    FirstValue,
    LastValue,
    MostFrequent,
    PropertyCondition,
    UniqueList,
    UniqueListCount,
    UniqueUsers,
)

ENTITY_ID = {"account": "account_id", "user": "user_id"}
EVENT_COLUMNS = ("message_id", "type", "user_id", "context_group_id", "event", "timestamp",
                 "properties", "traits")  # fmt: skip


@dataclass(frozen=True)
class Snapshot:
    """The warehouse tables a trait query reads, as Ibis tables, and the snapshot hour and its
    end as Ibis values (literals, or parameters bound when the compiled query runs)."""

    events: ir.Table
    memberships: ir.Table
    hierarchy: ir.Table
    hour: ir.TimestampValue
    as_of: ir.TimestampValue


def attribution_class(trait: ComputedTrait) -> tuple:
    """Traits of one class share the rows they aggregate: entity and attribution options."""
    return (trait.entity, trait.attribution, trait.context_fallback, trait.include_child_accounts)


def property_column(path: str, kind: str) -> str:
    """The name of the column holding a property path read as `text`, `number` or `present`."""
    return f"{kind}__{hashlib.sha1(path.encode()).hexdigest()[:12]}"


def json_path_value(value: ir.JSONValue, path: str, quoted: bool) -> ir.JSONValue:
    """The value under a dotted `path` (`plan.name`) of a JSON value. DuckDB gets one quoted
    JSONPath, which reads any key but quotes (`Plan Tier`, `a:b`, `$k`); other engines read
    one key at a time."""
    if quoted:
        return value["$" + "".join(f'."{key}"' for key in path.split("."))]
    for key in path.split("."):
        value = value[key]
    return value


def json_properties(events: ir.Table) -> ir.Table:
    """Events whose `properties` and `traits` are JSON: engines without a JSON type (Spark)
    store them as text."""
    as_json = {name: events[name].cast("json") for name in ("properties", "traits")
               if not events[name].type().is_json()}  # fmt: skip
    return events.mutate(**as_json) if as_json else events


# Text that reads as a number: decimal notation, an exponent, ASCII white space around (spaces,
# tabs, line breaks, vertical tabs, form feeds: what DuckDB's cast, Java's and Python's `float`
# all skip; `5d`, `1_000`, `NaN` and `Infinity`, which some engines' casts accept, are text),
# for Python's `re.fullmatch`.
_SPACES = r"[ \x09-\x0d]*"
NUMBER_TEXT = rf"^{_SPACES}[-+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?{_SPACES}$"
# The same for SQL engines (RE2, Java): `\z` ends the text, where `$` would also match before
# a final line terminator in Java's regular expressions (Spark's RLIKE), so that Spark read
# `"7\u2028"` as a number and DuckDB not.
NUMBER_TEXT_SQL = NUMBER_TEXT.removesuffix("$") + r"\z"


def as_number(text: ir.StringValue) -> ir.FloatingValue:
    """`text` as a number when it is one (`NUMBER_TEXT_SQL`), else null."""
    return ibis.ifelse(
        text.re_search(NUMBER_TEXT_SQL), text.try_cast("float64"), ibis.null("float64")
    )


def with_properties(events: ir.Table, traits: list[ComputedTrait]) -> ir.Table:
    """The events with every property the traits read extracted once, as text, as a number and
    whether it is present, so that no trait parses the JSON again."""
    paths = sorted(
        {t.property for t in traits if hasattr(t, "property")}
        | {condition.property for t in traits for condition in t.where}
    )
    columns = {}
    # (identify and group calls carry their values in `traits`, the others in `properties`)
    source = ibis.ifelse(events.type.isin(["identify", "group"]), events.traits, events.properties)
    quoted = ibis.get_backend(events).name == "duckdb"
    for path in paths:
        value = json_path_value(source, path, quoted)
        text, number, present = (property_column(path, k) for k in ("text", "number", "present"))
        columns[text] = ibis.coalesce(value.str, value.cast("string"))
        read = ibis.coalesce(value.float, as_number(value.str))
        # (a JSON NaN or infinity is no number: `x - x` is 0 for all others, in every engine)
        columns[number] = ibis.ifelse((read - read) == 0, read, ibis.null("float64"))
        columns[present] = value.notnull() & (value.cast("string") != "null")
    return events.mutate(**columns) if columns else events


def _condition(events: ir.Table, condition: PropertyCondition) -> ir.BooleanValue:
    text = events[property_column(condition.property, "text")]
    number = events[property_column(condition.property, "number")]
    present = events[property_column(condition.property, "present")]
    operator, operand = condition.operator
    if operator == "exists":
        return present if operand else ~present
    if operator in ("equals", "not_equals"):
        if isinstance(operand, bool):
            same = text == ("true" if operand else "false")
        elif isinstance(operand, int | float):
            same = number == float(operand)
        else:
            same = text == operand
        # (a present value that is not a number is not equal to a number: not_equals holds)
        same = same.fill_null(False)
        return (same if operator == "equals" else ~same) & present
    if operator == "in":
        strings = [str(v).lower() if isinstance(v, bool) else v for v in operand
                   if isinstance(v, str | bool)]  # fmt: skip
        numbers = [float(v) for v in operand if isinstance(v, int | float)
                   and not isinstance(v, bool)]  # fmt: skip
        matched = ibis.literal(False)
        if strings:
            matched |= text.isin(strings)
        if numbers:
            matched |= number.isin(numbers)
        return (matched & present).fill_null(False)
    if operator == "contains":
        return (text.contains(operand) & present).fill_null(False)
    compare = {"gt": number > operand, "gte": number >= operand, "lt": number < operand,
               "lte": number <= operand}  # fmt: skip
    return compare[operator].fill_null(False)


# The snapshot hour and its end, as parameters: a query is built and compiled once, then run
# for every hour of a window with `$hour` and `$as_of` bound (see `compile_hourly`).
HOUR = ibis.param("timestamp")
AS_OF = ibis.param("timestamp")
_SENTINELS = {"hour": datetime(1901, 2, 3, 4, 5, 6), "as_of": datetime(1901, 2, 3, 5, 5, 6)}


# Python frames compiling a query may take: Ibis and sqlglot recurse about 80 frames per level
# of nested conditions, and audiences may nest 16 levels (Python's default allows about 12).
QUERY_RECURSION_LIMIT = 5_000


def allow_deep_queries() -> None:
    """Let this process parse and compile queries nested as deep as definitions may nest them:
    called when definitions load, before anything reads them (the limit is only ever raised:
    other threads may be compiling)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), QUERY_RECURSION_LIMIT))


def compile_hourly(backend: ibis.BaseBackend, expr: ir.Expr) -> str:
    """DuckDB SQL for an expression over `HOUR` / `AS_OF`, with `$hour` and `$as_of`
    placeholders to bind when running it. Compiled with unlikely sentinel moments, whose
    literals are then swapped for placeholders in the SQL syntax tree.

    Its common table expressions (Ibis names each shared subquery once, such as the tiles
    every attribution class reads) are `NOT MATERIALIZED`: DuckDB would otherwise write them
    out whole, every column, before the classes read them (20% slower at 100M events)."""
    sql = backend.compile(expr, params={HOUR: _SENTINELS["hour"], AS_OF: _SENTINELS["as_of"]})
    literals = {}
    for name, moment in _SENTINELS.items():
        (node,) = sqlglot.parse_one(
            backend.compile(ibis.literal(moment, type="timestamp").name("x")), read="duckdb"
        ).expressions
        literals[name] = node.this

    def swap(node: sqlglot.exp.Expression) -> sqlglot.exp.Expression:
        for name, literal in literals.items():
            if node == literal:
                return sqlglot.exp.Placeholder(this=name)
        return node

    tree = sqlglot.parse_one(sql, read="duckdb").transform(swap)
    for cte in tree.find_all(sqlglot.exp.CTE):
        cte.set("materialized", False)
    return tree.sql("duckdb")


def hourly_params(sql: str, hour: datetime) -> dict[str, datetime]:
    """The values of the placeholders a `compile_hourly` query uses, for one hour."""
    values = {"hour": hour, "as_of": hour + timedelta(hours=1)}
    return {name: value for name, value in values.items() if f"${name}" in sql}


def timestamp(moment: datetime | ir.TimestampValue) -> ir.TimestampValue:
    """A datetime as an Ibis timestamp literal; Ibis values pass through."""
    if isinstance(moment, datetime):
        return ibis.literal(moment, type="timestamp")
    return moment


def selects(events: ir.Table, trait: ComputedTrait) -> ir.BooleanValue:
    """Whether an event is one the trait looks at (type, name, conditions), window aside."""
    condition = ibis.literal(True)
    if trait.event_type:
        condition &= events.type == trait.event_type
    if trait.event:
        condition &= events.event == trait.event
    for where in trait.where:
        condition &= _condition(events, where)
    return condition


def window_interval(length: timedelta) -> ir.IntervalValue:
    """A window's length as an Ibis interval (in seconds, which every engine takes)."""
    return ibis.interval(seconds=int(length.total_seconds()))


def in_window(
    moment: ir.TimestampValue, trait: ComputedTrait, as_of: datetime | ir.TimestampValue
) -> ir.BooleanValue:
    """Whether a moment before `as_of` lies inside the trait's window."""
    if trait.window_length is None:
        return ibis.literal(True)
    return moment >= timestamp(as_of) - window_interval(trait.window_length)


def matches(
    events: ir.Table, trait: ComputedTrait, as_of: datetime | ir.TimestampValue
) -> ir.BooleanValue:
    """Whether an event counts for the trait (type, name, conditions, window)."""
    return selects(events, trait) & in_window(events.timestamp, trait, as_of)


def attributed_events(snapshot: Snapshot, key: tuple) -> ir.Table:
    """The events before `as_of`, each with the entity (`entity_id`) it counts for."""
    events = snapshot.events.filter(
        snapshot.events.timestamp < timestamp(snapshot.as_of), snapshot.events.user_id.notnull()
    ).select(*EVENT_COLUMNS)
    return attribute(events, snapshot, key)


def attribute(rows: ir.Table, snapshot: Snapshot, key: tuple) -> ir.Table:
    """`rows` (events, or tiles of events, with `user_id` and `context_group_id`), each with
    the entity (`entity_id`) it counts for in the snapshot: once per entity it counts for."""
    entity, attribution, fallback, rollup = key
    if entity == "user":
        return rows.mutate(entity_id=rows.user_id)
    columns = rows.columns
    members = snapshot.memberships
    scopes = snapshot.hierarchy.select(
        account_id=snapshot.hierarchy.path.unnest() if rollup else snapshot.hierarchy.account_id,
        via=snapshot.hierarchy.account_id,
    )
    mapping = scopes.join(members, scopes.via == members.account_id).select(
        entity_id=scopes.account_id, via=scopes.via, member=members.user_id
    )
    # Built so that each (row, account) pair appears once, without de-duplicating rows.
    accounts_of_user = mapping.select("entity_id", "member").distinct()
    if attribution == "all_users":
        joined = rows.join(accounts_of_user, rows.user_id == accounts_of_user.member)
    else:
        named = rows.filter(rows.context_group_id.notnull())
        joined = named.join(
            mapping,
            (named.user_id == mapping.member) & (named.context_group_id == mapping.via),
        ).select(*columns, "entity_id")
        if fallback == "all_accounts":
            unnamed = rows.filter(rows.context_group_id.isnull())
            joined = joined.union(
                unnamed.join(accounts_of_user, unnamed.user_id == accounts_of_user.member).select(
                    *columns, "entity_id"
                )
            )
    return joined.select(*columns, "entity_id")


def aggregate(
    events: ir.Table,
    traits: list[ComputedTrait],
    as_of: datetime | ir.TimestampValue,
    by: tuple[str, ...] = ("entity_id",),
) -> ir.Table:
    """One row per entity (per value of the columns `by`) with a column per trait
    (most-frequent traits excepted)."""
    events = with_properties(events, traits)
    order = ibis.struct({"timestamp": events.timestamp, "message_id": events.message_id})
    columns = {}
    for trait in traits:
        where = matches(events, trait, as_of)
        if isinstance(trait, EventCounter):
            columns[trait.name] = events.message_id.count(where=where)
        elif isinstance(trait, UniqueUsers):
            columns[trait.name] = events.user_id.nunique(where=where)
        elif isinstance(trait, Aggregation):
            number = events[property_column(trait.property, "number")]
            reduce = {"sum": number.sum, "avg": number.mean, "min": number.min,
                      "max": number.max}[trait.function]  # fmt: skip
            columns[trait.name] = reduce(where=where & number.notnull())
        elif isinstance(trait, FirstValue | LastValue | UniqueList | UniqueListCount):
            text = events[property_column(trait.property, "text")]
            where &= events[property_column(trait.property, "present")]
            if isinstance(trait, FirstValue):
                columns[trait.name] = text.argmin(order, where=where)
            elif isinstance(trait, LastValue):
                columns[trait.name] = text.argmax(order, where=where)
            elif isinstance(trait, UniqueList):
                columns[trait.name] = text.collect(where=where, distinct=True).sort()
            else:
                columns[trait.name] = text.nunique(where=where)
    return events.group_by(*by).aggregate(**columns) if columns else None


def most_frequent(
    events: ir.Table, trait: MostFrequent, as_of: datetime | ir.TimestampValue
) -> ir.Table:
    """One row per entity: the trait's most frequent value (ties: the smallest value)."""
    events = with_properties(events, [trait])
    present = events[property_column(trait.property, "present")]
    counted = (
        events.filter(matches(events, trait, as_of) & present)
        .mutate(value=events[property_column(trait.property, "text")])
        .group_by(["entity_id", "value"])
        .aggregate(times=ibis._.count())
    )
    rank = ibis.struct({"times": -counted.times, "value": counted.value})
    return counted.group_by("entity_id").aggregate(**{trait.name: counted.value.argmin(rank)})


def empty_value(trait: ComputedTrait) -> ir.Value | None:
    """The value of an entity with no matching event: 0, an empty list, or null."""
    if isinstance(trait, EventCounter | UniqueUsers | UniqueListCount):
        return ibis.literal(0, type="int64")
    if isinstance(trait, Aggregation) and trait.function == "sum":
        return ibis.literal(0.0)
    if isinstance(trait, UniqueList):
        return ibis.literal([], type="array<string>")
    return None
