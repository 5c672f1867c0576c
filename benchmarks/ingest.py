"""Ingest benchmark: events per second loading one NDJSON file of N events into the warehouse,
against `pandas.read_json(lines=True)` on the same file (which only parses: no checks, no
de-duplication, no writing).

    python -m benchmarks.ingest [--events 1000000] [--work-dir benchmarks/.work]
"""

import argparse
import tempfile
from datetime import datetime
from pathlib import Path

import pandas as pd

from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.warehouse import connect
from benchmarks.common import one_file_of_events, peak_rss_mib, print_table, timed


def run(events: int, work_dir: Path) -> list[dict]:
    """Measure both and return the table rows."""
    work_dir.mkdir(parents=True, exist_ok=True)
    source = one_file_of_events(work_dir, events)
    rows = []
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        landing = Path(scratch) / "landing"
        landing.mkdir()
        (landing / source.name).symlink_to(source.resolve())
        with connect(Path(scratch) / "warehouse.duckdb") as con:
            seconds, report = timed(
                lambda: ingest_window(
                    con, landing, datetime(2020, 1, 1), datetime(2030, 1, 1), datetime(2020, 1, 1)
                )
            )
        assert report.lines_read == events, report
        rows.append(_row("account_hierarchy ingest", events, seconds))
    baseline_seconds, frame = timed(lambda: pd.read_json(source, lines=True))
    assert len(frame) == events
    rows.append(_row("pandas read_json(lines=True)", events, baseline_seconds))
    rows[0]["vs baseline"] = baseline_seconds / rows[0]["seconds"]
    rows[1]["vs baseline"] = 1.0
    return rows


def _row(name: str, events: int, seconds: float) -> dict:
    return {
        "what": name,
        "events": events,
        "seconds": seconds,
        "events/s": events / seconds,
        "peak MiB": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/.work"))
    args = parser.parse_args()
    print_table(run(args.events, args.work_dir))


if __name__ == "__main__":
    main()
