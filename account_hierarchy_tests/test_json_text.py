"""JSON text as DuckDB keeps it reads in Python, non-finite numbers included."""

import math

import duckdb

from account_hierarchy.json_text import parse_json


def test_every_spelling_duckdb_accepts_reads_as_a_float_and_strings_stay():
    text = '{"a": nan, "b": -INF, "c": [Infinity, -nan, inf], "nan": "nan, inf", "d": 1e999}'
    assert duckdb.sql("SELECT json_valid($t)", params={"t": text}).fetchone() == (True,)
    value = parse_json(text)
    assert math.isnan(value["a"]) and math.isnan(value["c"][1])
    assert (value["b"], value["c"][0], value["c"][2]) == (-math.inf, math.inf, math.inf)
    assert value["nan"] == "nan, inf" and value["d"] == math.inf
