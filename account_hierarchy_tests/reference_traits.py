"""An independent, plain-Python computation of computed traits, for the tests."""

import json
import math
import re
from collections import Counter
from datetime import datetime, timedelta

from account_hierarchy_tests.reference import moment

WINDOW_UNITS = {"minute": "minutes", "hour": "hours", "day": "days"}


def window(text: str) -> timedelta | None:
    if text == "all time":
        return None
    amount, unit = text.split()
    return timedelta(**{WINDOW_UNITS[unit.rstrip("s")]: int(amount)})


def lookup(message: dict, path: str):
    source = message.get("traits" if message["type"] in ("identify", "group") else "properties")
    for key in path.split("."):
        if not isinstance(source, dict) or key not in source:
            return None
        source = source[key]
    return source


def text(value) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


NUMBER_TEXT = re.compile(r"\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*")


def number(value) -> float | None:
    """A finite number, from a number or a string in decimal notation (`" 7 "`, `1e3`; not
    `5d`, `1_000`, `NaN` or `Infinity`)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and not NUMBER_TEXT.fullmatch(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def condition_holds(message: dict, condition: dict) -> bool:
    value = lookup(message, condition["property"])
    ((operator, operand),) = ((k, v) for k, v in condition.items() if k != "property")
    if operator == "exists":
        return (value is not None) == operand
    if value is None:
        return False
    if operator in ("equals", "not_equals"):
        if isinstance(operand, bool):
            same = text(value) == ("true" if operand else "false")
        elif isinstance(operand, int | float):
            same = number(value) == float(operand)
        else:
            same = text(value) == operand
        return same if operator == "equals" else not same
    if operator == "in":
        return text(value) in [text(o) if not isinstance(o, str) else o for o in operand] or (
            number(value)
            in [float(o) for o in operand if isinstance(o, int | float) and not isinstance(o, bool)]
        )
    if operator == "contains":
        return operand in (text(value) or "")
    n = number(value)
    if n is None:
        return False
    return {"gt": n > operand, "gte": n >= operand, "lt": n < operand, "lte": n <= operand}[
        operator
    ]


def event_name(message: dict) -> str | None:
    if message["type"] == "track":
        return message.get("event")
    if message["type"] in ("page", "screen"):
        return message.get("name")
    return None


def matches(message: dict, trait: dict, as_of: datetime) -> bool:
    if trait.get("event_type") and message["type"] != trait["event_type"]:
        return False
    if trait.get("event") and event_name(message) != trait["event"]:
        return False
    length = window(trait.get("window", "all time"))
    if length is not None and moment(message) < as_of - length:
        return False
    return all(condition_holds(message, c) for c in trait.get("where", []))


def owners(message: dict, trait: dict, snap: dict) -> set[str]:
    """The accounts (or the user) an event counts for."""
    user = message.get("userId")
    if trait["entity"] == "user":
        return {user}
    member_of = {a for (u, a) in snap["memberships"] if u == user}
    result = set()
    for account in snap["hierarchy"]:
        scope = (
            {d for d, p in snap["hierarchy"].items() if account in p["path"]}
            if trait.get("include_child_accounts")
            else {account}
        )
        for via in scope & member_of:
            context = message.get("context", {}).get("groupId")
            if (
                trait.get("attribution", "all_users") == "all_users"
                or context == via
                or (
                    context is None
                    and trait.get("context_fallback", "all_accounts") == "all_accounts"
                )
            ):
                result.add(account)
    return result


def trait_values(events: list[dict], hour: datetime, trait: dict, snap: dict) -> dict:
    """entity id -> value, for every entity of the snapshot."""
    as_of = hour + timedelta(hours=1)
    entities = snap["hierarchy"] if trait["entity"] == "account" else snap["users"]
    matched: dict[str, list[dict]] = {entity: [] for entity in entities}
    for message in events:
        if moment(message) >= as_of or not message.get("userId"):
            continue
        if matches(message, trait, as_of):
            for owner in owners(message, trait, snap):
                if owner in matched:
                    matched[owner].append(message)
    return {entity: reduce(trait, found) for entity, found in matched.items()}


def reduce(trait: dict, found: list[dict]):
    kind = trait["type"]
    if kind == "event_counter":
        return len(found)
    if kind == "unique_users":
        return len({m["userId"] for m in found})
    values = [(m, lookup(m, trait["property"])) for m in found]
    values = [(m, v) for m, v in values if v is not None]
    if kind == "aggregation":
        numbers = [number(v) for _, v in values if number(v) is not None]
        if trait["function"] == "sum":
            return float(sum(numbers))
        if not numbers:
            return None
        return {"avg": sum(numbers) / len(numbers), "min": min(numbers), "max": max(numbers)}[
            trait["function"]
        ]
    texts = [(m, text(v)) for m, v in values]
    if kind in ("first_value", "last_value"):
        if not texts:
            return None
        ordered = sorted(texts, key=lambda mv: (moment(mv[0]), mv[0]["messageId"]))
        return ordered[0][1] if kind == "first_value" else ordered[-1][1]
    if kind == "unique_list":
        return sorted({t for _, t in texts})
    if kind == "unique_list_count":
        return len({t for _, t in texts})
    if kind == "most_frequent":
        counts = Counter(t for _, t in texts)
        return min(counts, key=lambda t: (-counts[t], t)) if counts else None
    raise ValueError(kind)
