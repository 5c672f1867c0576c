"""Serialization for the sample: timestamps, message ids, JSON fragments and dirty lines.

Valid lines are assembled from pre-serialized fragments (ids, context, properties) rather than
`json.dumps` on whole dicts, which is what makes the generator fast. Every fragment is built
from ASCII vocabulary with `json.dumps`, so the assembled lines are valid JSON.
"""

import json
import random
from datetime import UTC, datetime
from functools import cache

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MINUTE_MS = 60_000

LIBRARY_VERSIONS = ("3.13.5", "4.1.0", "4.15.3")
LIBRARIES = tuple(
    json.dumps({"name": "analytics.js", "version": v}, separators=(",", ":"))
    for v in LIBRARY_VERSIONS
)

SITE = "https://www.northwind-analytics.com"
_BLOG_SLUGS = (
    "account-based-marketing-guide",
    "b2b-audience-segmentation",
    "product-led-growth-metrics",
    "intent-data-101",
    "customer-health-scores",
    "churn-signals",
    "revops-playbook",
    "warehouse-native-cdp",
)
# (name, path, title, weight) of the marketing site's landing pages.
_PAGES = (
    ("Home", "/", "Northwind Analytics", 12),
    ("Pricing", "/pricing", "Pricing | Northwind", 6),
    ("Features", "/features", "Features | Northwind", 5),
    ("Customers", "/customers", "Customers | Northwind", 2),
    ("Sign Up", "/signup", "Sign up | Northwind", 4),
    ("Book a Demo", "/demo", "Book a demo | Northwind", 3),
    *(
        ("Blog", f"/blog/{slug}", f"{slug.replace('-', ' ').title()} | Northwind Blog", 1)
        for slug in _BLOG_SLUGS
    ),
)
PAGE_TABLE = tuple(i for i, page in enumerate(_PAGES) for _ in range(page[3]))
SIGNUP_PAGE = 4
EXTERNAL_REFERRERS = (
    "https://www.google.com/",
    "https://www.google.com/",
    "https://www.linkedin.com/",
    "https://www.bing.com/",
    "https://news.ycombinator.com/",
    "https://www.g2.com/",
    "",
)

_FEATURES = (
    ("dashboards", "Dashboards", 35),
    ("reports", "Reports", 25),
    ("exports", "Exports", 15),
    ("integrations", "Integrations", 10),
    ("alerts", "Alerts", 10),
    ("api", "API Keys", 5),
)
# Weighted tables: index with int(random() * len(table)).
FEATURE_PROPS = tuple(
    f'{{"feature":"{feature}"}}' for feature, _, weight in _FEATURES for _ in range(weight)
)
FEATURE_SCREENS = tuple(screen for _, screen, weight in _FEATURES for _ in range(weight))
_NPS_WEIGHTS = (2, 1, 1, 2, 2, 4, 6, 10, 18, 26, 28)
NPS_SCORES = tuple(score for score, weight in enumerate(_NPS_WEIGHTS) for _ in range(weight))

DIRTY_KINDS = ("invalid_json", "missing_ids", "bad_timestamp", "unknown_type", "oversized")
DIRTY_TABLE = tuple(
    kind
    for kind, weight in zip(DIRTY_KINDS, (30, 20, 20, 29, 1), strict=True)
    for _ in range(weight)
)
OVERSIZED_LIMIT = 32 * 1024
_GARBAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    "upstream connect error or disconnect/reset before headers",
    "#!~~ corrupted record ~~!#",
    "undefined",
)
_BAD_TIMESTAMPS = ("not-a-date", "2026-13-45T99:00:00Z", "yesterday")
_UNKNOWN_TYPES = ("pageview", "trak", "purchase")
_FILLER = "at com.northwind.ingest.Worker.run(Worker.java:42) "

_UUID_V4_MASK = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID_V4_BITS = (0x8000 << 48) | (4 << 76)
_MMSS = tuple(f"{s // 60:02d}:{s % 60:02d}." for s in range(3600))
_MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))


