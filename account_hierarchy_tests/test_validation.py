"""Frame validation names every broken rule and the rows breaking it, nulls included."""

import ibis
import ibis.expr.datatypes as dt
import pandera.ibis as pa
import pytest
from pandera.errors import SchemaErrors

from account_hierarchy.validation import (
    FrameValidationError,
    Rule,
    build_schema,
    unique,
    validate_table,
)

RULES = [unique("id"), Rule("score >= 0", lambda t: t.score >= 0)]
SCHEMA = build_schema(
    "scores",
    {"id": pa.Column(dt.string), "score": pa.Column(dt.float64), "note": pa.Column(nullable=True)},
    RULES,
)


def check(rows: dict, schema: dict | None = None) -> str | None:
    table = ibis.duckdb.connect().create_table("scores", ibis.memtable(rows, schema=schema))
    try:
        validate_table(SCHEMA, table, RULES, ["id"])
    except FrameValidationError as error:
        return str(error)
    return None


def test_valid_rows_pass():
    assert check({"id": ["a", "b"], "score": [1.0, 2.0], "note": [None, "x"]}) is None


def test_nulls_and_nans_in_required_columns_are_named_with_their_rows():
    message = check({"id": ["a", None, "c"], "score": [1.0, 2.0, float("nan")],
                     "note": [None, None, "x"]})  # fmt: skip
    assert "column id must not be null" in message
    assert "column score must not be null" in message
    assert "broken by 1 row(s): c" in message
    assert "note" not in message


def test_rules_and_nulls_are_reported_together():
    message = check({"id": ["a", "a", None], "score": [-1.0, 2.0, 3.0], "note": [1, 2, 3]})
    assert message.startswith("scores failed validation:")
    assert "rule 'one row per id' broken by 2 row(s)" in message
    assert "rule 'score >= 0' broken by 1 row(s): a" in message
    assert "column id must not be null" in message


def test_the_schema_alone_checks_the_same_rules():
    """pandera on its own (each check its own query) breaks the rules `validate_table` counts
    in one query."""
    table = ibis.duckdb.connect().create_table(
        "scores", ibis.memtable({"id": ["a", "a"], "score": [-1.0, 2.0], "note": ["x", None]})
    )
    with pytest.raises(SchemaErrors) as raised:
        SCHEMA.validate(table, lazy=True)
    assert set(raised.value.failure_cases["check"]) == {"one row per id", "score >= 0"}


def test_an_empty_table_passes():
    types = {"id": "string", "score": "float64", "note": "string"}
    assert check({"id": [], "score": [], "note": []}, types) is None


def test_a_column_of_the_wrong_type_is_named():
    message = check({"id": ["a"], "score": ["high"], "note": ["x"]})
    assert "score" in message and "dtype" in message


def test_rules_and_checks_outside_each_other_are_both_enforced():
    """A check of the schema that is not one of the rules runs (as pandera runs it), before
    the rules; a rule the schema lacks is still checked."""
    extra = Rule("score <= 10", lambda t: t.score <= 10)
    schema = build_schema("scores", SCHEMA.columns, [RULES[0], extra])

    def message(scores: list[float]) -> str:
        table = ibis.duckdb.connect().create_table(
            "scores", ibis.memtable({"id": ["a", "a"], "score": scores, "note": ["x", None]})
        )
        with pytest.raises(FrameValidationError) as raised:
            validate_table(schema, table, RULES, ["id"])
        return str(raised.value)

    assert "score <= 10" in message([-1.0, 20.0])
    rules_broken = message([-1.0, 2.0])
    assert "rule 'score >= 0' broken by 1 row(s): a" in rules_broken
    assert "rule 'one row per id' broken by 2 row(s)" in rules_broken
