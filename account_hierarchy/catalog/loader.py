"""Loading and validating every definition file of a folder, with errors people can act on.

Every problem names the file, the line and the field, e.g.

    data/definitions/traits.yaml:12: traits[2] (logins_past_30_days).window: window 'thirty
    days' must look like '30 days', '12 hours', '90 minutes' or 'all time'

and all problems of all files are reported at once.
"""

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlglot
import yaml
from pydantic import TypeAdapter, ValidationError

from account_hierarchy.catalog.audience_checks import (
    MAX_DEPTH,
    check_audience,
    find_cycles,
    nesting_depths,
    referenced_audiences,
)
from account_hierarchy.catalog.audience_models import Audience
from account_hierarchy.catalog.destination_models import Destination
from account_hierarchy.catalog.models import (
    NAME,
    NUMBER_TRAITS,
    FieldProblem,
    SqlTrait,
    Trait,
    TraitCommon,
    UniqueList,
)
from account_hierarchy.output import one_line
from account_hierarchy.settings import is_hidden, on_spark
from account_hierarchy.traits.compile import allow_deep_queries
from account_hierarchy.traits.sql_traits import (
    RESERVED_COLUMNS,
    SqlTraitError,
    against_views,
    parse_trait_sql,
    unknown_name,
)

DEFINITION_SUFFIXES = (".yaml", ".yml")
# The most values a definitions file may hold once its aliases are expanded (a few aliases
# nested in each other can stand for billions).
MAX_VALUES = 100_000
SECTIONS = {
    "traits": TypeAdapter(Trait),
    "audiences": TypeAdapter(Audience),
    "destinations": TypeAdapter(Destination),
}


class DefinitionError(ValueError):
    """The definitions are invalid; `problems` lists each one, with file, line and field."""

    def __init__(self, folder: Path, problems: list[str]):
        self.problems = problems
        plural = "s" if len(problems) != 1 else ""
        super().__init__(
            f"{len(problems)} problem{plural} in the definitions in {folder}:\n"
            + "\n".join(f"- {problem}" for problem in problems)
        )


@dataclass(frozen=True)
class LocatedTrait:
    """A trait definition and where it was written: the file, the line, its place in the
    file's `traits` list and the file's YAML nodes (to find the line of any of its fields)."""

    trait: Trait
    file: Path
    line: int
    index: int = 0
    tree: yaml.Node | None = field(default=None, compare=False, repr=False)

    @property
    def columns(self) -> list[str]:
        """The trait columns it produces: its name, or a SQL trait's value columns."""
        if isinstance(self.trait, SqlTrait):
            return parse_trait_sql(self.trait.sql, self.trait.entity)[1]
        return [self.trait.name]


@dataclass(frozen=True)
class LocatedAudience:
    """An audience definition and where it was written: the file, the line, its place in the
    file's `audiences` list and the file's YAML nodes (to find the line of any of its fields)."""

    audience: Audience
    file: Path
    line: int
    index: int = 0
    tree: yaml.Node | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LocatedDestination:
    """A destination definition and where it was written: the file, the line, its place in
    the file's `destinations` list and the file's YAML nodes (to find the line of any of its
    fields)."""

    destination: Destination
    file: Path
    line: int
    index: int = 0
    tree: yaml.Node | None = field(default=None, compare=False, repr=False)


