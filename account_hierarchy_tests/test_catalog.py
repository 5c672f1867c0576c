"""Definitions are validated at load time, each problem naming file, line and field."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from account_hierarchy.catalog import loader
from account_hierarchy.catalog.loader import DefinitionError, load_catalog
from account_hierarchy.cli import main
from account_hierarchy.traits.sql_traits import SqlTraitError, against_views, parse_trait_sql

GOOD = """
traits:
  - name: logins
    entity: account
    type: event_counter
    event: Logged In
    window: 30 days
"""


def problems_of(tmp_path: Path, text: str, extra: str | None = None) -> list[str]:
    (tmp_path / "a.yaml").write_text(text)
    if extra:
        (tmp_path / "b.yaml").write_text(extra)
    with pytest.raises(DefinitionError) as error:
        load_catalog(tmp_path)
    return error.value.problems


def test_sample_definitions_are_valid():
    catalog = load_catalog(Path(__file__).parent.parent / "data" / "definitions")
    names = {located.trait.name for located in catalog.traits}
    assert {
        "logins_past_30_days",
        "avg_nps_score",
        "first_landing_page",
        "active_users_past_month",
    } <= names
    types = {located.trait.type for located in catalog.traits}
    assert types == {
        "event_counter",
        "aggregation",
        "most_frequent",
        "first_value",
        "last_value",
        "unique_list",
        "unique_list_count",
        "unique_users",
        "sql",
    }
    assert catalog.traits_of("user")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("window: 30 days", "a.yaml:7: traits[0] (logins).window: window 'thirty days' must look"),
        (
            "type: event_counter",
            "a.yaml:5: traits[0] (logins).type: unknown trait type 'counter'; "
            "did you mean 'event_counter'?",
        ),
        ("entity: account", "a.yaml:4: traits[0] (logins).entity: Input should be 'account'"),
        ("event: Logged In", "a.yaml:7: traits[0] (logins).colour: unknown key 'colour'"),
        ("name: logins", "a.yaml:3: traits[0] (Logins).name: name 'Logins' must be lower case"),
    ],
)
def test_one_clear_message_per_problem(tmp_path, change, expected):
    replacement = {
        "window: 30 days": "window: thirty days",
        "type: event_counter": "type: counter",
        "entity: account": "entity: acount",
        "event: Logged In": "event: Logged In\n    colour: blue",
        "name: logins": "name: Logins",
    }[change]
    problems = problems_of(tmp_path, GOOD.replace(change, replacement))
    assert len(problems) == 1
    assert problems[0].startswith(str(tmp_path / expected.split(":")[0]))
    assert expected.split(":", 1)[1] in problems[0]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("'say \"hi\"'", "names with quotes or backslashes cannot be read"),
        ("plan..name", "a dot separates nested keys, and none may be empty"),
        ("items.*", "a key `*` cannot be read"),
        ("''", "a name is needed"),
    ],
)
def test_property_names_a_json_path_cannot_read_are_refused(tmp_path, name, message):
    where = GOOD + f"    where: [{{property: {name}, exists: true}}]\n"
    value = GOOD.replace("type: event_counter", "type: last_value") + f"    property: {name}\n"
    for text, field in ((where, "where[0].property"), (value, "property")):
        (problem,) = problems_of(tmp_path, text)
        assert f"traits[0] (logins).{field}: " in problem and message in problem


def test_duplicate_names_across_files_and_bad_options(tmp_path):
    problems = problems_of(
        tmp_path,
        GOOD,
        GOOD.replace("entity: account", "entity: user\n    include_child_accounts: true")
        + """
  - name: logins
    entity: user
    type: unique_users
  - name: fallback_alone
    entity: account
    type: event_counter
    context_fallback: none
""",
    )
    assert any("include_child_accounts applies to account traits only" in p for p in problems)
    assert any("(fallback_alone).context_fallback: context_fallback applies with attribution: "
               "context only" in p
               for p in problems)  # fmt: skip
    assert any("unique_users traits are for entity: account" in p for p in problems)


def test_checks_of_a_whole_definition_are_reported_at_the_line_of_their_field(tmp_path):
    text = """traits:
  - name: a
    entity: user
    type: event_counter
    include_child_accounts: true
  - name: b
    entity: account
    type: event_counter
    context_fallback: none
  - name: c
    entity: user
    type: unique_users
  - name: d
    entity: user
    type: event_counter
    event_type: identify
    event: X
audiences:
  - name: e
    entity: user
    where:
      performed: X
      at_least: 3
      at_most: 1
