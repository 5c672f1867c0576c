"""Audiences evaluated as of a snapshot hour, compiled to one Ibis expression per audience.

An account audience is evaluated on every account of the hour's snapshot, a user audience on
every user. Each leaf condition becomes two columns, `<leaf>_held` and `<leaf>_value`, so the
result says which conditions held and with which values. Rules:

- a trait condition on a null value is false (test nulls with `is_null` / `exists`);
- numbers compare as numbers, everything else as text; `contains` is a substring test on text
  and a membership test on list traits; `within_last: 7 days` holds for a timestamp in
  `[as_of - 7 days, as_of)`;
- a custom trait never seen in any group (identify) call is null everywhere;
- `users: all` needs at least one user (an account with no users is not a member) while
  `users: none` holds for an account with no users; `at_least_percent` needs at least one user;
- `in_account_audience` / `account` hold when any of the user's accounts qualifies;
- under a users quantifier, a `performed` condition with `attribution: context` is evaluated
  for each (account, user) pair: it counts the user's events naming that account in
  `context.groupId` (and, unless `context_fallback: none`, those naming none).
"""

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir
import pandas as pd

from account_hierarchy.audiences.describe import describe
from account_hierarchy.catalog.audience_checks import children, walk
from account_hierarchy.catalog.audience_models import (
    AccountAudienceReference,
    And,
    AnyAccount,
    AudienceReference,
    Condition,
    CustomTraitTest,
    Not,
    Or,
    Performed,
    Quantified,
    TraitTest,
    ValueTest,
)
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.catalog.models import EventCounter, Scalar
from account_hierarchy.catalog.windows import parse_window
from account_hierarchy.moments import utc_value
from account_hierarchy.traits.compile import (
    AS_OF,
    HOUR,
    NUMBER_TEXT,
    Snapshot,
    aggregate,
    as_number,
    attribute,
    attributed_events,
    json_path_value,
    json_properties,
    timestamp,
    window_interval,
)
from account_hierarchy.traits.compute import computed_by
from account_hierarchy.traits.tiles import (
    DAY_TILES,
    TILES,
    combines_by_day,
    performed_counter,
    rollup,
    tile_column,
    tileable,
    tiles_as_of,
    tiles_current,
)

ENTITY_TABLES = {"account": ("accounts", "account_traits", "account_id"),
                 "user": ("users", "user_traits", "user_id")}  # fmt: skip


class NotComputedError(LookupError):
    """Something an audience needs has not been materialized for the hour."""


@dataclass
class Leaf:
    """One leaf condition of an audience tree, named `id` in the result's columns."""

    id: str
    label: str
    condition: object
    entity: str


@dataclass
class Evaluated:
    """An audience evaluated for one hour: `table` has `entity_id`, `member` and the leaf
    columns; `leaves` describes them in tree order."""

    name: str
    entity: str
    table: ir.Table
    leaves: list[Leaf] = field(default_factory=list)
    tables: set[str] = field(default_factory=set)  # the warehouse tables it reads
    # (entity, trait column) it tests -> the fingerprint of the column's definition
    traits: dict[tuple[str, str], str] = field(default_factory=dict)


