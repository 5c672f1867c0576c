"""SQL traits: a user's SELECT, checked to be a single read-only query over the snapshot views,
then run against views of the warehouse (or, on Spark, of the lake) cut at the snapshot hour.
Traits are written in DuckDB's dialect; sqlglot renders them, and the views, for Spark.

The views a SQL trait may read:

| view | what it holds |
| --- | --- |
| `events` | `raw_events` with `timestamp` before the end of the snapshot hour |
| `users`, `accounts`, `account_memberships`, `account_hierarchy` | that hour's snapshot |
| `snapshot` | one row: `as_of` (end of the hour, exclusive) and `snapshot_hour` |

Anything but one SELECT (with CTEs, unions, joins, subqueries) is rejected, as is reading any
other table or a file (`read_csv`, `glob`, ...). The result must have the entity id column
(`account_id` or `user_id`) and named value columns; each value column becomes a trait.
"""

import difflib
import functools
import os
import re
from datetime import datetime, timedelta

import duckdb
import sqlglot
import sqlglot.expressions as exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.scope import traverse_scope

VIEWS = ("events", "users", "accounts", "account_memberships", "account_hierarchy", "snapshot")
VIEW_PREFIX = "sql_trait_view_"
# The temp tables a SQL trait's rows are made in, per hour: prefixes no view name (nor the other
# prefix) can make with any trait name (`sql_trait_<name>` would be the view `sql_trait_view_events`
# for a trait `view_events`, and `sql_trait_<name>_raw` the rows of a trait `<name>_raw`).
ROWS_PREFIX, RAW_PREFIX = "sql_trait_rows__", "sql_trait_raw__"
FORBIDDEN_FUNCTION_PREFIXES = ("read_", "parquet_", "sniff_", "glob", "getenv", "query",
                               "current_setting", "getvariable", "duckdb_",
                               "which_secret")  # fmt: skip
# Column names the trait tables and their queries use themselves: no trait column may take
# them.
RESERVED_COLUMNS = ("snapshot_hour", "account_id", "user_id", "entity_id", "entity_id_right")
ID_COLUMNS = {"account": "account_id", "user": "user_id"}
BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Functions whose value is not the snapshot's: the time of the run, random values, sequences,
# the run's transaction or query, the DuckDB version, when DuckDB started (and `age` of one
# time, measured to today). A trait calling them would not be
# reproducible for a past hour (`snapshot.as_of` is its time).
UNREPRODUCIBLE_FUNCTIONS = {
    "now", "get_current_timestamp", "transaction_timestamp", "current_localtime", "localtime",
    "today", "get_current_time", "setseed", "nextval", "currval", "uuidv4", "uuidv7",
    "txid_current", "current_transaction_id", "current_query", "current_query_id",
    "current_connection_id", "stats", "pg_postmaster_start_time", "pg_conf_load_time",
    "current_localtimestamp",
}  # fmt: skip
UNREPRODUCIBLE_NODE_NAMES = (
    "CurrentTimestamp", "CurrentDate", "CurrentTime", "CurrentDatetime", "Localtimestamp",
    "Localtime", "Rand", "Uuid", "CurrentVersion",
)  # fmt: skip
UNREPRODUCIBLE_NODES = tuple(
    getattr(exp, name) for name in UNREPRODUCIBLE_NODE_NAMES if hasattr(exp, name)
)
WRITE_NODES = (
    exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter, exp.Command, exp.Set,
    exp.Merge, exp.Copy, exp.Pragma,
)  # fmt: skip


class SqlTraitError(ValueError):
    """A SQL trait is not a single read-only query with the expected columns."""


