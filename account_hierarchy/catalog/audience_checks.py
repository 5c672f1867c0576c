"""Checks of audience definitions against the rest of the catalog: each condition in a place
where it makes sense, references to traits and audiences that exist, and no reference cycle."""

from collections.abc import Iterator, Set

from account_hierarchy.catalog.audience_models import (
    AccountAudienceReference,
    And,
    AnyAccount,
    Audience,
    AudienceReference,
    Condition,
    Not,
    Or,
    Performed,
    Quantified,
    TraitTest,
)
from account_hierarchy.traits.sql_traits import unknown_name

ACCOUNT_ONLY = {Quantified: "a users quantifier"}
USER_ONLY = {
    Performed: "performed",
    AccountAudienceReference: "in_account_audience",
    AnyAccount: "account",
}


def children(condition: Condition) -> Iterator[tuple[Condition, str | None]]:
    """The direct sub-conditions and the entity (`account` / `user`) they are about."""
    if isinstance(condition, And):
        yield from ((child, None) for child in condition.and_)
    elif isinstance(condition, Or):
        yield from ((child, None) for child in condition.or_)
    elif isinstance(condition, Not):
        yield condition.not_, None
    elif isinstance(condition, Quantified):
        yield condition.where, "user"
    elif isinstance(condition, AnyAccount):
        yield condition.account, "account"


def walk(condition: Condition, entity: str) -> Iterator[tuple[Condition, str]]:
    """Every condition of a tree, with the entity it is evaluated on."""
    yield condition, entity
    for child, child_entity in children(condition):
        yield from walk(child, child_entity or entity)


def referenced_audiences(audience: Audience) -> set[str]:
    """Names of the audiences an audience refers to, anywhere in its tree."""
    names = set()
    for condition, _ in walk(audience.where, audience.entity):
        if isinstance(condition, AudienceReference):
            names.add(condition.audience)
        elif isinstance(condition, AccountAudienceReference):
            names.add(condition.in_account_audience)
    return names


def check_audience(
    audience: Audience,
    trait_columns: dict[str, set[str]],
    untimed: dict[str, dict[str, str]],
    entities: dict[str, str],
    invalid_names: Set[str] = frozenset(),
) -> list[str]:
    """Problems with one audience; `untimed` are the trait columns holding no times (column ->
    `a list` or `a number`), `entities` maps every audience name to its entity. Names in
    `invalid_names` (definitions already reported invalid) are not reported unknown."""
    problems = []
    for condition, entity in walk(audience.where, audience.entity):
        kind = type(condition)
        if entity == "user" and kind in ACCOUNT_ONLY:
            problems.append(f"{ACCOUNT_ONLY[kind]} only applies to account conditions")
        if entity == "account" and kind in USER_ONLY:
            problems.append(f"`{USER_ONLY[kind]}` only applies to user conditions")
        if (isinstance(condition, TraitTest) and condition.trait not in trait_columns[entity]
                and condition.trait not in invalid_names):  # fmt: skip
            problems.append(unknown_name(f"{entity} trait", condition.trait,
                                         sorted(trait_columns[entity])))  # fmt: skip
        if isinstance(condition, TraitTest) and condition.trait in untimed[entity]:
            operator = condition.operator[0]
            if operator in ("within_last", "not_within_last"):
                problems.append(f"`{operator}` tests a time; trait {condition.trait!r} "
                                f"is {untimed[entity][condition.trait]}")  # fmt: skip
        wanted = None
        if isinstance(condition, AudienceReference):
            wanted, name = entity, condition.audience
        elif isinstance(condition, AccountAudienceReference):
            wanted, name = "account", condition.in_account_audience
        if wanted is not None and name not in invalid_names:
            if name not in entities:
                problems.append(unknown_name("audience", name, sorted(entities)))
            elif entities[name] != wanted:
                problems.append(f"audience {name!r} is {_a(entities[name])} audience; "
                                f"{_a(wanted)} audience is needed here")  # fmt: skip
    return problems


def _a(entity: str) -> str:
    return f"an {entity}" if entity == "account" else f"a {entity}"


def find_cycle(references: dict[str, set[str]]) -> list[str] | None:
    """A reference cycle among audiences, as the list of names around it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "visiting"
        path.append(name)
        for target in sorted(references.get(name, ())):
            if state.get(target) == "visiting":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[name] = "done"
        path.pop()
        return None

    for name in sorted(references):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None
