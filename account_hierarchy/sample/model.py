"""The simulated company behind the sample: accounts, users, memberships and scheduled calls.

The model is drawn once from `random.Random(f"{seed}:model")` and only read afterwards, so each
day of events can be generated on its own from it. It holds O(accounts + users) state. Times
are epoch milliseconds. "Scheduled" calls are the ones that happen once at a known time
(identify, group, trait and plan changes, Trial Started, Subscription Upgraded, the anonymous
page views before a sign-up); the day-to-day activity is drawn later, per day.
"""

import math
import random
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import NamedTuple

from account_hierarchy.sample.lines import (
    DAY_MS,
    EXTERNAL_REFERRERS,
    HOUR_MS,
    LIBRARY_VERSIONS,
    MINUTE_MS,
    PAGE_TABLE,
    SIGNUP_PAGE,
    page_url,
    uuid4_str,
)

# Group calls of accounts without users come from a CRM sync: anonymous, so no membership.
SERVICE_ANONYMOUS_ID = "crm_sync"
# Paying accounts were created up to this many days before the sample starts.
HISTORY_DAYS = 2500
EXTERNAL_PARENT_ID = "acct_external_1"
PAID_PLANS = ("pro", "enterprise")
TRAIT_KEYS = ("email", "name", "role", "title", "created_at")

_INDUSTRIES = ("Software", "Retail", "Finance", "Healthcare", "Manufacturing", "Education", "Media")
_INDUSTRY_WEIGHTS = (28, 11, 14, 13, 12, 10, 12)
_PLANS = ("trial", "free", "pro", "enterprise")
_PLAN_WEIGHTS = (15, 30, 40, 15)
_ROLES = ("Admin", "Member", "Viewer")
_ROLE_WEIGHTS = (15, 60, 25)
_ROLE_ACTIVITY = {"Admin": 1.3, "Member": 1.0, "Viewer": 0.5}
_TITLES = {
    "Admin": ("IT Director", "Head of Operations", "Systems Administrator", "VP Engineering"),
    "Member": (
        "Software Engineer",
        "Product Manager",
        "Data Analyst",
        "Marketing Manager",
        "Account Executive",
        "Customer Success Manager",
        "Product Designer",
    ),
    "Viewer": ("CFO", "Sales Director", "Finance Analyst", "Executive Assistant", "Consultant"),
}
_ALL_TITLES = tuple(title for titles in _TITLES.values() for title in titles)
_NAME_WORDS = (
    "Blue", "North", "Silver", "Bright", "Iron", "Green", "Summit", "Harbor", "Cedar", "Atlas",
    "Nova", "Pioneer", "Granite", "Maple", "Orbit", "Falcon", "Golden", "Polar", "Copper",
)  # fmt: skip
_NAME_NOUNS = ("Peak", "Ridge", "Wave", "Stone", "Field", "Bridge", "Point", "Forge", "Grove")
_NAME_SUFFIXES = {
    "Software": ("Labs", "Systems", "Technologies", "Software"),
    "Retail": ("Goods", "Outfitters", "Market", "Stores"),
    "Finance": ("Capital", "Financial", "Partners", "Bank"),
    "Healthcare": ("Health", "Medical", "Clinics", "Care"),
    "Manufacturing": ("Industries", "Manufacturing", "Components", "Steel"),
    "Education": ("Academy", "Learning", "University", "Schools"),
    "Media": ("Media", "Studios", "Publishing", "Broadcasting"),
}
_REGIONS = ("EMEA", "APAC", "Germany", "UK", "France", "Japan", "Brazil", "Canada", "Nordics")
_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sofia", "Lucas", "Mia", "Ethan", "Amara",
    "Kenji", "Priya", "Omar", "Chloe", "Diego", "Hannah", "Yuki", "Fatima", "Lars", "Ines",
    "Arjun", "Zoe", "Felix", "Nadia", "Tomasz", "Grace", "Samuel", "Leila", "Hugo",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Garcia", "Chen", "Patel", "Muller", "Kim", "Okafor", "Rossi", "Silva", "Nguyen",
    "Johnson", "Kowalski", "Haddad", "Tanaka", "Brown", "Lopez", "Novak", "Dubois", "Singh",
    "Andersen", "Cohen", "Ivanova", "Martin", "Walker", "Yilmaz", "Costa", "Moreau", "Ali",
)  # fmt: skip
_PERSONAL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me")


