"""Warehouse connections follow the settings."""

import pytest

from account_hierarchy.warehouse import connect


def test_memory_limit_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AH_DUCKDB_MEMORY_LIMIT", "300MB")
    con = connect(tmp_path / "wh.duckdb")
    (limit,) = con.execute("SELECT current_setting('memory_limit')").fetchone()
    assert limit in ("286.1 MiB", "300.0 MB")
    con.close()


def test_a_malformed_memory_limit_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("AH_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="AH_DUCKDB_MEMORY_LIMIT='lots'"):
        connect(tmp_path / "wh.duckdb")
