"""Checks of audience definitions against the rest of the catalog: each condition in a place
where it makes sense, references to traits and audiences that exist, and no reference cycle."""

import graphlib
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

# How deep conditions may nest (`and`, `or`, `not`, `users`, `account`, and a reference to
# another audience, whose conditions its query holds): each level nests the query deeper, and
# the parsers that build it recurse through every level.
MAX_DEPTH = 16
ACCOUNT_ONLY = {Quantified: "a users quantifier"}
USER_ONLY = {
    Performed: "performed",
    AccountAudienceReference: "in_account_audience",
    AnyAccount: "account",
}


Field = tuple[str | int, ...]  # a condition's place in its audience, e.g. ("where", "and", 0)


def children(condition: Condition) -> Iterator[tuple[Condition, str | None, Field]]:
    """The direct sub-conditions, the entity (`account` / `user`) they are about, and the
    keys that lead to them."""
    if isinstance(condition, And):
        yield from ((child, None, ("and", i)) for i, child in enumerate(condition.and_))
    elif isinstance(condition, Or):
        yield from ((child, None, ("or", i)) for i, child in enumerate(condition.or_))
    elif isinstance(condition, Not):
        yield condition.not_, None, ("not",)
    elif isinstance(condition, Quantified):
        yield condition.where, "user", ("where",)
    elif isinstance(condition, AnyAccount):
        yield condition.account, "account", ("account",)


def placed(
    condition: Condition, entity: str, place: Field = ("where",)
) -> Iterator[tuple[Condition, str, Field]]:
    """Every condition of a tree, with the entity it is evaluated on and its place."""
    yield condition, entity, place
    for child, child_entity, keys in children(condition):
        yield from placed(child, child_entity or entity, place + keys)


def walk(condition: Condition, entity: str) -> Iterator[tuple[Condition, str]]:
    """Every condition of a tree, with the entity it is evaluated on."""
    return ((each, on) for each, on, _ in placed(condition, entity))


def referenced_audiences(audience: Audience) -> set[str]:
    """Names of the audiences an audience refers to, anywhere in its tree."""
    names = set()
    for condition, _ in walk(audience.where, audience.entity):
        if isinstance(condition, AudienceReference):
            names.add(condition.audience)
        elif isinstance(condition, AccountAudienceReference):
            names.add(condition.in_account_audience)
    return names


def _depth(place: Field) -> int:
    """How many conditions a condition's place is nested in."""
    return sum(isinstance(key, str) for key in place[1:])


def nesting_depths(audiences: dict[str, Audience]) -> dict[str, int]:
    """How deep each audience's conditions nest, counting a reference to another audience as
    one level more than the deepest of that audience's (an unknown one as none; none at all
    when audiences refer to each other in a cycle, which is reported on its own)."""
    references = {name: referenced_audiences(audience) & audiences.keys()
                  for name, audience in audiences.items()}  # fmt: skip
    try:  # (the audiences referred to first)
        order = list(graphlib.TopologicalSorter(references).static_order())
    except graphlib.CycleError:
        return {}
    depths: dict[str, int] = {}
    for name in order:
        deepest = 0
        for condition, _, place in placed(audiences[name].where, audiences[name].entity):
            here = _depth(place)
            if isinstance(condition, AudienceReference):
                here += 1 + depths.get(condition.audience, 0)
            elif isinstance(condition, AccountAudienceReference):
                here += 1 + depths.get(condition.in_account_audience, 0)
            deepest = max(deepest, here)
        depths[name] = deepest
    return depths


def check_audience(
    audience: Audience,
    trait_columns: dict[str, set[str]],
    untimed: dict[str, dict[str, str]],
    entities: dict[str, str],
    invalid_names: Set[str] = frozenset(),
) -> list[tuple[Field, str]]:
    """Problems with one audience, each with the field at fault; `untimed` are the trait
    columns holding no times (column -> `a list` or `a number`), `entities` maps every audience
    name to its entity. Names in `invalid_names` (definitions already reported invalid) are not
    reported unknown."""
    problems: list[tuple[Field, str]] = []
    for condition, entity, place in placed(audience.where, audience.entity):
        kind = type(condition)
        if entity == "user" and kind in ACCOUNT_ONLY:
            problems.append((place, f"{ACCOUNT_ONLY[kind]} only applies to account conditions"))
        if entity == "account" and kind in USER_ONLY:
            problems.append((place, f"`{USER_ONLY[kind]}` only applies to user conditions"))
        if isinstance(condition, Performed):
            problems += _performed_problems(condition, place)
        if isinstance(condition, TraitTest):
            problems += [((*place, key), problem)
                         for key, problem in _trait_problems(condition, entity, trait_columns,
                                                             untimed, invalid_names)]  # fmt: skip
        wanted = None
        if isinstance(condition, AudienceReference):
            wanted, key, name = entity, "audience", condition.audience
        elif isinstance(condition, AccountAudienceReference):
            wanted, key, name = "account", "in_account_audience", condition.in_account_audience
        if wanted is not None and name not in invalid_names:
            if name not in entities:
                problems.append(((*place, key), unknown_name("audience", name, sorted(entities))))
            elif entities[name] != wanted:
                problems.append(((*place, key), f"audience {name!r} is {_a(entities[name])} "
                                 f"audience; {_a(wanted)} audience is needed here"))  # fmt: skip
    return problems


def _performed_problems(condition: Performed, place: Field) -> list[tuple[Field, str]]:
    """Context attribution out of place (it needs a users quantifier, whose account is the
    context: a `where` below the audience's own), or a fallback without it."""
    if condition.in_context and "where" not in place[1:]:
        return [((*place, "attribution"), "attribution: context applies under a users "
                 "quantifier only (the account whose context counts)")]  # fmt: skip
    if not condition.in_context and condition.context_fallback != "all_accounts":
        return [((*place, "context_fallback"),
                 "context_fallback applies with attribution: context only")]  # fmt: skip
    return []


def _trait_problems(
    test: TraitTest,
    entity: str,
    trait_columns: dict[str, set[str]],
    untimed: dict[str, dict[str, str]],
    invalid_names: Set[str],
) -> Iterator[tuple[str, str]]:
    """A trait test's problems, each with its key: an unknown trait, a time test of a trait
    that holds no times."""
    if test.trait not in trait_columns[entity] and test.trait not in invalid_names:
        yield "trait", unknown_name(f"{entity} trait", test.trait, sorted(trait_columns[entity]))
    operator = test.operator[0]
    if test.trait in untimed[entity] and operator in ("within_last", "not_within_last"):
        holds = untimed[entity][test.trait]
        yield operator, f"`{operator}` tests a time; trait {test.trait!r} is {holds}"


def _a(entity: str) -> str:
    return f"an {entity}" if entity == "account" else f"a {entity}"


def find_cycles(references: dict[str, set[str]]) -> list[list[str]]:
    """Reference cycles among audiences, each as the list of names around it: one for each
    reference that closes a cycle in a depth-first walk in name order, so at least one in
    every group of audiences that refer to each other (not every cycle through them)."""
    state: dict[str, str] = {}
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = "visiting"
        path.append(name)
        for target in sorted(references.get(name, ())):
            if state.get(target) == "visiting":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        state[name] = "done"
        path.pop()

    for name in sorted(references):
        if name not in state:
            visit(name)
    return cycles
