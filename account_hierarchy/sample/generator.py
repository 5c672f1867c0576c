"""Deterministic, streaming generator of Segment-spec NDJSON for a B2B SaaS company.

The simulated company is "Northwind Analytics": a product used by `accounts` customer
companies with `users` users, over `days` days from `start` (UTC).

Files: four per day, one per 6 hours, named `segment-YYYY-MM-DDTHH.ndjson` (first and third of
the day) or `segment-YYYY-MM-DDTHH.ndjson.gz` (second and fourth; gzip with mtime 0 and no
embedded name), HH the first hour covered. A file holds the events whose `timestamp` falls in
its window, in `receivedAt` order, except ~1% late activity events: their `timestamp` is 1-5
hours before the window (never before `start` nor before the user first showed up).
`receivedAt` is the timestamp plus a few seconds to minutes (hours for late events); `sentAt`
lies in between.

Ids: accounts `acct_00001`..., users `user_00001`..., anonymous ids and messageIds are UUID4
strings drawn from the seeded random streams.

Hierarchy (`parent_account_id` group trait, ~12% of accounts have one, subsidiaries are named
after their parent and share its industry):
- with 3+ accounts, a three-level chain (grandparent <- parent <- child);
- with 20+ accounts also a four-level chain, exactly one two-account cycle (A's parent is B,
  B's parent is A) and one account whose parent is `acct_external_1`, an id that never sends
  a group call. Random subsidiaries only point to accounts earlier in a shuffled order, so
  there is no other cycle.

Users and accounts:
- ~5% of users belong to no account, ~10% to two or three; ~5% of accounts have no users.
  Group calls of accounts without users come from a CRM sync: `anonymousId` `crm_sync` and
  no `userId` (so they associate no user), once on day 0 and at each plan change.
- At a user's first activity: an identify with all traits (email, name, role, title,
  created_at), then a group call (full account traits) per account they belong to. Half of
  the users first browse the marketing site anonymously with their own anonymousId.
- Later: ~4% of users change role or title (a quarter twice within the hour), ~3% send a
  partial identify; trials convert after ~14 days to pro (sometimes on to enterprise within
  the hour) or free, a few free/pro accounts upgrade. Each plan change is a group call with
  the account's full current traits from its first member (plus `Subscription Upgraded` when
  the new plan is paid). New trials send `Trial Started` from their creator.
- Activity: each account has a lognormal activity level, so over 30 days some accounts log in
  fewer than 10 times and others hundreds; users follow their account's level. Sessions are
  `Logged In` then `Feature Used` calls, sometimes a marketing page, an NPS survey, or screen
  calls for mobile users. Multi-account users' events carry `context.groupId` 90% of the
  time, other members' 30%. Anonymous visitors browse the marketing site (page calls).

Dirty lines (~1% of lines, spread over files; the first five of each day are one of each
kind): `invalid_json` (truncated, garbage text or a JSON array), `missing_ids` (no userId nor
anonymousId), `bad_timestamp` (unparseable timestamp, valid receivedAt), `unknown_type`,
`oversized` (over 32 KB, otherwise valid). Each has a fresh messageId. ~0.5% of valid
messages are re-sent byte-identical later in the same file or, except from a day's last file,
in the next file.

Determinism: the company model comes from `Random(f"{seed}:model")`, each day's events from
`Random(f"{seed}:day:{day}")` and nothing crosses days, so days can be generated in parallel.
"""

import gzip
import heapq
import math
import multiprocessing
import random
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path

from account_hierarchy.sample.lines import (
    DAY_MS,
    DIRTY_KINDS,
    DIRTY_TABLE,
    EXTERNAL_REFERRERS,
    FEATURE_PROPS,
    FEATURE_SCREENS,
    HOUR_MS,
    LIBRARIES,
    NPS_SCORES,
    PAGE_TABLE,
    context,
    dirty_line,
    dumps,
    iso,
    iso_hour,
    page_fragment,
    page_url,
    uuid4_str,
)
from account_hierarchy.sample.model import (
    HISTORY_DAYS,
    SERVICE_ANONYMOUS_ID,
    Account,
    Call,
    Model,
    build_model,
)