class TraitDialect(DuckDB):
    """DuckDB's dialect, reading a JSON path given as text as DuckDB does: text that starts with
    neither `$` (a path) nor `/` (a pointer) is one key, whatever it holds (`traits ->>
    'utm.source'` reads the key `utm.source`, which sqlglot would read as the path
    `$.utm.source`). Text holding a single quote or a backslash is refused (sqlglot would write
    it into the SQL run unescaped), and a key holding a double quote too."""

    def to_json_path(self, path: exp.Expression | None) -> exp.Expression | None:
        if isinstance(path, exp.Paren) and isinstance(path.unnest(), exp.Literal | exp.RawString):
            path = path.unnest()  # (`('utm.source')`; a computed path keeps its parentheses)
        if isinstance(path, exp.RawString):  # (`$$utm.source$$`)
            path = exp.Literal.string(path.name)
        text = path.name if isinstance(path, exp.Literal) and path.is_string else None
        if text is None or text.startswith("/"):  # (an index, a computed path, a pointer)
            return super().to_json_path(path)
        refused = "'\\" if text.startswith("$") else "'\"\\"
        if set(text) & set(refused):
            raise ParseError(
                f"the JSON path {text!r} holds quotes or backslashes, which SQL traits cannot read"
            )
        if not text or text.startswith("$"):
            return super().to_json_path(path)
        return exp.JSONPath(expressions=[exp.JSONPathRoot(), exp.JSONPathKey(this=text)])


def parse_trait_sql(sql: str, entity: str) -> tuple[exp.Expression, list[str]]:
    """Check a SQL trait and return its parsed query and its value column names."""
    try:
        sql.encode()
    except UnicodeEncodeError as error:  # (no query can carry it)
        surrogate = ord(sql[error.start])
        raise SqlTraitError(
            f"character {error.start + 1} is a lone surrogate (\\u{surrogate:04x}), no character"
        ) from None
    try:
        statements = [s for s in sqlglot.parse(sql, read=TraitDialect) if s is not None]
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        where = f" at line {first['line']}, column {first['col']}" if "line" in first else ""
        raise SqlTraitError(
            f"SQL does not parse{where}: {first.get('description') or error}"
        ) from None
    except SqlglotError as error:  # (an unterminated string or comment)
        raise SqlTraitError(f"SQL does not parse: {error}") from None
    except RecursionError:
        raise SqlTraitError("SQL nested too deeply to parse: write it flatter") from None
    if len(statements) != 1:
        raise SqlTraitError(f"must be a single SELECT statement, found {len(statements)}")
    query = statements[0]
    if not isinstance(query, exp.Query) or any(query.find_all(*WRITE_NODES)):
        raise SqlTraitError("must be a read-only SELECT (no INSERT, UPDATE, CREATE, SET, ...)")
    if placeholder := query.find(exp.Placeholder):
        raise SqlTraitError(
            f"holds the parameter {placeholder.sql('duckdb')}, which no value is given for: "
            "write the value itself"
        )
    if any(union.args.get("by_name") for union in query.find_all(exp.SetOperation)):
        raise SqlTraitError(
            "matches columns by name (UNION BY NAME): give every branch the same columns, in "
            "the same order, and use UNION"
        )
    # (DuckDB's names are not case-sensitive, quoted or not: `Active` and `active` are one CTE;
    # the query run keeps its case, which text such as a struct's keys `{'Key': 1}` keeps)
    _check_sources(normalize_identifiers(query.copy(), dialect="duckdb"))
    _check_bare_words(query)
    # (what sqlglot cannot write, or DuckDB cannot parse, is refused now, not at every run)
    _check_duckdb_parses(against_views(query))
    return query, _value_columns(query, entity)


# How deep a SQL trait's expressions may nest: DuckDB refuses 1,000 levels, counted with the
# query around the trait's when it runs (its binder refuses `1 + 1 + ...` of 995 terms).
MAX_EXPRESSION_DEPTH = 900


@functools.cache
def _parser(_process: int) -> duckdb.DuckDBPyConnection:
    """An empty in-memory DuckDB, for its parser (refusing expressions nested over
    `MAX_EXPRESSION_DEPTH`): one per process (not one a fork inherits)."""
    return duckdb.connect(config={"max_expression_depth": MAX_EXPRESSION_DEPTH})


def _check_duckdb_parses(sql: str) -> None:
    """Refuse a query DuckDB's parser refuses, such as expressions nested over
    `MAX_EXPRESSION_DEPTH` (`1 + 1 + ...` of 898 terms), which sqlglot parses."""
    try:
        _parser(os.getpid()).cursor().extract_statements(sql)  # (a cursor per call)
    except duckdb.Error as error:
        if "expression depth" in str(error):
            raise SqlTraitError(
                f"nested too deeply for DuckDB (over {MAX_EXPRESSION_DEPTH} levels of "
                "expressions): write it flatter"
            ) from None
        raise SqlTraitError(f"DuckDB cannot parse it: {str(error).splitlines()[0]}") from None