class Evaluator:
    """Evaluates the catalog's audiences (and any edited definition) for one snapshot hour."""

    def __init__(
        self,
        backend: ibis.BaseBackend,
        catalog: Catalog,
        hour: datetime | None = None,
        *,
        window_end: datetime | None = None,
        day_partials: bool = False,
        use_tiles: bool = True,
    ):
        """For one `hour`; without it, for the hour parameter `HOUR` (compile the result with
        `compile_hourly` and run it for any hour before `window_end`). `performed` conditions
        count with the trait tiles only where those hold every event up to the end of the
        last hour evaluated (`hour`'s end, else `window_end`), and from the events otherwise
        (always, without `use_tiles`: the reference the tiles are checked against). With
        `day_partials`, those whose window is all time or whole days read the day partials,
        which the caller keeps built for each hour's day."""
        self.backend, self.catalog, self.hour = backend, catalog, hour
        self.day_partials, self.use_tiles = day_partials, use_tiles
        self.hour_value = timestamp(hour) if hour else HOUR
        self.as_of = timestamp(hour + timedelta(hours=1)) if hour else AS_OF
        self.window_end = hour + timedelta(hours=1) if hour else window_end
        self._tiles_usable: bool | None = None
        self._counter = 0
        self._tables: dict[str, ir.Table] = {}
        self._audiences: dict[str, Evaluated] = {}
        self._used: set[str] = set()
        self._traits_tested: set[tuple[str, str]] = set()

    # --- inputs -----------------------------------------------------------------------------

    def _at(self, name: str) -> ir.Table:
        self._used.add(name)
        table = self.backend.table(name)
        return table.filter(table.snapshot_hour == self.hour_value)

    def base(self, entity: str, with_traits: bool = False) -> ir.Table:
        """Every entity of the hour with its custom traits (`custom_traits`, JSON) and, if
        asked, its traits (`trait__x`)."""
        key = f"{entity}:{with_traits}"
        if key not in self._tables:
            entities, traits, id_column = ENTITY_TABLES[entity]
            custom = self._at(entities)
            custom_traits = custom.traits
            if not custom_traits.type().is_json():  # (engines without a JSON type: text)
                custom_traits = custom_traits.cast("json")
            custom = custom.select(entity_id=custom[id_column], custom_traits=custom_traits)
            if with_traits:
                values = self._at(traits)
                stored = [c for c in self.catalog.trait_columns(entity) if c in values.columns]
                values = values.select(
                    trait_entity=values[id_column], **{f"trait__{c}": values[c] for c in stored}
                )
                custom = custom.left_join(values, custom.entity_id == values.trait_entity).drop(
                    "trait_entity"
                )
            self._tables[key] = custom
        return self._tables[key]

    def memberships(self) -> ir.Table:
        table = self._at("account_memberships")
        return table.select("user_id", "account_id")

    # --- audiences and conditions -----------------------------------------------------------

    def audience(self, name: str) -> Evaluated:
        """The catalog's audience `name` for this hour, built once: every reference to it reads
        the same table (one query, not a copy per reference, which would grow exponentially
        along a chain of audiences each referring to the one before more than once)."""
        if name not in self._audiences:
            definition = self.catalog.audience(name)
            self._audiences[name] = self.evaluate(name, definition.entity, definition.where)
        return self._audiences[name]

    def evaluate(
        self, name: str, entity: str, condition: Condition, per_account: bool = False
    ) -> Evaluated:
        """Any condition tree (e.g. an edited audience) on `entity` for this hour; with
        `per_account` (the user condition of a users quantifier), once per membership of a
        user, `pair_account` naming the account."""
        leaves: list[Leaf] = []
        extra: list[ir.Table] = []
        own = [c for c, e in walk(condition, entity) if e == entity]
        trait_tests = [c for c in own if isinstance(c, TraitTest)]
        base = self.base(entity, with_traits=bool(trait_tests))
        self._traits_tested |= {(entity, test.trait) for test in trait_tests}
        for test in trait_tests:
            if _value_column(test) not in base.columns:
                raise NotComputedError(
                    f"trait {test.trait!r} has not been materialized yet (a new definition?): "
                    "materialize the traits first."
                )
        custom = sorted({c.custom_trait for c in own if isinstance(c, CustomTraitTest)})
        quoted_paths = self.backend.name == "duckdb"
        base = base.mutate(**{column: value for key in custom for column, value
                              in _custom_columns(base, key, quoted_paths).items()})  # fmt: skip
        if per_account:
            pairs = self.memberships()
            base = base.join(pairs, base.entity_id == pairs.user_id).select(
                *base.columns, pair_account=pairs.account_id
            )
        columns: dict[str, ir.Value] = {}
        member = self._compile(condition, entity, base, columns, extra, leaves)
        table = base.mutate(**columns) if columns else base
        for part in extra:
            on = table.entity_id == part.part_entity
            if "part_account" in part.columns:  # (counted for each of the user's accounts)
                on &= table.pair_account == part.part_account
            table = table.left_join(part, on).drop(
                *(key for key in ("part_entity", "part_account") if key in part.columns)
            )
        held = {f"{leaf.id}_held": table[f"{leaf.id}_held"].fill_null(False) for leaf in leaves}
        # (a user with no account has none qualifying, as one whose accounts all fail)
        no_accounts = ibis.literal([], type="array<string>")
        held |= {column: ibis.coalesce(table[column], no_accounts) for leaf in leaves
                 if (column := f"{leaf.id}_accounts") in table.columns}  # fmt: skip
        table = table.mutate(**held)
        table = table.mutate(member=member)
        keep = ["entity_id", "member", *(["pair_account"] if per_account else [])]
        keep += [c for leaf in leaves for c in table.columns if c.startswith(f"{leaf.id}_")]
        definitions = self.catalog.trait_definitions()
        traits = {key: definitions[key] for key in self._traits_tested if key in definitions}
        return Evaluated(name, entity, table.select(*keep), leaves, set(self._used), traits)

    def _leaf(self, condition: Condition, entity: str, leaves: list[Leaf]) -> Leaf:
        self._counter += 1
        label = describe(condition)
        leaf = Leaf(f"c{self._counter}", label, condition, entity)
        leaves.append(leaf)
        return leaf

    def _compile(
        self,
        condition: Condition,
        entity: str,
        base: ir.Table,
        columns: dict[str, ir.Value],
        extra: list[ir.Table],
        leaves: list[Leaf],
    ) -> ibis.Deferred:
        """A deferred boolean over the result table; fills `columns` / `extra` for the leaves."""
        if isinstance(condition, And | Or):
            parts = [
                self._compile(c, entity, base, columns, extra, leaves)
                for c in (condition.and_ if isinstance(condition, And) else condition.or_)
            ]
            combined = parts[0]
            for part in parts[1:]:
                combined = combined & part if isinstance(condition, And) else combined | part
            return combined
        if isinstance(condition, Not):
            return ~self._compile(condition.not_, entity, base, columns, extra, leaves)
        leaf = self._leaf(condition, entity, leaves)
        if isinstance(condition, TraitTest | CustomTraitTest):
            value = base[_value_column(condition)]
            columns[f"{leaf.id}_value"] = value
            json_text = None
            if isinstance(condition, CustomTraitTest):
                json_text = base[_custom_column("json", condition.custom_trait)]
            elif value.type().is_json():  # (a SQL trait's JSON: read as a custom trait is)
                value, json_text = _json_text_and_json(value)
            columns[f"{leaf.id}_held"] = self._test(value, condition, json_text)
        else:
            extra.append(self._part(condition, leaf))
        return ibis._[f"{leaf.id}_held"]

    def _part(self, condition: Condition, leaf: Leaf) -> ir.Table:
        """A table `part_entity`, `<leaf>_held` (and values) for a leaf needing other rows."""
        held, key = f"{leaf.id}_held", "part_entity"
        if isinstance(condition, AudienceReference):
            other = self.audience(condition.audience).table.view()
            return other.select(**{key: other.entity_id, held: other.member})
        if isinstance(condition, AccountAudienceReference | AnyAccount):
            accounts = (self.audience(condition.in_account_audience)
                        if isinstance(condition, AccountAudienceReference)
                        else self.evaluate(leaf.id, "account", condition.account))  # fmt: skip
            rows = self.memberships().join(
                accounts.table, self.memberships().account_id == accounts.table.entity_id
            )
            return rows.group_by(rows.user_id.name("part_entity")).aggregate(
                **{held: rows.member.any(), f"{leaf.id}_accounts":
                   ibis.coalesce(rows.account_id.collect(where=rows.member).sort(),
                                 ibis.literal([], type="array<string>"))}
            )  # fmt: skip
        if isinstance(condition, Performed):
            return self._performed(condition, leaf)
        if isinstance(condition, Quantified):
            return self._quantified(condition, leaf)
        raise TypeError(type(condition))

    def _performed(self, condition: Performed, leaf: Leaf) -> ir.Table:
        """Count with the condition's tiles when they hold every event counted
        (`_tiles_hold`), else from the events: per user, or with context attribution per
        membership (`part_account` naming the account)."""
        counter = performed_counter(condition)
        in_context = condition.in_context
        key = ("account" if in_context else "user", condition.attribution,
               condition.context_fallback, False)  # fmt: skip
        by = ("user_id", "entity_id") if in_context else ("entity_id",)
        if tileable(counter) and self._tiles_hold(counter):
            by_day = self.day_partials and combines_by_day(counter)
            tiles = tiles_as_of(self.backend, self.as_of, [counter], day_partials=by_day)
            tiles = (attribute(tiles, self._snapshot(), key) if in_context
                     else tiles.mutate(entity_id=tiles.user_id))  # fmt: skip
            counts = rollup(tiles, [counter], self.as_of, by)
        else:
            counts = aggregate(attributed_events(self._snapshot(), key), [counter], self.as_of, by)
        if in_context:
            pairs = self.memberships()
            rows = pairs.left_join(counts, (pairs.user_id == counts.user_id)
                                   & (pairs.account_id == counts.entity_id))  # fmt: skip
            keys = {"part_entity": rows.user_id, "part_account": rows.account_id}
        else:
            users = self.base("user").select("entity_id")
            rows = users.left_join(counts, users.entity_id == counts.entity_id)
            keys = {"part_entity": rows.entity_id}
        times = rows[counter.name].fill_null(0)
        held = times >= condition.at_least
        if condition.at_most is not None:
            held &= times <= condition.at_most
        return rows.select(**keys, **{f"{leaf.id}_held": held, f"{leaf.id}_value": times})

    def _snapshot(self) -> Snapshot:
        """The events, memberships and hierarchy of the hour, as the traits read them."""
        return Snapshot(
            events=json_properties(self.backend.table("raw_events")),
            memberships=self._at("account_memberships"),
            hierarchy=self._at("account_hierarchy"), hour=self.hour_value, as_of=self.as_of,
        )  # fmt: skip

    def _tiles_hold(self, counter: EventCounter) -> bool:
        """Whether the trait tiles have the counter's column and every event up to
        `window_end` (the traits stage keeps them; `build_audience` refreshes them first)."""
        if not self.use_tiles:
            return False
        tables = set(self.backend.list_tables())
        if not all(
            table in tables and tile_column(counter, "n") in self.backend.table(table).columns
            for table in (TILES, DAY_TILES)
        ):
            return False
        if self._tiles_usable is None:
            self._tiles_usable = self.window_end is not None and tiles_current(
                self.backend.con, self.window_end
            )
        return self._tiles_usable

    def account_users(self, condition: Quantified, name: str) -> ir.Table:
        """Every membership of the hour (`account_id`, `user_id`) with `member`: whether the
        user satisfies the quantifier's user condition (for that account, when a `performed`
        condition of it counts in the account's context)."""
        per_account = _counts_in_context(condition.where)
        users = self.evaluate(name, "user", condition.where, per_account).table
        members = self.memberships()
        on = members.user_id == users.entity_id
        if per_account:
            on &= members.account_id == users.pair_account
        rows = members.left_join(users, on)
        return rows.select("account_id", "user_id", member=rows.member.fill_null(False))

    def _quantified(self, condition: Quantified, leaf: Leaf) -> ir.Table:
        pairs = self.account_users(condition, leaf.id)
        accounts = self.base("account").select("entity_id")
        rows = accounts.left_join(pairs, accounts.entity_id == pairs.account_id)
        counted = rows.group_by(rows.entity_id.name("part_entity")).aggregate(
            users=rows.user_id.count(),
            matching=rows.user_id.count(where=rows.member.fill_null(False)),
        )
        quantifier, number = condition.quantifier
        total, matching = counted.users, counted.matching
        held = {
            "any": matching >= 1,
            "all": (total >= 1) & (matching == total),
            "none": matching == 0,
            "at_least": matching >= (number or 0),
            "at_least_percent": (total >= 1) & (matching * 100 >= total * (number or 0)),
        }[quantifier]
        return counted.select(
            "part_entity",
            **{f"{leaf.id}_held": held, f"{leaf.id}_matching_users": matching,
               f"{leaf.id}_users": total},
        )  # fmt: skip

    def _test(
        self, value: ir.Value, test: ValueTest, json_text: ir.StringValue | None = None
    ) -> ir.BooleanValue:
        """Whether `value` passes `test`; `json_text` is a custom trait's value as JSON (a
        list, like a list trait, passes `contains` only, which tests its elements)."""
        operator, operand = test.operator
        if operator in ("is_null", "exists"):
            null = _is_null(value)
            return null if (operator == "is_null") == operand else ~null
        if value.type().is_array():
            return _list_holds(value, operand) if operator == "contains" else ibis.literal(False)
        held = self._value_test(value, operator, operand, json_text)
        if json_text is None or operator == "contains":
            return held
        # (a custom trait holding a list passes `contains` only, like a list trait)
        return held & ~json_text.startswith("[").fill_null(False)

    def _value_test(
        self,
        value: ir.Value,
        operator: str,
        operand: Scalar | list[Scalar] | str,
        json_text: ir.StringValue | None,
    ) -> ir.BooleanValue:
        """`_test` of a value that is no list trait (a custom trait's may hold a list)."""
        text = value.cast("string")
        number = None  # (only numbers and text in decimal notation: `true` is not 1, nor NaN)
        if value.type().is_numeric():
            number = value.try_cast("float64")
        elif value.type().is_string():
            number = as_number(text)
        if value.type().is_floating():
            number = ibis.ifelse(value.isnan(), ibis.null("float64"), number)
        if operator in ("within_last", "not_within_last"):
            moment = value
            if not value.type().is_timestamp() and self.backend.name == "pyspark":
                moment = utc_moment(text)
            elif not value.type().is_timestamp():  # (text: an offset is converted to UTC)
                moment = utc_value(text)
            since = self.as_of - window_interval(parse_window(operand))
            if operator == "within_last":
                return (moment >= since) & (moment < self.as_of)
            return moment < since
        if operator == "contains" and json_text is not None:
            return ibis.ifelse(
                json_text.startswith("["),
                _json_list_holds(json_text, operand),
                text.contains(_text_of(operand)),
            )
        if operator in ("equals", "not_equals"):
            if isinstance(operand, bool):
                same = text == _text_of(operand)
            elif isinstance(operand, int | float) and number is not None:
                same = number == float(operand)
            else:
                same = text == str(operand)
            same = same.fill_null(False)  # (a text that is not a number differs from one)
            return same if operator == "equals" else ~_is_null(value) & ~same
        if operator == "in":
            strings = [_text_of(v) for v in operand]
            held = text.isin(strings)
            numbers = [float(v) for v in operand if isinstance(v, int | float)
                       and not isinstance(v, bool)]  # fmt: skip
            if numbers and number is not None:
                held |= number.isin(numbers)
            return held
        if operator == "contains":
            return text.contains(_text_of(operand))
        if number is None:
            return ibis.literal(False)
        return {"gt": number > operand, "gte": number >= operand, "lt": number < operand,
                "lte": number <= operand}[operator]  # fmt: skip