"""
    path = tmp_path / "a.yaml"
    assert sorted(problems_of(tmp_path, text)) == sorted([
        f"{path}:5: traits[0] (a).include_child_accounts: include_child_accounts applies to "
        "account traits only",
        f"{path}:9: traits[1] (b).context_fallback: context_fallback applies with attribution: "
        "context only",
        f"{path}:11: traits[2] (c).entity: unique_users traits are for entity: account",
        f"{path}:17: traits[3] (d).event: identify calls have no event name for `event` to match",
        f"{path}:24: audiences[0] (e).where.at_most: at_most 1 is below at_least 3",
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("where: [{property: score, gt: true}]", "where[0].gt: Input should be a valid number"),
        ('where: [{property: score, gt: "1"}]', "where[0].gt: Input should be a valid number"),
        ('where: [{property: score, exists: "no"}]', "exists: Input should be a valid boolean"),
        (
            'include_child_accounts: "off"',
            "include_child_accounts: Input should be a valid boolean",
        ),
        ("event_type: identify", "identify calls have no event name for `event` to match"),
        ("window: 7 days", "'window' given twice in one mapping (first at line 7)"),
    ],
)
def test_values_are_not_coerced_and_keys_not_repeated(tmp_path, extra, message):
    (problem,) = problems_of(tmp_path, GOOD + f"    {extra}\n")
    assert problem.startswith(str(tmp_path / "a.yaml"))
    assert message in problem


def test_a_performed_condition_on_calls_without_a_name_is_refused(tmp_path):
    text = "audiences:\n  - {name: a, entity: user, where: {performed: X, event_type: group}}\n"
    (problem,) = problems_of(tmp_path, text)
    assert "group calls have no event name for `performed` to match" in problem


def test_a_missing_type_and_a_sql_traits_fields_are_named(tmp_path):
    text = ("traits:\n  - {name: untyped, entity: account}\n"
            "  - {name: no_sql, entity: account, type: sql}\n"
            "  - {name: sql_number, entity: account, type: sql, sql: 5}\n")  # fmt: skip
    problems = [problem.split(": ", 1)[1] for problem in problems_of(tmp_path, text)]
    assert problems == [
        "traits[0] (untyped).type: missing; give one of aggregation, event_counter, first_value, "
        "last_value, most_frequent, sql, unique_list, unique_list_count, unique_users",
        "traits[1] (no_sql).sql: Field required",
        "traits[2] (sql_number).sql: Input should be a valid string",
    ]


def test_the_columns_of_an_invalid_sql_trait_are_not_reported_unknown(tmp_path):
    text = ("traits:\n  - {name: bad_sql, entity: account, type: sql, "
            "sql: 'SELECT account_id, 1 AS seats_used FROM acounts'}\n"
            "audiences:\n  - {name: a, entity: account, where: {trait: seats_used, gt: 1}}\n"
            "destinations:\n  - {name: d, type: jsonl, folder: out, "
            "traits: [seats_used]}\n")  # fmt: skip
    (problem,) = problems_of(tmp_path, text)
    assert problem.endswith("trait bad_sql.sql: unknown view 'acounts'; did you mean 'accounts'?")


def test_duplicate_trait_names(tmp_path):
    problems = problems_of(tmp_path, GOOD, GOOD)
    assert problems == [
        f"{tmp_path / 'b.yaml'}:3: trait logins: name already used at {tmp_path / 'a.yaml'}:3"
    ]


def test_where_needs_exactly_one_operator_and_yaml_errors_have_lines(tmp_path):
    text = GOOD + "    where:\n      - {property: score, gt: 1, lt: 5}\n"
    assert "give exactly one operator" in problems_of(tmp_path, text)[0]
    text = GOOD + "    where:\n      - {property: score, in: null}\n"
    assert "`in: null` is no operand: test for null with `exists`" in problems_of(tmp_path, text)[0]
    assert problems_of(tmp_path, "traits:\n  - name: [oops\n")[0].startswith(
        f"{tmp_path / 'a.yaml'}:3: not valid YAML"
    )
    assert "unknown section 'trait'" in problems_of(tmp_path, "trait: []\n")[0]


def test_sql_trait_errors_suggest_the_closest_view(tmp_path):
    text = (
        GOOD
        + """
  - name: bad_sql
    entity: account
    type: sql
    sql: SELECT account_id, count(*) AS n FROM acounts GROUP BY 1