def _cte_names(query: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}


def _check_bare_words(query: exp.Expression) -> None:
    """Refuse text sqlglot writes into the SQL run as it is, unquoted, unless it is one word:
    units (`INTERVAL 1 "day"`, `date_diff('day', ...)`), type names it does not know
    (`CAST(x AS "varint")`) and the part of `extract('day' FROM t)`. Other text there would run
    as SQL that was never checked."""
    for node in query.walk():
        written = [node.args.get("unit"), node if isinstance(node, exp.Var) else None,
                   node.this if isinstance(node, exp.Extract) else None]  # fmt: skip
        texts = [text.name for text in written if isinstance(text, exp.Var | exp.Literal)]
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.USERDEFINED:
            texts.append(str(node.args.get("kind") or ""))
        for text in texts:
            if not BARE_WORD.fullmatch(text):
                raise SqlTraitError(
                    f"{text!r} is no single word, as a unit, a type's name or a part of a date "
                    "must be"
                )


def _check_sources(query: exp.Expression) -> None:
    ctes = _cte_names(query)
    if clashes := sorted(ctes & set(VIEWS)):
        raise SqlTraitError(f"a CTE is named {clashes[0]!r}, like a view: give it another name")
    for cte in (cte for with_ in query.find_all(exp.With) if with_.args.get("recursive")
                for cte in with_.expressions):  # fmt: skip
        # (DuckDB's first branch is all of the outermost UNION's left side)
        anchor = cte.this
        while isinstance(anchor, exp.Subquery):
            anchor = anchor.this
        if isinstance(anchor, exp.SetOperation):
            anchor = anchor.left
        if any(table.name.lower() == cte.alias_or_name.lower()
               for table in anchor.find_all(exp.Table)):  # fmt: skip
            raise SqlTraitError(
                f"the first branch of the recursive CTE {cte.alias_or_name!r} reads "
                f"{cte.alias_or_name!r}, which there is the table of that name, not the CTE"
            )
    # (a name is a CTE's only where the CTE is in scope: inside its own body, or before it,
    # the same name reads the table)
    tables = {id(source) for scope in traverse_scope(query)
              for source in scope.sources.values() if isinstance(source, exp.Table)}  # fmt: skip
    for table in query.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise SqlTraitError(f"reads {table.sql('duckdb')}: only the snapshot views can be read")
        name = table.name.lower()  # (names are not case-sensitive)
        if table.args.get("db") or table.args.get("catalog"):
            raise SqlTraitError(f"reads {table.sql('duckdb')}: name views without a schema")
        if name not in VIEWS and (name not in ctes or id(table) in tables):
            raise SqlTraitError(unknown_name("view", table.name, VIEWS))
    for literal in query.find_all(exp.ToMap):
        keys = literal.this.expressions if isinstance(literal.this, exp.Struct) else []
        for key in keys:
            if isinstance(key, exp.PropertyEQ) and isinstance(key.this, exp.Identifier):
                # (sqlglot, which renders the query run, reads such a key as text: `MAP {s: 1}`
                # would run as `MAP {'s': 1}`, whatever `s` holds)
                raise SqlTraitError(
                    f"a MAP key {key.this.sql('duckdb')} names a column: write the map as "
                    f"map([{key.this.sql('duckdb')}], [...]), or quote a text key"
                )
    if sample := query.find(exp.TableSample):
        raise SqlTraitError(
            f"samples a table ({sample.sql('duckdb').strip()}): the rows a sample picks differ "
            "from run to run, so the trait would not be reproducible for a past hour"
        )
    for function in query.find_all(exp.Func):
        name = function.name if isinstance(function, exp.Anonymous) else function.sql_name()
        if name.lower().startswith(FORBIDDEN_FUNCTION_PREFIXES):
            raise SqlTraitError(f"calls {name}(): SQL traits cannot read files or settings")
        if (
            isinstance(function, UNREPRODUCIBLE_NODES)
            or (isinstance(function, exp.Anonymous) and name.lower() in UNREPRODUCIBLE_FUNCTIONS)
            # (`age(t)` is the time from `t` to today)
            or (name.lower() == "age" and len(function.expressions) == 1)
        ):
            raise SqlTraitError(
                f"calls {function.sql('duckdb')}: its value is not the snapshot's, so the trait "
                "would not be reproducible for a past hour (the snapshot's time is "
                "`(SELECT as_of FROM snapshot)`)"
            )
        if isinstance(function, exp.Anonymous) and name.lower() not in _duckdb_functions():
            close = difflib.get_close_matches(name.lower(), list(_duckdb_functions()), n=1)
            hint = f"did you mean {close[0]}()?" if close else "DuckDB has no such function"
            raise SqlTraitError(f"calls {name}(): unknown function; {hint}")


