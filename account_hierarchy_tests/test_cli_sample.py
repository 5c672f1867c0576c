"""`account-hierarchy sample` writes a deterministic sample and reports it."""

import json

import pytest
from click.testing import CliRunner

from account_hierarchy.cli import main


def test_sample_writes_files_and_reports_jsonl(tmp_path):
    out = tmp_path / "landing"
    args = ["sample", "--out", str(out), "--accounts", "20", "--users", "100", "--days", "2"]
    result = CliRunner().invoke(main, [*args, "--start", "2026-10-05", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    files = sorted(path.name for path in out.iterdir())
    assert report["files"] == len(files) == 8
    assert files[0] == "segment-2026-10-05T00.ndjson"
    assert files[1] == "segment-2026-10-05T06.ndjson.gz"
    assert report["lines"] > 0 and report["dirty_lines"] == sum(
        value for key, value in report.items() if key.startswith("dirty_") and key != "dirty_lines"
    )


def test_sample_if_empty_leaves_existing_files_alone(tmp_path):
    out = tmp_path / "landing"
    out.mkdir()
    (out / "mine.ndjson").write_text("{}\n")
    result = CliRunner().invoke(main, ["sample", "--out", str(out), "--if-empty"])
    assert result.exit_code == 0
    assert [path.name for path in out.iterdir()] == ["mine.ndjson"]


def test_sample_if_empty_ignores_hidden_files(tmp_path):
    out = tmp_path / "landing"
    out.mkdir()
    (out / ".gitkeep").touch()
    args = ["sample", "--out", str(out), "--if-empty", "--accounts", "5", "--users", "10"]
    result = CliRunner().invoke(main, [*args, "--days", "1"])
    assert result.exit_code == 0
    assert len(list(out.glob("segment-*"))) == 4


def test_sample_table_output_and_landing_dir_default(tmp_path, monkeypatch):
    monkeypatch.setenv("AH_LANDING_DIR", str(tmp_path / "env-landing"))
    args = ["sample", "--accounts", "5", "--users", "10", "--days", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    assert "folder" in result.output.splitlines()[0]
    assert len(list((tmp_path / "env-landing").iterdir())) == 4


@pytest.mark.parametrize("activity", ["0", "nan", "inf", "-1"])
def test_sample_refuses_an_activity_that_is_no_finite_positive_number(tmp_path, activity):
    args = ["sample", "--out", str(tmp_path), "--accounts", "1", "--users", "1", "--days", "1"]
    result = CliRunner().invoke(main, [*args, "--activity", activity])
    assert result.exit_code == 2 and "Invalid value for '--activity'" in result.output
    assert list(tmp_path.iterdir()) == []


def test_sample_starts_on_a_day_not_at_a_time(tmp_path):
    args = ["sample", "--out", str(tmp_path / "out"), "--accounts", "1", "--users", "1"]
    result = CliRunner().invoke(main, [*args, "--start", "2026-10-01T05:00"])
    assert result.exit_code == 2 and "Invalid value for '--start'" in result.output
    assert not (tmp_path / "out").exists()


def test_sample_refuses_days_past_the_year_9999_before_writing(tmp_path):
    args = ["sample", "--out", str(tmp_path / "out"), "--accounts", "1", "--users", "1"]
    result = CliRunner().invoke(main, [*args, "--days", "2", "--start", "9999-12-31"])
    assert (
        result.exit_code == 2 and "2 days from 9999-12-31 run past the year 9999" in result.output
    )
    assert not (tmp_path / "out").exists()


def test_sample_refuses_a_start_its_accounts_history_cannot_precede_before_writing(tmp_path):
    args = ["sample", "--out", str(tmp_path / "out"), "--accounts", "1", "--users", "1"]
    result = CliRunner().invoke(main, [*args, "--days", "1", "--start", "0001-01-01"])
    assert result.exit_code == 2, result.output
    assert "start 0001-01-01 is too early" in result.output and "0007-11-07 or later" in (
        result.output
    )
    assert not (tmp_path / "out").exists()


def test_sample_writes_years_before_1000_in_four_digits(tmp_path):
    """File names and timestamps say `0100-01-01T00`, not `100-01-01T00` (no ISO time)."""
    out = tmp_path / "out"
    args = ["sample", "--out", str(out), "--accounts", "2", "--users", "3", "--days", "1"]
    assert CliRunner().invoke(main, [*args, "--start", "0100-01-01"]).exit_code == 0
    first = out / "segment-0100-01-01T00.ndjson"
    assert sorted(path.name for path in out.iterdir())[0] == first.name
    event = json.loads(first.read_text().splitlines()[0])
    assert event["timestamp"].startswith("0100-01-01T0"), event["timestamp"]


def test_sample_into_a_folder_that_cannot_be_made_names_it(tmp_path):
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "landing"
    args = ["sample", "--out", str(out), "--accounts", "1", "--users", "1", "--days", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output == f"Error: {out}: Not a directory\n"
