"""Time and EXPLAIN the summary report in-process on the big database (BENCHMARKS.md,
"Follow-up: reports"): ``.venv/bin/python -m bench.reports_followup [runs] [explain-file]``."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, date, datetime

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bench import explain as ex
from services import reports
from services.config import load_settings

URL = os.environ.get(
    "NFOD_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/nfod_bench"
)
START, END = date(2025, 11, 24), date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    engine = create_engine(URL)
    rec = ex.Recorder(engine)
    settings = load_settings()

    def run() -> None:
        with Session(engine) as s:
            reports.suppress(reports.compute(s, settings=settings, now=NOW, start=START, end=END))

    for n in range(runs):
        t = time.perf_counter()
        run()
        print(f"run {n}: {1000 * (time.perf_counter() - t):.0f} ms")
    if len(sys.argv) > 2:
        rows = ex.explain(engine, rec.capture(run), keep=20)
        out = [f"# reports summary {START}..{END}, every statement, EXPLAIN (ANALYZE, BUFFERS)", ""]
        for r in rows:
            seqs = r["seq_scans_on_big_tables"] or "none"
            out += [f"-- {r['execution_ms']} ms; seq scans on big tables: {seqs}", r["sql"], ""]
            out += [r["plan"], ""]
        with open(sys.argv[2], "w") as f:
            f.write("\n".join(out))
        print("explained:", [(r["execution_ms"], r["seq_scans_on_big_tables"]) for r in rows])


if __name__ == "__main__":
    main()
