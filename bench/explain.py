"""EXPLAIN ANALYZE of the queries an endpoint or the sweep actually runs.

The app is built in-process on an engine whose ``before_cursor_execute`` hook records
every statement with its parameters; each request is then replayed through FastAPI's
TestClient and every recorded SELECT is re-run under ``EXPLAIN (ANALYZE, BUFFERS)``
(writes are explained inside a transaction that is rolled back). The slowest plans are
kept, and any sequential scan of a big table is flagged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event

BIG_TABLES = (
    "incidents",
    "persons",
    "contact_attempts",
    "contact_codes",
    "incident_substances",
    "alerts",
    "safety_plan_actions",
    "safety_plan_versions",
    "audit_log",
    "idempotency_keys",
)
_SEQ = re.compile(r"Seq Scan on (\w+)")
# A data-modifying part of a statement (an INSERT, UPDATE or DELETE anywhere in it, e.g. in a
# WITH part): words followed by what only those statements have, so that a column such as
# updated_at or a name such as "delete" never counts.
_WRITES = re.compile(
    r"\b(INSERT\s+INTO|UPDATE\s+[\w.\"]+(\s+(AS\s+)?\w+)?\s+SET|DELETE\s+FROM)\b", re.IGNORECASE
)
_PARALLEL_SEQ = re.compile(r"Parallel Seq Scan on (\w+)")


class Recorder:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.statements: list[tuple[str, Any]] = []
        self.on = False
        event.listen(engine, "before_cursor_execute", self._hook)

    def _hook(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if self.on and not executemany:
            self.statements.append((statement, parameters))

    def capture(self, fn: Callable[[], Any]) -> list[tuple[str, Any]]:
        self.statements = []
        self.on = True
        try:
            fn()
        finally:
            self.on = False
        return list(self.statements)


def is_write_statement(statement: str) -> bool:
    """Whether the statement writes: an INSERT, UPDATE or DELETE, or a WITH statement with
    one of those in it. A WITH statement that only reads (the summary report's) is a read:
    before, every WITH statement counted as a write, so the report's main statement was
    never explained in ``make bench``'s read plans."""
    head = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
    if head in ("INSERT", "UPDATE", "DELETE"):
        return True
    return head == "WITH" and _WRITES.search(statement) is not None


def explain(
    engine: Engine,
    statements: list[tuple[str, Any]],
    *,
    keep: int = 4,
    include_writes: bool = False,
) -> list[dict]:
    """EXPLAIN ANALYZE each statement; return the ``keep`` slowest with their plans."""
    out = []
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        # Settings the code applies to its own transaction (SET LOCAL jit = off, work_mem ...)
        # are applied again before each statement explained after them, so the plan is the
        # one the code really gets.
        settings: list[tuple[str, Any]] = []
        for statement, params in statements:
            head = statement.lstrip().split(None, 1)[0].upper()
            if head == "SET":
                settings.append((statement, params))
                continue
            if head in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "SHOW"):
                continue
            if "pg_advisory" in statement or "alembic_version" in statement:
                continue
            is_write = is_write_statement(statement)
            if is_write and not include_writes:
                continue
            cur = dbapi.cursor()
            try:
                for setting, setting_params in settings:
                    cur.execute(setting, setting_params)
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + statement, params)
                plan = "\n".join(r[0] for r in cur.fetchall())
            except Exception as exc:  # noqa: BLE001 - report, never abort the bench
                dbapi.rollback()
                plan = f"(could not explain: {type(exc).__name__}: {str(exc)[:200]})"
            finally:
                cur.close()
            dbapi.rollback()
            m = re.search(r"Execution Time: ([\d.]+) ms", plan)
            ms = float(m.group(1)) if m else -1.0
            seqs = sorted(
                {t for t in _SEQ.findall(plan) + _PARALLEL_SEQ.findall(plan) if t in BIG_TABLES}
            )
            out.append(
                {
                    "sql": statement.strip(),
                    "execution_ms": ms,
                    "seq_scans_on_big_tables": seqs,
                    "plan": plan,
                }
            )
    finally:
        raw.close()
    out.sort(key=lambda r: r["execution_ms"], reverse=True)
    return out[:keep]
