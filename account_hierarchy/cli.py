"""The `account-hierarchy` command line."""

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click
import duckdb
import ibis.common.exceptions

from account_hierarchy import settings
from account_hierarchy.activation.deliver import sync
from account_hierarchy.activation.plan import NothingToSyncError
from account_hierarchy.activation.transport import DestinationUnavailableError, sender_for
from account_hierarchy.audiences import queries as audience_queries
from account_hierarchy.audiences.evaluate import NotComputedError
from account_hierarchy.catalog.loader import Catalog, DefinitionError, load_catalog
from account_hierarchy.hierarchy.queries import (
    NotInSnapshotError,
    account_profile,
    latest_snapshot_hour,
    tree_nodes,
    user_profile,
)
from account_hierarchy.hours import parse_hour
from account_hierarchy.ingest.landing import list_landing_files
from account_hierarchy.output import emit, emit_record, format_option, one_line, shown
from account_hierarchy.sample.generator import DEFAULT_START, generate_sample
from account_hierarchy.traits.compute import TRAIT_TABLES
from account_hierarchy.traits.queries import trait_rows
from account_hierarchy.traits.sql_traits import closest_name
from account_hierarchy.warehouse import WarehouseError, open_warehouse


class HourParam(click.ParamType):
    """A snapshot hour: `2026-10-01T10`, `2026-10-01T10:00`, or a partition key
    `2026-10-01-10:00` (UTC)."""

    name = "HOUR"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_hour(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


as_of_option = click.option(
    "--as-of",
    "as_of",
    type=HourParam(),
    default=None,
    help="Snapshot hour (UTC): what was known from events before the end of that hour. "
    "Default: the newest snapshot.",
)


@contextmanager
def _reading() -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only warehouse connection; clear errors instead of tracebacks."""
    try:
        with open_warehouse(_existing_warehouse(), read_only=True) as con:
            yield con
    except (NotInSnapshotError, NotComputedError, WarehouseError) as error:
        raise click.ClickException(str(error)) from error
    except (duckdb.CatalogException, ibis.common.exceptions.TableNotFound) as error:
        # (DuckDB: `Catalog Error: Table with name accounts does not exist!`; Ibis: `accounts`)
        named = re.search(r"Table with name (\S+) does not exist", _first_line(error))
        table = named[1] if named else _first_line(error)
        raise click.ClickException(
            f"{table}: the warehouse has no such table yet; materialize it first."
        ) from error


def _existing_warehouse() -> Path:
    path = settings.warehouse_path()
    if not path.exists():
        raise click.ClickException(f"No warehouse at {path}: materialize some assets first.")
    return path


def _check_audience_defined(catalog: Catalog, audience: str) -> None:
    names = [a.audience.name for a in catalog.audiences]
    if audience not in names:
        hint = closest_name("audience", audience, names)
        raise click.ClickException(f"No audience {audience!r} in {catalog.folder}; {hint}")


def _finite(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    """An option's number, refused when it is `nan` or `inf` (which ranges let through)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number.")
    return value


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


@click.group()
def main() -> None:
    """account_hierarchy: account-level audiences from Segment events, as a Dagster asset graph."""


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write into [default: AH_LANDING_DIR, else data/landing].",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--accounts", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--users", type=click.IntRange(min=1), default=3000, show_default=True)
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),  # (a day: the files cover its hours 0 to 5, ...)
    default=DEFAULT_START.strftime("%Y-%m-%d"),
    show_default=True,
    help="First day (from midnight UTC).",
)
@click.option(
    "--activity",
    type=click.FloatRange(min=0, min_open=True),
    callback=_finite,
    default=1.0,
    show_default=True,
    help="Scale every user's session rate (1.0 gives ~70 events per user over 30 days).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Days written at once by worker processes (the files are the same either way).",
)
@click.option(
    "--if-empty",
    is_flag=True,
    help="Do nothing when the folder already holds files (used by `make run`).",
)
@format_option
def sample(
    out: Path | None,
    seed: int,
    accounts: int,
    users: int,
    days: int,
    start: datetime,
    activity: float,
    processes: int,
    if_empty: bool,
    output_format: str,
) -> None:
    """Write a realistic, deterministic Segment sample (NDJSON, some gzipped) to a folder."""
    out = out or settings.landing_dir()
    if if_empty and list_landing_files(out):
        click.echo(f"{out} already holds files; not generating a sample.", err=True)
        return
    try:
        summary = generate_sample(
            out, seed=seed, accounts=accounts, users=users, days=days,
            start=start.replace(tzinfo=UTC), activity=activity, processes=processes,
        )  # fmt: skip
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"{error.filename or out}: {error.strerror or error}") from None
    row = {"folder": str(out), **asdict(summary)}
    row["dirty_lines"] = sum(summary.dirty_lines.values())
    row |= {f"dirty_{kind}": count for kind, count in summary.dirty_lines.items()}
    emit([row], output_format)


