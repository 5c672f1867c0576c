"""The shape of audience definitions: a name, an entity and a tree of conditions.

A condition is one mapping, recognised by its key:

- anywhere: `and` / `or` (a list), `not` (one condition); `trait` + operator (a computed or
  SQL trait of the entity); `custom_trait` + operator (a trait of group calls for accounts,
  identify calls for users); `audience` (member of another audience of the same entity);
- in account audiences: `users: any|all|none`, `at_least: N` or `at_least_percent: P`, with a
  user condition under `where`;
- in user conditions: `performed` (an event, with `where`, `window`, `at_least`, `at_most`;
  under a users quantifier, `attribution: context` counts only the events whose
  `context.groupId` is the account quantified), `in_account_audience` (one of the user's
  accounts is a member), `account` (one of the user's accounts satisfies an account
  condition).

Operators: `equals`, `not_equals`, `gt`, `gte`, `lt`, `lte`, `in`, `contains`, `exists`,
`is_null`, `within_last` and `not_within_last` (timestamp traits, e.g. `within_last: 7 days`).
"""

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    Discriminator,
    Field,
    StrictFloat,
    StrictInt,
    Tag,
    field_validator,
    model_validator,
)

from account_hierarchy.catalog.models import (
    OPERATORS,
    Comparison,
    FieldProblem,
    PropertyCondition,
    Scalar,
    Strict,
    check_event_name,
    check_name,
    json_key_problem,
)
from account_hierarchy.catalog.windows import ALL_TIME, parse_window

TEST_OPERATORS = (*OPERATORS, "is_null", "within_last", "not_within_last")
MAX_COUNT = 2**63 - 1  # (counts are compared as BIGINT: a greater one could never hold anyway)
CONDITION_KEYS = ("and", "or", "not", "trait", "custom_trait", "audience", "users", "at_least",
                  "at_least_percent", "performed", "in_account_audience", "account")  # fmt: skip


class ValueTest(Comparison):
    """Exactly one operator applied to a trait's value (with null and relative time tests)."""

    OPERATORS: ClassVar[tuple[str, ...]] = TEST_OPERATORS

    contains: Scalar | None = None  # (text, or an element of a list, which may be a number)
    is_null: bool | None = None
    within_last: str | None = None
    not_within_last: str | None = None

    @field_validator("within_last", "not_within_last")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None and parse_window(value) is None:
            raise ValueError("a relative time needs a length, like '7 days'")
        return value


class TraitTest(ValueTest):
    """A computed or SQL trait of the entity, e.g. `{trait: logins_past_30_days, lt: 10}`."""

    trait: str


class CustomTraitTest(ValueTest):
    """A trait sent in group (account) or identify (user) calls, e.g.
    `{custom_trait: industry, equals: Software}`."""

    custom_trait: str = Field(min_length=1)

    @field_validator("custom_trait")
    @classmethod
    def _readable(cls, name: str) -> str:
        if problem := json_key_problem(name):
            raise ValueError(f"custom_trait {name!r}: {problem}")
        return name


class AudienceReference(Strict):
    """Member of another audience of the same entity."""

    audience: str


class AccountAudienceReference(Strict):
    """(User conditions) one of the user's accounts is a member of an account audience."""

    in_account_audience: str


class AnyAccount(Strict):
    """(User conditions) one of the user's accounts satisfies an account condition."""

    account: "Condition"


class Quantified(Strict):
    """(Account audiences) how many of the account's users satisfy a user condition:
    `users: any` (default), `all` or `none`, or `at_least: N`, or `at_least_percent: P`."""

    users: Literal["any", "all", "none"] | None = None
    at_least: StrictInt | None = Field(default=None, ge=1, le=MAX_COUNT)
    at_least_percent: StrictFloat | None = Field(default=None, gt=0, le=100)
    where: "Condition"

    @model_validator(mode="after")
    def _one_quantifier(self) -> "Quantified":
        given = [q for q in ("users", "at_least", "at_least_percent") if getattr(self, q)]
        if len(given) > 1:
            raise ValueError(f"give one quantifier: users, at_least or at_least_percent ({given})")
        return self

    @property
    def quantifier(self) -> tuple[str, float | None]:
        """`any`, `all`, `none`, `at_least` or `at_least_percent`, with its number."""
        if self.at_least is not None:
            return "at_least", self.at_least
        if self.at_least_percent is not None:
            return "at_least_percent", self.at_least_percent
        return self.users or "any", None


