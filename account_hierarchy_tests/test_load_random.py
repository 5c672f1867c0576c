"""Randomised exactly-once test of ingestion: seeded random landing files (copies of messages in
the same file, in other files and in other hours, a file landed again under another name, dirty
lines, gzip) ingested as random windows in a random order, some more than once, then late files.

Whatever the order, every run's counts add up, and once every hour has been ingested after the
last file landed: each valid message is loaded exactly once (as one of its copies), every dirty
line is quarantined, and every other line is a duplicate of a loaded copy. `AH_RANDOM_SEEDS`
(comma-separated) chooses the seeds.
"""

import json
import os
import random
from datetime import UTC, datetime, timedelta

import pytest

from account_hierarchy.ingest.load import STORED_LINES_SQL, ingest_window
from account_hierarchy_tests.conftest import PARTITIONS_START, message, random_seeds, write_lines
from account_hierarchy_tests.reference import file_lines, is_valid

SEEDS = random_seeds("1,2,3")
FIRST = datetime(2026, 10, 1, 8)
HOURS = 6
DIRTY = ["{not json", "[1]", "", json.dumps({"type": "alias", "messageId": "x", "userId": "u"})]


def random_line(rng: random.Random, ids: list[str]) -> dict | str:
    """A dirty line now and then; otherwise a message whose id may repeat an earlier one."""
    if rng.random() < 0.08:
        return rng.choice(DIRTY)
    if ids and rng.random() < 0.25:
        message_id = rng.choice(ids)
    else:
        message_id = f"m{len(ids)}"
        ids.append(message_id)
    moment = FIRST + timedelta(seconds=rng.randrange(HOURS * 3600))
    return message(message_id, moment.isoformat() + "Z")


def land(rng: random.Random, landing, ids: list[str], names: list[str], files: int) -> None:
    """Write `files` random files, and sometimes land one of them again under another name
    (indexed after it, in the same run or a later one, so that it is the copy). Files are
    dated in the last hour: a file of dirty lines only has its lines in that hour."""
    written = (FIRST + timedelta(hours=HOURS) - timedelta(seconds=1)).replace(tzinfo=UTC)
    for _ in range(files):
        name = f"f{len(names)}.ndjson" + (".gz" if rng.random() < 0.3 else "")
        lines = [random_line(rng, ids) for _ in range(rng.randrange(1, 40))]
        write_lines(landing / name, lines, gz=name.endswith(".gz"), bom=rng.random() < 0.2)
        names.append(name)
    if rng.random() < 0.7:
        original = rng.choice(names)
        copy = f"re{len(names)}-{original}"  # (after the original, in path order)
        (landing / copy).write_bytes((landing / original).read_bytes())
        names.append(copy)
    for name in names:
        os.utime(landing / name, (written.timestamp(), written.timestamp()))


def ingest_randomly(rng: random.Random, con, landing) -> None:
    """Random windows (an hour, a range, everything) in a random order; each run's counts add
    up. Every hour is covered at least once, last of all by the final pass."""
    hours = [FIRST + timedelta(hours=h) for h in range(HOURS)]
    windows = []
    for _ in range(rng.randrange(2, 8)):
        start = rng.randrange(HOURS)
        windows.append((hours[start], hours[start] + timedelta(hours=rng.randrange(1, 4))))
    windows += [(hour, hour + timedelta(hours=1)) for hour in rng.sample(hours, HOURS)]
    for start, end in windows:
        report = ingest_window(con, landing, start, end, PARTITIONS_START)
        assert report.lines_read == report.loaded + report.quarantined + report.duplicates
        indexed, stored = con.execute(STORED_LINES_SQL, {"start": start, "end": end}).fetchone()
        assert indexed == stored > 0 or indexed == stored == report.lines_read == 0


def expected_lines(landing, names: list[str]) -> tuple[dict, set, set]:
    """From the files themselves, read by the plain-Python reference: each valid message's
    copies, the dirty lines, and every line (as `file:line`)."""
    copies, dirty, every = {}, set(), set()
    for name in names:
        for number, text in enumerate(file_lines(landing / name), start=1):
            label = f"{name}:{number}"
            every.add(label)
            if is_valid(text):
                copies.setdefault(json.loads(text)["messageId"], set()).add(label)
            else:
                dirty.add(label)
    return copies, dirty, every


@pytest.mark.parametrize("seed", SEEDS)
def test_every_line_once_whatever_the_order(con, landing, seed):
    rng = random.Random(seed)
    ids, names = [], []
    land(rng, landing, ids, names, files=rng.randrange(2, 6))
    ingest_randomly(rng, con, landing)
    land(rng, landing, ids, names, files=rng.randrange(1, 3))  # late files
    ingest_randomly(rng, con, landing)

    copies, dirty, every = expected_lines(landing, names)
    loaded = con.execute(
        "SELECT message_id, source_file || ':' || source_line FROM raw_events"
    ).fetchall()
    assert sorted(m for m, _ in loaded) == sorted(copies)
    assert all(label in copies[m] for m, label in loaded)
    copied_files = {name for name in names if name.startswith("re")}
    quarantined = {f"{f}:{n}" for f, n in con.execute(
        "SELECT source_file, source_line FROM quarantined_lines").fetchall()}  # fmt: skip
    assert quarantined == {label for label in dirty if label.split(":")[0] not in copied_files}
    duplicates = con.execute(
        "SELECT source_file || ':' || source_line, duplicate_of FROM duplicate_lines"
    ).fetchall()
    kept = {label for _, label in loaded}
    assert {label for label, _ in duplicates} == every - kept - quarantined
    assert len(duplicates) + len(kept) + len(quarantined) == len(every)
    for label, original in duplicates:
        assert original in every and original != label
