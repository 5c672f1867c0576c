"""Ingest benchmark: every line of the scale's sample (plain and gzipped files, dirty lines,
duplicates) classified, de-duplicated and loaded into a fresh warehouse, against
`pandas.read_json(lines=True)` on one file of at most a million of the sample's lines (which
only parses: no checks, no de-duplication, no writing).

    python -m benchmarks.ingest [--events 10000000] [--format jsonl]

The warehouse is kept as the scale's, for the snapshot and backfill benchmarks.
"""

import pandas as pd

from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.warehouse import connect
from benchmarks.common import figure_arguments, one_file_of_events, print_rows, row, timed, versus
from benchmarks.scale import EVERYTHING, Scale

BASELINE_EVENTS = 1_000_000


def measure(scale: Scale) -> list[dict]:
    """Both rows: our ingest of the whole sample, and pandas parsing a file of its lines."""
    scale.generate()
    scratch = scale.folder / "ingest-run.duckdb"
    scratch.unlink(missing_ok=True)
    with connect(scratch) as con:
        seconds, report = timed(
            lambda: ingest_window(con, scale.landing, *EVERYTHING, EVERYTHING[0])
        )
    assert report.lines_read == report.loaded + report.quarantined + report.duplicates
    ours = row("ingest", "account_hierarchy ingest", report.lines_read, seconds)
    if scale.warehouse.exists():
        scratch.unlink()
    else:
        scratch.rename(scale.warehouse)
    source = one_file_of_events(scale.work_dir, min(scale.events, BASELINE_EVENTS))
    baseline_seconds, frame = timed(lambda: pd.read_json(source, lines=True))
    baseline = row("ingest", "pandas read_json(lines=True)", len(frame), baseline_seconds)
    return versus(ours, baseline)


def main() -> None:
    args = figure_arguments(__doc__, 10_000_000)
    print_rows(measure(Scale(args.events, args.work_dir)), args.format)


if __name__ == "__main__":
    main()
