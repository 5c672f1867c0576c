"""`--format jsonl` prints every value DuckDB can give a SQL trait as plain JSON; tables and
the UI's previews show nulls empty and lists as JSON."""

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from account_hierarchy.metadata import markdown_preview
from account_hierarchy.output import emit, emit_record

VALUES_SQL = r"""
SELECT TIME '10:05:30' AS at, '8d1e4b0c-2f7a-4c59-9a0e-6d1f1c2b3a4d'::UUID AS id,
       '\x41\xAA'::BLOB AS raw, 2.50::DECIMAL(5, 2) AS price, 'nan'::DOUBLE AS ratio,
       INTERVAL 90 MINUTE AS took, TIMESTAMPTZ '2026-10-01 12:30:00+02' AS moment
"""
EXPECTED = {
    "at": "10:05:30",
    "id": "8d1e4b0c-2f7a-4c59-9a0e-6d1f1c2b3a4d",
    "raw": "Qao=",
    "price": 2.5,
    "ratio": None,
    "took": 5400.0,
    "moment": "2026-10-01T10:30:00",
}


# (DuckDB's own conversion of a TIMESTAMPTZ column to pandas uses a deprecated keyword)
@pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop")
def test_jsonl_prints_times_uuids_and_bytes_from_rows_and_frames(capsys):
    relation = duckdb.sql(VALUES_SQL)
    as_tuple = dict(zip(relation.columns, relation.fetchone(), strict=True))
    as_frame = duckdb.sql(VALUES_SQL).df().to_dict("records")[0]
    emit([as_tuple, as_frame], "jsonl")
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [EXPECTED, EXPECTED]


def test_a_table_prints_lists_and_mappings_as_json(capsys):
    relation = duckdb.sql(
        "SELECT [1.5::DECIMAL(3, 1), 7] AS prices, [TIMESTAMP '2026-10-01 10:00'] AS seen, "
        "{'a': 1} AS parts"
    )
    row = dict(zip(relation.columns, relation.fetchone(), strict=True))
    emit([row], "table")
    values = capsys.readouterr().out.splitlines()[-1].split()
    assert values == ["[1.5,7.0]", '["2026-10-01T10:00:00"]', '{"a":1}']


def test_a_preview_shows_nulls_as_empty_cells_and_lists_as_json():
    """A root's null parent is not shown as the text `nan` (which could be an account id)."""
    rows = "('a1', NULL::VARCHAR, ['a1'], NULL::DOUBLE), ('a2', 'a1', ['a1', 'a2'], 1.5)"
    frame = duckdb.sql(f"SELECT * FROM (VALUES {rows}) AS t(account_id, parent, path, x)").df()
    lines = markdown_preview(frame).splitlines()
    assert [cell.strip() for cell in lines[2].strip("|").split("|")] == ["a1", "", '["a1"]', ""]
    assert [cell.strip() for cell in lines[3].strip("|").split("|")] == [
        "a2",
        "a1",
        '["a1","a2"]',
        "1.5",
    ]


def test_a_preview_cuts_long_text_short():
    frame = pd.DataFrame({"user_id": ["u" * 5000, "u1"], "n": [1, 2]})
    lines = markdown_preview(frame).splitlines()
    assert [cell.strip() for cell in lines[2].strip("|").split("|")] == ["u" * 200 + "…", "1"]
    assert max(map(len, lines)) < 220


def test_tables_write_control_characters_as_escapes(capsys):
    """A tab (or any control character but a line feed) would move the columns after it."""
    emit([{"id": "a\tb", "n\tm": 1}, {"id": "c\x1bd\re\x9bf\x85g\u2028h", "n\tm": 2}], "table")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [
        ["id", "n\\tm"], ["-" * 26, "-" * 6], ["a\\tb", "1"],
        ["c\\x1bd\\re\\x9bf\\x85g\\u2028h", "2"],
    ]  # fmt: skip
    emit_record({"account_id": "A", "traits": {"k\tey": "v\tw"},
                 "users": [{"user_id": "u1", "traits": {"a\tb": "x"}}]}, "table")  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[5].split() == ["k\\tey", "v\\tw"]
    assert [line.split() for line in lines[-3:]] == [
        ["user_id", "traits.a\\tb"], ["-" * 9, "-" * 13], ["u1", "x"],
    ]  # fmt: skip


def test_a_record_keeps_each_value_on_its_line(capsys):
    """A `name: value` line (or the chain of parents) with a line break or a control
    character in an id would print lines that look like fields of their own."""
    emit_record({"account_id": "A\nname: forged", "note": "x\x1b[2Jy",
                 "parent_chain": ["P\r\n1", "P2"]}, "table")  # fmt: skip
    assert capsys.readouterr().out.splitlines() == [
        "account_id: A\\nname: forged", "note: x\\x1b[2Jy", "", "parent_chain:",
        "  P\\r\\n1 > P2",
    ]  # fmt: skip


def test_tables_keep_the_spaces_around_text(capsys):
    emit([{"code": "  007", "name": "x"}], "table")
    assert capsys.readouterr().out.splitlines()[2] == "  007   x"
    emit_record({"account_id": "A", "traits": {"code": " 7", "n": "ab"}}, "table")
    assert capsys.readouterr().out.splitlines()[-2:] == ["code     7", "n       ab"]


def test_tables_show_text_and_numbers_as_they_are(capsys):
    """An id `1e3` is no account 1000, a value `0012` is not 12, and a sum keeps its digits."""
    rows = [{"account_id": "1e3", "code": "0012", "total": 1234567.89},
            {"account_id": "0.10", "code": "1.50", "total": None}]  # fmt: skip
    emit(rows, "table")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[2:]] == [["1e3", "0012", "1234567.89"], ["0.10", "1.50"]]
    emit_record({"account_id": "1e3", "traits": {"code": "0012"}}, "table")
    assert capsys.readouterr().out.splitlines()[-1].split() == ["code", "0012"]
    preview = markdown_preview(duckdb.sql("SELECT '1e3' AS id, 1234567.89::DOUBLE AS x").df())
    assert [cell.strip() for cell in preview.splitlines()[2].strip("|").split("|")] == [
        "1e3", "1234567.89",
    ]  # fmt: skip


def test_tables_show_what_jsonl_shows_for_nan_and_durations(capsys):
    """NaN and infinities are no values (empty, as null in jsonl); a duration is seconds."""
    relation = duckdb.sql(
        "SELECT 'nan'::DOUBLE AS score, 'inf'::DOUBLE AS big, INTERVAL 90 MINUTE AS took, "
        "TIMESTAMP '2026-10-01 10:00' AS seen, 2 AS n, true AS paid, false AS trial"
    )
    emit([dict(zip(relation.columns, relation.fetchone(), strict=True))], "table")
    header, _, values = capsys.readouterr().out.splitlines()
    assert header.split() == ["score", "big", "took", "seen", "n", "paid", "trial"]
    assert values.split() == ["5400.0", "2026-10-01", "10:00:00", "2", "true", "false"]
    emit([{"paid": np.bool_(False)}], "table")
    assert capsys.readouterr().out.splitlines()[-1].strip() == "false"