def _counts_in_context(condition: Condition) -> bool:
    """Whether a user condition (not counting nested quantifiers) has a `performed` condition
    counting in the account's context."""
    if isinstance(condition, Performed):
        return condition.in_context
    # (and / or / not keep the entity; quantifiers and `account:` change it)
    return any(_counts_in_context(child) for child, entity, _ in children(condition)
               if entity is None)  # fmt: skip


def _is_null(value: ir.Value) -> ir.BooleanValue:
    """Whether a value is null (NaN is not: Ibis's Spark backend counts it so)."""
    if value.type().is_floating():
        return value.isnull() & ~value.isnan().fill_null(False)
    return value.isnull()


@ibis.udf.scalar.builtin
def utc_moment(value: str) -> datetime:
    """(Spark, `spark/session.py`) text naming a moment, with or without an offset, in UTC."""


def _custom_columns(base: ir.Table, key: str, quoted_paths: bool) -> dict[str, ir.Value]:
    """A custom trait read from the entities' `custom_traits`: as text (strings unquoted;
    numbers, booleans, lists and objects as their JSON) and as JSON text, both null for an
    absent key or a JSON null. A dotted name reads a nested key (`address.city`)."""
    value = json_path_value(base.custom_traits, key, quoted_paths)
    text, as_json = _json_text_and_json(value)
    return {_custom_column("text", key): text, _custom_column("json", key): as_json}


