"""The shape of definition files, validated by pydantic.

A definition file holds lists under `traits:`, `audiences:` (see `audience_models.py`) and
`destinations:` (see `destination_models.py`).
Every mapping forbids unknown keys, so a typo is an error, not a silent no-op.
"""

import math
import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    field_validator,
    model_validator,
)

from account_hierarchy.catalog.windows import ALL_TIME, parse_window

NAME = re.compile(r"[a-z][a-z0-9_]*")  # (whole names: `fullmatch`)
EVENT_TYPES = ("track", "page", "screen", "identify", "group")
OPERATORS = ("equals", "not_equals", "gt", "gte", "lt", "lte", "in", "contains", "exists")


def json_key_problem(name: str) -> str | None:
    """Why a property or custom trait name cannot be read from JSON, if it cannot: any key
    but quotes and backslashes, a dot reaching into nested objects (`plan.name`)."""
    if not name:
        return "a name is needed"
    if any(quote in name for quote in "'\"\\"):
        return "names with quotes or backslashes cannot be read"
    keys = name.split(".")
    if "" in keys:
        return "a dot separates nested keys, and none may be empty"
    if "*" in keys:  # (a JSON path reads `*` as every key, quoted or not)
        return "a key `*` cannot be read"
    return None


def _scalar(value: object) -> object:
    """One message for an operand of another type (not one per member of the union), and for
    a number no comparison can use (NaN, an infinity, an integer beyond the floats' range)."""
    if not isinstance(value, str | int | float):  # (a boolean is an int)
        raise ValueError("must be text, a number or true / false")
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            finite = math.isfinite(float(value))
        except OverflowError:
            finite = False
        if not finite:
            raise ValueError("must be a finite number (within about ±1.8e308)")
    return value


Scalar = Annotated[str | int | float | bool, BeforeValidator(_scalar)]


def check_name(value: str) -> str:
    """Names of traits and audiences: lower-case letters, digits and underscores."""
    if not NAME.fullmatch(value):
        raise ValueError(
            f"name {value!r} must be lower case letters, digits and underscores, "
            "starting with a letter"
        )
    return value


class FieldProblem(ValueError):
    """A problem a check of the whole definition finds in one of its fields: reported at that
    field's line, as a field's own check is."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_event_name(event_type: str | None, event: str | None, field: str) -> None:
    """Only track, page and screen calls have a name for `field` to match, and no event has a
    blank one (ingestion quarantines a track call without one)."""
    if event is not None and not event.strip():
        raise FieldProblem(field, f"`{field}` is blank: it must name an event")
    if event is not None and event_type in ("identify", "group"):
        raise FieldProblem(field, f"{event_type} calls have no event name for `{field}` to match")


class Strict(BaseModel):
    """Base of every definition model: unknown keys are errors, and values are not coerced
    (`"1"` is no number, `"no"` no boolean)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class Comparison(Strict):
    """Exactly one operator applied to a value; subclasses name what the value is."""

    OPERATORS: ClassVar[tuple[str, ...]] = OPERATORS

    equals: Scalar | None = None
    not_equals: Scalar | None = None
    gt: FiniteFloat | None = None
    gte: FiniteFloat | None = None
    lt: FiniteFloat | None = None
    lte: FiniteFloat | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    contains: str | None = None
    exists: bool | None = None

    def _operand(self, name: str) -> Any:
        return getattr(self, "in_" if name == "in" else name)

    @model_validator(mode="after")
    def _one_operator(self) -> "Comparison":
        given = [name for name in self.OPERATORS
                 if ("in_" if name == "in" else name) in self.model_fields_set]  # fmt: skip
        if nulls := [name for name in given if self._operand(name) is None]:
            test = "give true or false" if nulls[0] in ("exists", "is_null") else (
                f"test for null with `{'is_null' if 'is_null' in self.OPERATORS else 'exists'}`"
            )  # fmt: skip
            raise ValueError(f"`{nulls[0]}: null` is no operand: {test}")
        if len(given) != 1:
            raise ValueError(
                f"give exactly one operator out of {', '.join(self.OPERATORS)} "
                f"(got {given or 'none'})"
            )
        return self

    @property
    def operator(self) -> tuple[str, Any]:
        """The operator's name and operand."""
        name = next(name for name in self.OPERATORS if self._operand(name) is not None)
        return name, self._operand(name)