@dataclass(slots=True)
class Account:
    """A customer company. `plans` lists (since_ms, plan) in time order, from its creation."""

    index: int
    id: str
    name: str
    industry: str
    employees: int
    created_ms: int
    level: float  # expected sessions per weekday of each of its users
    plans: list[tuple[int, str]]
    parent_id: str | None = None
    members: list[int] = field(default_factory=list)

    def plan_at(self, t_ms: int) -> str:
        """The plan in force at `t_ms`."""
        plan = self.plans[0][1]
        for since, later in self.plans:
            if since > t_ms:
                break
            plan = later
        return plan


@dataclass(slots=True)
class User:
    """A product user; `joins[i]` is when they joined `accounts[i]` (the first is primary)."""

    id: str
    anonymous_id: str
    name: str
    email: str
    role: str
    title: str
    created_ms: int
    first_seen_ms: int
    rate: float  # expected sessions per weekday
    library: int
    mobile: bool
    accounts: list[int] = field(default_factory=list)
    joins: list[int] = field(default_factory=list)


class Call(NamedTuple):
    """A scheduled call. `user` is -1 for the CRM sync service user, `account` -1 for none.

    `detail` by kind: identify (role, title, trait keys or None for all); group: plan;
    track: (event, properties JSON); page: (page index, referrer) of an anonymous page view
    made with the user's anonymousId before they signed up.
    """

    t_ms: int
    kind: str
    user: int
    account: int
    detail: tuple | str


@dataclass(slots=True)
class Model:
    """Everything the day generators read: the entities and the time-sorted scheduled calls."""

    seed: int
    start_ms: int
    end_ms: int
    accounts: list[Account]
    users: list[User]
    calls: list[Call]
    call_times: list[int]
    visitors_per_day: float


def build_model(seed: int, n_accounts: int, n_users: int, start_ms: int, days: int) -> Model:
    """Draw the company for a sample of `days` days from `start_ms`."""
    rng = random.Random(f"{seed}:model")
    end_ms = start_ms + days * DAY_MS
    accounts = _make_accounts(rng, n_accounts, start_ms, end_ms)
    _link_hierarchy(rng, accounts)
    empty = _pick_empty(rng, accounts, start_ms)
    users = _make_users(rng, n_users, accounts, empty, start_ms, end_ms)
    _change_plans(rng, accounts, users, start_ms, end_ms)
    calls = _user_calls(rng, accounts, users, start_ms, end_ms)
    calls += _account_calls(rng, accounts, users, start_ms, end_ms)
    calls = [call for call in calls if start_ms <= call.t_ms < end_ms]
    calls.sort(key=lambda call: call.t_ms)
    return Model(
        seed=seed,
        start_ms=start_ms,
        end_ms=end_ms,
        accounts=accounts,
        users=users,
        calls=calls,
        call_times=[call.t_ms for call in calls],
        visitors_per_day=0.15 * n_users,
    )


def _make_accounts(rng: random.Random, n: int, start: int, end: int) -> list[Account]:
    accounts = []
    for i in range(n):
        industry = rng.choices(_INDUSTRIES, _INDUSTRY_WEIGHTS)[0]
        plan = rng.choices(_PLANS, _PLAN_WEIGHTS)[0]
        if plan != "trial":
            created = start - int(rng.uniform(30, HISTORY_DAYS) * DAY_MS)
        elif rng.random() < 0.7:
            created = start + int(rng.random() * (end - start - HOUR_MS))
        else:
            created = start - int(rng.random() * 10 * DAY_MS)
        accounts.append(
            Account(
                index=i,
                id=f"acct_{i + 1:05d}",
                name=_company_name(rng, industry),
                industry=industry,
                employees=min(250_000, 1 + int(rng.lognormvariate(3.3, 1.7))),
                created_ms=created,
                level=rng.lognormvariate(-0.6, 1.2),
                plans=[(created, plan)],
            )
        )
    if not any(_is_new_trial(a, start) for a in accounts):
        account = accounts[rng.randrange(n)]
        account.created_ms = start + int(rng.random() * (end - start) / 2)
        account.plans = [(account.created_ms, "trial")]
    return accounts


def _company_name(rng: random.Random, industry: str) -> str:
    suffix = rng.choice(_NAME_SUFFIXES[industry])
    return f"{rng.choice(_NAME_WORDS)} {rng.choice(_NAME_NOUNS)} {suffix}"


