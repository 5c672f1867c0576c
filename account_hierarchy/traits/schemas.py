"""pandera models of `account_traits` and `user_traits`, generated from the definitions."""

import duckdb
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandera.ibis as pa

from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.catalog.models import (
    COUNT_TRAITS,
    Aggregation,
    ComputedTrait,
    FirstValue,
    LastValue,
    MostFrequent,
    SqlTrait,
    UniqueList,
)
from account_hierarchy.validation import Rule, build_schema, ibis_table, unique, validate_table

ID_COLUMNS = {"account": "account_id", "user": "user_id"}


def _column(trait: ComputedTrait) -> pa.Column:
    if isinstance(trait, COUNT_TRAITS):
        return pa.Column(dt.int64)
    if isinstance(trait, Aggregation):
        return pa.Column(dt.float64, nullable=trait.function != "sum")
    if isinstance(trait, FirstValue | LastValue | MostFrequent):
        return pa.Column(dt.string, nullable=True)
    if isinstance(trait, UniqueList):
        return pa.Column()
    return pa.Column(nullable=True)  # SQL traits: whatever the query returns


def trait_schema(entity: str, catalog: Catalog) -> tuple[pa.DataFrameSchema, list]:
    """The schema of one entity's trait table and the rules it checks."""
    id_column = ID_COLUMNS[entity]
    columns = {
        "snapshot_hour": pa.Column(dt.Timestamp(scale=6)),
        id_column: pa.Column(dt.string),
    }
    rules: list = [unique("snapshot_hour", id_column)]
    for located in catalog.traits_of(entity):
        trait = located.trait
        for column in located.columns:
            columns[column] = _column(trait) if not isinstance(trait, SqlTrait) else _column(None)
        if isinstance(trait, COUNT_TRAITS):
            rules.append(Rule(f"{trait.name} >= 0", lambda t, n=trait.name: t[n] >= 0))
    return build_schema(f"{entity}_traits", columns, rules), rules


def validate_traits(
    con: duckdb.DuckDBPyConnection, table: str, entity: str, catalog: Catalog
) -> None:
    """Validate rows about to be written to an entity's trait table."""
    validate_trait_rows(ibis_table(con, table), entity, catalog)


def validate_trait_rows(rows: ir.Table, entity: str, catalog: Catalog) -> None:
    """Validate an entity's trait rows, on whichever engine holds them."""
    schema, rules = trait_schema(entity, catalog)
    validate_table(schema, rows, rules, ["snapshot_hour", ID_COLUMNS[entity]])