"""
    )
    (problem,) = problems_of(tmp_path, text)
    assert problem.endswith("trait bad_sql.sql: unknown view 'acounts'; did you mean 'accounts'?")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 1; SELECT 2", "single SELECT"),
        ("DROP TABLE events", "read-only SELECT"),
        ("INSERT INTO accounts SELECT * FROM accounts", "read-only SELECT"),
        ("SELECT * FROM accounts", "list the result columns"),
        ("SELECT a.* FROM accounts AS a", "list the result columns"),
        (
            "SELECT account_id, count(*) FROM accounts GROUP BY 1",
            r"name the result column COUNT\(\*\)",
        ),
        ("SELECT account_id FROM accounts", "at least one value column"),
        ("SELECT user_id, 1 AS n FROM users", "must return the account_id column"),
        ("SELECT account_id, 1 AS n FROM read_csv('x.csv')", "only the snapshot views"),
        ("SELECT account_id, 1 AS n FROM main.accounts", "without a schema"),
        ("SELECT account_id, getenv('HOME') AS n FROM accounts", "cannot read files"),
        ("SELECT account_id, 1 AS n FROM raw_events", "did you mean 'events'"),
        ("SELEC account_id", "read-only SELECT"),
        ("SELECT account_id, (1 AS n FROM accounts", "does not parse"),
        ("SELECT account_id, current_setting('threads') AS n FROM accounts", "or settings"),
        (
            "SELECT account_id, cout(*) AS n FROM accounts GROUP BY 1",
            r"calls cout\(\): unknown function; did you mean count\(\)\?",
        ),
        ("SELECT account_id, zzqx(1) AS n FROM accounts", "DuckDB has no such function"),
        (
            "WITH events AS (SELECT * FROM events) SELECT account_id, 1 AS n FROM events",
            "a CTE is named 'events'",
        ),
        ("SELECT account_id, 1 AS snapshot_hour FROM accounts", "named 'snapshot_hour'"),
        ("SELECT account_id, 1 AS entity_id FROM accounts", "named 'entity_id'"),
        # (inside its own body, or before it, a CTE's name reads the table)
        (
            "WITH raw_events AS (SELECT * FROM raw_events) SELECT account_id, 1 AS n "
            "FROM raw_events",
            "unknown view 'raw_events'",
        ),
        (
            "WITH a AS (SELECT * FROM b), b AS (SELECT * FROM accounts) "
            "SELECT account_id, 1 AS n FROM a",
            "unknown view 'b'",
        ),
        # (a recursive CTE's first branch reads the table of its name, not the CTE)
        (
            "WITH RECURSIVE raw_events AS (SELECT account_id FROM raw_events UNION "
            "SELECT account_id FROM raw_events WHERE false) SELECT account_id, 1 AS n "
            "FROM raw_events",
            "the first branch of the recursive CTE 'raw_events' reads 'raw_events'",
        ),
        (
            'WITH RECURSIVE "x.csv" AS (SELECT * FROM "x.csv") SELECT account_id, 1 AS n '
            'FROM "x.csv"',
            "recursive CTE 'x.csv'",
        ),
        (
            "WITH RECURSIVE r AS (SELECT account_id FROM accounts UNION SELECT account_id FROM r "
            "UNION SELECT account_id FROM r WHERE false) SELECT account_id, 1 AS n FROM r",
            "the first branch of the recursive CTE 'r' reads 'r'",
        ),
        ("SELECT account_id, age(max(as_of)) AS n FROM accounts, snapshot GROUP BY 1", "AGE"),
        ("SELECT account_id, pg_postmaster_start_time() AS n FROM accounts", "not the snap"),
        # (sqlglot's tokenizer and recursion errors are parse errors too)
        ("SELECT account_id, 'abc AS n FROM accounts", "does not parse"),
        ("SELECT account_id, 1 AS n FROM accounts /* note", "does not parse"),
        (
            "SELECT account_id, traits ->> 'o''brien' AS n FROM accounts",
            'the JSON path "o\'brien" holds quotes or backslashes, which SQL traits cannot read',
        ),
        (
            "SELECT account_id, " + "abs(" * 250 + "1" + ")" * 250 + " AS n FROM accounts",
            "nested too deeply",
        ),
        (
            "SELECT account_id, " + " + ".join(["1"] * 898) + " AS n FROM accounts",
            r"nested too deeply for DuckDB \(over 900 levels of expressions\)",
        ),
        (
            "SELECT account_id, 'a\udcff' AS n FROM accounts",
            r"character 22 is a lone surrogate \(\\udcff\), no character",
        ),
    ],
)
def test_sql_traits_must_be_one_read_only_query(sql, message):
    with pytest.raises(SqlTraitError, match=message):
        parse_trait_sql(sql, "account")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # (`$` in a pattern matches before a final line break: names are matched whole)
        ('traits:\n  - {name: "logins\\n", entity: user, type: event_counter}\n', "'logins\\n'"),
        ("traits:\n  - {name: x, entity: user, type: event_counter, event: ''}\n",
         "event: `event` is blank"),
        ('traits:\n  - {name: x, entity: user, type: event_counter, event: "a\\0b"}\n',
         "a.yaml:2: 'a\\x00b' holds a NUL character"),
        ('traits:\n  - {name: x, entity: user, type: event_counter, event: "a\\ud800"}\n',
         "a.yaml:2: 'a\\ud800' holds a lone surrogate (\\ud800), which is no character"),
        ("traits:\n  - name: x\n    entity: user\n    type: sql\n"
         '    sql: "SELECT user_id, \'\\ud83d\\ude00\' AS x FROM users"\n',
         "a.yaml:5: \"SELECT user_id, '\\ud83d\\ude00' AS x FROM users\" holds a lone surrogate "
         "(\\ud83d), which is no character: write one beyond U+FFFF as itself or as "
         "`\\U0001f600`"),
        ("traits:\n  - {name: x, entity: user, type: event_counter, on: 1}\n",
         "a.yaml:2: traits[0] (x): keys must be text; YAML reads the key true as a boolean: quote"),
        ("traits:\n  - name: x\n    entity: user\n    type: event_counter\n    2026-10-01: 1\n",
         'a.yaml:5: traits[0] (x): keys must be text; YAML reads the key "2026-10-01" as a date'),
        ("null: 1\n", "a.yaml:1: unknown section None (YAML reads the key null as null)"),
        ('traits:\n  - {name: "x\\ny", entity: user, type: event_counter}\n',
         "a.yaml:2: traits[0] (x\\ny).name: name"),
        ("traits:\n  - {name: x, entity: acount, type: event_countr}\n",
         "a.yaml:2: traits[0] (x).entity: Input should be 'account' or 'user'"),
        ("traits:\n  - {name: X, entity: user}\n", "a.yaml:2: traits[0] (X).name: name 'X' must"),
        ("traits: &t [*t]\n", "or one is inside its own anchor"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
         + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                   for p, c in zip("abcd", "bcde", strict=True))
         + "traits: [{name: x, entity: user, type: event_counter, description: *e}]\n",
         "expand it to over 100,000 values"),
        ("traits: " + "[" * 4000 + "]" * 4000 + "\n", "nested too deeply"),
    ],
)  # fmt: skip
def test_names_text_and_yaml_structures_that_cannot_work_are_refused(tmp_path, text, message):
    problems = problems_of(tmp_path, text)
    assert any(message in problem for problem in problems), problems


def test_a_recursive_cte_reading_itself_after_its_first_branch_is_accepted():
    sql = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) "
           "SELECT account_id, (SELECT max(i) FROM n) AS most FROM accounts")  # fmt: skip
    assert parse_trait_sql(sql, "account")[1] == ["most"]


@pytest.mark.parametrize(("aliased", "refused"), [(False, False), (True, True)])
def test_only_aliases_count_against_the_size_of_a_file(tmp_path, monkeypatch, aliased, refused):
    monkeypatch.setattr(loader, "MAX_VALUES", 20)
    values = "*v, *v, *v" if aliased else ", ".join(["1"] * 30)
    text = f"v: &v [1, 2, 3, 4, 5, 6, 7, 8]\ntraits: [{values}]\n"
    problems = problems_of(tmp_path, text)
    assert any("its aliases (`*name`) expand it" in problem for problem in problems) == refused


def test_a_sql_parse_error_names_its_place_without_terminal_codes():
    with pytest.raises(SqlTraitError) as error:
        parse_trait_sql("SELECT account_id, (1 AS n FROM accounts", "account")
    assert "\x1b" not in str(error.value) and "at line 1, column" in str(error.value)


@pytest.mark.parametrize("name", ["account_id", "snapshot_hour", "entity_id", "entity_id_right"])
def test_trait_names_the_tables_use_are_refused(tmp_path, name):
    problems = problems_of(tmp_path, GOOD.replace("name: logins", f"name: {name}"))
    assert problems == [f"{tmp_path / 'a.yaml'}:3: trait {name}.name: column {name!r} is a name "
                        "the trait tables use"]  # fmt: skip


def test_a_sql_traits_column_problems_name_its_sql_line(tmp_path):
    text = GOOD + ("  - name: bad\n    entity: account\n    type: sql\n"
                   "    sql: SELECT account_id, 2 AS logins FROM accounts\n")  # fmt: skip
    assert problems_of(tmp_path, text) == [
        f"{tmp_path / 'a.yaml'}:11: trait bad.sql: column 'logins' is also produced by trait logins"
    ]


def test_on_spark_sql_spark_reads_otherwise_is_refused_at_load(tmp_path, monkeypatch):
    sql = "SELECT account_id, traits ->> ' plan' AS plan FROM accounts"
    text = GOOD + f"  - name: plan\n    entity: account\n    type: sql\n    sql: {sql}\n"
    (tmp_path / "a.yaml").write_text(text)
    assert [t.trait.name for t in load_catalog(tmp_path).traits] == ["logins", "plan"]
    monkeypatch.setenv("AH_ENGINE", "spark")
    assert problems_of(tmp_path, text) == [
        f"{tmp_path / 'a.yaml'}:11: trait plan.sql: Spark reads the JSON key ' plan' otherwise "
        "(as every key, or without its leading white space)"
    ]


def test_ctes_in_scope_are_read_as_ctes():
    sql = ("WITH a AS (SELECT account_id FROM accounts), b AS (SELECT account_id FROM a) "
           "SELECT account_id, 1 AS n FROM b")  # fmt: skip
    assert parse_trait_sql(sql, "account")[1] == ["n"]


def test_view_names_are_not_case_sensitive():
    query, values = parse_trait_sql("SELECT account_id, 1 AS n FROM ACCOUNTS", "account")
    assert values == ["n"]
    assert "sql_trait_view_accounts" in against_views(query)


def test_spark_sql_keeps_json_as_text_and_converts_offsets_to_utc():
    sql = ("SELECT account_id, '[1]'::JSON AS j, TRY_CAST(x AS TIMESTAMPTZ) AS t "
           "FROM accounts")  # fmt: skip
    query, _ = parse_trait_sql(sql, "account")
    assert "CAST('[1]' AS JSON)" in against_views(query)
    assert against_views(query, "spark") == (
        "SELECT account_id, '[1]' AS j, CAST(TRY_CAST(x AS TIMESTAMP_LTZ) AS TIMESTAMP_NTZ) AS t "
        "FROM sql_trait_view_accounts AS accounts"
    )


@pytest.mark.parametrize(
    ("path", "duckdb", "spark"),
    [
        ("'utm.source'", "'$.\"utm.source\"'", "'$[\\'utm.source\\']'"),
        ("$$utm.source$$", "'$.\"utm.source\"'", "'$[\\'utm.source\\']'"),
        ("('utm.source')", "'$.\"utm.source\"'", "'$[\\'utm.source\\']'"),
        ("'$.utm.source'", "'$.utm.source'", "'$.utm.source'"),
        ("'/utm/source'", "'/utm/source'", "Spark does not read '/utm/source' as DuckDB does"),
        ("' plan'", "'$.\" plan\"'", "Spark reads the JSON key ' plan' otherwise"),
        ("'*'", "'$.\"*\"'", "Spark reads the JSON key '*' otherwise"),
        ("'$.*'", "'$.*'", "Spark does not read the JSON path part '*' as DuckDB does"),
        ("('$.a' || 'b')", "('$.a' || 'b')", "('$.a' || 'b')"),
    ],
)
def test_a_json_key_is_read_as_duckdb_reads_it_or_refused_on_spark(path, duckdb, spark):
    """Text that starts with neither `$` nor `/` is one key; what Spark reads otherwise (a
    pointer, a key with leading white space, `*`, a wildcard) fails there. A computed path
    keeps its parentheses (`traits ->> '$.a' || 'b'` is the text of `$.a`, then `b`)."""
    query, _ = parse_trait_sql(
        f"SELECT account_id, traits ->> {path} AS n FROM accounts", "account"
    )
    assert f"traits ->> {duckdb} AS n" in against_views(query)
    if not spark.startswith("Spark "):
        assert f"GET_JSON_OBJECT(traits, {spark}) AS n" in against_views(query, "spark")
    else:
        with pytest.raises(SqlTraitError, match=re.escape(spark)):
            against_views(query, "spark")


@pytest.mark.parametrize(
    ("expression", "spark"),
    [
        ("coalesce(traits -> 'title', 'none')",
         "COALESCE(GET_JSON_OBJECT(traits, '$.title'), 'none')"),
        ("count(DISTINCT traits -> 'plan')", "COUNT(DISTINCT GET_JSON_OBJECT(traits, '$.plan'))"),
        ("lower(traits -> 'a' ->> 'b')",
         "LOWER(GET_JSON_OBJECT(GET_JSON_OBJECT(traits, '$.a'), '$.b'))"),
        ("json_array_length(traits -> 'utm.tags')",
         "JSON_ARRAY_LENGTH(GET_JSON_OBJECT(traits, '$[\\'utm.tags\\']'))"),
        ("list_transform([1, 2], x -> x + 1)", "TRANSFORM(ARRAY(1, 2), x -> x + 1)"),
        ("list_filter(['a'], x -> x = 'a')", "FILTER(ARRAY('a'), x -> x = 'a')"),
    ],
)  # fmt: skip
def test_an_arrow_in_a_functions_arguments_reads_json_on_spark(expression, spark):
    """sqlglot reads `traits -> 'title'` in a function's arguments as a lambda; DuckDB reads it
    as JSON, but in a function that takes a lambda (`list_transform`)."""
    query, _ = parse_trait_sql(f"SELECT user_id, {expression} AS n FROM users", "user")
    assert against_views(query, "spark") == (
        f"SELECT user_id, {spark} AS n FROM sql_trait_view_users AS users"
    )
    refused = "SELECT user_id, lower(traits -> ' plan') AS n FROM users"
    with pytest.raises(SqlTraitError, match="Spark reads the JSON key ' plan' otherwise"):
        against_views(parse_trait_sql(refused, "user")[0], "spark")


@pytest.mark.parametrize(
    "expression",
    ["lower(traits -> 'a' || 'x')", "coalesce(traits -> 'a' ->> 'b' = 'B', false)",
     "coalesce(traits -> 1.5, 'x')", "lower(traits -> lower('A'))"],
)  # fmt: skip
def test_an_arrow_in_a_functions_arguments_spark_would_read_otherwise_is_refused(expression):
    """DuckDB reads all that follows the arrow there as its path (`'a' || 'x'`, the key `ax`),
    which Spark's `get_json_object` does not: only a key, then more arrows, is rewritten."""
    query, _ = parse_trait_sql(f"SELECT user_id, {expression} AS n FROM users", "user")
    with pytest.raises(SqlTraitError, match="in a function's arguments as DuckDB does"):
        against_views(query, "spark")