class Performed(Strict):
    """(User conditions) the user did a matching event at least (and at most) so many times:
    `at_least` is 1 by default, 0 when only `at_most` is given ("at most 2 times" includes
    never). Under a users quantifier, `attribution: context` counts for each account only the
    user's events whose `context.groupId` names it, and those without one unless
    `context_fallback: none` (as traits do)."""

    performed: str
    event_type: Literal["track", "page", "screen", "identify", "group"] | None = None
    where: list[PropertyCondition] = Field(default_factory=list)
    window: str = ALL_TIME
    at_least: StrictInt = Field(default=1, ge=0, le=MAX_COUNT)
    at_most: StrictInt | None = Field(default=None, ge=0, le=MAX_COUNT)
    attribution: Literal["all_users", "context"] = "all_users"
    context_fallback: Literal["all_accounts", "none"] = "all_accounts"

    _window = field_validator("window")(lambda value: (parse_window(value), value)[1])

    @model_validator(mode="before")
    @classmethod
    def _at_least_zero_with_only_at_most(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("at_most") is not None and "at_least" not in data:
            return data | {"at_least": 0}
        return data

    @model_validator(mode="after")
    def _event_has_a_name(self) -> "Performed":
        check_event_name(self.event_type, self.performed, "performed")
        return self

    @model_validator(mode="after")
    def _counts_in_order(self) -> "Performed":
        if self.at_most is not None and self.at_most < self.at_least:
            raise FieldProblem(
                "at_most", f"at_most {self.at_most} is below at_least {self.at_least}"
            )
        return self

    @property
    def in_context(self) -> bool:
        """Whether it counts the events in the quantified account's context only."""
        return self.attribution == "context"


class And(Strict):
    """Every condition holds."""

    and_: list["Condition"] = Field(alias="and", min_length=1)


class Or(Strict):
    """At least one condition holds."""

    or_: list["Condition"] = Field(alias="or", min_length=1)


class Not(Strict):
    """The condition does not hold."""

    not_: "Condition" = Field(alias="not")


_KINDS = {
    "and": "and", "or": "or", "not": "not", "trait": "trait", "custom_trait": "custom_trait",
    "audience": "audience", "in_account_audience": "in_account_audience", "account": "account",
    "performed": "performed", "users": "quantified", "at_least": "quantified",
    "at_least_percent": "quantified", "where": "quantified",
}  # fmt: skip


def _kind(value: Any) -> str | None:
    """The tag of the condition model a mapping is meant to be (by its keys)."""
    if isinstance(value, Strict):
        return f"<{_MODEL_KINDS[type(value)]}>"
    if not isinstance(value, dict):
        return None
    if "performed" in value:
        return "<performed>"
    return next((f"<{_KINDS[key]}>" for key in value if key in _KINDS), None)


_TAGGED = (
    Annotated[And, Tag("<and>")],
    Annotated[Or, Tag("<or>")],
    Annotated[Not, Tag("<not>")],
    Annotated[TraitTest, Tag("<trait>")],
    Annotated[CustomTraitTest, Tag("<custom_trait>")],
    Annotated[AudienceReference, Tag("<audience>")],
    Annotated[AccountAudienceReference, Tag("<in_account_audience>")],
    Annotated[AnyAccount, Tag("<account>")],
    Annotated[Performed, Tag("<performed>")],
    Annotated[Quantified, Tag("<quantified>")],
)
Condition = Annotated[
    Union[_TAGGED],  # noqa: UP007  (the members are a tuple)
    Discriminator(
        _kind,
        custom_error_type="unknown_condition",
        custom_error_message="a condition needs one of the keys: " + ", ".join(CONDITION_KEYS),
    ),
]


class Audience(Strict):
    """An audience of accounts or users."""

    name: str
    entity: Literal["account", "user"]
    description: str = ""
    where: Condition

    _name = field_validator("name")(check_name)


_MODEL_KINDS = {
    And: "and", Or: "or", Not: "not", TraitTest: "trait", CustomTraitTest: "custom_trait",
    AudienceReference: "audience", AccountAudienceReference: "in_account_audience",
    AnyAccount: "account", Performed: "performed", Quantified: "quantified",
}  # fmt: skip

for model in (AnyAccount, Quantified, And, Or, Not, Audience):
    model.model_rebuild()
