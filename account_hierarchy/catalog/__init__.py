"""The catalog: traits (and later audiences and destinations) defined by users in YAML files."""