def _json_text_and_json(value: ir.JSONValue) -> tuple[ir.StringValue, ir.StringValue]:
    """A JSON value as text (strings unquoted; numbers, booleans, lists and objects as their
    JSON) and as JSON text, both null for SQL's NULL or a JSON null."""
    as_json = value.cast("string")
    absent = as_json.isnull() | (as_json == "null")
    text = ibis.ifelse(absent, ibis.null("string"), ibis.coalesce(value.str, as_json))
    return text, ibis.ifelse(absent, ibis.null("string"), as_json)


def _custom_column(kind: str, key: str) -> str:
    """The column of a custom trait read as `text` or `json` (named by a digest: keys may
    differ only in case, which column names may not)."""
    return f"custom_{kind}__{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def _list_holds(values: ir.ArrayValue, element: Scalar) -> ir.BooleanValue:
    """Whether a list trait has an element equal to `element`: text as `_element_texts`, a
    number by value, a boolean as itself (or its text)."""
    kind = values.type().value_type
    if kind.is_boolean():
        wanted = {"true": True, "false": False}.get(_text_of(element))
        return ibis.literal(False) if wanted is None else values.contains(wanted)
    if kind.is_numeric():
        number = _number_of(element)
        if number is None:
            return ibis.literal(False)
        return values.map(lambda item: item.cast("float64") == number).anys()
    texts = sorted(_element_texts(element))
    return values.map(lambda item: item.cast("string").isin(texts)).anys()


