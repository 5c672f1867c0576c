"""Run every benchmark figure at one scale and print one table.

    python -m benchmarks [--events 10000000] [--figures generate,ingest,snapshot,backfill,engines]
                         [--backfill-hours 720]

Each figure runs in its own process (so that its peak memory is its own) through its command,
`python -m benchmarks.<figure> --events N --format jsonl`. The last column says whether the
row meets the goal of issue 8 that applies to it; goals are stated for a scale (100M events
for the snapshot, 10M for the backfill), so a row at another scale shows the goal unjudged.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import positive, print_rows

FIGURES = ("generate", "ingest", "snapshot", "backfill", "engines")
# (figure, what starts with, scale the goal is stated for or None for any, test, goal text)
GOALS = [
    ("generate", "sample, 30 days", 100_000_000, lambda r: r["peak MiB"] < 24 * 1024,
     "100M events without running out of memory"),
    ("ingest", "account_hierarchy", None, lambda r: r["events/s"] >= 500_000,
     ">= 500,000 events/s"),
    ("snapshot", "one hourly", 100_000_000,
     lambda r: r["seconds"] < 30 and r["peak MiB"] < 4096, "< 30 s and < 4 GiB at 100M events"),
    ("backfill", "traits and audiences, 720", 10_000_000, lambda r: r["seconds"] < 120,
     "< 2 minutes for 720 hours at 10M events"),
]  # fmt: skip


def judged(row: dict, scale: int) -> dict:
    """The row with its goal and whether it is met (empty when no goal applies)."""
    for figure, prefix, goal_scale, test, text in GOALS:
        if row["figure"] == figure and row["what"].startswith(prefix):
            applies = goal_scale is None or goal_scale == scale
            return {**row, "goal": text, "met": ("yes" if test(row) else "NO") if applies else
                    f"(goal is at {goal_scale:,})"}  # fmt: skip
    return {**row, "goal": "", "met": ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=positive, default=10_000_000)
    parser.add_argument("--figures", default=",".join(FIGURES))
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/.work"))
    parser.add_argument("--backfill-hours", type=positive, default=720)
    args = parser.parse_args()
    figures = args.figures.split(",")
    if unknown := [figure for figure in figures if figure not in FIGURES]:  # (before any runs)
        parser.error(f"unknown figure {unknown[0]!r}; choose from {', '.join(FIGURES)}")
    rows = []
    for figure in figures:
        command = [sys.executable, "-m", f"benchmarks.{figure}", "--events", str(args.events),
                   "--work-dir", str(args.work_dir), "--format", "jsonl"]  # fmt: skip
        if figure == "backfill":
            command += ["--hours", str(args.backfill_hours)]
        output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows += [judged(json.loads(line), args.events) for line in output.splitlines()]
    print_rows(rows)


if __name__ == "__main__":
    main()