DEFAULT_START = datetime(2026, 10, 1, tzinfo=UTC)
"""First instant of the default sample."""

FILES_PER_DAY = 4
FILE_MS = DAY_MS // FILES_PER_DAY
LATE_RATE = 0.01
DUPLICATE_RATE = 0.005
DIRTY_RATE = 0.01
_WINDOW_SHARE = (0.12, 0.33, 0.38, 0.17)  # share of a day's sessions in each 6-hour window
_WEEKEND_FACTOR = 0.35
_MAX_FEATURE_USES = 15  # per session
_GZIP_LEVEL = 3
_NO_LATE = 1 << 62  # a late-timestamp floor no timestamp reaches
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SampleSummary:
    """What `generate_sample` wrote."""

    files: int
    """Files written."""
    lines: int
    """Every line written, duplicates and dirty lines included."""
    valid_events: int
    """Distinct valid messages (a re-sent message counts once)."""
    duplicate_lines: int
    """Extra byte-identical copies of already written valid messages (same messageId)."""
    dirty_lines: dict[str, int]
    """Dirty lines by kind: invalid_json, missing_ids, bad_timestamp, unknown_type, oversized."""


def generate_sample(
    out_dir: Path,
    *,
    seed: int = 42,
    accounts: int = 300,
    users: int = 3000,
    days: int = 30,
    start: datetime = DEFAULT_START,
    activity: float = 1.0,
    processes: int = 1,
) -> SampleSummary:
    """Write `days` days of Segment NDJSON files into `out_dir` (created if needed).

    The same arguments always produce byte-identical files, whatever `processes` (how many
    days are written at once, by forked worker processes). `activity` scales every user's
    session rate (and anonymous visits). A naive `start` is taken as UTC. Memory holds the
    company model and one 6-hour file window per process, never the whole sample."""
    if min(accounts, users, days, processes) < 1 or not 0 < activity < math.inf:
        raise ValueError("accounts, users, days and processes must each be at least 1, "
                         "activity a finite number above 0")  # fmt: skip
    try:  # (the last day's events are received up to a day later)
        start + timedelta(days=days + 1)
    except OverflowError:
        raise ValueError(f"{days} days from {start.date()} run past the year 9999") from None
    earliest = datetime.min + timedelta(days=HISTORY_DAYS + 1)
    if start.replace(tzinfo=None) < earliest:
        raise ValueError(
            f"start {start.date()} is too early: accounts are created up to {HISTORY_DAYS} "
            f"days before it, so it must be {earliest.date()} or later"
        )
    global _SHARED
    model = build_model(seed, accounts, users, _epoch_ms(start), days)
    out_dir.mkdir(parents=True, exist_ok=True)
    idents = [f'"userId":"{u.id}","anonymousId":"{u.anonymous_id}"' for u in model.users]
    _SHARED = (model, idents, activity, out_dir)
    totals: Counter[str] = Counter()
    try:
        if processes == 1:
            counts = map(_write_day, range(days))
        else:  # forked workers inherit the model instead of unpickling a copy each
            pool = multiprocessing.get_context("fork").Pool(processes)
            counts = pool.imap_unordered(_write_day, range(days))
        for day_counts in counts:
            totals.update(day_counts)
    finally:
        _SHARED = None
        if processes > 1:
            pool.close()
            pool.join()
    return SampleSummary(
        files=totals["files"],
        lines=totals["lines"],
        valid_events=totals["valid_events"],
        duplicate_lines=totals["duplicate_lines"],
        dirty_lines={kind: totals[kind] for kind in DIRTY_KINDS},
    )


_SHARED: tuple | None = None
"""The model, identities, activity and output folder of the sample being written."""


