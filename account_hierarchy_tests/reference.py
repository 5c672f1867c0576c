"""An independent, plain-Python computation of the hierarchy snapshots, for the tests."""

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

TYPES = {"track", "identify", "group", "page", "screen"}


def is_valid(line: str) -> bool:
    """A plain reading of the Segment rules, independent of the SQL implementation."""
    if len(line.encode()) > 32 * 1024:
        return False
    try:
        message = json.loads(line)
        moment(message)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    if not isinstance(message, dict) or message.get("type") not in TYPES:
        return False
    if not isinstance(message.get("messageId"), str) or not message["messageId"]:
        return False
    if not (message.get("userId") or message.get("anonymousId")):
        return False
    if message["type"] == "group" and not message.get("groupId"):
        return False
    return message["type"] != "track" or bool(message.get("event"))


def read_lines(landing: Path) -> list[str]:
    """Every line of every landing file, in path order."""
    lines = []
    for path in sorted(landing.rglob("*")):
        if path.name.endswith((".ndjson", ".ndjson.gz")):
            lines.extend(file_lines(path))
    return lines


def file_lines(path: Path) -> list[str]:
    """The lines of one landing file (gzip-compressed when its name ends in `.gz`; a byte order
    mark at its start is not part of its first line)."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode("utf-8-sig").splitlines()


def read_events(landing: Path) -> list[dict]:
    """Every valid message of the landing files, first copy of each messageId."""
    events, seen = [], set()
    for line in read_lines(landing):
        if is_valid(line):
            message = json.loads(line)
            if message["messageId"] not in seen:
                seen.add(message["messageId"])
                events.append(message)
    return events


def moment(message: dict) -> datetime:
    return (
        datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
        .astimezone(UTC)
        .replace(tzinfo=None)
    )


def snapshot(events: list[dict], hour: datetime, parent_trait: str = "parent_account_id") -> dict:
    """users, accounts, memberships and hierarchy as of the end of `hour`."""
    cutoff = hour + timedelta(hours=1)
    known = sorted(
        (e for e in events if moment(e) < cutoff), key=lambda e: (moment(e), e["messageId"])
    )
    users: dict[str, dict] = {}
    accounts: dict[str, dict] = {}
    memberships: dict[tuple[str, str], dict] = {}
    for e in known:
        at = moment(e)
        if e.get("userId"):
            user = users.setdefault(e["userId"], {"first": at, "last": at, "traits": {}})
            user["last"] = at
            if e["type"] == "identify":
                user["traits"].update(e.get("traits") or {})
        if e["type"] == "group":
            account = accounts.setdefault(e["groupId"], {"first": at, "last": at, "traits": {}})
            account["last"] = at
            account["traits"].update(e.get("traits") or {})
            if e.get("userId"):
                edge = memberships.setdefault((e["userId"], e["groupId"]), {"first": at})
                edge["last"] = at
    for account_id, account in accounts.items():
        parent = account["traits"].get(parent_trait)
        account["parent"] = str(parent) if parent not in (None, "") else None
        account["users"] = sum(1 for _, a in memberships if a == account_id)
    return {
        "users": users,
        "accounts": accounts,
        "memberships": memberships,
        "hierarchy": {a: _place(a, accounts) for a in accounts},
    }


def _place(account_id: str, accounts: dict) -> dict:
    chain = [account_id]
    while True:
        parent = accounts.get(chain[-1], {}).get("parent")
        if parent is None:
            break
        if parent in chain:
            if parent == account_id:  # a cycle member is its own root
                return {"ultimate": account_id, "depth": 0, "path": [account_id], "cycle": True}
            chain = chain[: chain.index(parent) + 1]
            break
        chain.append(parent)
    path = list(reversed(chain))
    return {"ultimate": path[0], "depth": len(path) - 1, "path": path, "cycle": False}
