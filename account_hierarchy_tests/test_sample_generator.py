"""Tests of the Segment sample generator: determinism, file layout, counts and the company model."""

import gzip
import json
import re
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from account_hierarchy.sample.generator import DEFAULT_START, SampleSummary, generate_sample

SMALL = {"seed": 7, "accounts": 40, "users": 300, "days": 3}
MESSAGE_TYPES = {"track", "identify", "group", "page", "screen"}
DIRTY_KINDS = {"invalid_json", "missing_ids", "bad_timestamp", "unknown_type", "oversized"}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FILE_NAME = re.compile(r"^segment-(\d{4}-\d\d-\d\dT\d\d)\.ndjson(\.gz)?$")
LANDING_PATHS = {"/", "/pricing", "/features", "/customers", "/signup", "/demo"}
SERVICE_ANONYMOUS_ID = "crm_sync"


def read_lines(out_dir: Path) -> list[tuple[str, str]]:
    """(file name, line) for every line of every file, files in name order."""
    lines = []
    for path in sorted(out_dir.iterdir()):
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        lines += [(path.name, line) for line in data.decode().splitlines()]
    return lines


def classify(line: str) -> tuple[str | None, dict | None]:
    """(dirty kind or None, parsed message)."""
    try:
        message = json.loads(line)
    except ValueError:
        return "invalid_json", None
    if not isinstance(message, dict):
        return "invalid_json", None
    if len(line.encode()) > 32 * 1024:
        return "oversized", message
    if message.get("type") not in MESSAGE_TYPES:
        return "unknown_type", message
    if not message.get("userId") and not message.get("anonymousId"):
        return "missing_ids", message
    try:
        datetime.fromisoformat(message["timestamp"])
    except ValueError:
        return "bad_timestamp", message
    return None, message


class Sample:
    """A generated sample, parsed."""

    def __init__(self, out_dir: Path, summary: SampleSummary) -> None:
        self.out_dir, self.summary = out_dir, summary
        self.lines = read_lines(out_dir)
        self.dirty: list[tuple[str, str, dict | None]] = []
        self.valid: list[tuple[str, dict]] = []
        for name, line in self.lines:
            kind, message = classify(line)
            if kind:
                self.dirty.append((kind, name, message))
            else:
                self.valid.append((name, message))
        self.messages = list({m["messageId"]: m for _, m in self.valid}.values())
        self.groups = [m for m in self.messages if m["type"] == "group"]
        self.tracks = [m for m in self.messages if m["type"] == "track"]
        self.identifies = [m for m in self.messages if m["type"] == "identify"]

    def accounts_of(self) -> dict[str, set[str]]:
        """Product user id -> account ids they sent group calls for."""
        accounts = defaultdict(set)
        for m in self.groups:
            if "userId" in m:
                accounts[m["userId"]].add(m["groupId"])
        return accounts

    def parents(self) -> dict[str, str]:
        """Account id -> parent_account_id, from group traits."""
        return {
            m["groupId"]: m["traits"]["parent_account_id"]
            for m in self.groups
            if "parent_account_id" in m["traits"]
        }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    out_dir = tmp_path_factory.mktemp("small")
    return Sample(out_dir, generate_sample(out_dir, **SMALL))


