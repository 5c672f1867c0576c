"""Each landing line is loaded with typed fields or quarantined with the right reason."""

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from account_hierarchy.ingest.load import ingest_window
from account_hierarchy_tests.conftest import PARTITIONS_START, message, write_lines

DAY = (datetime(2026, 10, 1), datetime(2026, 10, 2))


def ingest_one(con, landing: Path, line: dict | str) -> tuple[list, list]:
    write_lines(landing / "f.ndjson", [message("anchor", "2026-10-01T10:00:00Z"), line])
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    events = con.execute(
        "SELECT * FROM raw_events WHERE message_id <> 'anchor' ORDER BY source_line"
    ).fetchall()
    reasons = con.execute("SELECT reason FROM quarantined_lines").fetchall()
    return events, [reason for (reason,) in reasons]


# Dirty lines and the reasons they are quarantined with.
DIRTY_LINES = [
    ('{"type": "track", "messageId": ', "invalid JSON"),
    ("garbage text", "invalid JSON"),
    ("[1, 2, 3]", "JSON array is not a message object"),
    ("", "empty line"),
    (" \t \f", "empty line"),
    (message("m", type="trak"), 'unknown type "trak"'),
    (message("m", type="alias"), 'unknown type "alias"'),
    ({k: v for k, v in message("m").items() if k != "type"}, "missing type"),
    ({k: v for k, v in message("m").items() if k != "messageId"}, "missing messageId"),
    (message(""), "missing messageId"),
    (message("x" * 101), "messageId over 100 characters"),
    (message("m", messageId=7), "messageId is not a string"),
    (
        {k: v for k, v in message("m").items() if k != "userId"},
        "missing userId and anonymousId",
    ),
    (message("m", userId=""), "missing userId and anonymousId"),
    # (ids are trimmed of white space as Python's `str.strip` does: tabs, line breaks too)
    (message("m", userId="\t\r\n \u00a0\u3000"), "missing userId and anonymousId"),
    (message("m", type="group", event=None, groupId="\t"), "group call without groupId"),
    (message("m", event="\t\n"), "track call without event name"),
    (message(" \t"), "missing messageId"),
    (message("m", userId={"id": 1}), "userId is not a string"),
    (message("m", type="group", event=None), "group call without groupId"),
    (message("m", event=""), "track call without event name"),
    (message("m", event=None), "track call without event name"),
    (message("m", type="screen", event=None, name=["Home"]), "name is not a string"),
    (message("m", properties=[1, 2]), "properties is not an object"),
    (message("m", type="identify", traits="Admin"), "traits is not an object"),
    (message("m", context="web"), "context is not an object"),
    (message("m", context={"groupId": ["a"]}), "context.groupId is not a string"),
    # (no id is made of a number that is not finite: Segment refuses such JSON)
    (message("m", userId=float("nan")), "userId is not a finite number"),
    (message("m", userId=None, anonymousId=float("-inf")), "anonymousId is not a finite number"),
    (
        json.dumps(message("m", type="group", groupId=0.5)).replace("0.5", "1e400"),
        "groupId is not a finite number",
    ),
    (message("m", context={"groupId": float("inf")}), "context.groupId is not a finite number"),
    (message("m", timestamp="not-a-date"), 'unparseable timestamp "not-a-date"'),
    (
        message("m", timestamp="2026-13-45T99:00:00Z"),
        'unparseable timestamp "2026-13-45T99:00:00Z"',
    ),
    (message("m", timestamp=1700000000), 'unparseable timestamp "1700000000"'),
    (message("m", receivedAt="soon"), 'unparseable receivedAt "soon"'),
    # (the reason names the field the event time was read from)
    (
        {k: v for k, v in message("m").items() if k != "timestamp"} | {"originalTimestamp": "x"},
        'unparseable originalTimestamp "x"',
    ),
    (
        {k: v for k, v in message("m").items() if k != "timestamp"}
        | {"receivedAt": "2023-05-01T00:00:00Z"},
        "receivedAt 2023-05-01T00:00:00Z is before the first partition 2024-01-01 00:00:00",
    ),
    (message("m", receivedAt="infinity"), 'unparseable receivedAt "infinity"'),
    (message("m", receivedAt="12026-10-01T10:00:00Z"), 'unparseable receivedAt "12026'),
    (
        {k: v for k, v in message("m").items() if k != "timestamp"},
        "missing timestamp (no timestamp, originalTimestamp or receivedAt)",
    ),
    (
        message("m", timestamp="2023-12-31T23:00:00Z"),
        "timestamp 2023-12-31T23:00:00Z is before the first partition 2024-01-01 00:00:00",
    ),
    (
        message("m", timestamp="2026-10-03T10:00:00Z", receivedAt="2026-10-01T10:00:00Z"),
        "timestamp 2026-10-03T10:00:00Z is more than 24 hours after it was received",
    ),
    (message("m", properties={"blob": "x" * 33_000}), "message is 33"),
]