@dataclass
class Catalog:
    """Every definition of a folder, validated."""

    folder: Path
    traits: list[LocatedTrait] = field(default_factory=list)
    audiences: list[LocatedAudience] = field(default_factory=list)
    destinations: list[LocatedDestination] = field(default_factory=list)
    # Names of definitions reported invalid: references to them are not reported again.
    invalid_names: set[str] = field(default_factory=set)

    def audience(self, name: str) -> Audience:
        """The audience called `name` (KeyError if there is none)."""
        for located in self.audiences:
            if located.audience.name == name:
                return located.audience
        raise KeyError(name)

    def traits_of(self, entity: str) -> list[LocatedTrait]:
        """The traits of `account`s or of `user`s, in definition order."""
        return [located for located in self.traits if located.trait.entity == entity]

    def trait_columns(self, entity: str) -> dict[str, LocatedTrait]:
        """Trait column name -> the trait producing it, for one entity."""
        return {column: t for t in self.traits_of(entity) for column in t.columns}

    def trait_definitions(self) -> dict[tuple[str, str], str]:
        """(entity, trait column) -> a fingerprint of the definition computing the column: any
        change to the trait but to its description changes it (the values stored for an hour
        are those of the definition that computed them)."""
        fingerprints = {}
        for located in self.traits:
            trait = located.trait
            fields = trait.model_dump(mode="json", exclude={"description"}, exclude_defaults=True)
            for column in located.columns:
                text = json.dumps([column, fields], sort_keys=True)
                digest = hashlib.sha256(text.encode()).hexdigest()[:16]
                fingerprints[(trait.entity, column)] = digest
        return fingerprints


def _result_names(sql: str) -> set[str]:
    """The column names an invalid SQL trait's query gives, as far as it parses (so that
    references to them are not reported unknown: the trait is reported already)."""
    try:
        query = sqlglot.parse_one(sql, read="duckdb")
    except (sqlglot.errors.SqlglotError, RecursionError):
        return set()
    return {column.alias_or_name.lower() for column in getattr(query, "selects", [])}


def _holds(trait: Trait) -> str | None:
    """What a trait's values are when they are never times: `a list` or `a number`."""
    if isinstance(trait, UniqueList) or (isinstance(trait, SqlTrait) and trait.many):
        return "a list"
    if isinstance(trait, NUMBER_TRAITS):
        return "a number"
    return None


def load_catalog(folder: Path) -> Catalog:
    """Read and validate every `*.yaml` / `*.yml` file under `folder` (sorted by path), but
    hidden ones (a name starting with `.`: an editor's lock or backup file, `.git/`)."""
    allow_deep_queries()  # (what nests too deep to load is then the same in every process)
    if not folder.is_dir():
        raise DefinitionError(folder, [f"{folder}: no such folder of definitions"])
    catalog = Catalog(folder)
    problems: list[str] = []
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.suffix in DEFINITION_SUFFIXES and not is_hidden(path.relative_to(folder))
    )
    for path in files:
        try:
            problems += _load_file(path, catalog)
        except RecursionError:
            problems.append(
                f"{path}: nested too deeply, or an alias (`*name`) inside its own anchor: "
                "write it flatter"
            )
    problems += _check_catalog(catalog)
    if problems:
        raise DefinitionError(folder, sorted(problems, key=_place))
    return catalog


def _place(problem: str) -> tuple[str, int]:
    """Where a problem is (`file:line: ...`), to list them in the files' order."""
    found = re.match(r"(.+?):(\d+): ", problem)
    return (found[1], int(found[2])) if found else (problem, 0)