@main.group()
def show() -> None:
    """Show one account or user as of a snapshot hour."""


@show.command("account")
@click.argument("account_id")
@as_of_option
@format_option
def show_account(account_id: str, as_of: datetime | None, output_format: str) -> None:
    """An account's traits, parent chain, children and users (or, for a parent that never sent
    a group call, the accounts that name it)."""
    _show(account_profile, account_id, as_of, output_format)


@show.command("user")
@click.argument("user_id")
@as_of_option
@format_option
def show_user(user_id: str, as_of: datetime | None, output_format: str) -> None:
    """A user's traits and accounts, with each account's traits."""
    _show(user_profile, user_id, as_of, output_format)


def _show(
    profile: Callable[[duckdb.DuckDBPyConnection, str, datetime], dict],
    entity_id: str,
    as_of: datetime | None,
    output_format: str,
) -> None:
    with _reading() as con:
        record = profile(con, entity_id, as_of or latest_snapshot_hour(con))
    emit_record(record, output_format)


@main.command()
@click.argument("root", required=False)
@as_of_option
@format_option
def tree(root: str | None, as_of: datetime | None, output_format: str) -> None:
    """Draw the account hierarchy (or the subtree under ROOT) as an indented tree."""
    with _reading() as con:
        hour = as_of or latest_snapshot_hour(con)
        nodes = tree_nodes(con, hour, root)
    if output_format == "jsonl":
        emit(nodes, output_format)
        return
    if not nodes:
        click.echo(f"No account has sent a group call by the snapshot of {hour}.")
    for node in nodes:
        click.echo("  " * node["level"] + _tree_label(node))


def _tree_label(node: dict) -> str:
    """An account's line of the tree (ids and names with line breaks kept on it)."""
    if not node["seen"]:
        return f"{one_line(node['account_id'])}  (never sent a group call)"
    label = one_line(node["account_id"])
    if node.get("name"):
        label += f"  {one_line(shown(node['name']))}"
    users = node["user_count"]
    label += f"  ({users} user{'' if users == 1 else 's'})"
    if node["in_cycle"]:
        label += f"  [cycle: parent is {one_line(node['parent_account_id'])}]"
    return label


@main.command()
@format_option
def validate(output_format: str) -> None:
    """Validate the definitions in AH_DEFINITIONS_DIR; exit 1 on any problem."""
    folder = settings.definitions_dir()
    try:
        catalog = load_catalog(folder)
    except DefinitionError as error:
        if output_format == "jsonl":
            emit([{"problem": problem} for problem in error.problems], output_format)
        else:
            click.echo(str(error), err=True)
        raise SystemExit(1) from None
    rows = _definition_rows(catalog)
    emit(rows, output_format)
    if output_format != "jsonl":
        counts = {"trait": len(catalog.traits), "audience": len(catalog.audiences),
                  "destination": len(catalog.destinations)}  # fmt: skip
        listed = ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in counts.items())
        click.echo(f"\n{listed} in {folder}: all valid.")