@pytest.mark.parametrize(("line", "reason"), DIRTY_LINES)
def test_dirty_lines_are_quarantined_with_their_reason(con, landing, line, reason):
    events, reasons = ingest_one(con, landing, line)
    assert events == []
    assert len(reasons) == 1
    assert reasons[0].startswith(reason)


def test_valid_fields_are_typed(con, landing):
    line = message(
        "m1",
        "2026-10-01T12:30:00.250+02:00",
        userId=42,
        anonymousId="anon",
        context={"groupId": "acct_1", "library": {"name": "analytics.js"}},
        properties={"feature": "reports", "n": 3},
        receivedAt="2026-10-01T10:31:00Z",
    )
    write_lines(landing / "f.ndjson", [line])
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    row = con.execute(
        "SELECT message_id, type, user_id, anonymous_id, context_group_id, event, timestamp, "
        "received_at, properties, event_hour, source_file, source_line FROM raw_events"
    ).fetchone()
    assert row[:6] == ("m1", "track", "42", "anon", "acct_1", "Logged In")
    assert row[6] == datetime(2026, 10, 1, 10, 30, 0, 250000)
    assert row[7] == datetime(2026, 10, 1, 10, 31)
    assert json.loads(row[8]) == {"feature": "reports", "n": 3}
    assert row[9:] == (datetime(2026, 10, 1, 10), "f.ndjson", 1)


def test_page_and_identify_fields(con, landing):
    write_lines(
        landing / "f.ndjson",
        [
            message("p", type="page", event=None, name="Pricing", properties={"path": "/pricing"}),
            message("i", type="identify", event=None, traits={"role": "Admin", "seats": 3}),
            message(
                "g",
                type="group",
                event=None,
                groupId="acct_9",
                traits={"plan": "pro"},
                name={"first": "A"},
            ),  # (only a page or screen name must be a string)
        ],
    )
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    rows = con.execute(
        "SELECT message_id, event, group_id, properties ->> 'path', traits FROM raw_events "
        "ORDER BY message_id"
    ).fetchall()
    assert rows[0][:3] == ("g", None, "acct_9")
    assert json.loads(rows[0][4]) == {"plan": "pro"}
    assert json.loads(rows[1][4]) == {"role": "Admin", "seats": 3}
    assert rows[2][:4] == ("p", "Pricing", None, "/pricing")


def test_timestamps_to_the_minute_are_accepted(con, landing):
    write_lines(
        landing / "f.ndjson",
        [message("a", "2026-10-01T10:05Z"), message("b", "2026-10-01T12:05+02:00")],
    )
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    rows = con.execute("SELECT message_id, timestamp FROM raw_events ORDER BY 1").fetchall()
    assert rows == [("a", datetime(2026, 10, 1, 10, 5)), ("b", datetime(2026, 10, 1, 10, 5))]