def _json_list_holds(json_text: ir.StringValue, element: Scalar) -> ir.BooleanValue:
    """Whether a JSON list (compact text, as the engines write it) has an element equal to
    `element`: one of `_element_texts` as a JSON string, or the number or boolean itself,
    looked for outside the list's strings (`"a,7,b"` holds no element 7)."""
    texts = _element_texts(element)
    strings = {json.dumps(text, ensure_ascii=False) for text in texts}
    # (DuckDB writes control characters' escapes in upper case)
    strings |= {re.sub(r"\\u00([0-9a-f]{2})", lambda m: "\\u00" + m[1].upper(), string)
                for string in strings}  # fmt: skip
    bare = _number_texts(element) | (texts & {"true", "false"})
    # (escapes dropped first, then strings are a quote, no quote, a quote: patterns without a
    # repeated group, which Java's regular expressions match recursing once per repetition)
    without_strings = json_text.re_replace(r"\\.", "").re_replace(r'"[^"]*"', '""')
    held = ibis.literal(False)
    for items, text in ((strings, json_text), (bare, without_strings)):
        for item in sorted(items):
            held |= (
                (text == f"[{item}]")
                | text.startswith(f"[{item},")
                | text.endswith(f",{item}]")
                | text.contains(f",{item},")
            )
    return held