def _definition_rows(catalog: Catalog) -> list[dict]:
    """A row per definition, in the files' order: traits (with their value columns), then
    audiences, then destinations (with their type)."""
    traits = [
        {"kind": "trait", "name": t.trait.name, "entity": t.trait.entity, "type": t.trait.type,
         "columns": ", ".join(t.columns), "file": f"{t.file}:{t.line}"}
        for t in catalog.traits
    ]  # fmt: skip
    audiences = [
        {"kind": "audience", "name": a.audience.name, "entity": a.audience.entity, "type": None,
         "columns": None, "file": f"{a.file}:{a.line}"}
        for a in catalog.audiences
    ]  # fmt: skip
    destinations = [
        {"kind": "destination", "name": d.destination.name, "entity": None,
         "type": d.destination.type, "columns": None, "file": f"{d.file}:{d.line}"}
        for d in catalog.destinations
    ]  # fmt: skip
    return traits + audiences + destinations


@main.command()
@click.argument("entity", type=click.Choice(["account", "user"]))
@click.argument("entity_id", required=False)
@as_of_option
@format_option
def traits(entity: str, entity_id: str | None, as_of: datetime | None, output_format: str) -> None:
    """Trait values of every account (user), or of one, as of a snapshot hour."""
    with _reading() as con:
        hour = as_of or latest_snapshot_hour(con, (TRAIT_TABLES[entity],))
        rows = trait_rows(con, entity, hour, entity_id)
    emit(rows, output_format)


@main.command()
@click.argument("audience")
@as_of_option
@format_option
def members(audience: str, as_of: datetime | None, output_format: str) -> None:
    """The members of a materialized audience at a snapshot hour."""
    with _reading() as con:
        hour = as_of or audience_queries.newest_member_hour(con, audience)
        rows = audience_queries.members(con, audience, hour)
    if output_format == "jsonl":
        emit(rows, output_format)
        return
    emit([_member_line(row) for row in rows], output_format)
    click.echo(f"\n{len(rows)} members of {audience} as of {hour:%Y-%m-%d %H:00} UTC.")


def _member_line(row: dict) -> dict:
    held = [c["condition"] for c in row["reason"]["conditions"] if c["held"]]
    return {"entity_id": row["entity_id"], "entity_type": row["entity_type"],
            "conditions held": "; ".join(held)}  # fmt: skip


def _load_catalog() -> Catalog:
    try:
        return load_catalog(settings.definitions_dir())
    except DefinitionError as error:
        raise click.ClickException(str(error)) from None


@main.command()
@click.argument("audience")
@as_of_option
@format_option
def preview(audience: str, as_of: datetime | None, output_format: str) -> None:
    """Evaluate an audience (as defined now, materialized or not) without writing anything."""
    catalog = _load_catalog()
    _check_audience_defined(catalog, audience)
    with _reading() as con:
        hour = as_of or audience_queries.newest_evaluable_hour(con, catalog, audience)
        result = audience_queries.preview(con, catalog, audience, hour)
    if output_format == "jsonl":
        emit([result], output_format)
        return
    reached = next(key for key in result if key.endswith("_reached"))
    click.echo(
        f"{audience} as of {hour:%Y-%m-%d %H:00} UTC: {result['members']} "
        f"{result['entity']}s qualify, reaching {result[reached]} "
        f"{reached.removesuffix('s_reached')}s.\ncondition: {result['condition']}\n"
    )
    emit([_member_line({"entity_id": s["entity_id"], "entity_type": result["entity"],
                        "reason": s}) for s in result["sample"]], output_format)  # fmt: skip


@main.command()
@click.argument("audience")
@click.argument("entity_id")
@as_of_option
@format_option
def explain(audience: str, entity_id: str, as_of: datetime | None, output_format: str) -> None:
    """Why an account (user) is or is not in an audience, condition by condition (ids and
    values with line breaks or control characters kept on their line, escaped)."""
    catalog = _load_catalog()
    _check_audience_defined(catalog, audience)
    with _reading() as con:
        hour = as_of or audience_queries.newest_evaluable_hour(con, catalog, audience)
        result = audience_queries.explain(con, catalog, audience, entity_id, hour)
    if output_format == "jsonl":
        emit([result], output_format)
        return
    verdict = "is a member" if result["member"] else "is not a member"
    click.echo(f"{result['entity_type']} {one_line(entity_id)} {verdict} of {audience} as of "
               f"{hour:%Y-%m-%d %H:00} UTC")  # fmt: skip
    click.echo(f"condition: {one_line(result['condition'])}")
    _echo_conditions(result["conditions"], "  ")
    if result["stored_member"] is not None and result["stored_member"] != result["member"]:
        stored = "is" if result["stored_member"] else "is not"
        click.echo(f"note: the membership stored for this hour says it {stored} a member "
                   "(events loaded or definitions changed since); materialize the hour again "
                   "to store the answer above")  # fmt: skip


