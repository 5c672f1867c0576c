"""Synthetic Segment sample data: see `account_hierarchy.sample.generator`."""