def _element_texts(element: Scalar) -> set[str]:
    """The texts equal to a `contains` operand: its text, and a number's plain forms."""
    return {_text_of(element)} | _number_texts(element)


def _number_of(operand: Scalar) -> float | None:
    """A finite number, from a number or text in decimal notation (not from a boolean)."""
    if isinstance(operand, bool) or (
        isinstance(operand, str) and not re.fullmatch(NUMBER_TEXT, operand)
    ):
        return None
    number = float(operand)
    return number if math.isfinite(number) else None


def _number_texts(operand: Scalar) -> set[str]:
    """The ways Python and the engines write a number (or text in decimal notation): `7`,
    `7.0`, `1e+20`, `100000000000000000000.0`, `1.5e-07`, `1.5e-7`, `-0.0`, ...; nothing for
    other operands."""
    number = _number_of(operand)
    if number is None:
        return set()
    texts = {repr(number)}
    if number.is_integer():
        texts |= {str(int(number)), f"{int(number)}.0"}
    if number == 0:
        texts |= {"0", "0.0", "-0", "-0.0"}
    if isinstance(operand, int):
        texts.add(str(operand))
    # (exponents with and without `+` and leading zeros)
    texts |= {re.sub(r"e([+-]?)0*(\d)", r"e\1\2", text) for text in texts}
    return texts | {text.replace("e+", "e") for text in texts}


def _text_of(operand: Scalar) -> str:
    """An operand as the text of a value (`true` / `false` for booleans)."""
    return json.dumps(operand) if isinstance(operand, bool) else str(operand)


def _value_column(condition: Condition) -> str | None:
    """The column of the entity rows a trait or custom trait test reads (None for others)."""
    if isinstance(condition, TraitTest):
        return f"trait__{condition.trait}"
    if isinstance(condition, CustomTraitTest):
        return _custom_column("text", condition.custom_trait)
    return None


