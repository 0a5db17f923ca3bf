"""services.db.among: a run-time list of values as one array parameter on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import String, column, select, table, text

from services.db import IN_BATCH, among, among_batches

ITEMS = table("among_items", column("id", String(36)))


@pytest.fixture
def items(engine):
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE among_items (id VARCHAR(36) PRIMARY KEY)"))
        conn.execute(
            text("INSERT INTO among_items (id) VALUES (:id)"), [{"id": f"i{n}"} for n in range(20)]
        )
    yield
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE among_items"))


def _found(engine, values):
    dialect = engine.dialect.name
    found = []
    with engine.connect() as conn:
        for batch in among_batches(dialect, values):
            found += conn.execute(
                select(ITEMS.c.id).where(among(dialect, ITEMS.c.id, batch))
            ).scalars()
    return sorted(found)


@pytest.mark.parametrize("count", [0, 1, 3, 20])
def test_it_finds_exactly_the_rows_named(engine, items, count):
    wanted = [f"i{n}" for n in range(0, 40, 2)][:count] + ["nobody", "i3' OR '1'='1"]
    assert _found(engine, wanted) == sorted(w for w in wanted if w in {f"i{n}" for n in range(20)})


def test_the_statement_is_the_same_whatever_the_number_of_values(engine):
    dialect = engine.dialect.name
    sql = {
        str(select(ITEMS.c.id).where(among(dialect, ITEMS.c.id, values)).compile(engine))
        for values in (["a"], ["a", "b"], [f"v{n}" for n in range(100)])
    }
    if dialect == "postgresql":
        assert len(sql) == 1 and "ANY" in sql.pop()
    else:  # an IN list: its placeholders are rendered per execution
        assert all("IN" in s for s in sql)


def test_batches_are_one_array_on_postgresql_and_bounded_elsewhere():
    values = list(range(IN_BATCH * 2 + 1))
    assert among_batches("postgresql", values) == [values]
    assert among_batches("postgresql", []) == []
    assert [len(b) for b in among_batches("sqlite", values)] == [IN_BATCH, IN_BATCH, 1]