READ_FILE = "(SELECT content FROM read_text('/etc/hostname'))"


@pytest.mark.parametrize(
    "expression",
    [
        f'CAST(1 AS "varint) AS v, {READ_FILE} AS w FROM accounts --")',
        f"INTERVAL '1' \"day AS v, {READ_FILE} AS w FROM accounts --\"",
        "time_bucket(INTERVAL 1 'day, TIMESTAMP ''2020-01-01'') AS v, read_text(''/etc/x'') AS w "
        "FROM accounts --', TIMESTAMP '2020-01-01')",
        "date_diff('day, 1, 2) AS v, read_text(''/etc/x'') AS w FROM accounts --', "
        "TIMESTAMP '2020-01-01', TIMESTAMP '2020-01-02')",
        "extract('day FROM TIMESTAMP ''2020-01-01'') AS BIGINT) AS v, java_method(''a'') AS w "
        "FROM accounts --' FROM TIMESTAMP '2020-01-01')",
        "CAST(NULL AS MAP(VARCHAR, \"day) || read_text('/etc/x') || (1\"))",
    ],
)
def test_text_sqlglot_writes_unquoted_must_be_one_word(expression):
    """Units, unknown type names and `extract`'s part are written into the SQL run as they
    are: text there other than one word would run unchecked (a file read)."""
    with pytest.raises(SqlTraitError, match="is no single word, as a unit, a type's name"):
        parse_trait_sql(f"SELECT account_id, {expression} AS n FROM accounts", "account")
    sql = ("SELECT account_id, date_trunc('month', as_of) AS m, INTERVAL 3 DAY AS i, "
           "extract('year' FROM as_of) AS y, CAST(1 AS varint) AS w "
           "FROM accounts, snapshot")  # fmt: skip
    assert parse_trait_sql(sql, "account")[1] == ["m", "i", "y", "w"]


