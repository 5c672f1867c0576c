"""Helpers shared by the benchmarks: timing, peak memory, sample files, a results table."""

import argparse
import contextlib
import gzip
import json
import re
import resource
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from tabulate import tabulate

from account_hierarchy.sample.generator import generate_sample


class PeakMemory:
    """Peak resident memory of this process and its child processes (a sample's pool
    workers, Spark's JVM), while in a `with` block, in MiB (`mib`).

    It is this process's own peak, which is exact (Linux's `VmHWM`, reset on entry), plus the
    peak of its children's memory sampled every 50 ms: their private pages (USS), so that a
    page a forked worker still shares with this process counts once. The two peaks may not
    coincide, so the sum is an upper bound.
    """

    INTERVAL_SECONDS = 0.05

    def __init__(self) -> None:
        self.mib = 0.0
        self._children_mib = 0.0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakMemory":
        reset_peak_rss()
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._sampler.join()
        self.mib = peak_rss_mib() + self._children_mib

    def _sample(self) -> None:
        while True:
            children = 0
            for child in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):  # (a child that just ended)
                    children += child.memory_full_info().uss
            self._children_mib = max(self._children_mib, children / 2**20)
            if self._done.wait(self.INTERVAL_SECONDS):
                return


# The peak memory of the last `timed` run, in MiB.
_last_peak_mib = 0.0


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by `run()`, and what it returned. The peak memory of this process and
    its child processes during `run` is then `last_peak_mib()`, which `row` reports."""
    global _last_peak_mib
    with PeakMemory() as peak:
        started = time.perf_counter()
        value = run()
        seconds = time.perf_counter() - started
    _last_peak_mib = peak.mib
    return seconds, value


def last_peak_mib() -> float:
    """The peak memory of the last `timed` run (this process and its children), in MiB."""
    return _last_peak_mib


def reset_peak_rss() -> None:
    """Start this process's peak resident memory again from its current size (Linux: the
    `VmHWM` that `/proc/self/clear_refs` resets; elsewhere nothing happens)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    """Peak resident memory of this process alone since the last `reset_peak_rss` (where the
    platform cannot reset it: since the process started), in MiB."""
    with contextlib.suppress(OSError):
        status = Path("/proc/self/status").read_text()
        if found := re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE):
            return int(found.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_file_of_events(folder: Path, events: int, seed: int = 1) -> Path:
    """A single NDJSON file of `events` sample lines that are JSON objects, so that a plain
    pandas reader can read it: the mix our ingest reads (re-sent duplicates, and dirty lines
    such as oversized messages or missing ids), less the lines that do not parse. Reused when
    it already exists."""
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
    """One result: what ran, on how many events, how fast, and the peak memory of the last
    `timed` run (this process and its child processes)."""
    return {"figure": figure, "what": what, "events": events, "seconds": seconds,
            "events/s": events / seconds if seconds else None, "peak MiB": last_peak_mib(),
            **extra}  # fmt: skip


def versus(ours: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Both rows, ours with its speed as a multiple of the baseline's (events per second)."""
    ours["vs baseline"] = ours["events/s"] / baseline["events/s"]
    baseline["vs baseline"] = 1.0
    return [ours, baseline]
