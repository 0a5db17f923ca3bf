"""The audit log: filters, keyset paging, the hash chain and `nfod audit verify`."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from api.deps import CurrentPrincipal, DbSession, Now
from models.audit import AuditChainLink, AuditEntry
from services import audit
from services.db import make_session_factory, send_writes_at_commit
from services.errors import NotFound
from tests.conftest import assert_problem, is_postgres, postgres_only


def _create_agencies(client, admin, clock, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        r = client.post(
            "/v1/agencies",
            json={"name": f"Agency {uuid.uuid4().hex}", "kind": "other"},
            headers=admin.headers,
        )
        assert r.status_code == 201
        ids.append(r.json()["id"])
        clock.advance(minutes=10)
    return ids


def test_filters_by_subject_actor_and_time(client, factory, clock):
    admin = factory.user("admin")
    other_admin = factory.user("admin")
    start = clock()
    ids = _create_agencies(client, admin, clock, 3)  # at start, +10, +20 min
    client.post(
        "/v1/agencies", json={"name": "By other", "kind": "other"}, headers=other_admin.headers
    )

    def items(query: str) -> list[dict]:
        r = client.get(f"/v1/audit?{query}", headers=admin.headers)
        assert r.status_code == 200, r.text
        return r.json()["items"]

    assert [e["subject_id"] for e in items(f"subject_id={ids[1]}")] == [ids[1]]
    mine = items(f"actor_id={admin.id}")
    assert [e["subject_id"] for e in mine] == list(reversed(ids))  # newest first
    assert len(items(f"actor_id={other_admin.id}")) == 1
    frm = quote((start + timedelta(minutes=5)).isoformat())
    to = quote((start + timedelta(minutes=20)).isoformat())
    assert [e["subject_id"] for e in items(f"actor_id={admin.id}&from={frm}&to={to}")] == [
        ids[2],
        ids[1],
    ]
    assert items(f"subject_id={ids[0]}&actor_id={other_admin.id}") == []
    assert [e["subject_id"] for e in items("action=create&limit=500")][-3:] == list(reversed(ids))


def test_time_filters_need_an_offset_and_an_order(client, admin, clock):
    assert_problem(client.get("/v1/audit?from=2026-11-23T09:00:00", headers=admin.headers), 422)
    body = assert_problem(
        client.get(
            "/v1/audit?from=2026-11-23T10:00:00Z&to=2026-11-23T09:00:00Z", headers=admin.headers
        ),
        422,
    )
    assert body["errors"][0]["loc"] == ["query", "from"]


def test_keyset_paging_is_stable_under_inserts(client, admin, clock):
    _create_agencies(client, admin, clock, 5)
    first = client.get("/v1/audit?limit=2", headers=admin.headers).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    # entries written after the first page do not shift the next pages
    _create_agencies(client, admin, clock, 2)
    seen = [e["seq"] for e in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(f"/v1/audit?limit=2&cursor={cursor}", headers=admin.headers).json()
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 5


def test_refused_reads_survive_the_rollback(app, admin, session, clock):
    """A request that fails keeps its "denied" entries but loses the rest of its work."""

    @app.get("/v1/test-only/denied/{subject_id}")
    def denied(subject_id: str, principal: CurrentPrincipal, db: DbSession, now: Now):
        audit.record(
            db,
            actor=principal,
            action="denied",
            at=now,
            subject_type="person",
            subject_id=subject_id,
        )
        audit.record(
            db, actor=principal, action="read", at=now, subject_type="person", subject_id=subject_id
        )
        raise NotFound("no such person")

    with TestClient(app) as c:
        assert_problem(c.get("/v1/test-only/denied/p-1", headers=admin.headers), 404)
    rows = session.execute(select(AuditEntry.action).where(AuditEntry.subject_id == "p-1")).all()
    assert [r.action for r in rows] == ["denied"]
    assert audit.verify_chain(session).ok


def test_only_admins_read_the_audit_log(client, factory):
    for role in ("coordinator", "analyst", "outreach"):
        assert_problem(client.get("/v1/audit", headers=factory.user(role).headers), 403)
    assert_problem(client.get("/v1/audit", headers=factory.partner().headers), 403)


def test_verify_passes_then_names_an_altered_entry(client, admin, clock, engine, db_url, run_cli):
    _create_agencies(client, admin, clock, 4)
    code, out, err = run_cli(db_url, "audit", "verify")
    assert code == 0, err
    assert "4 entries verified" in out

    with engine.begin() as conn:
        victim = conn.execute(
            text("SELECT seq, id FROM audit_log ORDER BY seq LIMIT 1 OFFSET 1")
        ).one()
        conn.execute(text("UPDATE audit_log SET action = 'read' WHERE seq = :s"), {"s": victim.seq})
    code, out, err = run_cli(db_url, "audit", "verify")
    assert code == 1
    assert f"seq={victim.seq}" in err and victim.id in err and "altered" in err


def test_verify_names_the_entry_after_a_removed_one(client, admin, clock, engine, db_url, run_cli):
    _create_agencies(client, admin, clock, 4)
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT seq, id FROM audit_log ORDER BY seq")).all()
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": rows[1].seq})
    code, out, err = run_cli(db_url, "audit", "verify")
    assert code == 1
    assert f"seq={rows[2].seq}" in err and rows[2].id in err and "removed" in err


def test_verify_names_a_removed_last_entry_and_new_entries_still_chain(
    client, admin, clock, engine, session
):
    """The newest entry deleted (its link stays): reported by its seq. Entries written after
    that get new seqs (never the removed one's), so the service keeps auditing."""
    _create_agencies(client, admin, clock, 3)
    with engine.begin() as conn:
        last = conn.execute(text("SELECT max(seq) FROM audit_log")).scalar_one()
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": last})
    result = audit.verify_chain(session)
    assert not result.ok and result.first_bad_seq == last and "removed" in result.reason
    session.rollback()

    _create_agencies(client, admin, clock, 1)
    newest = session.execute(select(func.max(AuditEntry.seq))).scalar_one()
    assert newest > last
    result = audit.verify_chain(session)
    assert not result.ok and result.first_bad_seq == newest and f"seq={last}" in result.reason


def test_verify_notices_a_removed_or_altered_link(client, admin, clock, engine, session):
    _create_agencies(client, admin, clock, 4)
    links = session.execute(
        select(AuditChainLink.chain_seq, AuditChainLink.entry_seq).order_by(
            AuditChainLink.chain_seq
        )
    ).all()
    session.rollback()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_chain SET hash = :h WHERE chain_seq = :c"),
            {"h": "f" * 64, "c": links[2].chain_seq},
        )
    result = audit.verify_chain(session)
    assert not result.ok and result.first_bad_seq == links[2].entry_seq
    assert "altered" in result.reason
    session.rollback()

    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM audit_chain WHERE chain_seq = :c"), {"c": links[1].chain_seq}
        )
    result = audit.verify_chain(session)
    assert not result.ok and result.first_bad_seq == links[2].entry_seq
    assert "chain broken" in result.reason


