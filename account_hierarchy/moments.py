"""Text naming a moment, as a UTC timestamp, in DuckDB.

Text with an offset (`+02:00`) or a zone name (`America/New_York`) is read by the TIMESTAMPTZ
cast, which applies it. Text without either is UTC and takes the plain TIMESTAMP cast: DuckDB's
TIMESTAMPTZ cast carries the last zone name it met into the zoneless texts after it in the
same vector (`10:05 EST` then `10:05` gives 15:05 twice), so zoneless text must never reach it.
"""

from datetime import datetime

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import sqlglot
from sqlglot import exp

# A date (`-` or `/` between its parts), optionally with a time (`T`, `t` or any white space
# between, as the TIMESTAMP cast reads), and nothing more: no zone, no offset.
ZONELESS = (
    r"^[ \t\n\r\v\f]*[0-9]+[-/][0-9]{1,2}[-/][0-9]{1,2}"
    r"([Tt \t\n\r\v\f]+[0-9]{1,2}(:[0-9]{1,2}(:[0-9]{1,2}([.][0-9]*)?)?)?)?[ \t\n\r\v\f]*$"
)
# A time to the minute with a zone (`10:05Z`, `10:05+02:00`), which the casts reject.
MINUTES_ONLY = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2})(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"
_WITH_SECONDS = r"\1:00\2"
DIGIT_FIRST = r"^\s*[0-9]"
# An offset RFC 3339 does not allow (hours past 23, minutes or seconds past 59: `+99:99`), which
# the TIMESTAMPTZ cast would apply.
BAD_OFFSET = (
    r":[0-9]{2}([.][0-9]*)? *[+-]((2[4-9]|[3-9][0-9])(:?[0-9]{2}){0,2}"
    r"|[0-9]{2}:?[6-9][0-9](:?[0-9]{2})?|[0-9]{2}:?[0-9]{2}:?[6-9][0-9]) *$"
)
# A leap second (`23:59:60Z`, which RFC 3339 allows and the casts reject), read as the second
# after `:59` (the next minute's first, as PostgreSQL reads it).
LEAP_SECOND = r"(:[0-9]{1,2}):60([^0-9]|$)"
_BEFORE_LEAP = r"\1:59\2"
# The moments Python's datetime (and Spark's TIMESTAMP) can hold.
EARLIEST, LATEST = datetime.min, datetime.max
_PLACEHOLDER = "moment_text"


def utc_sql(text: str) -> str:
    """DuckDB SQL reading the SQL expression `text` as a UTC TIMESTAMP (NULL when it names no
    moment, or one outside the years 1 to 9999, which Python and Spark cannot hold). Text ending
    in `Z` (UTC, as Segment's libraries write it) also takes the plain cast, six times faster
    than the TIMESTAMPTZ cast and equal to it on such text; RFC 3339's lower-case `t` and `z`,
    times to the minute and leap seconds are read after a rewrite, which only runs for the rare
    texts the casts reject. Only text starting with a digit, and without an offset RFC 3339
    refuses, reaches the TIMESTAMPTZ cast, which also reads the words `epoch` and `infinity`."""
    dated = (
        f"(regexp_matches({text}, '{DIGIT_FIRST}') AND NOT regexp_matches({text}, '{BAD_OFFSET}'))"
    )

    def read(moment_text: str) -> str:
        return (
            f"CASE WHEN suffix({moment_text}, 'Z') THEN try_cast({moment_text} AS TIMESTAMP) "
            f"WHEN regexp_matches({moment_text}, '{ZONELESS}') "
            f"THEN try_cast(upper({moment_text}) AS TIMESTAMP) "
            f"WHEN {dated} THEN try_cast({moment_text} AS TIMESTAMPTZ)::TIMESTAMP END"
        )

    # (a leap second or a time to the minute, never both; so written, the optimizer does not
    # compute the rewrites for every text)
    leap_second = f"regexp_matches({text}, '{LEAP_SECOND}')"
    before_leap = f"regexp_replace(upper({text}), '{LEAP_SECOND}', '{_BEFORE_LEAP}')"
    with_seconds = f"regexp_replace(upper({text}), '{MINUTES_ONLY}', '{_WITH_SECONDS}')"
    rewritten = (
        f"CASE WHEN {leap_second} THEN {read(before_leap)} + INTERVAL 1 SECOND "
        f"ELSE {read(with_seconds)} END"
    )
    moment = f"coalesce({read(text)}, {rewritten})"
    # (DuckDB computes `moment` once)
    bounds = " AND ".join(f"TIMESTAMP '{bound.isoformat(sep=' ')}'" for bound in (EARLIEST, LATEST))
    return f"CASE WHEN ({moment}) BETWEEN {bounds} THEN ({moment}) END"


def utc_expression(text: exp.Expression) -> exp.Expression:
    """`utc_sql` as a sqlglot expression over the expression `text`."""
    template = sqlglot.parse_one(utc_sql(_PLACEHOLDER), dialect="duckdb")
    return template.transform(
        lambda node: (
            text.copy() if isinstance(node, exp.Column) and node.name == _PLACEHOLDER else node
        )
    )


def utc_value(text: ir.StringValue) -> ir.TimestampValue:
    """`utc_sql` as an Ibis expression (for the DuckDB backend)."""
    dated = text.re_search(DIGIT_FIRST) & ~text.re_search(BAD_OFFSET)

    def read(moment_text: ir.StringValue) -> ir.TimestampValue:
        return ibis.cases(
            (moment_text.endswith("Z"), moment_text.try_cast(dt.Timestamp())),
            (moment_text.re_search(ZONELESS), moment_text.upper().try_cast(dt.Timestamp())),
            (dated, moment_text.try_cast(dt.Timestamp(timezone="UTC")).cast(dt.Timestamp())),
        )

    rewritten = ibis.ifelse(
        text.re_search(LEAP_SECOND),
        read(text.upper().re_replace(LEAP_SECOND, _BEFORE_LEAP)) + ibis.interval(seconds=1),
        read(text.upper().re_replace(MINUTES_ONLY, _WITH_SECONDS)),
    )
    moment = read(text).coalesce(rewritten)
    return ibis.ifelse(moment.between(EARLIEST, LATEST), moment, None)
