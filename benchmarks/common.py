"""Helpers shared by the benchmarks: timing, peak memory, sample files, a results table."""

import argparse
import contextlib
import gzip
import json
import re
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from account_hierarchy.sample.generator import generate_sample


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by `run()`, and what it returned. The process's peak memory is reset
    first, so that `peak_rss_mib()` afterwards is the peak of `run` alone."""
    reset_peak_rss()
    started = time.perf_counter()
    value = run()
    return time.perf_counter() - started, value


def reset_peak_rss() -> None:
    """Start this process's peak resident memory again from its current size (Linux: the
    `VmHWM` that `/proc/self/clear_refs` resets; elsewhere nothing happens)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    """Peak resident memory of this process since the last `reset_peak_rss` (where the
    platform cannot reset it: since the process started), in MiB."""
    with contextlib.suppress(OSError):
        status = Path("/proc/self/status").read_text()
        if found := re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE):
            return int(found.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_file_of_events(folder: Path, events: int, seed: int = 1) -> Path:
    """A single NDJSON file of `events` parseable sample messages (dirty lines left out, so a
    plain pandas reader can read it too). Reused when it already exists."""
    target = folder / f"events-{events}.ndjson"
    if target.exists():
        return target
    scratch = folder / "generated"
    users = max(100, events // 65)
    while True:  # (users' activity varies: grow the sample until it holds enough messages)
        shutil.rmtree(scratch, ignore_errors=True)
        generate_sample(scratch, seed=seed, accounts=max(20, users // 10), users=users, days=30)
        messages = [
            line
            for path in sorted(scratch.glob("*.ndjson")) + sorted(scratch.glob("*.ndjson.gz"))
            for line in _lines(path)
            if _is_object(line)
        ]
        if len(messages) >= events:
            break
        users = int(users * 1.2 * events / max(len(messages), 1)) + 1
    with target.open("w") as out:
        out.writelines(line + "\n" for line in messages[:events])
    return target


def _lines(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode().splitlines()


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def print_rows(rows: list[dict[str, Any]], output_format: str = "table") -> None:
    """Print benchmark rows as an aligned table, or as JSON lines (`jsonl`)."""
    if output_format == "jsonl":
        for row in rows:
            print(json.dumps(row))
    else:
        print(tabulate(rows, headers="keys", floatfmt=",.2f", intfmt=","))


def positive(text: str) -> int:
    """An argument that must be a whole number of at least 1 (events, hours)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def figure_arguments(
    description: str, events: int, **options: int | Path | str
) -> argparse.Namespace:
    """The options every figure command takes (its scale, work folder and output format),
    plus the figure's own `options` (integers, paths or text) with their defaults."""
    parser = argparse.ArgumentParser(description=description)
    for name, default in options.items():
        kind = positive if type(default) is int else type(default)
        parser.add_argument(f"--{name}", type=kind, default=default)
    parser.add_argument("--events", type=positive, default=events, help="scale, in events")
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/.work"))
    parser.add_argument("--format", choices=("table", "jsonl"), default="table")
    return parser.parse_args()


def row(figure: str, what: str, events: int, seconds: float, **extra: Any) -> dict[str, Any]:
    """One result: what ran, on how many events, how fast, and this process's peak memory."""
    return {"figure": figure, "what": what, "events": events, "seconds": seconds,
            "events/s": events / seconds if seconds else None, "peak MiB": peak_rss_mib(),
            **extra}  # fmt: skip


def versus(ours: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Both rows, ours with its speed as a multiple of the baseline's (events per second)."""
    ours["vs baseline"] = ours["events/s"] / baseline["events/s"]
    baseline["vs baseline"] = 1.0
    return [ours, baseline]