def _write_day(day: int) -> Counter[str]:
    model, idents, activity, out_dir = _SHARED
    return _Day(model, idents, day, activity).write(out_dir)


def _epoch_ms(start: datetime) -> int:
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return (start - _EPOCH) // timedelta(milliseconds=1)


def _file_name(window_start_ms: int, gz: bool) -> str:
    return f"segment-{iso_hour(window_start_ms // 1000)}.ndjson{'.gz' if gz else ''}"


def _write_file(path: Path, lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n").encode() if lines else b""
    with path.open("wb") as raw:
        if path.suffix != ".gz":
            raw.write(data)
            return
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=_GZIP_LEVEL
        ) as gz:
            gz.write(data)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold, k, p = math.exp(-lam), 0, rng.random()
    while p > threshold:
        k += 1
        p *= rng.random()
    return k


class _Day:
    """The four files of one day, drawn from the day's own random stream."""

    def __init__(self, model: Model, idents: list[str], day: int, activity: float) -> None:
        self.model, self.idents, self.day, self.activity = model, idents, day, activity
        self.rng = random.Random(f"{model.seed}:day:{day}")
        self.dirty_due = self.rng.random()
        self.dirty_written = 0
        self.counts: Counter[str] = Counter()

    def write(self, out_dir: Path) -> Counter[str]:
        """Write the day's files; return counts by summary field and dirty kind."""
        day_start = self.model.start_ms + self.day * DAY_MS
        weekend = datetime.fromtimestamp(day_start // 1000, UTC).weekday() >= 5
        carried: list[tuple[int, str]] = []
        for f in range(FILES_PER_DAY):
            window_start = day_start + f * FILE_MS
            share = _WINDOW_SHARE[f] * (_WEEKEND_FACTOR if weekend else 1.0)
            window = _Window(self.model, self.idents, self.rng, window_start)
            events = window.collect(share * self.activity)
            last = f == FILES_PER_DAY - 1
            lines, carried = self._interleave(events, carried, last)
            _write_file(out_dir / _file_name(window_start, gz=f % 2 == 1), lines)
            self.counts["lines"] += len(lines)
            self.counts["valid_events"] += len(events)
        self.counts["files"] += FILES_PER_DAY
        return self.counts

    def _interleave(
        self, events: list[tuple[int, str]], carried: list[tuple[int, str]], last: bool
    ) -> tuple[list[str], list[tuple[int, str]]]:
        """One file's lines: its events with duplicates and dirty lines mixed in. `carried` are
        (position, line) duplicates due in this file; returns those due in the next one."""
        rnd = self.rng.random
        due = list(carried)
        heapq.heapify(due)
        next_file: list[tuple[int, str]] = []
        lines: list[str] = []
        duplicates = len(due)
        for received, line in events:
            while due and due[0][0] <= len(lines):
                lines.append(heapq.heappop(due)[1])
            lines.append(line)
            if rnd() < DUPLICATE_RATE:
                duplicates += 1
                delay = 1 + int(rnd() * 40)
                if last or rnd() < 0.5:
                    heapq.heappush(due, (len(lines) + delay, line))
                else:
                    next_file.append((delay, line))
            self.dirty_due += DIRTY_RATE
            if self.dirty_due >= 1:
                self.dirty_due -= 1
                lines.append(self._dirty_line(received))
        lines.extend(line for _, line in sorted(due))
        self.counts["duplicate_lines"] += duplicates - len(next_file)
        return lines, next_file

    def _dirty_line(self, received_ms: int) -> str:
        rnd = self.rng.random
        if self.dirty_written < len(DIRTY_KINDS):
            kind = DIRTY_KINDS[(self.day + self.dirty_written) % len(DIRTY_KINDS)]
        else:
            kind = DIRTY_TABLE[int(rnd() * len(DIRTY_TABLE))]
        self.dirty_written += 1
        self.counts[kind] += 1
        user = self.model.users[int(rnd() * len(self.model.users))]
        received_ms += 1 + int(rnd() * 500)
        return dirty_line(kind, self.rng, user.id, user.anonymous_id, received_ms)


class _Window:
    """The valid events of one 6-hour file window as (receivedAt ms, line)."""

    def __init__(self, model: Model, idents: list[str], rng: random.Random, start_ms: int):
        self.model, self.idents, self.rng = model, idents, rng
        self.start, self.end = start_ms, start_ms + FILE_MS
        self.out: list[tuple[int, str]] = []

    def collect(self, share: float) -> list[tuple[int, str]]:
        """Scheduled calls, user sessions and anonymous visits, sorted by receivedAt.

        `share` is the expected fraction of a user's daily sessions in this window."""
        self._scheduled()
        self._sessions(share)
        self._visitors(share)
        self.out.sort(key=itemgetter(0))
        return self.out

    def _emit(self, t: int, body: str, late_floor: int = _NO_LATE) -> None:
        """Add a message happening at `t`; `body` is its JSON members but ids and times.
        It may become a late event, with a timestamp 1-5 hours before the window but not before
        `late_floor`."""
        rng = self.rng
        rnd = rng.random
        received = t + 1000 + int(rnd() * rnd() * 240_000)
        sent = received - 20 - int(rnd() * 400)
        if sent < t:
            sent = t
        if rnd() < LATE_RATE:
            room = min(self.start - HOUR_MS - late_floor, 4 * HOUR_MS)
            if room >= 0:
                t = self.start - HOUR_MS - int(rnd() * room)
        self.out.append(
            (
                received,
                f'{{"messageId":"{uuid4_str(rng)}",{body},"timestamp":"{iso(t)}",'
                f'"sentAt":"{iso(sent)}","receivedAt":"{iso(received)}"}}',
            )
        )

    def _scheduled(self) -> None:
        times = self.model.call_times
        first, stop = bisect_left(times, self.start), bisect_left(times, self.end)
        for call in self.model.calls[first:stop]:
            self._emit(call.t_ms, self._call_body(call))

    def _call_body(self, call: Call) -> str:
        if call.user < 0:
            ident, ctx = f'"anonymousId":"{SERVICE_ANONYMOUS_ID}"', context(0)
        else:
            user = self.model.users[call.user]
            ident, ctx = self.idents[call.user], context(user.library)
        if call.kind == "identify":
            role, title, keys = call.detail
            traits = {
                "email": user.email,
                "name": user.name,
                "role": role,
                "title": title,
                "created_at": iso(user.created_ms),
            }
            if keys:
                traits = {key: value for key, value in traits.items() if key in keys}
            return f'"type":"identify",{ident},"traits":{dumps(traits)},{ctx}'
        account = self.model.accounts[call.account]
        if call.kind == "group":
            traits = _group_traits(account, call.detail)
            return f'"type":"group","groupId":"{account.id}",{ident},"traits":{traits},{ctx}'
        if call.kind == "track":
            event, properties = call.detail
            return _track(event, ident, properties, context(user.library, account.id))
        page, referrer = call.detail  # a page view before sign-up: anonymous only
        return _page(page, referrer, f'"anonymousId":"{user.anonymous_id}"', ctx)

    def _sessions(self, share: float) -> None:
        rng, start, end = self.rng, self.start, self.end
        for ui, user in enumerate(self.model.users):
            active = user.first_seen_ms + 1000
            if active >= end:
                continue
            lam, earliest = user.rate * share, start
            if active > start:
                lam *= (end - active) / FILE_MS
                earliest = active
            for _ in range(_poisson(rng, lam)):
                self._session(ui, earliest + int(rng.random() * (end - earliest)))

    def _session(self, ui: int, t: int) -> None:
        """Logged In, then Feature Used calls minutes apart, sometimes a marketing page before,
        screen calls on mobile, an NPS survey after."""
        rnd, end = self.rng.random, self.end
        user, ident = self.model.users[ui], self.idents[ui]
        floor = user.first_seen_ms
        ctx = context(user.library, self._session_group(ui, t))
        if rnd() < 0.08:
            page = PAGE_TABLE[int(rnd() * len(PAGE_TABLE))]
            referrer = EXTERNAL_REFERRERS[int(rnd() * len(EXTERNAL_REFERRERS))]
            self._emit(t, _page(page, referrer, ident, ctx), floor)
            t += 5000 + int(rnd() * 60_000)
        mobile = user.mobile and rnd() < 0.25
        if mobile:
            self._emit(t, _screen("Home", ident, ctx), floor)
        self._emit(t, _track("Logged In", ident, "{}", ctx), floor)
        for _ in range(_MAX_FEATURE_USES):
            if rnd() >= 0.7:
                break
            t += 5000 + int(rnd() * 175_000)
            if t >= end:
                return
            k = int(rnd() * len(FEATURE_PROPS))
            if mobile:
                self._emit(t - 800, _screen(FEATURE_SCREENS[k], ident, ctx), floor)
            self._emit(t, _track("Feature Used", ident, FEATURE_PROPS[k], ctx), floor)
        t += 20_000 + int(rnd() * 60_000)
        if t < end and rnd() < 0.02:
            score = NPS_SCORES[int(rnd() * len(NPS_SCORES))]
            value = f'"{score}"' if rnd() < 0.05 else score
            self._emit(t, _track("NPS Survey Submitted", ident, f'{{"score":{value}}}', ctx), floor)

    def _session_group(self, ui: int, t: int) -> str | None:
        """The `context.groupId` of a session: the account it happens in, or None."""
        rnd = self.rng.random
        user = self.model.users[ui]
        n = len(user.accounts)
        if n == 0:
            return None
        if n == 1:
            return self.model.accounts[user.accounts[0]].id if rnd() < 0.3 else None
        k = 0 if rnd() < 0.6 else 1 + int(rnd() * (n - 1))
        if user.joins[k] > t:
            k = 0
        return self.model.accounts[user.accounts[k]].id if rnd() < 0.9 else None

    def _visitors(self, share: float) -> None:
        """Anonymous visitors browsing one to three marketing pages."""
        rng, start, end = self.rng, self.start, self.end
        rnd = rng.random
        floor = self.model.start_ms
        for _ in range(_poisson(rng, self.model.visitors_per_day * share)):
            t = start + int(rnd() * FILE_MS)
            ident = f'"anonymousId":"{uuid4_str(rng)}"'
            ctx = context(int(rnd() * len(LIBRARIES)))
            referrer = EXTERNAL_REFERRERS[int(rnd() * len(EXTERNAL_REFERRERS))]
            for _ in range(1 + (rnd() < 0.5) + (rnd() < 0.25)):
                page = PAGE_TABLE[int(rnd() * len(PAGE_TABLE))]
                self._emit(t, _page(page, referrer, ident, ctx), floor)
                referrer = page_url(page)
                t += 10_000 + int(rnd() * 110_000)
                if t >= end:
                    break


def _group_traits(account: Account, plan: str) -> str:
    traits: dict[str, object] = {
        "name": account.name,
        "industry": account.industry,
        "plan": plan,
        "employees": account.employees,
        "created_at": iso(account.created_ms),
    }
    if account.parent_id:
        traits["parent_account_id"] = account.parent_id
    return dumps(traits)


def _track(event: str, ident: str, properties: str, ctx: str) -> str:
    return f'"type":"track","event":"{event}",{ident},"properties":{properties},{ctx}'


def _screen(name: str, ident: str, ctx: str) -> str:
    return f'"type":"screen","name":"{name}",{ident},"properties":{{}},{ctx}'


def _page(page: int, referrer: str, ident: str, ctx: str) -> str:
    return f'"type":"page",{page_fragment(page, referrer)},{ident},{ctx}'
