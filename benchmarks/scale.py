"""Benchmark inputs at a chosen scale, generated once and reused from `benchmarks/.work`.

A scale is a number of events: the sample has `events / 100` users and a tenth as many
accounts over 30 days, with the activity raised so that users average ~100 events each
(100M events: 100,000 accounts and 1M users, the issue's laptop goal).
"""

import itertools
import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from account_hierarchy.ingest.load import ingest_window
from account_hierarchy.sample.generator import DEFAULT_START, generate_sample
from account_hierarchy.warehouse import connect
from benchmarks.common import last_peak_mib, timed

DAYS = 30
ACTIVITY = 1.5
EVERYTHING = (datetime(2020, 1, 1), datetime(2030, 1, 1))
DEFINITIONS = Path(__file__).parent.parent / "data" / "definitions"


@dataclass(frozen=True)
class Scale:
    """The sample's size and where its files live."""

    events: int
    work_dir: Path

    @property
    def users(self) -> int:
        return max(100, self.events // 100)

    @property
    def accounts(self) -> int:
        return max(20, self.users // 10)

    @property
    def folder(self) -> Path:
        return self.work_dir / f"scale-{self.events}"

    @property
    def landing(self) -> Path:
        return self.folder / "landing"

    @property
    def warehouse(self) -> Path:
        """The warehouse with every event ingested (made by the ingest benchmark)."""
        return self.folder / "warehouse.duckdb"

    @property
    def last_hour(self) -> datetime:
        return DEFAULT_START.replace(tzinfo=None) + timedelta(days=DAYS, hours=-1)

    def generate(self, processes: int = 2) -> dict:
        """Write the sample (unless already there); return the generator's summary."""
        marker = self.folder / "summary.json"
        if marker.exists():
            return json.loads(marker.read_text())
        shutil.rmtree(self.landing, ignore_errors=True)
        seconds, summary = timed(
            lambda: generate_sample(
                self.landing, accounts=self.accounts, users=self.users, days=DAYS,
                activity=ACTIVITY, processes=processes,
            )
        )  # fmt: skip
        result = {"lines": summary.lines, "valid_events": summary.valid_events,
                  "seconds": seconds, "peak MiB": last_peak_mib()}  # fmt: skip
        marker.write_text(json.dumps(result))
        return result

    def ingested(self) -> Path:
        """The warehouse with every line of the sample ingested (made once, a day at a time so
        that staging never holds more than a day of lines; the ingest benchmark may have made
        it in one window instead)."""
        if not self.warehouse.exists():
            self.generate()
            scratch = self.folder / "ingesting.duckdb"
            scratch.unlink(missing_ok=True)
            first = DEFAULT_START.replace(tzinfo=None)
            days = [first + timedelta(days=day) for day in range(DAYS + 1)]
            windows = [(EVERYTHING[0], first), *itertools.pairwise(days), (days[-1], EVERYTHING[1])]
            with connect(scratch) as con:
                for window in windows:
                    ingest_window(con, self.landing, *window, EVERYTHING[0])
            scratch.rename(self.warehouse)
        return self.warehouse