@functools.cache
def _duckdb_functions() -> dict[str, bool]:
    """DuckDB's functions by name (lower case, sorted), each with whether it takes a lambda
    (a function sqlglot does not know is checked here, so that a typo is a definition error,
    not a failed build)."""
    with duckdb.connect() as con:
        rows = con.sql(
            "SELECT lower(function_name), bool_or(list_contains(parameter_types, 'LAMBDA')) "
            "FROM duckdb_functions() GROUP BY 1 ORDER BY 1"
        ).fetchall()
    return dict(rows)


def _value_columns(query: exp.Query, entity: str) -> list[str]:
    id_column = ID_COLUMNS[entity]
    names = []
    for projection in query.selects:
        if isinstance(projection, exp.Star) or (
            isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
        ):
            raise SqlTraitError("list the result columns explicitly instead of *")
        if not isinstance(projection, exp.Alias | exp.Column):
            raise SqlTraitError(f"name the result column {projection.sql('duckdb')} (… AS name)")
        names.append(projection.alias_or_name.lower())  # (the result's names, lower-cased)
    if id_column not in names:
        raise SqlTraitError(f"must return the {id_column} column (returns {', '.join(names)})")
    values = [name for name in names if name != id_column]
    for name in values:
        if name.lower() in RESERVED_COLUMNS:
            raise SqlTraitError(f"returns a value column named {name!r}: the name is taken")
    if not values:
        raise SqlTraitError(f"must return at least one value column besides {id_column}")
    if len(set(names)) != len(names):
        raise SqlTraitError(f"returns a column name twice: {', '.join(names)}")
    return values


def unknown_name(kind: str, name: str, known: tuple[str, ...] | list[str]) -> str:
    """`unknown view 'acounts'; did you mean 'accounts'?` (or the list of known names)."""
    return f"unknown {kind} {name!r}; {closest_name(kind, name, known)}"


def closest_name(kind: str, name: str, known: tuple[str, ...] | list[str]) -> str:
    """`did you mean 'accounts'?`, else the known names (`known: a, b`), else that no `kind`
    is defined."""
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"known: {', '.join(sorted(known))}" if known else f"no {kind} is defined"


def snapshot_views(hour: datetime) -> dict[str, exp.Query]:
    """The query of each view SQL traits read, cut at snapshot `hour` (syntax trees, to render
    in the dialect of the engine that runs them)."""
    as_of = hour + timedelta(hours=1)
    # Views cannot hold parameters: the bounds are our own datetimes, written as literals.
    literal = {key: exp.cast(exp.Literal.string(value.isoformat(sep=" ")), "TIMESTAMP")
               for key, value in {"as_of": as_of, "hour": hour}.items()}  # fmt: skip
    hidden = [exp.column("source_file"), exp.column("source_line")]
    views = {
        "events": exp.select(exp.Star(except_=hidden))
        .from_("raw_events")
        .where(exp.column("timestamp") < literal["as_of"])
    }
    for table in ("users", "accounts", "account_memberships", "account_hierarchy"):
        views[table] = (
            exp.select("*").from_(table).where(exp.column("snapshot_hour").eq(literal["hour"]))
        )
    views["snapshot"] = exp.select(
        exp.alias_(literal["as_of"], "as_of"), exp.alias_(literal["hour"], "snapshot_hour")
    )
    return {VIEW_PREFIX + name: query for name, query in views.items()}


