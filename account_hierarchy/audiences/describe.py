"""Human-readable text for audience conditions (used in reasons, explanations and the UI)."""

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
)
from account_hierarchy.catalog.models import Comparison
from account_hierarchy.catalog.windows import parse_window

SYMBOLS = {"equals": "=", "not_equals": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
           "in": "in", "contains": "contains", "within_last": "within the last",
           "not_within_last": "not within the last"}  # fmt: skip


def describe_test(name: str, test: Comparison) -> str:
    """`logins_past_30_days < 10`, `industry = 'Software'`, `title is null`, ..."""
    operator, operand = test.operator
    if operator == "exists":
        return f"{name} {'exists' if operand else 'does not exist'}"
    if operator == "is_null":
        return f"{name} is {'' if operand else 'not '}null"
    if isinstance(operand, float) and operand.is_integer() and operator != "contains":
        operand = int(operand)  # (`contains: 7.0` looks for the text `7.0`: shown as it is)
    shown = operand if operator in ("within_last", "not_within_last") else _operand(operand)
    return f"{name} {SYMBOLS[operator]} {shown}"


def _operand(value: object) -> str:
    """An operand as the YAML wrote it: text quoted, `true` / `false`, a list's items so."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_operand(item) for item in value) + "]"
    return repr(value)


def describe(condition: Condition) -> str:
    """The whole condition tree as one line."""
    if isinstance(condition, And):
        return "(" + " and ".join(describe(c) for c in condition.and_) + ")"
    if isinstance(condition, Or):
        return "(" + " or ".join(describe(c) for c in condition.or_) + ")"
    if isinstance(condition, Not):
        return f"not {describe(condition.not_)}"
    if isinstance(condition, TraitTest):
        return describe_test(condition.trait, condition)
    if isinstance(condition, CustomTraitTest):
        return describe_test(condition.custom_trait, condition)
    if isinstance(condition, AudienceReference):
        return f"member of {condition.audience}"
    if isinstance(condition, AccountAudienceReference):
        return f"in an account of {condition.in_account_audience}"
    if isinstance(condition, AnyAccount):
        return f"in an account where {describe(condition.account)}"
    if isinstance(condition, Quantified):
        quantifier, number = condition.quantifier
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        amount = {"at_least": "at least {!r}", "at_least_percent": "at least {!r}%"}
        text = amount[quantifier].format(number) if quantifier in amount else quantifier
        return f"{text} of the users: {describe(condition.where)}"
    if isinstance(condition, Performed):
        filters = " and ".join(
            describe_test(w.property, w)
            for w in condition.where  # type: ignore[arg-type]
        )
        text = f"performed {condition.performed!r}" + (f" with {filters}" if filters else "")
        bounds = [f"at least {condition.at_least}"] if condition.at_least else []
        if condition.at_most is not None:
            bounds.append(f"at most {condition.at_most}")
        times = " and ".join(bounds) or "at least 0"
        last = condition.at_least if condition.at_most is None else condition.at_most
        times += " time" if last == 1 else " times"
        length = parse_window(condition.window)  # (None for all time, however it is written)
        window = "" if length is None else f" in the past {condition.window}"
        context = ""
        if condition.in_context:
            only = " only" if condition.context_fallback == "none" else " or without one"
            context = f" (counting events in the account's context{only})"
        return f"{text} {times}{window}{context}"
    raise TypeError(type(condition))
