"""Signing in, throttling, token death on deactivation, API keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select, text

from api.routes import auth as auth_routes
from models.api_client import ApiClient
from models.audit import AuditEntry
from services import security
from tests.conftest import TEST_PASSWORD, assert_problem, listening
from tests.platform.conftest import login


def test_login_returns_a_working_bearer_token(client, factory):
    user = factory.user("coordinator")
    r = login(client, user.username, TEST_PASSWORD)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 8 * 3600
    me = client.get("/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {
        "id": user.id,
        "username": user.username,
        "role": "coordinator",
        "agency_id": None,
        "display_name": user.username,
        "kind": "user",
    }


def test_grant_type_password_may_be_sent_or_omitted(client, factory):
    user = factory.user("analyst")
    assert login(client, user.username, TEST_PASSWORD, grant_type="password").status_code == 200
    assert login(client, user.username, TEST_PASSWORD).status_code == 200
    assert_problem(
        login(client, user.username, TEST_PASSWORD, grant_type="client_credentials"), 422
    )


class _CountingHasher:
    def __init__(self, inner):
        self.inner = inner
        self.verified = 0

    def verify(self, *args):
        self.verified += 1
        return self.inner.verify(*args)

    def hash(self, *args):
        return self.inner.hash(*args)


def test_unknown_user_and_wrong_password_are_indistinguishable(
    client, factory, monkeypatch, engine
):
    user = factory.user("coordinator")
    counting = _CountingHasher(security._hasher)
    monkeypatch.setattr(security, "_hasher", counting)
    statements: list[str] = []

    def attempt(username, password):
        before = counting.verified
        statements.clear()
        started = time.perf_counter()
        with listening(engine, "before_cursor_execute", lambda *a: statements.append(a[2])):
            r = login(client, username, password)
        return r, counting.verified - before, time.perf_counter() - started, len(statements)

    # best of three each, so one scheduling hiccup on a busy machine cannot decide it
    wrongs = [attempt(user.username, "not the password") for _ in range(3)]
    unknowns = [attempt("nobody-at-all", "not the password") for _ in range(3)]
    wrong, wrong_hashes, _, wrong_statements = wrongs[0]
    unknown, unknown_hashes, _, unknown_statements = unknowns[0]
    wrong_time = min(a[2] for a in wrongs)
    unknown_time = min(a[2] for a in unknowns)
    # the same statements, round trip for round trip (the user's read again for both)
    assert wrong_statements == unknown_statements
    for r in (wrong, unknown):
        assert_problem(r, 401)
    assert wrong.json() == unknown.json()
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")
    # both run one argon2 verification, so they cost comparable time
    assert wrong_hashes == unknown_hashes == 1
    assert 0.2 < wrong_time / unknown_time < 5


def test_the_unknown_users_hash_has_the_hashers_parameters():
    """The hash an unknown username is verified against is written out in the code; were the
    hasher's parameters changed, it would cost another time than a real user's."""
    assert not security._hasher.check_needs_rehash(security._DUMMY_HASH)
    assert security.verify_password(None, "anything") is False


class _Overlap:
    """A hasher whose verify records how many calls run at once; each waits at ``barrier``
    (if given) so that calls allowed to overlap are seen to."""

    def __init__(self, barrier: threading.Barrier | None = None):
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.barrier = barrier

    def verify(self, *args):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if self.barrier is not None:
                self.barrier.wait(timeout=5)
            time.sleep(0.05)
            return False
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def process_hash_limit():
    """limit_hashing for one test, restored afterwards."""
    yield security.limit_hashing
    security.limit_hashing(security.DEFAULT_HASH_SLOTS)


def _verify_at_once(n: int) -> None:
    threads = [
        threading.Thread(target=security.verify_password, args=("$argon2id$x", "p"))
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


@pytest.mark.parametrize("slots", [1, 2])
def test_password_hashes_are_made_at_most_slots_at_a_time(process_hash_limit, monkeypatch, slots):
    """Each argon2 hash takes 64 MiB while it runs: a burst of sign-ins waits for turns
    instead of taking 64 MiB each at once."""
    process_hash_limit(slots)
    overlap = _Overlap(threading.Barrier(slots) if slots > 1 else None)
    monkeypatch.setattr(security, "_hasher", overlap)
    _verify_at_once(4)
    assert overlap.most == slots and overlap.running == 0


def test_the_setting_limits_the_hashes(make_client, process_hash_limit, monkeypatch):
    make_client(password_hash_slots=1)
    overlap = _Overlap()
    monkeypatch.setattr(security, "_hasher", overlap)
    _verify_at_once(3)
    assert overlap.most == 1
    with pytest.raises(ValueError):
        process_hash_limit(0)


class _HeldHashes:
    """Stands in for the route's verify_password: each call is counted and waits until let
    go, then verifies for real."""

    def __init__(self):
        self.entered = threading.Semaphore(0)
        self.go_on = threading.Event()
        self.real = auth_routes.verify_password

    def __call__(self, password_hash, password):
        self.entered.release()
        self.go_on.wait(10)
        return self.real(password_hash, password)


@contextmanager
def _sign_ins_held(client, username: str, monkeypatch, n: int = 1) -> Iterator[list]:
    """``n`` sign-ins started in the background, their password hashes held (one at least
    begun) until the block ends; yields their answers, there once the block has ended."""
    held = _HeldHashes()
    monkeypatch.setattr(auth_routes, "verify_password", held)
    answers: list = []
    threads = [
        threading.Thread(target=lambda: answers.append(login(client, username, TEST_PASSWORD)))
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    try:
        assert held.entered.acquire(timeout=10)
        if n > 1:
            time.sleep(0.3)  # the others reach their wait for a turn
            assert not held.entered.acquire(blocking=False)  # one hash at a time
        yield answers
    finally:
        held.go_on.set()
        for t in threads:
            t.join(20)


def test_a_sign_in_holds_no_database_session_while_its_password_is_hashed(
    make_client, factory, monkeypatch
):
    """With one session slot, a request made while a sign-in waits for its hash is answered
    at once, not queued behind the sign-in (and shed after the queue limit)."""
    user = factory.user("coordinator")
    partner = factory.partner()
    client = make_client(db_sessions=1, db_queue_timeout_seconds=0.5)
    with _sign_ins_held(client, user.username, monkeypatch) as answers:
        during = client.get("/v1/incidents", headers=partner.headers)
    assert during.status_code == 200, during.text
    assert [a.status_code for a in answers] == [200]


def test_sign_ins_waiting_for_their_turn_to_hash_hold_no_thread(make_client, factory, monkeypatch):
    """With two threads and one hashing turn, three sign-ins at once (one hashing, two
    waiting for the turn on the event loop) still leave a thread for other requests."""
    user = factory.user("coordinator")
    partner = factory.partner()
    client = make_client(
        threadpool_size=2, db_sessions=1, password_hash_slots=1, db_queue_timeout_seconds=5
    )
    with _sign_ins_held(client, user.username, monkeypatch, n=3) as answers:
        started = time.monotonic()
        during = client.get("/v1/incidents", headers=partner.headers)
        waited = time.monotonic() - started
    assert during.status_code == 200, during.text
    # Not a timing of the service: a request starved of a thread would be answered only
    # once the held hash is let go, after the block (or 503 after the 5 s queue limit).
    assert waited < 4, waited
    assert [a.status_code for a in answers] == [200, 200, 200]


def test_a_sign_in_that_gets_no_turn_to_hash_in_time_is_503(make_client, factory, monkeypatch):
    user = factory.user("coordinator")
    client = make_client(password_hash_slots=1, db_queue_timeout_seconds=0.3)
    with _sign_ins_held(client, user.username, monkeypatch) as answers:
        shed = login(client, user.username, TEST_PASSWORD)
    body = assert_problem(shed, 503)
    assert body["detail"] == "the service is too busy to take this request now; retry shortly"
    assert shed.headers["retry-after"] == "1"
    assert [a.status_code for a in answers] == [200]


def test_a_user_deactivated_while_the_password_is_hashed_is_refused(
    client, factory, session, monkeypatch
):
    """The sign-in reads the user again after the hash: one deactivated meanwhile gets the
    same 401 as a wrong password, and the failure is recorded."""
    user = factory.user("coordinator")
    real_verify = auth_routes.verify_password

    def verify_then_deactivate(password_hash, password):
        ok = real_verify(password_hash, password)
        with session.begin():
            session.execute(text("UPDATE users SET active = false WHERE id = :id"), {"id": user.id})
        return ok

    monkeypatch.setattr(auth_routes, "verify_password", verify_then_deactivate)
    assert_problem(login(client, user.username, TEST_PASSWORD), 401)
    failed = session.execute(
        select(AuditEntry).where(AuditEntry.action == "login_failed")
    ).scalar_one()
    assert failed.subject_id == user.id


def test_login_failures_are_audited_without_the_username_or_password(client, factory, session):
    user = factory.user("coordinator")
    login(client, user.username, "bad password 1")
    login(client, "ghost", "bad password 2")
    entries = session.execute(
        select(AuditEntry).where(AuditEntry.action == "login_failed")
    ).scalars()
    entries = list(entries)
    assert len(entries) == 2
    assert {e.subject_id for e in entries} == {user.id, None}
    for e in entries:
        assert e.actor_type == "anonymous" and e.client_addr
        assert "ghost" not in str(e.details) and "bad password" not in str(e.details)


def test_throttled_per_username_after_ten_failures(client, factory, clock):
    user = factory.user("coordinator")
    for _ in range(10):
        assert_problem(login(client, user.username, "wrong password"), 401)
        clock.advance(seconds=30)
    r = login(client, user.username, TEST_PASSWORD)  # even the right password
    assert_problem(r, 429)
    retry = int(r.headers["retry-after"])
    # the oldest failure leaves the 15-minute window 15 min after it was made
    assert retry == 15 * 60 - 10 * 30
    # another user is not affected
    other = factory.user("analyst")
    assert login(client, other.username, TEST_PASSWORD).status_code == 200
    clock.advance(seconds=retry - 1)
    assert_problem(login(client, user.username, TEST_PASSWORD), 429)
    clock.advance(seconds=1)
    assert login(client, user.username, TEST_PASSWORD).status_code == 200


def test_unknown_usernames_are_throttled_too(client, clock):
    for _ in range(10):
        assert_problem(login(client, "ghost", "guess"), 401)
    r = login(client, "ghost", "guess")
    assert_problem(r, 429)
    assert 0 < int(r.headers["retry-after"]) <= 15 * 60


def test_success_resets_the_username_count(client, factory):
    user = factory.user("coordinator")
    for _ in range(9):
        assert_problem(login(client, user.username, "wrong password"), 401)
    assert login(client, user.username, TEST_PASSWORD).status_code == 200
    for _ in range(9):
        assert_problem(login(client, user.username, "wrong password"), 401)
    assert login(client, user.username, TEST_PASSWORD).status_code == 200


def test_throttled_per_client_address(make_client, factory, clock):
    c = make_client(login_max_failures_per_address=5)
    users = [factory.user("analyst") for _ in range(6)]
    for u in users[:5]:
        assert_problem(login(c, u.username, "wrong password"), 401)
    # a new username from the same address is refused, even with the right password
    r = login(c, users[5].username, TEST_PASSWORD)
    assert_problem(r, 429)
    assert int(r.headers["retry-after"]) > 0
    clock.advance(minutes=15, seconds=1)
    assert login(c, users[5].username, TEST_PASSWORD).status_code == 200


def test_deactivation_kills_tokens_and_blocks_login(client, factory, admin):
    user = factory.user("coordinator")
    r = login(client, user.username, TEST_PASSWORD)
    issued = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/v1/users/me", headers=issued).status_code == 200
    assert client.get("/v1/users/me", headers=user.headers).status_code == 200

    r = client.patch(f"/v1/users/{user.id}", json={"active": False}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    assert_problem(client.get("/v1/users/me", headers=issued), 401)
    assert_problem(client.get("/v1/users/me", headers=user.headers), 401)
    # the right password no longer works, and answers like a wrong one
    refused = login(client, user.username, TEST_PASSWORD)
    assert_problem(refused, 401)
    assert refused.json() == login(client, user.username, "wrong password").json()
    # reactivated: old tokens stay dead, new sign-in works
    client.patch(f"/v1/users/{user.id}", json={"active": True}, headers=admin.headers)
    assert_problem(client.get("/v1/users/me", headers=issued), 401)
    assert login(client, user.username, TEST_PASSWORD).status_code == 200


def test_password_or_role_change_kills_tokens(client, factory, admin):
    user = factory.user("coordinator")
    client.patch(f"/v1/users/{user.id}", json={"role": "analyst"}, headers=admin.headers)
    assert_problem(client.get("/v1/users/me", headers=user.headers), 401)
    r = login(client, user.username, TEST_PASSWORD)
    token = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/v1/users/me", headers=token).json()["role"] == "analyst"
    client.patch(
        f"/v1/users/{user.id}", json={"password": "a brand new password"}, headers=admin.headers
    )
    assert_problem(client.get("/v1/users/me", headers=token), 401)
    assert login(client, user.username, "a brand new password").status_code == 200


def test_admin_cannot_deactivate_themself(client, admin):
    r = client.patch(f"/v1/users/{admin.id}", json={"active": False}, headers=admin.headers)
    assert_problem(r, 409)
    assert client.get("/v1/users/me", headers=admin.headers).status_code == 200


def test_tokens_expire(client, factory, clock):
    user = factory.user("coordinator")
    clock.advance(hours=8, seconds=-1)
    assert client.get("/v1/users/me", headers=user.headers).status_code == 200
    clock.advance(seconds=1)
    assert_problem(client.get("/v1/users/me", headers=user.headers), 401)


def test_token_from_another_secret_is_refused(client, factory, clock):
    user = factory.user("coordinator")
    forged = security.issue_token(
        "some-other-secret-key-of-sufficient-length!!",
        user_id=user.id,
        version=0,
        now=clock(),
        ttl=600,
    )
    assert_problem(client.get("/v1/users/me", headers={"Authorization": f"Bearer {forged}"}), 401)


def test_api_key_is_shown_once_stored_hashed_and_revoked_at_once(client, admin, factory, engine):
    agency_id = factory.agency()
    r = client.post(
        "/v1/clients", json={"name": "SAS feed", "agency_id": agency_id}, headers=admin.headers
    )
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["api_key"]
    assert key.startswith("nfod_") and len(key) > 40
    headers = {"Authorization": f"Bearer {key}"}
    me = client.get("/v1/users/me", headers=headers).json()
    assert me["role"] == "partner" and me["agency_id"] == agency_id and me["kind"] == "client"

    # shown once: never in a listing; stored only as a hash
    listing = client.get("/v1/clients", headers=admin.headers)
    assert key not in listing.text and "api_key" not in listing.json()["items"][0]
    with engine.connect() as conn:
        for table in ("api_clients", "audit_log"):
            for row in conn.execute(text(f"SELECT * FROM {table}")):  # noqa: S608
                assert not any(key in str(value) for value in row), table
        stored = conn.execute(select(ApiClient.key_hash)).scalar_one()
    assert stored == security.hash_api_key(key) and stored != key

    r = client.delete(f"/v1/clients/{created['id']}", headers=admin.headers)
    assert r.status_code == 204
    assert_problem(client.get("/v1/users/me", headers=headers), 401)
    # revoking again is harmless
    assert client.delete(f"/v1/clients/{created['id']}", headers=admin.headers).status_code == 204


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Token abc", "bearer", ""])
def test_malformed_authorization_headers_are_401(client, header):
    assert_problem(client.get("/v1/users/me", headers={"Authorization": header}), 401)
