"""Generator benchmark: writing the sample of a scale with two worker processes (days in
parallel, one 6-hour window in memory per worker), and its first three days written with two
processes against one.

    python -m benchmarks.generate [--events 10000000] [--format jsonl]

The sample is written once and reused by the other benchmarks; its figures are recorded then.
"""

import tempfile
from pathlib import Path

from account_hierarchy.sample.generator import generate_sample
from benchmarks.common import figure_arguments, print_rows, row, timed, versus
from benchmarks.scale import ACTIVITY, DAYS, Scale

COMPARED_DAYS = 3


def measure(scale: Scale) -> list[dict]:
    """Rows: the whole sample with two processes (recorded when it was made), then its first
    three days written with two processes and with one, in this run."""
    summary = scale.generate(processes=2)
    whole = row("generate", f"sample, {DAYS} days, 2 processes", summary["lines"],
                summary["seconds"], **{"peak MiB": summary["peak MiB"]})  # fmt: skip
    ours, baseline = (_write_first_days(scale, processes) for processes in (2, 1))
    return [whole, *versus(ours, baseline)]


def _write_first_days(scale: Scale, processes: int) -> dict:
    """The row of the sample's first days written with `processes` processes."""
    with tempfile.TemporaryDirectory(dir=scale.work_dir) as scratch:
        seconds, written = timed(
            lambda: generate_sample(
                Path(scratch),
                accounts=scale.accounts,
                users=scale.users,
                days=COMPARED_DAYS,
                activity=ACTIVITY,
                processes=processes,
            )
        )
    process_count = "1 process" if processes == 1 else f"{processes} processes"
    return row("generate", f"{COMPARED_DAYS} days, {process_count}", written.lines, seconds)


def main() -> None:
    args = figure_arguments(__doc__, 10_000_000)
    print_rows(measure(Scale(args.events, args.work_dir)), args.format)


if __name__ == "__main__":
    main()