def _is_new_trial(account: Account, start: int) -> bool:
    return account.plans[0][1] == "trial" and account.created_ms >= start


def _link_hierarchy(rng: random.Random, accounts: list[Account]) -> None:
    """Set parents: the guaranteed structures first, then random subsidiaries (~12% in all).

    Random links only point from a later to an earlier account of a shuffled order, so the
    only cycle is the deliberate one.
    """
    n = len(accounts)
    order = rng.sample(range(n), n)
    links = _chain(order[:3]) if n >= 3 else []  # (child, parent) within the model
    used = min(n, 3)
    if n >= 20:
        links += _chain(order[3:7])
        first, second = accounts[order[7]], accounts[order[8]]
        first.parent_id, second.parent_id = second.id, first.id
        accounts[order[9]].parent_id = EXTERNAL_PARENT_ID
        used = 10
    plain = order[used:]
    with_parent = len(links) + (3 if n >= 20 else 0)  # the cycle and the external parent
    extra = max(0, min(round(0.12 * n) - with_parent, len(plain) - 1))
    for position in rng.sample(range(1, len(plain)), extra):
        links.append((plain[position], plain[rng.randrange(position)]))
    base_names = [a.name for a in accounts]
    for child, parent in links:
        accounts[child].parent_id = accounts[parent].id
        accounts[child].industry = accounts[parent].industry
        accounts[child].name = f"{base_names[parent]} {rng.choice(_REGIONS)}"


def _chain(indices: list[int]) -> list[tuple[int, int]]:
    return [(child, parent) for parent, child in pairwise(indices)]


def _pick_empty(rng: random.Random, accounts: list[Account], start: int) -> set[int]:
    """About 5% of accounts get no users (never a new trial, which needs a creator)."""
    if len(accounts) < 2:
        return set()
    candidates = [a.index for a in accounts if not _is_new_trial(a, start)]
    return set(rng.sample(candidates, min(len(candidates), max(1, round(0.05 * len(accounts))))))


def _make_users(
    rng: random.Random, n: int, accounts: list[Account], empty: set[int], start: int, end: int
) -> list[User]:
    memberships = _memberships(rng, n, accounts, empty)
    emails: set[str] = set()
    users = []
    for ui, member_of in enumerate(memberships):
        primary = accounts[member_of[0]] if member_of else None
        first_seen = _first_seen(rng, primary, start, end)
        role = rng.choices(_ROLES, _ROLE_WEIGHTS)[0]
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        level = primary.level if primary else rng.lognormvariate(-0.6, 1.2)
        user = User(
            id=f"user_{ui + 1:05d}",
            anonymous_id=uuid4_str(rng),
            name=f"{first} {last}",
            email=_email(rng, first, last, primary, emails),
            role=role,
            title=rng.choice(_TITLES[role]),
            created_ms=_user_created(rng, primary, first_seen, start),
            first_seen_ms=first_seen,
            rate=level * _ROLE_ACTIVITY[role] * rng.lognormvariate(0, 0.4),
            library=rng.randrange(len(LIBRARY_VERSIONS)),
            mobile=rng.random() < 0.08,
        )
        if primary:
            _join(user, ui, primary, first_seen + 200)
        users.append(user)
    for ui, member_of in enumerate(memberships):
        user = users[ui]
        for k, a in enumerate(member_of[1:], start=2):
            created = accounts[a].created_ms
            if created <= user.first_seen_ms:
                _join(user, ui, accounts[a], user.first_seen_ms + 200 * k)
            else:  # invited later into a workspace created after they first showed up
                _join(user, ui, accounts[a], created + int(rng.uniform(60, 4320) * MINUTE_MS))
    return users


def _join(user: User, ui: int, account: Account, t_ms: int) -> None:
    user.accounts.append(account.index)
    user.joins.append(t_ms)
    account.members.append(ui)