def test_listed_entries_carry_their_chain_links_hash(client, admin, clock, session):
    _create_agencies(client, admin, clock, 2)
    r = client.get("/v1/audit", headers=admin.headers)
    assert r.status_code == 200, r.text
    listed = {e["seq"]: e["hash"] for e in r.json()["items"]}
    links = dict(session.execute(select(AuditChainLink.entry_seq, AuditChainLink.hash)).all())
    assert listed and listed == {seq: links[seq] for seq in listed}
    assert len(set(listed.values())) == len(listed)


def test_verify_detects_a_reordering(client, admin, clock, engine, session):
    _create_agencies(client, admin, clock, 3)
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT seq, at FROM audit_log ORDER BY seq")).all()
        # swap the timestamps of two entries: a "reordering" of history
        conn.execute(
            text("UPDATE audit_log SET at = :at WHERE seq = :s"),
            {"at": rows[1].at, "s": rows[0].seq},
        )
    result = audit.verify_chain(session)
    assert not result.ok and result.first_bad_seq == rows[0].seq


def test_concurrent_writers_leave_one_unforked_chain(app, factory, session, engine):
    """Threads hammering audited requests: one linear chain, nothing lost, verify passes.
    On PostgreSQL the writers really overlap (the advisory lock serialises the chain)."""
    admins = [factory.user("admin") for _ in range(6)]
    per_thread = 12 if is_postgres() else 6
    errors: list[str] = []
    barrier = threading.Barrier(len(admins))

    def hammer(n: int, actor) -> None:
        c = TestClient(app, raise_server_exceptions=False)
        barrier.wait()
        for i in range(per_thread):
            r = c.post(
                "/v1/agencies", json={"name": f"T{n}-{i}", "kind": "other"}, headers=actor.headers
            )
            if r.status_code != 201:
                errors.append(r.text)

    threads = [threading.Thread(target=hammer, args=(n, a)) for n, a in enumerate(admins)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    assert total == len(admins) * per_thread
    links = session.execute(
        select(
            func.count(),
            func.count(func.distinct(AuditChainLink.prev_hash)),
            func.min(AuditChainLink.chain_seq),
            func.max(AuditChainLink.chain_seq),
        )
    ).one()
    assert tuple(links) == (total, total, 1, total)
    result = audit.verify_chain(session)
    assert result.ok and result.checked == total


@postgres_only
def test_entries_are_chained_in_commit_order_not_insert_order(engine, session):
    """The trigger gives each entry its place when its transaction commits: an entry inserted
    first but committed last is chained last, and the chain verifies."""
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    first, second = factory(), factory()
    try:
        audit.record(first, actor=None, action="read", at=now, subject_id="slow-writer")
        first.flush()
        audit._write_pending(first)  # queued for the commit ...
        send_writes_at_commit(first)  # ... and inserted now (lower seq), committed after `second`
        audit.record(second, actor=None, action="read", at=now, subject_id="quick-writer")
        second.commit()
        first.commit()
    finally:
        first.close()
        second.close()
    rows = {
        r.subject_id: r
        for r in session.execute(
            select(AuditEntry.subject_id, AuditEntry.seq, AuditChainLink.chain_seq).join(
                AuditChainLink, AuditChainLink.entry_seq == AuditEntry.seq
            )
        ).all()
    }
    slow, quick = rows["slow-writer"], rows["quick-writer"]
    assert slow.seq < quick.seq
    assert slow.chain_seq > quick.chain_seq
    assert audit.verify_chain(session).ok


@postgres_only
def test_an_entry_without_its_content_hash_is_refused(engine, session):
    """A hand-made (or out-of-date writer's) entry must not poison every later link."""
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (id, at, actor_type, action) "
                "VALUES (:id, now(), 'anonymous', 'read')"
            ),
            {"id": str(uuid.uuid4())},
        )
    assert session.execute(select(func.count()).select_from(AuditEntry)).scalar_one() == 0
