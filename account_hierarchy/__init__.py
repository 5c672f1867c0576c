"""account_hierarchy: an open B2B audience engine built as a Dagster asset graph."""