def _echo_conditions(conditions: list[dict], indent: str) -> None:
    """Each condition with whether it held and its values; the users that satisfied a
    quantified one; each account an `account:` condition checked, with its own conditions."""
    for condition in conditions:
        mark = "yes" if condition["held"] else "no "
        details = {k: v for k, v in condition.items() if k not in
                   ("condition", "held", "satisfying_users", "accounts_checked")}  # fmt: skip
        text = ", ".join(f"{key}: {one_line(shown(value))}" for key, value in details.items())
        click.echo(f"{indent}[{mark}] {one_line(condition['condition'])}"
                   + (f"  ({text})" if text else ""))  # fmt: skip
        if "satisfying_users" in condition:
            users = condition["satisfying_users"]
            shown_users = ", ".join(one_line(user) for user in users) or "none"
            click.echo(f"{indent}      users satisfying it: {shown_users}")
        for account in condition.get("accounts_checked", []):
            verdict = "satisfies it" if account["held"] else "does not satisfy it"
            click.echo(f"{indent}      account {one_line(account['account_id'])} {verdict}:")
            _echo_conditions(account["conditions"], indent + "        ")


@main.command("sync")
@click.argument("destination")
@click.option("--dry-run", is_flag=True, help="Print what would be sent; send nothing.")
@format_option
def sync_command(destination: str, dry_run: bool, output_format: str) -> None:
    """Deliver what DESTINATION is owed at the newest snapshot (or show it with --dry-run)."""
    catalog = _load_catalog()
    chosen = next((d.destination for d in catalog.destinations
                   if d.destination.name == destination), None)  # fmt: skip
    if chosen is None:
        names = [d.destination.name for d in catalog.destinations]
        hint = closest_name("destination", destination, names)
        raise click.ClickException(f"No destination {destination!r} in {catalog.folder}; {hint}")
    path = _existing_warehouse()
    try:
        with open_warehouse(path) as con:
            sender = None if dry_run else sender_for(chosen)
            report = sync(con, catalog, chosen, sender, dry_run=dry_run)
    except (NothingToSyncError, DestinationUnavailableError, WarehouseError) as error:
        raise click.ClickException(str(error)) from None
    except duckdb.CatalogException as error:
        raise click.ClickException(
            f"{_first_line(error)}: materialize the destination's audiences and traits first."
        ) from None
    if dry_run:
        jsonl = output_format == "jsonl"
        emit(report.planned if jsonl else [_message_line(m) for m in report.planned], output_format)
        click.echo(  # (in jsonl, on standard error: standard output holds only the messages)
            ("" if jsonl else "\n")
            + f"{len(report.planned)} messages for {report.items - report.silent_items} "
            f"changes would be sent (snapshot {report.snapshot_hour:%Y-%m-%d %H:00} UTC)"
            + (
                f", {report.oversized} more are over 32 KB and would not be"
                if report.oversized
                else ""
            )
            + (
                f"; {report.silent_items} changes need no message and would only be recorded"
                if report.silent_items
                else ""
            )
            + "; nothing was sent.",
            err=jsonl,
        )
        return
    summary = {key: value for key, value in vars(report).items() if key != "planned"}
    emit([summary], output_format)


def _message_line(message: dict) -> dict:
    """A message as a table row: its event, then its traits or properties."""
    fields = message.get("traits") or message.get("properties") or {}
    what = ", ".join(f"{key}={shown(value)}" for key, value in fields.items())
    if message.get("event"):
        what = f"{message['event']}: {what}" if what else message["event"]
    return {"type": message["type"], "entity": message.get("groupId") or message.get("userId"),
            "what": what, "messageId": message["messageId"]}  # fmt: skip
