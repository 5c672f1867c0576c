"""The catalog: traits, audiences and destinations defined by users in YAML files."""