def _memberships(
    rng: random.Random, n: int, accounts: list[Account], empty: set[int]
) -> list[list[int]]:
    """Account indices per user, primary first: ~5% in none, ~10% in 2-3; every account not
    chosen to be empty is the primary account of at least one user, if there are enough."""
    holders = [a.index for a in accounts if a.index not in empty]
    cum_weights = list(accumulate(min(accounts[a].employees, 2000) ** 0.6 for a in holders))
    order = rng.sample(range(n), n)
    in_accounts = order[round(0.05 * n) :]
    memberships: list[list[int]] = [[] for _ in range(n)]
    creators = rng.sample(holders, min(len(holders), len(in_accounts)))
    picks = rng.choices(holders, cum_weights=cum_weights, k=len(in_accounts) - len(creators))
    for ui, account in zip(in_accounts, creators + picks, strict=True):
        memberships[ui].append(account)
    n_multi = round(0.10 * n) if len(holders) >= 2 else 0
    for ui in rng.sample(in_accounts, min(n_multi, len(in_accounts))):
        wanted = min(len(holders), 3 if rng.random() < 0.3 else 2)
        while len(memberships[ui]) < wanted:
            account = rng.choices(holders, cum_weights=cum_weights)[0]
            if account not in memberships[ui]:
                memberships[ui].append(account)
    return memberships


def _first_seen(rng: random.Random, primary: Account | None, start: int, end: int) -> int:
    """~35% of users show up on day 0, the rest spread over the period; users of a trial
    created during the period come after it (its first member right after). Call before
    adding the user to `primary.members`, and before any secondary memberships."""
    span = min(DAY_MS if rng.random() < 0.35 else end - start, end - start) - MINUTE_MS
    first_seen = start + int(rng.random() * span)
    if primary is None or primary.created_ms < start:
        return first_seen
    if not primary.members:
        return primary.created_ms + int(rng.uniform(1, 10) * MINUTE_MS)
    return max(first_seen, primary.created_ms + int(rng.uniform(10, 2880) * MINUTE_MS))


def _user_created(rng: random.Random, primary: Account | None, first_seen: int, start: int) -> int:
    if primary is None or primary.created_ms >= start or rng.random() < 0.4:
        return first_seen
    return primary.created_ms + int(rng.random() * (start - primary.created_ms))


def _email(
    rng: random.Random, first: str, last: str, primary: Account | None, taken: set[str]
) -> str:
    if primary is None:
        domain = rng.choice(_PERSONAL_DOMAINS)
    else:
        domain = primary.name.lower().replace(" ", "") + ".com"
    local = f"{first}.{last}".lower()
    email, n = f"{local}@{domain}", 1
    while email in taken:
        n += 1
        email = f"{local}{n}@{domain}"
    taken.add(email)
    return email


def _join_time(user: User, account: int) -> int:
    return user.joins[user.accounts.index(account)]


def _first_member(account: Account, users: list[User]) -> int | None:
    """The member who joined first, if any."""
    return min(account.members, key=lambda ui: _join_time(users[ui], account.index), default=None)


def _earliest_join(account: Account, users: list[User]) -> int | None:
    first = _first_member(account, users)
    return None if first is None else _join_time(users[first], account.index)


def _change_plans(
    rng: random.Random, accounts: list[Account], users: list[User], start: int, end: int
) -> None:
    """Trials convert after ~14 days (to pro, sometimes straight on to enterprise within the
    hour, or to free); a few free and pro accounts upgrade during the period. At least one
    announced upgrade happens whenever some account can announce one."""
    upgrade_chance = 1 - math.exp(-0.005 * (end - start) / DAY_MS)
    for account in accounts:
        since, plan = account.plans[0]
        if plan == "trial":
            converted = since + int(rng.uniform(12, 16) * DAY_MS)
            if rng.random() < 0.4:
                account.plans.append((converted, "free"))
                continue
            account.plans.append((converted, "pro"))
            if rng.random() < 0.15:
                account.plans.append(
                    (converted + int(rng.uniform(3, 25) * MINUTE_MS), "enterprise")
                )
        elif plan in ("free", "pro") and rng.random() < upgrade_chance:
            account.plans.append((start + int(rng.random() * (end - start)), _next_plan(plan)))
    if any(_announces_upgrade(a, users, start, end) for a in accounts):
        return
    candidates = [
        (a, joined)
        for a in accounts
        if len(a.plans) == 1 and a.plans[0][1] in ("free", "pro")
        if (joined := _earliest_join(a, users)) is not None and joined < end - HOUR_MS
    ]
    if candidates:
        account, joined = rng.choice(candidates)
        when = joined + HOUR_MS + int(rng.random() * (end - joined - HOUR_MS))
        account.plans.append((when, _next_plan(account.plans[0][1])))


def _next_plan(plan: str) -> str:
    return "pro" if plan == "free" else "enterprise"