def create_snapshot_views(con: duckdb.DuckDBPyConnection, hour: datetime) -> None:
    """(Re)create the views SQL traits read, cut at snapshot `hour`, on the DuckDB warehouse."""
    for name, query in snapshot_views(hour).items():
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {query.sql('duckdb')}")


def against_views(query: exp.Expression, dialect: str = "duckdb") -> str:
    """The query's SQL in `dialect` (SQL traits are written in DuckDB's), with every view name
    pointed at the snapshot views; for another engine, with what it reads otherwise rewritten
    to mean what it does on DuckDB first (`_as_on_duckdb`)."""
    ctes = _cte_names(query)
    if dialect != "duckdb":
        query = query.copy()
        for node in reversed(list(query.dfs())):  # (children first: they may be rewritten too)
            try:
                rewritten = _as_on_duckdb(node)
            except SqlTraitError:
                raise
            except (ValueError, ParseError) as error:  # (sqlglot reading a path it cannot)
                raise SqlTraitError(f"cannot be written as SQL for {dialect}: {error}") from None
            if rewritten is not None:
                node.replace(rewritten)

    def rename(node: exp.Expression) -> exp.Expression:
        name = node.name.lower() if isinstance(node, exp.Table) else None
        if name in VIEWS and name not in ctes:
            renamed = node.copy()
            renamed.set("this", exp.to_identifier(VIEW_PREFIX + name))
            if not node.alias:
                renamed.set("alias", exp.TableAlias(this=exp.to_identifier(node.name)))
            return renamed
        return node

    # (without comments: the generator writes a `--` comment as `/* ... */`, so a comment holding
    # `*/` would end early and the rest of it would run as SQL)
    try:
        return query.transform(rename).sql(dialect, comments=False)
    except ValueError as error:  # (sqlglot has no way to write a node in `dialect`)
        raise SqlTraitError(f"cannot be written as SQL for {dialect}: {error}") from None


def _as_on_duckdb(node: exp.Expression) -> exp.Expression | None:
    """For Spark, an expression that sqlglot's rendering would make mean another thing,
    rewritten to mean what it does on DuckDB (None for any other node): a cast to JSON keeps
    the text (Spark has no JSON type, and stores JSON values as their text), one to
    `TIMESTAMPTZ` gives the UTC time of the moment (Spark's session `TIMESTAMP` has no zone: its
    cast drops offsets), `arg_min` / `arg_max` skip rows whose value is null (Spark's `min_by`
    / `max_by` would return it), `epoch`, `extract(epoch ...)` and `date_part('epoch', ...)`
    keep fractions of a second (Spark's `unix_timestamp` drops them; `_epoch_seconds`), and
    `extract` or `date_part` of another part is a BIGINT (an INT on Spark), and `->` in the
    arguments of a function that takes no lambda reads JSON, as on DuckDB (`_json_arrow`)."""
    if isinstance(node, exp.Lambda) and not _takes_lambdas(node.parent):
        return _json_arrow(node)
    if isinstance(node, exp.JSONPathKey) and not isinstance(node.this, str):
        raise SqlTraitError(
            f"Spark does not read the JSON path part {node.this.sql()!r} as DuckDB does (a "
            "wildcard, which gives a list of every value there)"
        )
    if isinstance(node, exp.JSONPathKey) and (node.this == "*" or node.this[:1].isspace()):
        raise SqlTraitError(
            f"Spark reads the JSON key {node.this!r} otherwise (as every key, or without its "
            "leading white space)"
        )
    if isinstance(node, exp.JSONExtract | exp.JSONExtractScalar) and node.expression.is_string:
        raise SqlTraitError(
            f"Spark does not read {node.expression.name!r} as DuckDB does (a JSON pointer, or a "
            "path sqlglot cannot parse): write a path (`$.key`)"
        )
    if isinstance(node, exp.Cast) and node.to.is_type("json"):
        text = node.this.copy()  # (an operation in parentheses, as the cast held it)
        return text if isinstance(text, exp.Column | exp.Literal | exp.Func) else exp.paren(text)
    if isinstance(node, exp.Cast) and node.to.is_type("timestamptz"):
        moment = node.copy()
        moment.set("to", exp.DataType.build("TIMESTAMPLTZ"))
        return exp.cast(moment, exp.DataType.Type.TIMESTAMPNTZ)
    if isinstance(node, exp.ArgMin | exp.ArgMax) and node.args.get("count") is None:
        rewritten = node.copy()
        value = rewritten.this
        rewritten.set(
            "expression", exp.case().when(value.copy().is_(exp.null()).not_(), rewritten.expression)
        )
        return rewritten
    part, of = None, None
    if isinstance(node, exp.TimeToUnix):
        part, of = "epoch", node.this
    elif isinstance(node, exp.Extract):
        part, of = node.name.lower(), node.expression
    elif isinstance(node, exp.Anonymous) and node.name.lower() in ("date_part", "datepart"):
        named, *rest = node.expressions or [None]
        if isinstance(named, exp.Literal) and named.is_string and len(rest) == 1:
            part, of = named.name.lower(), rest[0]
    if part == "epoch":
        return _epoch_seconds(of)
    if part is not None and not isinstance(node.parent, exp.Cast):
        return exp.cast(node.copy(), "BIGINT")
    return None