def require_snapshots(
    backend: ibis.BaseBackend, evaluated: Evaluated, start: datetime, end: datetime
) -> None:
    """Fail clearly when a table an evaluation reads lacks a snapshot hour of `[start, end)`
    (on any Ibis backend). An hour before the first event that gives the table rows is rightly
    empty (no users before the first event with a userId, ...), and needs no rows."""
    expected = int((end - start) / timedelta(hours=1))
    existing = set(backend.list_tables())
    hours = _snapshot_hours(backend, sorted(evaluated.tables & existing), start, end)
    for name in sorted(evaluated.tables):
        found = hours.get(name, 0)
        if found < expected and name in existing and "raw_events" in existing:
            found += _hours_before_rows(backend, name, start, end)
        if found < expected:
            raise NotComputedError(
                f"{name} has no snapshot for {expected - found} of the {expected} hours from "
                f"{start} to {end}: materialize it first."
            )
    require_traits_computed(backend, evaluated, start, end)


def require_traits_computed(
    backend: ibis.BaseBackend, evaluated: Evaluated, start: datetime, end: datetime
) -> None:
    """Fail clearly when a trait the evaluation tests was not computed by its current
    definition for every hour of `[start, end)`, as `trait_hours` records: a trait added to
    the definitions and built for older hours only has a column at the newer ones too,
    without values; a trait edited holds its old definition's values until built again.
    Entities with no hour recorded at all have trait tables built before `trait_hours` was
    kept, and are not checked."""
    traits = evaluated.traits
    if not traits or "trait_hours" not in backend.list_tables():
        return
    expected = int((end - start) / timedelta(hours=1))
    recorded = backend.table("trait_hours")
    inside = (
        (recorded.snapshot_hour >= timestamp(start))
        & (recorded.snapshot_hour < timestamp(end))
        & computed_by(recorded, traits.values())
    )
    counts = recorded.group_by("entity", "trait").aggregate(
        hours=recorded.snapshot_hour.nunique(where=inside)
    )
    found = {(e, t): int(n) for e, t, n in counts.execute().itertuples(index=False)}
    tracked = {entity for entity, _ in found}
    for entity, trait in sorted(traits):
        missing = expected - found.get((entity, trait), 0)
        if entity in tracked and missing > 0:
            raise NotComputedError(
                f"{entity} trait {trait!r} was not computed for {missing} of the {expected} "
                f"hours from {start} to {end} (by its current definition): materialize the "
                "traits first."
            )


def _snapshot_hours(
    backend: ibis.BaseBackend, tables: list[str], start: datetime, end: datetime
) -> dict[str, int]:
    """How many snapshot hours of `[start, end)` each table has, in one query."""
    counts = []
    for name in tables:
        table = backend.table(name)
        hours = table.filter(
            (table.snapshot_hour >= timestamp(start)) & (table.snapshot_hour < timestamp(end))
        )
        counts.append(hours.aggregate(hours=hours.snapshot_hour.nunique(), name=ibis.literal(name)))
    if not counts:
        return {}
    found = ibis.union(*counts).execute()
    return dict(zip(found["name"], found["hours"].astype(int), strict=True))


def _hours_before_rows(
    backend: ibis.BaseBackend, table: str, start: datetime, end: datetime
) -> int:
    """How many hours of `[start, end)` come before the hour of the first event that gives
    `table` a row (all of them when no event does)."""
    events = backend.table("raw_events")
    givers = events.filter(events.type == "group") if table in GROUP_CALL_TABLES else events
    givers = givers.filter(givers.user_id.notnull()) if table in USER_TABLES else givers
    # (one giver before the window is enough, and stops the scan; else only the window's
    # hours are read)
    if givers.filter(givers.event_hour < timestamp(start)).limit(1).count().execute():
        return 0
    inside = givers.filter(givers.event_hour < timestamp(end))
    first = inside.event_hour.min().execute()
    first = end if first is None or pd.isna(first) else first
    return int((first - start) / timedelta(hours=1))


# The snapshot tables whose rows come from group calls (every other one from any event), and
# those whose rows need a userId.
GROUP_CALL_TABLES = {"accounts", "account_traits", "account_hierarchy", "account_memberships"}
USER_TABLES = {"users", "user_traits", "account_memberships"}