def test_sql_sqlglot_cannot_write_is_refused_naming_the_engine():
    with pytest.raises(SqlTraitError, match="cannot be written as SQL for duckdb: Unsupported"):
        parse_trait_sql("SELECT account_id, traits -> '$..a' AS n FROM accounts", "account")
    query, _ = parse_trait_sql("SELECT account_id, MAP {$$k$$: 1} AS n FROM accounts", "account")
    with pytest.raises(SqlTraitError, match="cannot be written as SQL for spark"):
        against_views(query, "spark")


@pytest.mark.parametrize("path", ["'$.\"o''b\"'", "'$[\\'a\\']'", "$$a'b$$", "'a\"b'"])
def test_a_json_path_holding_quotes_is_refused(path):
    """sqlglot would write it into the SQL run unescaped (its text would run as SQL)."""
    with pytest.raises(SqlTraitError, match="holds quotes or backslashes"):
        parse_trait_sql(f"SELECT account_id, traits ->> {path} AS n FROM accounts", "account")


def test_validate_command_and_code_location_give_the_same_message(tmp_path, monkeypatch):
    (tmp_path / "a.yaml").write_text(GOOD.replace("30 days", "a month"))
    monkeypatch.setenv("AH_DEFINITIONS_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 1
    assert "1 problem in the definitions" in result.output
    assert "window 'a month' must look like" in result.output
    loading = subprocess.run(
        [sys.executable, "-c", "import account_hierarchy.definitions"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ},
    )
    assert loading.returncode != 0
    last_lines = loading.stderr.strip().splitlines()[-2:]
    assert "DefinitionError: 1 problem in the definitions" in last_lines[0]
    assert "window 'a month' must look like" in last_lines[1]


def test_validate_lists_every_definition(tmp_path, monkeypatch):
    (tmp_path / "a.yaml").write_text(GOOD)
    monkeypatch.setenv("AH_DEFINITIONS_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["validate", "--format", "jsonl"])
    assert result.exit_code == 0
    assert '"name": "logins"' in result.output
    readable = CliRunner().invoke(main, ["validate"])
    assert f"1 trait, 0 audiences, 0 destinations in {tmp_path}: all valid." in readable.output

    (tmp_path / "b.yaml").write_text(
        "traits:\n"
        "  - {name: user_logins, entity: user, type: event_counter, event: Logged In}\n"
        "destinations:\n"
        "  - {name: outbox, type: jsonl, folder: out, audiences: [busy]}\n"
        "audiences:\n"
        "  - name: busy\n"
        "    entity: account\n"
        "    where: {trait: logins, gt: 10}\n"
    )
    result = CliRunner().invoke(main, ["validate", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(row["kind"], row["name"], row["entity"], row["type"]) for row in rows] == [
        ("trait", "logins", "account", "event_counter"),
        ("trait", "user_logins", "user", "event_counter"),
        ("audience", "busy", "account", None),
        ("destination", "outbox", None, "jsonl"),
    ]
    assert rows[2]["file"] == f"{tmp_path / 'b.yaml'}:6"


AUDIENCES = (
    GOOD
    + """
  - name: user_logins
    entity: user
    type: event_counter
    event: Logged In
audiences:
  - name: quiet
    entity: account
    where: {trait: logins, lt: 10}
"""
)


def test_audiences_load(tmp_path):
    (tmp_path / "a.yaml").write_text(AUDIENCES)
    catalog = load_catalog(tmp_path)
    assert catalog.audience("quiet").entity == "account"


@pytest.mark.parametrize(
    ("audience", "message"),
    [
        ("{trait: login, lt: 10}", "unknown account trait 'login'; did you mean 'logins'?"),
        ("{trait: user_logins, lt: 10}", "unknown account trait 'user_logins'"),
        ("{audience: quite}", "unknown audience 'quite'; did you mean 'quiet'?"),
        ("{performed: Logged In}", "`performed` only applies to user conditions"),
        (
            "{users: all, where: {users: any, where: {trait: user_logins, gt: 0}}}",
            "a users quantifier only applies to account conditions",
        ),
        ("{users: all, where: {trait: logins, gt: 0}}", "unknown user trait 'logins'"),
        ("{trait: logins}", "give exactly one operator"),
        ("{trait: logins, equals: null}", "`equals: null` is no operand: test for null with `is_"),
        ("{trait: logins, equals: null, gt: 1}", "`equals: null` is no operand"),
        ("{trait: logins, exists: null}", "`exists: null` is no operand: give true or false"),
        ("{custom_trait: x, contains: [1, 2]}", "where.contains: must be text, a number or true"),
        (
            "{custom_trait: a..b, exists: true}",
            "a dot separates nested keys, and none may be empty",
        ),
        ("{custom_trait: a.*, exists: true}", "a key `*` cannot be read"),
        ("{colour: red}", "a condition needs one of the keys"),
        ("{at_least: 2}", "where.where: Field required"),
        ("{users: all, at_least: 2, where: {trait: user_logins, gt: 0}}", "give one quantifier"),
        (
            "{at_least: 100000000000000000000, where: {trait: user_logins, gt: 0}}",
            "less than or equal to 9223372036854775807",
        ),
        ("{at_least: true, where: {trait: user_logins, gt: 0}}", "valid integer"),
        ("{at_least_percent: true, where: {trait: user_logins, gt: 0}}", "valid number"),
        ("{users: any, where: {performed: A, at_most: 100000000000000000000}}", "less than"),
        ("{users: any, where: {performed: ''}}", "performed: `performed` is blank"),
        ("{users: any, where: {performed: ' '}}", "`performed` is blank"),
        ("{not: " * 17 + "{trait: logins, gt: 0}" + "}" * 17, "conditions nest 17 levels deep"),
        ('{trait: logins, equals: "a\\0b"}', "holds a NUL character"),
        ('{trait: logins, in: ["a", "\\udcff"]}', "holds a lone surrogate"),
    ],
)
def test_audience_problems_are_named(tmp_path, audience, message):
    text = AUDIENCES + f"  - name: other\n    entity: account\n    where: {audience}\n"
    problems = problems_of(tmp_path, text)
    assert any(message in problem for problem in problems), problems
    assert all(str(tmp_path / "a.yaml") in problem for problem in problems)


LIST_TRAITS = """
traits:
  - {name: features, entity: account, type: unique_list, event: Feature Used, property: name}
  - name: plans
    entity: user
    type: sql
    many: true
    sql: SELECT m.user_id, a.plan FROM account_memberships m JOIN accounts a USING (account_id)
  - {name: uses, entity: account, type: event_counter, event: Feature Used}
audiences:
"""


def test_conditions_nested_16_deep_load_and_at_most_null_is_no_bound(tmp_path):
    deep = "{not: " * 16 + "{trait: logins, gt: 0}" + "}" * 16
    text = AUDIENCES + f"  - name: deep\n    entity: account\n    where: {deep}\n"
    text += "  - {name: some, entity: user, where: {performed: A, at_most: null}}\n"
    (tmp_path / "a.yaml").write_text(text)
    audiences = {each.audience.name: each.audience for each in load_catalog(tmp_path).audiences}
    assert (audiences["some"].where.at_least, audiences["some"].where.at_most) == (1, None)


def test_a_long_chain_of_references_listed_last_first_is_reported_not_a_crash(tmp_path):
    """Depths are counted from the audiences referred to, without recursing down the chain."""
    chain = [{"name": "a0", "entity": "account", "where": {"custom_trait": "plan", "exists": True}}]
    chain += [{"name": f"a{i}", "entity": "account", "where": {"audience": f"a{i - 1}"}}
              for i in range(1, 1100)]  # fmt: skip
    problems = problems_of(tmp_path, yaml.safe_dump({"audiences": chain[::-1]}))
    assert len(problems) == 1099 - 16
    assert "audience a1099.where: conditions nest 1099 levels deep" in problems[0]


@pytest.mark.parametrize(
    ("entity", "condition", "holds"),
    [
        ("account", "{trait: features, within_last: 2 days}", "a list"),
        ("user", "{trait: plan, not_within_last: 2 days}", "a list"),
        ("user", "{account: {trait: features, within_last: 1 day}}", "a list"),
        ("account", "{trait: uses, within_last: 1 day}", "a number"),
    ],
)
def test_a_relative_time_on_a_list_or_number_trait_is_refused(tmp_path, entity, condition, holds):
    text = LIST_TRAITS + f"  - {{name: recent, entity: {entity}, where: {condition}}}\n"
    (problem,) = problems_of(tmp_path, text)
    assert "tests a time; trait" in problem and f"is {holds}" in problem, problem
    allowed = (
        LIST_TRAITS + "  - {name: has_a, entity: account, where: {trait: features, contains: a}}\n"
    )
    assert load_catalog(_write(tmp_path, allowed)).audience("has_a")


def test_a_reference_problem_names_its_field_and_line(tmp_path):
    """Problems found across definitions name the field at fault and its own line, as the
    problems of one definition do."""
    text = (
        AUDIENCES
        + """\
  - name: nested
    entity: user
    where:
      and:
        - {trait: user_logins, gt: 1}
        - not:
            audience: nope
        - account:
            trait: logins_7d
            gt: 2
"""
    )
    path = tmp_path / "a.yaml"
    assert problems_of(tmp_path, text) == [
        f"{path}:23: audience nested.where.and[1].not.audience: unknown audience 'nope'; "
        "known: nested, quiet",
        f"{path}:25: audience nested.where.and[2].account.trait: unknown account trait "
        "'logins_7d'; did you mean 'logins'?",
    ]


def _write(folder: Path, text: str) -> Path:
    (folder / "a.yaml").write_text(text)
    return folder


def test_an_invalid_definition_is_reported_once_not_again_where_it_is_used(tmp_path):
    """A trait or audience that fails validation is one problem: the audiences and
    destinations that name it do not add 'unknown' problems."""
    text = AUDIENCES.replace("window: 30 days", "window: thirty days") + (
        "  - name: quieter\n    entity: account\n    where: {audience: quiet, logins: 1}\n"
        "  - name: reach\n    entity: account\n    where: {audience: quieter}\n"
        "destinations:\n  - name: out\n    type: jsonl\n    folder: out\n"
        "    audiences: [quieter]\n    traits: [logins]\n"
    )
    problems = problems_of(tmp_path, text)
    assert len(problems) == 2, problems
    assert "(logins).window: window 'thirty days'" in problems[0]
    assert "audiences[1] (quieter)" in problems[1]


def test_audience_reference_cycles_are_named(tmp_path):
    text = (
        AUDIENCES
        + """
  - name: a
    entity: account
    where: {and: [{audience: b}, {trait: logins, gt: 1}]}
  - name: b
    entity: account
    where: {not: {audience: a}}
  - name: u
    entity: user
    where: {in_account_audience: quiet}
  - name: s
    entity: account
    where: {or: [{audience: s}, {audience: a}]}
"""
    )
    problems = problems_of(tmp_path, text)
    assert problems == [
        f"{tmp_path / 'a.yaml'}:18: audience a: audiences refer to each other in a cycle: "
        "a -> b -> a",
        f"{tmp_path / 'a.yaml'}:27: audience s: audiences refer to each other in a cycle: s -> s",
    ]  # (a second cycle is not hidden by the first)


def test_a_name_used_twice_says_where_it_was_first(tmp_path):
    text = AUDIENCES + "  - name: quiet\n    entity: user\n    where: {trait: user_logins, gt: 1}\n"
    text += "destinations:\n" + "  - {name: out, type: jsonl, folder: o, audiences: [quiet]}\n" * 2
    problems = problems_of(tmp_path, text)
    assert problems == [
        f"{tmp_path / 'a.yaml'}:17: audience quiet: name already used at {tmp_path / 'a.yaml'}:14",
        f"{tmp_path / 'a.yaml'}:22: destination out: name already used at {tmp_path / 'a.yaml'}:21",
    ]


def test_a_bad_trait_does_not_hide_the_other_problems(tmp_path):
    """A trait named twice and one whose SQL is invalid are reported, and so is every problem
    of the audiences and destinations; an audience naming the invalid trait is not reported."""
    text = AUDIENCES.replace("audiences:\n", GOOD.removeprefix("\ntraits:\n") + """\
  - name: broken
    entity: account
    type: sql
    sql: SELECT account_id, 1 AS broken FROM acounts
audiences:
""", 1)  # fmt: skip
    text += "  - {name: on_broken, entity: account, where: {trait: broken, gt: 1}}\n"
    text += "  - {name: on_nothing, entity: account, where: {trait: nothing, gt: 1}}\n"
    text += "destinations:\n  - {name: out, type: jsonl, folder: o, audiences: [gone]}\n"
    problems = [problem.removeprefix(f"{tmp_path / 'a.yaml'}:") for problem in
                problems_of(tmp_path, text)]  # fmt: skip
    assert problems == [
        f"13: trait logins: name already used at {tmp_path / 'a.yaml'}:3",
        "21: trait broken.sql: unknown view 'acounts'; did you mean 'accounts'?",
        "27: audience on_nothing.where.trait: unknown account trait 'nothing'; known: logins",
        "29: destination out.audiences[0]: unknown audience 'gone'; known: on_broken, on_nothing, "
        "quiet",
    ], problems


def test_a_destination_problem_is_reported_at_the_line_of_its_field(tmp_path):
    text = (
        AUDIENCES
        + """destinations:
  - name: out
    type: jsonl
    folder: o
    audiences:
      - quiet
      - quite
    traits: [logins, login]
    output_columns:
      - 'Plan'
    calls: [group]
"""
    )
    problems = [problem.removeprefix(f"{tmp_path / 'a.yaml'}:") for problem in
                problems_of(tmp_path, text)]  # fmt: skip
    assert problems == [
        "23: destination out.audiences[1]: unknown audience 'quite'; did you mean 'quiet'?",
        "24: destination out.traits[1]: unknown trait 'login'; did you mean 'logins'?",
        "26: destination out.output_columns[0]: 'Plan' is not a trait name",
    ], problems


def test_every_problem_of_a_destination_is_reported(tmp_path):
    text = AUDIENCES + "destinations:\n"
    text += ("  - {name: web, type: http, url: 'ftp://host', write_key_env: key, "
             "audiences: [quiet]}\n")  # fmt: skip
    text += "  - {name: out, type: jsonl, url: 'http://x'}\n"
    # (a scheme in capitals is still https: no problem)
    text += ("  - {name: loud, type: http, url: 'HTTPS://Example.com', write_key_env: KEY, "
             "audiences: [quiet]}\n")  # fmt: skip
    # (a control character before the scheme, which urlsplit would drop, is no url)
    text += ("  - {name: odd, type: http, url: \"\\x01https://x\", write_key_env: KEY, "
             "audiences: [quiet]}\n")  # fmt: skip
    problems = problems_of(tmp_path, text)
    assert [problem.split(": ", 2)[2] for problem in problems] == [
        "url 'ftp://host' must be http:// or https://, name a host, have no spaces, and give a "
        "port, if any, from 0 to 65535",
        "write_key_env must be an environment variable name (upper case letters, digits and "
        "underscores), not the write key itself",
        "a jsonl destination needs `folder`; url: not a setting of jsonl destinations; a "
        "destination needs at least one audience or trait to send",
        "url '\\x01https://x' must be http:// or https://, name a host, have no spaces, and "
        "give a port, if any, from 0 to 65535",
    ], problems


def test_user_audience_cannot_be_used_as_account_audience(tmp_path):
    text = (
        AUDIENCES
        + """
  - name: u
    entity: user
    where: {trait: user_logins, gt: 0}
  - name: v
    entity: user
    where: {in_account_audience: u}
"""
    )
    (problem,) = problems_of(tmp_path, text)
    assert "audience 'u' is a user audience; an account audience is needed here" in problem


def test_hidden_files_and_folders_are_not_read(tmp_path):
    """An editor's lock file (`.#a.yaml`, a link to nowhere) or a copy under `.git/` is no
    definition: only the visible file is read."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / ".#a.yaml").symlink_to(tmp_path / "nowhere")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "a.yaml").write_text(GOOD)  # (read, its names would be used twice)
    catalog = load_catalog(tmp_path)
    assert {located.file for located in catalog.traits} == {tmp_path / "a.yaml"}


def test_a_missing_folder_and_a_file_not_in_utf8_are_problems(tmp_path, monkeypatch):
    with pytest.raises(DefinitionError, match="no such folder of definitions"):
        load_catalog(tmp_path / "nowhere")
    monkeypatch.setenv("AH_DEFINITIONS_DIR", str(tmp_path / "nowhere"))
    assert CliRunner().invoke(main, ["validate"]).exit_code == 1
    (tmp_path / "latin.yaml").write_bytes("traits: []  # caf\xe9\n".encode("latin-1"))
    (problem,) = problems_of(tmp_path, GOOD)
    assert problem.endswith("latin.yaml: not UTF-8 text (byte 17): save it as UTF-8")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("type: jsonl, folder: out, audiences: [quiet], output_columns: [quiet]",
         "'quiet' is also an audience of the destination"),
        ("type: jsonl, folder: out, traits: [both]", "'both' is both an account and a user trait"),
        ("type: jsonl, folder: out, audiences: [quiet], output_columns: [plan], calls: [track]",
         "output_columns: output columns go in group calls, which the destination does not send"),
        ("type: jsonl, folder: out, audiences: [quiet], traits: [quiet]",
         "'quiet' is also an audience of the destination: both would be the same key"),
        ("type: jsonl, folder: out, audiences: [quiet], calls: []", "calls"),
        ("type: jsonl, folder: out, audiences: [quiet, quiet]", "audiences: given twice: quiet"),
        ("type: jsonl, folder: out, traits: [both_user], calls: [group]",
         "calls: group calls carry account audiences and traits, and it sends only user ones"),
        ("type: jsonl, folder: out, audiences: [quiet], event_names: {entered: ''}",
         "event_names.entered"),
        ("type: jsonl, folder: out, audiences: [quiet], event_names: {exited: ' '}",
         "event_names.exited"),
        ("type: jsonl, folder: out, audiences: [quiet], event_names: {exited: Audience Entered}",
         "entered, exited and trait_computed must be different event names"),
        ("type: jsonl, folder: out, audiences: [quiet], url: 'http://x'",
         "url: not a setting of jsonl destinations"),
        ("type: jsonl, folder: out, audiences: [quiet], retry: {max_seconds: 5}",
         "retry: not a setting of jsonl destinations"),
        ("type: http, url: 'http://x', write_key_env: KEY, folder: out, audiences: [quiet]",
         "folder: not a setting of http destinations"),
        ("type: http, url: 'http://', write_key_env: KEY, audiences: [quiet]", "name a host"),
        ("type: http, url: 'http://x:port', write_key_env: KEY, audiences: [quiet]", "a port"),
        ("type: http, url: 'http://a b', write_key_env: KEY, audiences: [quiet]", "no spaces"),
        ("type: jsonl, folder: out, audiences: [quiet], retry: {timeout_seconds: .inf}",
         "retry.timeout_seconds"),
        ("type: http, url: 'http://x', write_key_env: KEY, audiences: [quiet], "
         "retry: {timeout_seconds: 1.0e+10}", "retry.timeout_seconds: Input should be less"),
        ("type: http, url: 'http://x', write_key_env: \"KEY\\n\", audiences: [quiet]",
         "write_key_env"),
        ("type: jsonl, folder: out, audiences: [quiet, audience_key]",
         "audiences[1]: 'audience_key' is the track property naming the audience"),
        ("type: jsonl, folder: out, traits: [trait_key]",
         "traits[0]: 'trait_key' is the track property naming the trait"),
    ],
)  # fmt: skip
def test_destination_problems_are_named(tmp_path, settings, message):
    # (a user trait, and an account SQL trait's value column, named `both`; a trait named
    # like the audience `quiet`)
    both = ("  - name: both\n    entity: user\n    type: event_counter\n    event: A\n"
            "  - name: both_user\n    entity: user\n    type: event_counter\n    event: A\n"
            "  - name: quiet\n    entity: user\n    type: event_counter\n    event: B\n"
            "  - name: both_sql\n    entity: account\n    type: sql\n"
            "    sql: SELECT account_id, 7 AS both FROM accounts\n"
            "  - {name: trait_key, entity: user, type: event_counter, event: C}\n")  # fmt: skip
    text = AUDIENCES.replace("audiences:\n", both + "audiences:\n", 1)
    text += "  - {name: audience_key, entity: account, where: {trait: logins, lt: 1}}\n"
    text += f"destinations:\n  - {{name: out, {settings}}}\n"
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1 and message in problems[0], problems
    assert "destination" in problems[0] and str(tmp_path / "a.yaml") in problems[0]


def test_numbers_no_comparison_can_use_are_problems(tmp_path):
    huge = 10**400
    text = AUDIENCES + (
        f"  - {{name: huge, entity: account, where: {{custom_trait: seats, equals: {huge}}}}}\n"
        "  - {name: not_a_number, entity: account, where: {custom_trait: seats, gt: .nan}}\n"
        "  - {name: endless, entity: account, where: {custom_trait: seats, in: [1, .inf]}}\n"
    )
    problems = problems_of(tmp_path, text)
    assert [p.split(": ")[1].split(".")[0] for p in problems] == [
        "audiences[1] (huge)", "audiences[2] (not_a_number)", "audiences[3] (endless)"]  # fmt: skip
    assert "must be a finite number" in problems[0] and "finite number" in problems[1]


def test_unreadable_files_mixed_keys_and_sections_of_another_type_are_problems(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "lock.yaml").symlink_to(tmp_path / "nowhere")
    problems = problems_of(tmp_path, "traits: {}\n2: 3\nfoo: 1\n")
    assert [problem.removeprefix(f"{tmp_path}/") for problem in problems] == [
        "a.yaml:1: traits must be a list",  # (in the order of the files and lines)
        "a.yaml:2: unknown section 2 (YAML reads the key 2 as a number); expected traits, "
        "audiences, destinations",
        "a.yaml:3: unknown section 'foo'; expected traits, audiences, destinations",
        "folder.yaml: cannot be read: Is a directory",
        "lock.yaml: cannot be read: No such file or directory",
    ], problems


@pytest.mark.parametrize("window", ["999999999 days", "9999999999 days", "36501 days"])
def test_windows_over_a_century_are_named(tmp_path, window):
    problems = problems_of(tmp_path, GOOD.replace("window: 30 days", f"window: {window}"))
    assert problems == [f"{tmp_path / 'a.yaml'}:7: traits[0] (logins).window: window "
                        f"'{window}' is over 36500 days: use 'all time'"]  # fmt: skip