# Timestamp texts and the UTC moments they stand for: `Z` texts take a faster cast than the
# others, and both casts must agree with these.
TIMESTAMP_FORMS = [
    ("2026-10-01T10:05:00Z", datetime(2026, 10, 1, 10, 5)),
    ("2026-10-01T10:05:00.123456789Z", datetime(2026, 10, 1, 10, 5, 0, 123456)),
    ("2026-10-01 10:05:00Z", datetime(2026, 10, 1, 10, 5)),
    ("2026-10-01T10:05:00", datetime(2026, 10, 1, 10, 5)),
    ("2026-10-01T10:05:00+0530", datetime(2026, 10, 1, 4, 35)),
    ("2026-10-01T10:05:00.5-08", datetime(2026, 10, 1, 18, 5, 0, 500000)),
    ("2026-10-01T23:05:00+14:00", datetime(2026, 10, 1, 9, 5)),
    ("2026-10-01T10:05:00 America/New_York", datetime(2026, 10, 1, 14, 5)),
    ("2026-10-01T10:05:00 UTC", datetime(2026, 10, 1, 10, 5)),
    ("2026-10-01T10:05Z", datetime(2026, 10, 1, 10, 5)),
    ("2026-10-01t10:05:00.25z", datetime(2026, 10, 1, 10, 5, 0, 250000)),
    ("2026-10-01t10:05+01:00", datetime(2026, 10, 1, 9, 5)),
    # (RFC 3339's leap second: the second after `:59`)
    ("2026-09-30T23:59:60Z", datetime(2026, 10, 1)),
    ("2026-10-01T10:04:60.25+01:00", datetime(2026, 10, 1, 9, 5, 0, 250000)),
    ("2026-10-01 10:04:60", datetime(2026, 10, 1, 10, 5)),
    ("2026-10-01T10:04:61Z", None),
    # (offsets RFC 3339 allows, and ones it does not: hours past 23, minutes past 59)
    ("2026-10-01T23:59:00+23:59", datetime(2026, 10, 1)),
    ("2026-10-01T10:05:00+99:99", None),
    ("2026-10-01T10:05:00-2400", None),
    ("2026-10-01T10:05:00+00:75", None),
    ("2026-10-01T10:05+25", None),
    ("2026-10-01T10:05:00+02:00Z", None),
    ("2026-10-01T10:05:00 EST Z", None),
    ("2026-10-01T10:05:00ZZ", None),
    # (DuckDB's casts read these words, and moments Python cannot hold)
    ("infinity", None),
    ("-infinity", None),
    ("epoch", None),
    ("10000-01-01T00:00:00Z", None),
    ("9999-12-31T23:30:00-01:00", None),
    ("0000-06-01T00:00:00Z", None),
]


@pytest.mark.parametrize(("text", "moment"), TIMESTAMP_FORMS)
def test_timestamp_forms(con, landing, text, moment):
    events, reasons = ingest_one(
        con, landing, message("m", timestamp=text, receivedAt="2026-10-01T12:00:00Z")
    )
    if moment is None:
        assert (events, reasons) == ([], [f'unparseable timestamp "{text}"'])
    else:
        assert (reasons, events[0][7]) == ([], moment)


def test_a_zone_name_does_not_carry_to_the_times_after_it(con, landing):
    """Text without a zone is UTC whatever lines come before it (DuckDB's TIMESTAMPTZ cast
    would apply the last zone name it read to it)."""
    texts = {
        "a": ("2026-10-01T10:05:00 America/New_York", datetime(2026, 10, 1, 14, 5)),
        "b": ("2026-10-01T10:05:00", datetime(2026, 10, 1, 10, 5)),
        "c": ("2026-10-01 10:05:00.000", datetime(2026, 10, 1, 10, 5)),
        "d": ("2026-10-01T10:05:00 EST", datetime(2026, 10, 1, 15, 5)),
        "e": ("2026-10-01t10:05:00", datetime(2026, 10, 1, 10, 5)),
        "f": ("2026-10-01T10:05:00+02:00", datetime(2026, 10, 1, 8, 5)),
        "g": ("2026-10-01T10:05:00", datetime(2026, 10, 1, 10, 5)),
        "h": ("2026-10-01 10:05:00 America/New_York", datetime(2026, 10, 1, 14, 5)),
        "i": ("2026/10/01 10:05:00", datetime(2026, 10, 1, 10, 5)),
        "j": ("2026-10-01  10:05:00", datetime(2026, 10, 1, 10, 5)),
        "l": ("2026-10-01T10:05:00 America/New_York", datetime(2026, 10, 1, 14, 5)),
        **{  # (other white space between the date and the time: still no zone)
            f"ws{n}": (f"2026-10-01{space}10:05:00", datetime(2026, 10, 1, 10, 5))
            for n, space in enumerate(["\t", "\r", "\v", "\f", " \t ", "T\t"])
        },
    }
    lines = [
        message(mid, timestamp=text, receivedAt="2026-10-01T09:00:00 Asia/Tokyo")
        for mid, (text, _) in texts.items()
    ]
    lines.append(message("k", timestamp="2026-10-01T23:00:00Z", receivedAt="2026/10/01 00:00:00"))
    write_lines(landing / "f.ndjson", lines)
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    rows = con.execute("SELECT message_id, timestamp, received_at FROM raw_events").fetchall()
    assert {mid: at for mid, at, _ in rows} == {
        **{mid: moment for mid, (_, moment) in texts.items()},
        "k": datetime(2026, 10, 1, 23),  # 23 hours after its zoneless receipt: loaded
    }
    assert {at for mid, _, at in rows if mid != "k"} == {datetime(2026, 10, 1, 0)}