@pytest.fixture(scope="module")
def bigger(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    out_dir = tmp_path_factory.mktemp("bigger")
    return Sample(out_dir, generate_sample(out_dir, seed=3, accounts=100, users=1000, days=10))


def test_same_seed_gives_identical_bytes_and_another_seed_differs(small: Sample, tmp_path: Path):
    again = tmp_path / "again"
    generate_sample(again, **SMALL)
    other = tmp_path / "other"
    generate_sample(other, **{**SMALL, "seed": 8})
    names = sorted(p.name for p in small.out_dir.iterdir())
    assert (
        names == sorted(p.name for p in again.iterdir()) == sorted(p.name for p in other.iterdir())
    )
    for name in names:
        assert (again / name).read_bytes() == (small.out_dir / name).read_bytes(), name
        assert (other / name).read_bytes() != (small.out_dir / name).read_bytes(), name


def test_four_files_a_day_alternating_plain_and_gzip(small: Sample):
    paths = sorted(small.out_dir.iterdir())
    assert small.summary.files == len(paths) == 4 * SMALL["days"]
    expected_hours = [DEFAULT_START + timedelta(hours=6 * i) for i in range(len(paths))]
    for i, (path, hour) in enumerate(zip(paths, expected_hours, strict=True)):
        match = FILE_NAME.match(path.name)
        assert match, path.name
        assert match[1] == hour.strftime("%Y-%m-%dT%H")
        assert bool(match[2]) == (i % 2 == 1)
        data = path.read_bytes()
        if match[2]:
            assert data[:2] == b"\x1f\x8b"
            assert data[4:8] == b"\0\0\0\0", "gzip mtime must be 0"
            assert not data[3] & 0x08, "gzip must not embed a file name"
            data = gzip.decompress(data)
        assert data.decode().count("\n") > 0


def test_summary_counts_match_files(small: Sample):
    summary = small.summary
    assert summary.lines == len(small.lines)
    assert summary.dirty_lines == {
        kind: sum(1 for k, _, _ in small.dirty if k == kind) for kind in DIRTY_KINDS
    }
    assert all(count > 0 for count in summary.dirty_lines.values()), summary.dirty_lines
    copies = Counter(m["messageId"] for _, m in small.valid)
    assert summary.valid_events == len(copies)
    assert summary.duplicate_lines == sum(n - 1 for n in copies.values()) > 0
    assert max(copies.values()) == 2
    assert 0.005 < sum(summary.dirty_lines.values()) / summary.lines < 0.02


def test_duplicates_are_byte_identical_in_same_or_next_file(bigger: Sample):
    files = sorted(p.name for p in bigger.out_dir.iterdir())
    first_seen: dict[str, tuple[str, str]] = {}
    same_file = next_file = 0
    for name, line in bigger.lines:
        kind, message = classify(line)
        if kind:
            continue
        if message["messageId"] in first_seen:
            first_name, first_line = first_seen[message["messageId"]]
            assert line == first_line
            assert files.index(name) - files.index(first_name) in (0, 1)
            same_file += name == first_name
            next_file += name != first_name
        else:
            first_seen[message["messageId"]] = (name, line)
    assert same_file and next_file


def test_dirty_lines_never_reuse_a_valid_message_id(small: Sample):
    valid_ids = {m["messageId"] for m in small.messages}
    for kind, _, message in small.dirty:
        if message is not None:
            assert message.get("messageId") not in valid_ids, kind
    bad_timestamps = [m for kind, _, m in small.dirty if kind == "bad_timestamp"]
    assert all(ISO_MS.match(m["receivedAt"]) for m in bad_timestamps)
    missing = [m for kind, _, m in small.dirty if kind == "missing_ids"]
    assert all(m["type"] == "track" for m in missing)


def test_valid_messages_follow_the_segment_spec(small: Sample):
    for m in small.messages:
        for field in ("messageId", "type", "timestamp", "sentAt", "receivedAt", "context"):
            assert field in m, (field, m)
        assert uuid.UUID(m["messageId"]).version == 4
        assert all(ISO_MS.match(m[f]) for f in ("timestamp", "sentAt", "receivedAt")), m
        assert m["timestamp"] <= m["sentAt"] <= m["receivedAt"], m
        assert m["context"]["library"]["name"] == "analytics.js"
        assert m["timestamp"] >= DEFAULT_START.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if m["type"] == "track":
            assert m["event"] and isinstance(m["properties"], dict)
        elif m["type"] == "identify":
            assert m["userId"] and isinstance(m["traits"], dict)
        elif m["type"] == "group":
            assert m["groupId"] and isinstance(m["traits"], dict)
            assert m.get("userId") or m["anonymousId"] == SERVICE_ANONYMOUS_ID
        else:
            assert m["name"]


def test_page_and_screen_calls(bigger: Sample):
    pages = [m for m in bigger.messages if m["type"] == "page"]
    for page in pages:
        path = page["properties"]["path"]
        assert path in LANDING_PATHS or path.startswith("/blog/"), path
        assert {"url", "title", "referrer"} <= page["properties"].keys()
    assert any("userId" not in p for p in pages), "anonymous visitors"
    assert any("userId" in p and "anonymousId" in p for p in pages), "known users"
    assert any(m["type"] == "screen" for m in bigger.messages)


def test_a_few_late_events_land_in_a_later_file(bigger: Sample):
    late, first_copies = 0, {}
    for name, m in bigger.valid:
        first_copies.setdefault(m["messageId"], (name, m))
    for name, m in first_copies.values():
        window = datetime.strptime(FILE_NAME.match(name)[1], "%Y-%m-%dT%H").replace(tzinfo=UTC)
        behind = window - datetime.fromisoformat(m["timestamp"])
        assert behind <= timedelta(hours=5), (name, m)
        late += behind >= timedelta(hours=1)
    assert 0.003 < late / len(first_copies) < 0.03


def test_hierarchy_has_chains_a_cycle_and_an_unknown_parent(small: Sample):
    parents = small.parents()
    known = {m["groupId"] for m in small.groups}
    assert known == {f"acct_{i:05d}" for i in range(1, SMALL["accounts"] + 1)}

    def depth(account: str) -> int:
        seen = [account]
        while parents.get(seen[-1]) in known and parents[seen[-1]] not in seen:
            seen.append(parents[seen[-1]])
        return len(seen)

    cycles = {frozenset((a, p)) for a, p in parents.items() if parents.get(p) == a}
    in_cycle = {a for pair in cycles for a in pair}
    depths = [depth(a) for a in known if a not in in_cycle]
    assert 3 in depths and max(depths) >= 4
    assert len(cycles) == 1
    assert any(parent not in known for parent in parents.values())


def test_memberships(small: Sample):
    accounts_of = small.accounts_of()
    identified = {m["userId"] for m in small.identifies}
    assert sum(len(a) >= 2 for a in accounts_of.values()) >= 0.05 * len(identified)
    assert any(len(a) >= 3 for a in accounts_of.values())
    assert identified - accounts_of.keys(), "some users belong to no account"
    with_members = {a for accounts in accounts_of.values() for a in accounts}
    service_only = {m["groupId"] for m in small.groups} - with_members
    assert service_only
    service_groups = [m for m in small.groups if m["groupId"] in service_only]
    assert all(
        "userId" not in m and m["anonymousId"] == SERVICE_ANONYMOUS_ID for m in service_groups
    )


def test_track_events_and_properties(small: Sample):
    events = Counter(m["event"] for m in small.tracks)
    assert {
        "Logged In",
        "Feature Used",
        "NPS Survey Submitted",
        "Trial Started",
        "Subscription Upgraded",
    } <= events.keys()
    scores = [
        m["properties"]["score"] for m in small.tracks if m["event"] == "NPS Survey Submitted"
    ]
    assert all(0 <= int(score) <= 10 for score in scores)
    features = {m["properties"]["feature"] for m in small.tracks if m["event"] == "Feature Used"}
    assert features == {"reports", "dashboards", "exports", "integrations", "alerts", "api"}
    for m in small.tracks:
        if m["event"] == "Subscription Upgraded":
            assert m["properties"]["to_plan"] in ("pro", "enterprise")
            assert m["properties"]["from_plan"] != m["properties"]["to_plan"]
    with_group = sum("groupId" in m["context"] for m in small.tracks)
    assert 0.1 < with_group / len(small.tracks) < 0.7


def test_multi_account_users_mostly_say_which_account(bigger: Sample):
    multi = {u for u, accounts in bigger.accounts_of().items() if len(accounts) >= 2}
    tracks = [m for m in bigger.tracks if m["userId"] in multi]
    assert sum("groupId" in m["context"] for m in tracks) / len(tracks) > 0.7


def test_traits_change_over_time(small: Sample):
    user_traits, plans = defaultdict(set), defaultdict(set)
    for m in small.identifies:
        for key, value in m["traits"].items():
            user_traits[m["userId"], key].add(value)
    for m in small.groups:
        plans[m["groupId"]].add(m["traits"]["plan"])
        assert {"name", "industry", "plan", "employees", "created_at"} <= m["traits"].keys()
    assert any(len(values) >= 2 for values in user_traits.values())
    assert any(len(values) >= 2 for values in plans.values())
    assert any(len(m["traits"]) < 5 for m in small.identifies), "partial identify"


def test_activity_differs_strongly_across_accounts(bigger: Sample):
    accounts_of = bigger.accounts_of()
    single = {u: next(iter(a)) for u, a in accounts_of.items() if len(a) == 1}
    logins = Counter()
    for m in bigger.tracks:
        if m["event"] == "Logged In":
            account = m["context"].get("groupId") or single.get(m["userId"])
            logins[account] += 1
    with_members = {a for accounts in accounts_of.values() for a in accounts}
    counts = [logins[a] for a in with_members]
    assert sum(c < 10 for c in counts) >= 5
    assert sum(c > 50 for c in counts) >= 5
    # Not only a matter of account size: logins per member differ widely too.
    members = Counter(single.values())
    per_member = sorted(logins[a] / n for a, n in members.items() if n >= 3)
    p10, p90 = per_member[len(per_member) // 10], per_member[9 * len(per_member) // 10]
    assert p90 > 8 * max(p10, 0.1)


def test_account_mix(tmp_path: Path):
    sample = Sample(tmp_path, generate_sample(tmp_path, accounts=1000, users=1000, days=1))
    industries = Counter({m["groupId"]: m["traits"]["industry"] for m in sample.groups}.values())
    assert industries.total() == 1000
    assert 0.22 < industries["Software"] / 1000 < 0.36
    assert industries.most_common(1)[0][0] == "Software"
    assert 0.1 <= len(sample.parents()) / 1000 <= 0.15
    employees = sorted({m["groupId"]: m["traits"]["employees"] for m in sample.groups}.values())
    assert employees[500] < 100 and employees[-1] > 2000


def test_volume_grows_linearly(small: Sample, tmp_path: Path):
    doubled = generate_sample(tmp_path, **{**SMALL, "users": 600, "days": 6})
    assert 3 < doubled.lines / small.summary.lines < 5


def test_parallel_workers_write_the_same_bytes(small: Sample, tmp_path: Path):
    summary = generate_sample(tmp_path, **SMALL, processes=2)
    assert summary == small.summary
    for path in small.out_dir.iterdir():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_activity_scales_the_sessions(small: Sample, tmp_path: Path):
    busier = generate_sample(tmp_path, **SMALL, activity=2.0)
    # sessions double; first-activity identify and group calls stay as they are
    assert 1.2 < busier.valid_events / small.summary.valid_events < 2.0