def _load_file(path: Path, catalog: Catalog) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        return [f"{path}: not UTF-8 text (byte {error.start}): save it as UTF-8"]
    except OSError as error:  # (a folder named `*.yaml`, a dangling link, no permission)
        return [f"{path}: cannot be read: {error.strerror or error}"]
    try:
        document = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        return [f"{where}: not valid YAML: {getattr(error, 'problem', error)}"]
    if document is None:
        return []
    if not isinstance(document, dict):
        return [f"{path}:1: expected a mapping with a `traits:` list at the top"]
    sizes: dict[int, float] = {}
    if MAX_VALUES < _expanded_size(tree, sizes) > len(sizes):  # (aliases make it larger)
        return [
            f"{path}: its aliases (`*name`) expand it to over {MAX_VALUES:,} values, or one "
            "is inside its own anchor"
        ]
    problems = _node_problems(path, tree)
    for key in sorted(set(document) - set(SECTIONS), key=str):
        line = _line(tree, (key,)) if isinstance(key, str) else _key_line(tree, (), key) or 1
        named = repr(key) if isinstance(key, str) else f"{key} ({_read_as(key)})"
        problems.append(f"{path}:{line}: unknown section {named}; "
                        f"expected {', '.join(SECTIONS)}")  # fmt: skip
    for section, adapter in SECTIONS.items():
        entries = document.get(section)
        entries = [] if entries is None else entries
        if not isinstance(entries, list):
            problems.append(f"{path}:{_line(tree, (section,))}: {section} must be a list")
            continue
        for index, entry in enumerate(entries):
            try:
                parsed = adapter.validate_python(entry)
            except ValidationError as error:
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    catalog.invalid_names.add(entry["name"])
                problems += [
                    _describe(path, tree, document, {**p, "loc": (section, index, *p["loc"])})
                    for p in error.errors() + _common_trait_problems(section, entry, error)
                ]
                continue
            line = _line(tree, (section, index))
            if section == "audiences":
                located = LocatedAudience(parsed, path, line, index, tree)
            elif section == "traits":
                located = LocatedTrait(parsed, path, line, index, tree)
            else:
                located = LocatedDestination(parsed, path, line, index, tree)
            getattr(catalog, section).append(located)
    return problems


def _common_trait_problems(section: str, entry: object, error: ValidationError) -> list:
    """For a trait of an unknown type, or none (the only problem pydantic reports then), the
    problems of the fields every trait type has."""
    unknown_type = ("union_tag_invalid", "union_tag_not_found")
    if section != "traits" or error.errors()[0]["type"] not in unknown_type:
        return []
    common_fields = set(TraitCommon.model_fields)
    try:
        TraitCommon.model_validate({key: value for key, value in entry.items()
                                    if key in common_fields})  # fmt: skip
    except ValidationError as common:
        return common.errors()
    return []