def test_timestamp_falls_back_to_original_timestamp_then_received_at(con, landing):
    no_timestamp = {k: v for k, v in message("a").items() if k != "timestamp"}
    write_lines(
        landing / "f.ndjson",
        [
            no_timestamp
            | {"originalTimestamp": "2026-10-01T03:00:00Z", "receivedAt": "2026-10-01T04:00:00Z"},
            {k: v for k, v in message("b").items() if k != "timestamp"}
            | {"receivedAt": "2026-10-01T05:00:00Z"},
        ],
    )
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    rows = con.execute("SELECT message_id, timestamp FROM raw_events ORDER BY 1").fetchall()
    assert rows == [("a", datetime(2026, 10, 1, 3)), ("b", datetime(2026, 10, 1, 5))]


def test_quarantined_lines_without_a_time_take_their_neighbours_hour(con, landing):
    """The nearest earlier line with an hour, else the nearest later one: across runs of
    consecutive orphans, and per file when files are classified together."""
    write_lines(
        landing / "f.ndjson",
        [
            "top garbage",
            "more top garbage",
            message("a", "2026-10-01T03:10:00Z"),
            "middle garbage",
            "more middle garbage",
            message("b", "2026-10-01T07:10:00Z"),
            message("c", "bad", receivedAt="2026-10-01T09:00:00Z"),
            "tail garbage",
            "more tail garbage",
        ],
    )
    write_lines(landing / "g.ndjson", ["garbage", message("d", "2026-10-01T05:10:00Z")])
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    rows = con.execute(
        "SELECT source_file, source_line, hour(event_hour) FROM quarantined_lines ORDER BY 1, 2"
    ).fetchall()
    assert rows == [
        ("f.ndjson", 1, 3),
        ("f.ndjson", 2, 3),
        ("f.ndjson", 4, 3),
        ("f.ndjson", 5, 3),
        ("f.ndjson", 7, 9),
        ("f.ndjson", 8, 9),
        ("f.ndjson", 9, 9),
        ("g.ndjson", 1, 5),
    ]


def test_quarantined_lines_with_a_usable_time_take_its_hour(con, landing):
    """Whatever else a line broke, a usable event time decides its hour; a time before the
    first partition or too far after receipt is not usable, so `receivedAt` decides."""
    write_lines(
        landing / "f.ndjson",
        [
            message("a", "2026-10-01T10:05:00Z"),
            message("trak", "2026-10-01T05:00:00Z", type="trak"),
            message("ctx", "2026-10-01T03:59:59Z", receivedAt="2026-10-01T04:00:01Z", context=1),
            message("big", "2026-10-01T06:00:00Z", properties={"blob": "x" * 33_000}),
            message("early", "2023-12-31T23:00:00Z", receivedAt="2026-10-01T07:30:00Z"),
            message("ahead", "2026-10-03T10:00:00Z", receivedAt="2026-10-01T08:00:00Z"),
        ],
    )
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    rows = con.execute(
        "SELECT source_line, hour(event_hour) FROM quarantined_lines ORDER BY 1"
    ).fetchall()
    assert rows == [(2, 5), (3, 3), (4, 6), (5, 7), (6, 8)]


def test_no_line_belongs_to_an_hour_long_after_its_file_was_written(con, landing):
    """A `receivedAt` more than 24 hours after the file was written is quarantined, and decides
    no hour: a line received in 2999 would belong to an hour no run reaches for centuries."""
    path = write_lines(
        landing / "f.ndjson",
        [
            message("future", "2999-01-01T00:00:00Z", receivedAt="2999-01-01T00:00:00Z"),
            message("bad", "not-a-date", receivedAt="2999-01-01T00:00:00Z"),
            message("a", "2026-10-01T10:05:00Z", receivedAt="2026-10-02T11:00:00Z"),
            message("b", "2026-10-01T11:05:00Z", receivedAt="2026-10-02T13:00:00Z"),
        ],
    )
    written = datetime(2026, 10, 1, 12, 30, tzinfo=UTC).timestamp()
    os.utime(path, (written, written))
    ingest_window(con, landing, datetime(2024, 1, 1), datetime(2027, 1, 1), PARTITIONS_START)
    assert con.execute("SELECT message_id FROM raw_events").fetchall() == [("a",)]
    rows = con.execute(
        "SELECT source_line, event_hour, reason FROM quarantined_lines ORDER BY 1"
    ).fetchall()
    late = "is more than 24 hours after the file was written"
    assert rows == [
        (1, datetime(2026, 10, 1, 10), f"receivedAt 2999-01-01T00:00:00Z {late}"),
        (2, datetime(2026, 10, 1, 10), 'unparseable timestamp "not-a-date"'),
        (4, datetime(2026, 10, 1, 10), f"receivedAt 2026-10-02T13:00:00Z {late}"),
    ]