def _takes_lambdas(function: exp.Expression | None) -> bool:
    """Whether DuckDB reads `x -> ...` in this function's arguments as a lambda
    (`list_transform(tags, x -> upper(x))`); in any other function's (or in `DISTINCT ...`) it
    reads JSON."""
    if not isinstance(function, exp.Func):
        return False
    name = function.sql("duckdb", comments=False).split("(", 1)[0].strip().lower()
    return _duckdb_functions().get(name, False)


def _json_arrow(arrow: exp.Lambda) -> exp.Expression:
    """`traits -> 'title'` in the arguments of a function that takes no lambda
    (`coalesce(traits -> 'title', 'none')`), which sqlglot reads as a lambda, as the JSON
    extraction DuckDB reads it as, with the arrows after it in turn (`traits -> 'a' ->> 'b'` is
    `(traits -> 'a') ->> 'b'`). Anything else after the arrow (`traits -> 'a' || 'x'`, which
    DuckDB reads as the key `ax`, or `= 'B'`) is refused: Spark would read it otherwise."""
    params = arrow.expressions
    if len(params) != 1 or not isinstance(params[0], exp.Identifier):
        return arrow  # ((a, b) -> ...: a lambda, which the function cannot take)
    body = arrow.this.copy()
    innermost, parent = body, None
    while isinstance(innermost, exp.JSONExtract | exp.JSONExtractScalar):
        innermost, parent = innermost.this, innermost
    key = innermost.unnest()  # (`('a')`)
    if not (key.is_string or isinstance(key, exp.RawString)):
        raise SqlTraitError(
            f"Spark cannot read `{arrow.sql('duckdb')}` in a function's arguments as DuckDB "
            "does: put the JSON arrows in parentheses, `(traits -> 'a')`, or write "
            "json_extract(traits, 'a')"
        )
    path = TraitDialect().to_json_path(innermost.copy())
    extract = exp.JSONExtract(this=exp.column(params[0].copy()), expression=path)
    for part in (extract, *path.find_all(exp.JSONPathKey)):
        _as_on_duckdb(part)  # (refusing what Spark reads otherwise, as for any other `->`)
    if parent is None:
        return extract
    parent.set("this", extract)
    return body


def _epoch_seconds(moment: exp.Expression) -> exp.Expression:
    """Spark SQL for DuckDB's `epoch(moment)`, fractions of a second kept; the epoch of a
    difference of moments (an interval, which Spark cannot cast to a moment) as the difference
    of their epochs. (In parentheses: nodes built here are not parenthesised by precedence.)"""
    if isinstance(moment, exp.Sub):
        difference = exp.Sub(this=_epoch_seconds(moment.this),
                             expression=_epoch_seconds(moment.expression))  # fmt: skip
        return exp.Paren(this=difference)
    micros = exp.func("unix_micros", exp.cast(moment.copy(), "TIMESTAMPLTZ"))
    return exp.Paren(this=exp.Div(this=micros, expression=exp.Literal.number(1_000_000)))


def rows_table(name: str) -> str:
    """The temp table (or view) holding a SQL trait's rows by `entity_id` for the hour."""
    return ROWS_PREFIX + name


def raw_table(name: str) -> str:
    """The temp table holding a SQL trait's query result for the hour."""
    return RAW_PREFIX + name
