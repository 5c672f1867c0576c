"""A straightforward pandas implementation of the computed trait semantics (the baseline the
trait benchmark compares against). Same rules as `account_hierarchy.traits.compile`."""

import json
import math
from datetime import datetime, timedelta

import pandas as pd

from account_hierarchy.catalog.models import ComputedTrait, PropertyCondition


def _lookup(source: object, path: str) -> object:
    for key in path.split("."):
        if not isinstance(source, dict) or key not in source:
            return None
        source = source[key]
    return source


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _finite(numbers: pd.Series) -> pd.Series:
    """The numbers, with NaN and infinities (which read as no number) made missing."""
    numbers = pd.to_numeric(numbers, errors="coerce").astype(float)
    return numbers.where(numbers.map(math.isfinite))


def prepare(events: pd.DataFrame) -> pd.DataFrame:
    """Parse the JSON columns once (`props`: traits for identify and group calls, else
    properties)."""
    events = events[events.user_id.notna()].copy()
    raw = events.traits.where(events.type.isin(["identify", "group"]), events.properties)
    events["props"] = [json.loads(value) if isinstance(value, str) else None for value in raw]
    return events


def _mask(events: pd.DataFrame, trait: ComputedTrait, as_of: datetime) -> pd.Series:
    mask = events.timestamp < as_of
    if trait.event_type:
        mask &= events.type == trait.event_type
    if trait.event:
        mask &= events.event == trait.event
    if trait.window_length is not None:
        mask &= events.timestamp >= as_of - trait.window_length
    for condition in trait.where:
        values = events.props.map(lambda p, c=condition: _lookup(p, c.property))
        mask &= _holds(values, condition)
    return mask


def _holds(values: pd.Series, condition: PropertyCondition) -> pd.Series:
    """Where a `where` condition holds for the property values (None when missing): text
    compares as JSON text (a string as itself), numbers as numbers (numeric strings count);
    a missing property satisfies no condition but `exists: false`."""
    present = values.notna()
    texts = values.map(_text)
    numbers = _finite(
        values.map(lambda v: v if isinstance(v, int | float | str) and not isinstance(v, bool)
                   else None)
    )  # fmt: skip
    operator, operand = condition.operator
    if operator == "exists":
        return present if operand else ~present
    if operator in ("equals", "not_equals"):
        if isinstance(operand, bool):
            same = texts == ("true" if operand else "false")
        elif isinstance(operand, int | float):
            same = numbers == operand
        else:
            same = texts == operand
        # (a present value that is not a number is not equal to a number: not_equals holds)
        return (same if operator == "equals" else ~same) & present
    if operator == "in":
        strings = [str(v).lower() if isinstance(v, bool) else v for v in operand
                   if isinstance(v, str | bool)]  # fmt: skip
        floats = [v for v in operand if isinstance(v, int | float) and not isinstance(v, bool)]
        return texts.isin(strings) | numbers.isin(floats)
    if operator == "contains":
        return texts.map(lambda text: text is not None and operand in text)
    compare = {"gt": numbers > operand, "gte": numbers >= operand, "lt": numbers < operand,
               "lte": numbers <= operand}  # fmt: skip
    return compare[operator]


def compute(
    events: pd.DataFrame,
    memberships: pd.DataFrame,
    hierarchy: pd.DataFrame,
    traits: list[ComputedTrait],
    hour: datetime,
) -> dict[str, pd.Series]:
    """trait name -> values indexed by entity id, for one snapshot hour."""
    as_of = hour + timedelta(hours=1)
    results = {}
    for trait in traits:
        matched = events[_mask(events, trait, as_of)]
        if trait.entity == "user":
            rows = matched.assign(entity_id=matched.user_id)
        else:
            scope = hierarchy[["account_id", "path"]]
            scope = (scope.explode("path").rename(columns={"path": "entity_id"})
                     if trait.include_child_accounts
                     else scope.assign(entity_id=scope.account_id))  # fmt: skip
            mapping = scope.merge(memberships, on="account_id").rename(
                columns={"account_id": "via"}
            )
            rows = matched.merge(mapping, on="user_id")
            if trait.attribution == "context":
                keep = rows.context_group_id == rows.via
                if trait.context_fallback == "all_accounts":
                    keep |= rows.context_group_id.isna()
                rows = rows[keep]
            rows = rows.drop_duplicates(["entity_id", "message_id"])
        results[trait.name] = _reduce(rows, trait)
    return results


def _reduce(rows: pd.DataFrame, trait: ComputedTrait) -> pd.Series:
    grouped = rows.groupby("entity_id")
    if trait.type == "event_counter":
        return grouped.size()
    if trait.type == "unique_users":
        return grouped.user_id.nunique()
    values = rows.props.map(lambda p: _lookup(p, trait.property))
    rows = rows.assign(value=values.map(_text)).dropna(subset=["value"])
    grouped = rows.groupby("entity_id")
    if trait.type == "aggregation":
        numbers = rows.assign(number=_finite(rows.value))
        return numbers.groupby("entity_id").number.agg(trait.function.replace("avg", "mean"))
    if trait.type in ("first_value", "last_value"):
        ordered = rows.sort_values(["timestamp", "message_id"])
        ordered = ordered.groupby("entity_id").value
        return ordered.first() if trait.type == "first_value" else ordered.last()
    if trait.type == "unique_list":
        return grouped.value.agg(lambda v: sorted(set(v)))
    if trait.type == "unique_list_count":
        return grouped.value.nunique()
    if trait.type == "most_frequent":
        counts = rows.groupby(["entity_id", "value"]).size().rename("n").reset_index()
        counts = counts.sort_values(["entity_id", "n", "value"], ascending=[True, False, True])
        return counts.groupby("entity_id").value.first()
    raise NotImplementedError(trait.type)