def iso_hour(epoch_seconds: int) -> str:
    """The UTC hour of an instant as `YYYY-MM-DDTHH`, the year in four digits (`0100`, which
    `strftime("%Y")` writes `100` on Linux)."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return f"{moment.year:04d}-{moment:%m-%dT%H}"


class _HourPrefixes(dict[int, str]):
    """Epoch hour -> "YYYY-MM-DDTHH:", computed on first use."""

    def __missing__(self, hour: int) -> str:
        prefix = self[hour] = iso_hour(hour * 3600) + ":"
        return prefix


_HOUR_PREFIX = _HourPrefixes()


def dumps(value: object) -> str:
    """Compact JSON."""
    return json.dumps(value, separators=(",", ":"))


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds, e.g. 2026-10-01T13:45:12.345Z."""
    rest = ms % HOUR_MS
    return f"{_HOUR_PREFIX[ms // HOUR_MS]}{_MMSS[rest // 1000]}{_MILLIS[rest % 1000]}"


def uuid4_str(rng: random.Random) -> str:
    """A version-4 UUID string drawn from `rng`, same as `uuid.UUID(int=..., version=4)`."""
    h = ((rng.getrandbits(128) & _UUID_V4_MASK) | _UUID_V4_BITS).to_bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def context(library: int, group_id: str | None = None) -> str:
    """The `"context":{...}` fragment, with `groupId` when given."""
    if group_id is None:
        return f'"context":{{"library":{LIBRARIES[library]}}}'
    return f'"context":{{"groupId":"{group_id}","library":{LIBRARIES[library]}}}'


@cache
def page_fragment(page: int, referrer: str) -> str:
    """The `"name":..,"properties":{path,url,title,referrer}` fragment of a page call."""
    name, path, title, _ = _PAGES[page]
    properties = {"path": path, "url": SITE + path, "title": title, "referrer": referrer}
    return f'"name":{dumps(name)},"properties":{dumps(properties)}'


def page_url(page: int) -> str:
    """Full URL of a page, used as the referrer of the next page in a visit."""
    return SITE + _PAGES[page][1]


def dirty_line(
    kind: str, rng: random.Random, user_id: str, anonymous_id: str, received_ms: int
) -> str:
    """A line with exactly one defect of `kind` (see DIRTY_KINDS) and a fresh messageId."""
    sent_ms = received_ms - 20 - int(rng.random() * 400)
    message = {
        "messageId": uuid4_str(rng),
        "type": "track",
        "event": "Feature Used",
        "userId": user_id,
        "anonymousId": anonymous_id,
        "properties": {"feature": rng.choice(_FEATURES)[0]},
        "context": {"library": {"name": "analytics.js", "version": LIBRARY_VERSIONS[0]}},
        "timestamp": iso(sent_ms - int(rng.random() * 500)),
        "sentAt": iso(sent_ms),
        "receivedAt": iso(received_ms),
    }
    if kind == "invalid_json":
        return _invalid_json(rng, dumps(message))
    if kind == "missing_ids":
        del message["userId"], message["anonymousId"]
    elif kind == "bad_timestamp":
        message["timestamp"] = rng.choice(_BAD_TIMESTAMPS)
    elif kind == "unknown_type":
        message["type"] = rng.choice(_UNKNOWN_TYPES)
    elif kind == "oversized":
        size = OVERSIZED_LIMIT + 1024 + rng.randrange(12_000)
        message["properties"]["stack_trace"] = (_FILLER * (size // len(_FILLER) + 1))[:size]
    return dumps(message)


def _invalid_json(rng: random.Random, text: str) -> str:
    variant = rng.randrange(3)
    if variant == 0:
        return text[: rng.randrange(20, len(text) - 1)]
    if variant == 1:
        return rng.choice(_GARBAGE)
    return f"[{text}]"