def _describe(path: Path, tree: yaml.Node, document: dict, problem: dict) -> str:
    location = _without_union_tags(problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "union_tag_invalid":
        location.append("type")
        tag, expected = problem["ctx"]["tag"], problem["ctx"]["expected_tags"]
        message = unknown_name("trait type", tag, expected.replace("'", "").split(", "))
    elif problem["type"] == "union_tag_not_found":
        location.append("type")
        message = f"missing; give one of {', '.join(sorted(_UNION_TAGS))}"
    elif problem["type"] == "extra_forbidden":
        message = f"unknown key {location[-1]!r}"
    elif problem["type"] == "invalid_key":  # (YAML reads `on:` as true, `2026-10-01:` as a date)
        location.pop()  # (pydantic names the key by its repr, or `1` for true)
        message = f"keys must be text; {_read_as(problem['input'])}: quote it"
    elif isinstance(error := problem.get("ctx", {}).get("error"), FieldProblem):
        location.append(error.field)
    line = _line(tree, tuple(location))
    if problem["type"] == "invalid_key":
        line = _key_line(tree, tuple(location), problem["input"]) or line
    entry = _get(document, location[:2])
    name = entry["name"] if isinstance(entry, dict) and "name" in entry else None
    return f"{path}:{line}: {_field_label(location, name)}: {message}"


def _key_line(tree: yaml.Node, location: tuple, key: object) -> int | None:
    """The line of the key YAML reads as `key` (no text) in the mapping at `location`."""
    node = tree
    for part in location:
        node = _child(node, part)
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, _value in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            read = yaml.SafeLoader("").construct_object(key_node)
            if type(read) is type(key) and read == key:
                return key_node.start_mark.line + 1
    return None


def _read_as(key: object) -> str:
    """How YAML read a key that is no text (`on:` as true, `2026-10-01:` as a date)."""
    kind = {bool: "a boolean", type(None): "null", int: "a number", float: "a number",
            date: "a date", datetime: "a time"}.get(type(key), type(key).__name__)  # fmt: skip
    return f"YAML reads the key {json.dumps(key, default=str)} as {kind}"


def _field_label(location: Sequence[str | int], name: object = None) -> str:
    """`audiences[1] (name).where.and[0].trait` for the location `("audiences", 1, "where",
    "and", 0, "trait")`; `name` is the definition's name, shown after its index."""
    label = ""
    for position, part in enumerate(location):
        if isinstance(part, int):
            named = position == 1 and name is not None
            label += f"[{part}]" + (f" ({one_line(str(name))})" if named else "")
        else:
            label += ("." if label else "") + str(part)
    return label


_UNION_TAGS = {
    "event_counter", "aggregation", "most_frequent", "first_value", "last_value",
    "unique_list", "unique_list_count", "unique_users", "sql",
}  # fmt: skip


def _without_union_tags(location: tuple) -> list:
    """A problem's location without the union members pydantic names in it: a trait's type
    (once, after its index: a SQL trait's field `sql` stays) and the condition kinds (`<and>`)."""
    kept: list = []
    for position, part in enumerate(location):
        if isinstance(part, str) and part.startswith("<"):
            continue
        if location[0] == "traits" and position == 2 and part in _UNION_TAGS:
            continue
        kept.append(part)
    return kept


def _get(document: Any, location: list) -> Any:
    for part in location:
        try:
            document = document[part]
        except (KeyError, IndexError, TypeError):
            return None
    return document


def _expanded_size(node: yaml.Node, sizes: dict[int, float]) -> float:
    """How many values `node` holds with its aliases expanded (infinite for an alias inside
    its own anchor), counting each node shared by aliases once."""
    if id(node) not in sizes:
        sizes[id(node)] = math.inf  # (until counted: an alias inside its own anchor)
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _node_problems(path: Path, tree: yaml.Node) -> list[str]:
    """A key given twice in one mapping (YAML loaders keep the last value without a word),
    text holding a NUL character (which would cut a name or value short in SQL or a path), and
    text holding a lone surrogate (an escape `"\\ud800"`: no character, which no UTF-8 query
    can carry). Each node is read once, however many aliases (`*name`) point at it."""
    problems, seen_nodes, pending = [], set(), [tree]
    while pending:
        node = pending.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) and "\0" in node.value:
            problems.append(f"{path}:{line}: {node.value!r} holds a NUL character (\\0)")
        elif isinstance(node, yaml.ScalarNode) and (surrogate := LONE_SURROGATE.search(node.value)):
            problems.append(
                f"{path}:{line}: {node.value!r} holds a lone surrogate "
                f"(\\u{ord(surrogate[0]):04x}), which is no character: write one beyond U+FFFF "
                "as itself or as `\\U0001f600`, not as two `\\u` escapes"
            )
        elif isinstance(node, yaml.MappingNode):
            keys: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    key_line = key.start_mark.line + 1
                    if key.value in keys:
                        problems.append(
                            f"{path}:{key_line}: {key.value!r} given twice in one mapping "
                            f"(first at line {keys[key.value]})"
                        )
                    keys.setdefault(key.value, key_line)
                pending += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            pending += node.value
    return sorted(problems, key=_place)