def _announces_upgrade(account: Account, users: list[User], start: int, end: int) -> bool:
    """Whether a member announces an upgrade to a paid plan during the period."""
    joined = _earliest_join(account, users)
    return joined is not None and any(
        plan in PAID_PLANS and start <= since < end and joined <= since
        for since, plan in account.plans[1:]
    )


def _user_calls(
    rng: random.Random, accounts: list[Account], users: list[User], start: int, end: int
) -> list[Call]:
    """Sign-up page views, the first identify and group calls, and later identifies: ~4% of
    users change role or title (a quarter of them twice within the hour), ~3% send a partial
    identify with a few of their current traits."""
    calls = []
    for ui, user in enumerate(users):
        seen = user.first_seen_ms
        if seen >= end:
            continue
        if rng.random() < 0.5:
            calls += _signup_pages(rng, ui, seen)
        states = [(seen, user.role, user.title)]
        calls.append(Call(seen, "identify", ui, -1, (user.role, user.title, None)))
        for a, join in zip(user.accounts, user.joins, strict=True):
            calls.append(Call(join, "group", ui, a, accounts[a].plan_at(join)))
        room = end - seen - 2 * HOUR_MS
        if room > 0 and rng.random() < 0.04:
            t = seen + HOUR_MS + int(rng.random() * room)
            for _ in range(2 if rng.random() < 0.25 else 1):
                role, title = states[-1][1:]
                if rng.random() < 0.5:
                    role = rng.choice([r for r in _ROLES if r != role])
                else:
                    title = rng.choice([x for x in _ALL_TITLES if x != title])
                states.append((t, role, title))
                calls.append(Call(t, "identify", ui, -1, (role, title, None)))
                t += int(rng.uniform(2, 25) * MINUTE_MS)
        if room > 0 and rng.random() < 0.03:
            t = seen + HOUR_MS + int(rng.random() * room)
            role, title = next(s for s in reversed(states) if s[0] <= t)[1:]
            keys = tuple(rng.sample(TRAIT_KEYS, rng.randint(1, 3)))
            calls.append(Call(t, "identify", ui, -1, (role, title, keys)))
    return calls


def _signup_pages(rng: random.Random, ui: int, signed_up: int) -> list[Call]:
    pages = [PAGE_TABLE[int(rng.random() * len(PAGE_TABLE))] for _ in range(rng.randint(0, 2))]
    pages.append(SIGNUP_PAGE)
    t = signed_up - int(rng.uniform(0.5, 5) * MINUTE_MS) * len(pages)
    referrer, calls = rng.choice(EXTERNAL_REFERRERS), []
    for page in pages:
        calls.append(Call(t, "page", ui, -1, (page, referrer)))
        referrer = page_url(page)
        t += int(rng.uniform(0.5, 5) * MINUTE_MS)
    return calls


def _account_calls(
    rng: random.Random, accounts: list[Account], users: list[User], start: int, end: int
) -> list[Call]:
    """Trial Started by each new trial's creator; a group call per plan change (plus a
    Subscription Upgraded track for upgrades to a paid plan) from the account's first member
    once they joined. Accounts without users get their group calls from the CRM sync service
    user: one on their first day in the period and one per plan change."""
    calls = []
    for account in accounts:
        a, changes = account.index, account.plans[1:]
        sender = _first_member(account, users)
        if sender is None:
            first = max(start, account.created_ms)
            t = first + int(rng.random() * min(DAY_MS, end - first))
            calls.append(Call(t, "group", -1, a, account.plan_at(t)))
            calls += [Call(since, "group", -1, a, plan) for since, plan in changes]
            continue
        joined = _join_time(users[sender], a)
        if _is_new_trial(account, start):
            t = joined + int(rng.uniform(2, 5) * 1000)
            calls.append(Call(t, "track", sender, a, ("Trial Started", '{"trial_days":14}')))
        previous = account.plans[0][1]
        for since, plan in changes:
            if joined <= since:
                calls.append(Call(since, "group", sender, a, plan))
            if joined <= since and plan in PAID_PLANS:
                upgrade = f'{{"from_plan":"{previous}","to_plan":"{plan}"}}'
                t = since + int(rng.uniform(1, 3) * 1000)
                calls.append(Call(t, "track", sender, a, ("Subscription Upgraded", upgrade)))
            previous = plan
    return calls
