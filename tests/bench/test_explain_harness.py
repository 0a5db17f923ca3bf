"""The EXPLAIN harness tells reads from writes by what a statement does, not how it starts."""

# ruff: noqa: E501  (SQL one-liners read better unwrapped)

from __future__ import annotations

import pytest

from bench.explain import is_write_statement


@pytest.mark.parametrize(
    "sql",
    [
        "WITH period AS MATERIALIZED (SELECT updated_at, deleted FROM incidents) SELECT * FROM period",
        "with x as (select 1 as insert_count) select * from x",
        "SELECT 1",
        "SELECT id FROM incidents WHERE updated_at > now()",
    ],
)
def test_a_statement_that_only_reads_is_explained_as_a_read(sql):
    assert not is_write_statement(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO alerts (id) VALUES (1)",
        "UPDATE incidents SET fu_status = 'closed'",
        "DELETE FROM alerts",
        "WITH w0 AS (UPDATE idempotency_keys SET status_code = 201) INSERT INTO audit_log VALUES (1)",
        "WITH incident AS (INSERT INTO incidents (id) VALUES (1) RETURNING id) SELECT id FROM incident",
        "with gone as (delete from alerts where id = 1 returning id) select id from gone",
        'WITH x AS (UPDATE "incidents" AS i SET fu_status = 1 RETURNING 1) SELECT 1',
    ],
)
def test_a_statement_that_writes_anywhere_is_a_write(sql):
    assert is_write_statement(sql)