def _line(tree: yaml.Node | None, location: tuple) -> int:
    """The 1-based line of the deepest YAML node on `location`."""
    node, line = tree, 1
    for part in location:
        if node is None:
            break
        line = node.start_mark.line + 1
        node = _child(node, part)
    return node.start_mark.line + 1 if node is not None else line


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    """The node at `part` of a mapping or sequence node (None if there is none)."""
    if isinstance(node, yaml.MappingNode):
        # (a key YAML reads as a number, `2:`, is named by the number)
        return next((value for key, value in node.value if key.value == str(part)), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        return node.value[part] if part < len(node.value) else None
    return None


def _check_catalog(catalog: Catalog) -> list[str]:
    """Problems across files: SQL traits, duplicate names, trait columns, audiences and
    destinations. A trait whose name is taken or whose SQL is invalid is left out of the
    checks after its own, its name known invalid (references to it are not reported again),
    so that every other problem is reported too."""
    problems, checkable = [], []
    seen_names: dict[str, LocatedTrait] = {}
    for located in catalog.traits:
        trait, invalid = located.trait, []
        if trait.name in seen_names:
            first = seen_names[trait.name]
            invalid.append(
                f"{_trait_place(located)}: name already used at {first.file}:{first.line}"
            )
        seen_names.setdefault(trait.name, located)
        if isinstance(trait, SqlTrait):
            try:
                query, _ = parse_trait_sql(trait.sql, trait.entity)
                if on_spark():  # (what Spark reads otherwise fails now, not in the trait stage)
                    against_views(query, "spark")
            except SqlTraitError as error:
                invalid.append(f"{_trait_place(located, 'sql')}: {error}")
                catalog.invalid_names |= {trait.name, *_result_names(trait.sql)}
        problems += invalid
        if not invalid:
            checkable.append(located)
    checked = replace(catalog, traits=checkable)
    problems += _check_columns(checked)
    problems += _check_audiences(checked)
    problems += _check_destinations(checked)
    return problems


def _trait_place(located: LocatedTrait, field: str | None = None) -> str:
    """`file:line: trait name.field`, at the line of the field (of the trait, without one)."""
    return _place_in("traits", located, located.trait.name, () if field is None else (field,))


def _place_in(
    section: str,
    located: LocatedTrait | LocatedAudience | LocatedDestination,
    name: str,
    place: Sequence[str | int] = (),
) -> str:
    """`file:line: audience name.where.and[0]`, at the line of the field at `place` in the
    definition (of the definition, without one)."""
    line = located.line
    if place and located.tree is not None:
        line = _line(located.tree, (section, located.index, *place))
    label = f"{section.removesuffix('s')} {name}"
    return f"{located.file}:{line}: {label}" + (f".{_field_label(place)}" if place else "")


def _check_columns(catalog: Catalog) -> list[str]:
    """Every trait column is a lower-case name produced by one trait only."""
    problems = []
    for entity in ("account", "user"):
        owners: dict[str, LocatedTrait] = {}
        for located in catalog.traits_of(entity):
            field = "sql" if isinstance(located.trait, SqlTrait) else "name"
            where = _trait_place(located, field)
            for column in located.columns:
                if not NAME.fullmatch(column):
                    problems.append(f"{where}: column {column!r} must be a lower-case name")
                elif column in RESERVED_COLUMNS:
                    problems.append(f"{where}: column {column!r} is a name the trait tables use")
                elif column in owners and owners[column] is not located:
                    problems.append(
                        f"{where}: column {column!r} is also produced by trait "
                        f"{owners[column].trait.name}"
                    )
                owners.setdefault(column, located)
    return problems


def _check_audiences(catalog: Catalog) -> list[str]:
    """Audience names unique, conditions in place, references known, not nested too deep, no
    reference cycle."""
    problems = []
    entities: dict[str, str] = {}
    first: dict[str, LocatedAudience] = {}
    for located in catalog.audiences:
        name = located.audience.name
        if name in first:
            problems.append(f"{located.file}:{located.line}: audience {name}: name already used "
                            f"at {first[name].file}:{first[name].line}")  # fmt: skip
        first.setdefault(name, located)
        entities.setdefault(name, located.audience.entity)
    columns = {entity: set(catalog.trait_columns(entity)) for entity in ("account", "user")}
    untimed = {entity: {column: holds
                        for column, located in catalog.trait_columns(entity).items()
                        if (holds := _holds(located.trait))}
               for entity in ("account", "user")}  # fmt: skip
    for located in catalog.audiences:
        for place, problem in check_audience(located.audience, columns, untimed, entities,
                                             catalog.invalid_names):  # fmt: skip
            where = _place_in("audiences", located, located.audience.name, place)
            problems.append(f"{where}: {problem}")
    depths = nesting_depths({name: located.audience for name, located in first.items()})
    for name, located in first.items():
        if depths.get(name, 0) > MAX_DEPTH:
            problems.append(
                f"{_place_in('audiences', located, name, ('where',))}: conditions nest "
                f"{depths[name]} levels deep (counting those of the audiences it refers to), "
                f"over {MAX_DEPTH}: nest them less, or refer to fewer audiences in turn"
            )
    references = {a.audience.name: referenced_audiences(a.audience) for a in catalog.audiences}
    for cycle in find_cycles(references):
        start = first[cycle[0]]
        problems.append(f"{start.file}:{start.line}: audience {cycle[0]}: audiences refer to "
                        "each other in a cycle: " + " -> ".join(cycle))  # fmt: skip
    return problems


def _check_destinations(catalog: Catalog) -> list[str]:
    """Destination names unique; audiences, traits and output columns they name exist."""
    problems = []
    names: dict[str, LocatedDestination] = {}
    audiences = [a.audience.name for a in catalog.audiences]
    traits = sorted({**catalog.trait_columns("account"), **catalog.trait_columns("user")})
    for located in catalog.destinations:
        destination = located.destination

        def at(*place: str | int) -> str:
            return _place_in("destinations", located, destination.name, place)  # noqa: B023

        if destination.name in names:
            earlier = names[destination.name]
            problems.append(f"{at()}: name already used at {earlier.file}:{earlier.line}")
        names.setdefault(destination.name, located)
        for index, name in enumerate(destination.audiences):
            if name not in audiences and name not in catalog.invalid_names:
                problems.append(
                    f"{at('audiences', index)}: {unknown_name('audience', name, audiences)}"
                )
        for kind, key in (("audience", "audience_key"), ("trait", "trait_key")):
            listed = getattr(destination, f"{kind}s")
            if "track" in destination.calls and key in listed:
                problems.append(f"{at(f'{kind}s', listed.index(key))}: {key!r} is the track "
                                f"property naming the {kind} ({{{key}: NAME, NAME: value}}): "
                                "rename it to send it in track calls")  # fmt: skip
        for index, name in enumerate(destination.traits):
            where = at("traits", index)
            if name not in traits and name not in catalog.invalid_names:
                problems.append(f"{where}: {unknown_name('trait', name, traits)}")
            elif name in catalog.trait_columns("account") and name in catalog.trait_columns("user"):
                problems.append(f"{where}: {name!r} is both an account and a user trait; "
                                "rename one of them to send it")  # fmt: skip
            elif name in destination.audiences:
                problems.append(f"{where}: {name!r} is also an audience of the "
                                "destination: both would be the same key of its calls")  # fmt: skip
        for index, name in enumerate(destination.output_columns):
            where = at("output_columns", index)
            if not NAME.fullmatch(name):
                problems.append(f"{where}: {name!r} is not a trait name")
            elif name in destination.audiences:
                problems.append(
                    f"{where}: {name!r} is also an audience of the destination, "
                    "whose group calls carry it as true or false"
                )
        if destination.output_columns and "group" not in destination.calls:
            problems.append(f"{at('output_columns')}: output columns go in group calls, which "
                            "the destination does not send: add group to its calls")  # fmt: skip
        if set(destination.calls) == {"group"} and not _about_accounts(catalog, destination):
            problems.append(f"{at('calls')}: group calls carry account audiences and traits, "
                            "and it sends only user ones: add identify or track")  # fmt: skip
    return problems


def _about_accounts(catalog: Catalog, destination: Destination) -> bool:
    """Whether a destination sends an account audience or trait (or names one not known)."""
    entities = {a.audience.name: a.audience.entity for a in catalog.audiences}
    return any(entities.get(name, "account") == "account" for name in destination.audiences) or any(
        name in catalog.trait_columns("account") or name not in catalog.trait_columns("user")
        for name in destination.traits
    )
