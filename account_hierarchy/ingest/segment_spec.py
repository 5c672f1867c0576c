"""The Segment spec rules that decide whether a landing line is a loadable message."""

# Message types we load. Anything else (including Segment's `alias`) is quarantined.
MESSAGE_TYPES = ("track", "identify", "group", "page", "screen")

# Segment rejects messages over 32 KB and drops messageIds over 100 characters.
MAX_MESSAGE_BYTES = 32 * 1024
MAX_MESSAGE_ID_CHARS = 100

# A `timestamp` more than this far after `receivedAt` is a client clock error, not an event;
# a `receivedAt` more than this far after its file was written is no receipt time.
MAX_FUTURE_SKEW_HOURS = 24

# JSON value types accepted for id fields: numbers (integers or not) are turned into strings,
# as Segment does, written as Python writes them (`1e3` becomes "1000.0").
ID_JSON_TYPES = ("VARCHAR", "BIGINT", "UBIGINT", "DOUBLE")

# Ids are trimmed of white space at both ends, as Python's `str.strip` does (spaces, tabs, line
# breaks, Unicode spaces), and absent when blank. (An RE2 class, as DuckDB's regexes are.)
_WHITE_SPACE = r"[\s\x{0B}\x{1C}-\x{1F}\x{85}\p{Z}]"


def stripped_sql(text: str) -> str:
    """DuckDB SQL for the SQL expression `text` without white space at either end (DuckDB's
    `trim` keeps tabs and line breaks); only text with white space at an end is rewritten,
    which is faster than `trim`."""
    ends = f"'^{_WHITE_SPACE}+|{_WHITE_SPACE}+$'"
    return (
        f"CASE WHEN regexp_matches({text}, '^{_WHITE_SPACE}|{_WHITE_SPACE}$') "
        f"THEN regexp_replace({text}, {ends}, '', 'g') ELSE {text} END"
    )


# When `timestamp` is absent the event time falls back to these fields, in this order.
TIMESTAMP_FALLBACKS = ("originalTimestamp", "receivedAt")