def test_ids_are_trimmed_of_white_space(con, landing):
    """Spaces, tabs, line breaks and Unicode spaces at either end of an id are not part of it."""
    write_lines(
        landing / "f.ndjson",
        [
            message("a", userId="\tuser_1\n", context={"groupId": "\u00a0acct 1\r\n"}),
            message("b", type="group", event=None, userId=" user_1", groupId="\x1facct 1\x85"),
        ],
    )
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    rows = con.execute(
        "SELECT user_id, context_group_id, group_id FROM raw_events ORDER BY message_id"
    ).fetchall()
    assert rows == [("user_1", "acct 1", None), ("user_1", None, "acct 1")]


def test_numeric_ids_are_stored_as_text(con, landing):
    write_lines(
        landing / "f.ndjson",
        [
            message("a", userId=42, context={"groupId": 7}),
            message("b", userId=1.5, anonymousId=1e3),
            message("c", userId=18446744073709551616, type="group", event=None, groupId=-3),
        ],
    )
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    rows = con.execute(
        "SELECT message_id, user_id, anonymous_id, group_id, context_group_id FROM raw_events "
        "ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("a", "42", None, None, "7"),
        ("b", "1.5", "1000.0", None, None),
        ("c", "18446744073709551616", None, "-3", None),
    ]


def test_crlf_missing_final_newline_gzip_and_bad_utf8(con, landing):
    (landing / "crlf.ndjson").write_bytes(
        (json.dumps(message("a")) + "\r\n" + json.dumps(message("b"))).encode()
    )
    write_lines(landing / "z.ndjson.gz", [message("c")], gz=True)
    (landing / "bad.jsonl").write_bytes(
        json.dumps(message("d")).encode() + b"\n" + b'{"x": "\xff"}\n'
    )
    broken = landing / "broken.ndjson.gz"
    broken.write_bytes(b"not gzip at all")
    written = datetime(2026, 10, 1, 6, 30, tzinfo=UTC).timestamp()
    os.utime(broken, (written, written))  # a file with no readable line belongs to its mtime hour
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    loaded = con.execute("SELECT message_id FROM raw_events ORDER BY 1").fetchall()
    assert loaded == [("a",), ("b",), ("c",), ("d",)]
    quarantined = con.execute(
        "SELECT source_file, source_line, reason FROM quarantined_lines ORDER BY 1"
    ).fetchall()
    assert quarantined[0] == ("bad.jsonl", 2, "line is not valid UTF-8")
    assert quarantined[1][:2] == ("broken.ndjson.gz", 1)
    assert quarantined[1][2].startswith("unreadable gzip file")
    (hour,) = con.execute(
        "SELECT event_hour FROM quarantined_lines WHERE source_file = 'broken.ndjson.gz'"
    ).fetchone()
    assert hour == datetime(2026, 10, 1, 6)


def test_a_byte_order_mark_is_not_part_of_the_first_line(con, landing):
    bom = b"\xef\xbb\xbf"
    (landing / "bom.ndjson").write_bytes(bom + json.dumps(message("a")).encode() + b"\n")
    (landing / "bom-bad-utf8.ndjson").write_bytes(
        bom + json.dumps(message("b")).encode() + b"\n" + b'{"x": "\xff"}\n'
    )
    (landing / "inner.ndjson").write_bytes(json.dumps(message("c")).encode() + b"\n" + bom + b"\n")
    ingest_window(con, landing, *DAY, PARTITIONS_START)
    loaded = con.execute("SELECT message_id, source_line FROM raw_events ORDER BY 1").fetchall()
    assert loaded == [("a", 1), ("b", 1), ("c", 1)]
    quarantined = con.execute(
        "SELECT source_file, source_line, reason FROM quarantined_lines ORDER BY 1"
    ).fetchall()
    assert quarantined == [("bom-bad-utf8.ndjson", 2, "line is not valid UTF-8"),
                           ("inner.ndjson", 2, "invalid JSON")]  # fmt: skip