class PropertyCondition(Comparison):
    """One condition on an event property, e.g. `{property: feature, equals: reports}`.

    The property is read from `properties` (from `traits` for identify and group calls); a dot
    reaches into nested objects (`plan.name`). Exactly one operator is given.
    """

    property: str

    @field_validator("property")
    @classmethod
    def _path(cls, value: str) -> str:
        if problem := json_key_problem(value):
            raise ValueError(f"property {value!r}: {problem}")
        return value


class TraitCommon(Strict):
    """What every trait has, whatever its type: a name, an entity and a description."""

    name: str
    entity: Literal["account", "user"]
    description: str = ""

    _name = field_validator("name")(check_name)


class TraitBase(TraitCommon):
    """What every computed trait has: which events it looks at, when."""

    event_type: Literal["track", "page", "screen", "identify", "group"] | None = None
    event: str | None = None
    where: list[PropertyCondition] = []
    window: str = ALL_TIME
    attribution: Literal["all_users", "context"] = "all_users"
    context_fallback: Literal["all_accounts", "none"] = "all_accounts"
    include_child_accounts: bool = False

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value

    @model_validator(mode="after")
    def _event_has_a_name(self) -> "TraitBase":
        check_event_name(self.event_type, self.event, "event")
        return self

    @model_validator(mode="after")
    def _account_options(self) -> "TraitBase":
        if self.entity == "user":
            for option, default in (
                ("attribution", "all_users"),
                ("context_fallback", "all_accounts"),
                ("include_child_accounts", False),
            ):
                if getattr(self, option) != default:
                    raise FieldProblem(option, f"{option} applies to account traits only")
        if self.context_fallback != "all_accounts" and self.attribution != "context":
            raise FieldProblem(
                "context_fallback", "context_fallback applies with attribution: context only"
            )
        return self

    @property
    def window_length(self) -> timedelta | None:
        """The window as a duration; None for all time."""
        return parse_window(self.window)


class EventCounter(TraitBase):
    """How many matching events."""

    type: Literal["event_counter"]


class PropertyTrait(TraitBase):
    """A trait about one property of the matching events."""

    property: str

    _property = field_validator("property")(PropertyCondition._path.__func__)


class Aggregation(PropertyTrait):
    """Sum, average, minimum or maximum of a numeric property of the matching events."""

    type: Literal["aggregation"]
    function: Literal["sum", "avg", "min", "max"]


class MostFrequent(PropertyTrait):
    """The most common value of a property (ties: the value that sorts first)."""

    type: Literal["most_frequent"]


class FirstValue(PropertyTrait):
    """The property's value on the earliest matching event that has it."""

    type: Literal["first_value"]


class LastValue(PropertyTrait):
    """The property's value on the latest matching event that has it."""

    type: Literal["last_value"]


class UniqueList(PropertyTrait):
    """The distinct values of a property, sorted."""

    type: Literal["unique_list"]


class UniqueListCount(PropertyTrait):
    """How many distinct values a property had."""

    type: Literal["unique_list_count"]


class UniqueUsers(TraitBase):
    """How many distinct users of the account did the matching events."""

    type: Literal["unique_users"]

    @model_validator(mode="after")
    def _accounts_only(self) -> "UniqueUsers":
        if self.entity != "account":
            raise FieldProblem("entity", "unique_users traits are for entity: account")
        return self


class SqlTrait(TraitCommon):
    """A SELECT over the snapshot's read-only views returning the entity id column
    (`account_id` or `user_id`) and one column per value; each value column is a trait."""

    type: Literal["sql"]
    sql: str
    many: bool = False


ComputedTrait = (
    EventCounter
    | Aggregation
    | MostFrequent
    | FirstValue
    | LastValue
    | UniqueList
    | UniqueListCount
    | UniqueUsers
)
Trait = Annotated[ComputedTrait | SqlTrait, Field(discriminator="type")]
# The computed traits whose values are counts (whole numbers, never negative), and those whose
# values are numbers of any kind.
COUNT_TRAITS = (EventCounter, UniqueUsers, UniqueListCount)
NUMBER_TRAITS = (*COUNT_TRAITS, Aggregation)
