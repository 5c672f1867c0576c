"""Generator benchmark: writing the sample of a scale with two worker processes (days in
parallel, one 6-hour window in memory per worker), against the same generator in one process
on the scale's first two days.

    python -m benchmarks.generate [--events 10000000] [--format jsonl]

The sample is written once and reused by the other benchmarks; its figures are recorded then.
"""

import tempfile
from pathlib import Path

from account_hierarchy.sample.generator import generate_sample
from benchmarks.common import figure_arguments, print_rows, row, timed, versus
from benchmarks.scale import ACTIVITY, Scale


def measure(scale: Scale) -> list[dict]:
    """Both rows: the parallel writer (recorded when the sample was made) and one process."""
    summary = scale.generate(processes=2)
    ours = row("generate", "sample, 2 processes", summary["lines"], summary["seconds"],
               **{"peak MiB": summary["peak MiB"]})  # fmt: skip
    with tempfile.TemporaryDirectory(dir=scale.work_dir) as scratch:
        seconds, serial = timed(
            lambda: generate_sample(
                Path(scratch),
                accounts=scale.accounts,
                users=scale.users,
                days=2,
                activity=ACTIVITY,
                processes=1,
            )
        )
    baseline = row("generate", "same generator, 1 process, 2 days", serial.lines, seconds)
    return versus(ours, baseline)


def main() -> None:
    args = figure_arguments(__doc__, 10_000_000)
    print_rows(measure(Scale(args.events, args.work_dir)), args.format)


if __name__ == "__main__":
    main()
