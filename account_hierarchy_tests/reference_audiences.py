"""An independent, plain-Python evaluation of audience definitions, for the tests."""

import json
from datetime import UTC, datetime, timedelta

from account_hierarchy_tests.reference import moment
from account_hierarchy_tests.reference_traits import matches, number, trait_values, window

OPERATORS = ("equals", "not_equals", "gt", "gte", "lt", "lte", "in", "contains", "exists",
             "is_null", "within_last", "not_within_last")  # fmt: skip


class ReferenceAudiences:
    """Evaluates audience dicts (as written in YAML) for one snapshot hour."""

    def __init__(self, events, hour: datetime, snap: dict, traits: list[dict], audiences):
        self.events, self.hour, self.snap = events, hour, snap
        self.as_of = hour + timedelta(hours=1)
        self.traits = {t["name"]: t for t in traits}
        self.audiences = {a["name"]: a for a in audiences}
        self._values: dict[str, dict] = {}
        self._members: dict[str, set] = {}

    def members(self, name: str) -> set[str]:
        if name not in self._members:
            audience = self.audiences[name]
            entities = self.snap["accounts"] if audience["entity"] == "account" else (
                self.snap["users"])  # fmt: skip
            self._members[name] = {
                e for e in entities if self.holds(audience["where"], audience["entity"], e)
            }
        return self._members[name]

    def users_of(self, account: str) -> list[str]:
        return [u for (u, a) in self.snap["memberships"] if a == account]

    def accounts_of(self, user: str) -> list[str]:
        return [a for (u, a) in self.snap["memberships"] if u == user]

    def holds(
        self, condition: dict, entity: str, entity_id: str, account: str | None = None
    ) -> bool:
        """Whether `entity_id` satisfies `condition`; `account` is the account a users
        quantifier evaluates the user for (the context of `attribution: context`)."""
        if "and" in condition:
            return all(self.holds(c, entity, entity_id, account) for c in condition["and"])
        if "or" in condition:
            return any(self.holds(c, entity, entity_id, account) for c in condition["or"])
        if "not" in condition:
            return not self.holds(condition["not"], entity, entity_id, account)
        if "trait" in condition:
            name = condition["trait"]
            if name not in self._values:
                self._values[name] = trait_values(self.events, self.hour, self.traits[name],
                                                  self.snap)  # fmt: skip
            return self.test(self._values[name].get(entity_id), condition)
        if "custom_trait" in condition:
            table = self.snap["accounts"] if entity == "account" else self.snap["users"]
            value = table[entity_id]["traits"]
            for key in condition["custom_trait"].split("."):  # (a dotted name: nested keys)
                value = value.get(key) if isinstance(value, dict) else None
            return self.test(value, condition)
        if "audience" in condition:
            return entity_id in self.members(condition["audience"])
        if "in_account_audience" in condition:
            chosen = self.members(condition["in_account_audience"])
            return any(a in chosen for a in self.accounts_of(entity_id))
        if "account" in condition:
            return any(self.holds(condition["account"], "account", a)
                       for a in self.accounts_of(entity_id))  # fmt: skip
        if "performed" in condition:
            spec = {"event": condition["performed"], "event_type": condition.get("event_type"),
                    "where": condition.get("where", []),
                    "window": condition.get("window", "all time")}  # fmt: skip
            times = sum(1 for e in self.events if e.get("userId") == entity_id
                        and moment(e) < self.as_of and matches(e, spec, self.as_of)
                        and in_context(e, condition, account))  # fmt: skip
            at_least = condition.get("at_least", 0 if "at_most" in condition else 1)
            return times >= at_least and (
                condition.get("at_most") is None or times <= condition["at_most"]
            )
        users = self.users_of(entity_id)
        matching = sum(1 for u in users if self.holds(condition["where"], "user", u, entity_id))
        if "at_least" in condition:
            return matching >= condition["at_least"]
        if "at_least_percent" in condition:
            return bool(users) and matching * 100 >= condition["at_least_percent"] * len(users)
        quantifier = condition.get("users", "any")
        if quantifier == "all":
            return bool(users) and matching == len(users)
        return matching == 0 if quantifier == "none" else matching >= 1

    def test(self, value, condition: dict) -> bool:
        ((operator, operand),) = ((k, v) for k, v in condition.items() if k in OPERATORS)
        if operator == "is_null":
            return (value is None) == operand
        if operator == "exists":
            return (value is not None) == operand
        if value is None:
            return False
        if operator in ("within_last", "not_within_last"):
            when = datetime.fromisoformat(str(value).upper().replace("Z", "+00:00"))
            when = when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when
            since = self.as_of - window(operand)
            return (since <= when < self.as_of) if operator == "within_last" else when < since
        if isinstance(value, list):
            return operator == "contains" and any(same_element(e, operand) for e in value)
        numeric = number(value)
        if operator in ("equals", "not_equals"):
            if isinstance(operand, bool):
                same = (
                    value is operand
                    if isinstance(value, bool)
                    else str(value) == str(operand).lower()
                )
            elif isinstance(operand, int | float):
                same = numeric == float(operand)
            else:
                same = str(value) == operand
            return same if operator == "equals" else not same
        if operator == "in":
            return str(value) in [str(o) for o in operand] or (
                numeric is not None
                and numeric in [float(o) for o in operand if isinstance(o, int | float)]
            )
        if operator == "contains":
            return str(operand) in str(value)
        if numeric is None:
            return False
        return {"gt": numeric > operand, "gte": numeric >= operand, "lt": numeric < operand,
                "lte": numeric <= operand}[operator]  # fmt: skip


def in_context(event: dict, condition: dict, account: str | None) -> bool:
    """Whether a user's event counts for `account` under a `performed` condition: always,
    unless it counts in the account's context (`attribution: context`), where the event's
    `context.groupId` must name the account, or be absent (unless `context_fallback: none`)."""
    if condition.get("attribution", "all_users") == "all_users":
        return True
    named = (event.get("context") or {}).get("groupId")
    if named is None:
        return condition.get("context_fallback", "all_accounts") == "all_accounts"
    return str(named) == account


def same_element(element, operand) -> bool:
    """Whether a list element equals a `contains` operand: a boolean its text (`true`), a
    number another by value (text in decimal notation counts), text the same text or, for a
    number, its plain forms (`7`, `7.0`)."""
    text = json.dumps(operand) if isinstance(operand, bool) else str(operand)
    if isinstance(element, bool):
        return json.dumps(element) == text
    wanted = None if isinstance(operand, bool) else number(operand)
    if isinstance(element, int | float):
        return wanted is not None and float(element) == wanted
    plain = set()
    if wanted is not None:
        plain = {repr(wanted)} | ({str(int(wanted))} if wanted.is_integer() else set())
    return element == text or element in plain
