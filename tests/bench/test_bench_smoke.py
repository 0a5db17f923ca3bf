"""Keeps the benchmark harness from rotting (no timing is asserted anywhere here)."""

# ruff: noqa: E501  (SQL one-liners read better unwrapped)

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from bench.common import ROOT, libpq, with_database
from bench.generate import chi_check_digit_mod11, generate
from services.config import load_settings
from services.db import make_engine
from tests.conftest import PG_URL, postgres_only


@postgres_only
def test_generator_loads_a_consistent_tiny_data_set():
    url = with_database(PG_URL, "nfod_bench_smoke")
    anchor = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    info = generate(url, incidents=200, anchor=anchor, overdue_batch=20, quiet=True)
    try:
        assert info["rows"]["incidents"] == 220
        with psycopg.connect(libpq(url)) as conn:
            q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
            chis = [r[0] for r in q("SELECT chi FROM persons WHERE chi IS NOT NULL")]
            assert chis and all(chi_check_digit_mod11(c[:9]) == int(c[9]) for c in chis)
            # Repeats exist, every incident's 72-hour deadline is right, contacts belong to incidents.
            assert (
                q(
                    "SELECT count(*) FROM (SELECT person_id FROM incidents WHERE person_id IS NOT NULL "
                    "GROUP BY 1 HAVING count(*) > 1) r"
                )[0][0]
                > 0
            )
            assert (
                q(
                    "SELECT count(*) FROM incidents WHERE contact_due_at <> occurred_at + interval '72 hours'"
                )[0][0]
                == 0
            )
            # The report's copies of the person's sex and age (migration 0008), which the
            # generator writes itself while the trigger is off, are the database's own.
            assert (
                q(
                    "SELECT count(*) FROM incidents i LEFT JOIN persons p ON p.id = i.person_id "
                    "WHERE i.person_sex IS DISTINCT FROM p.sex "
                    "OR i.person_age IS DISTINCT FROM nfod_age_at(i.occurred_at, p.date_of_birth)"
                )[0][0]
                == 0
            )
            assert q("SELECT count(*) FROM incidents WHERE person_age IS NOT NULL")[0][0] > 100
            assert q("SELECT count(*) FROM contact_attempts")[0][0] > 200
            assert (
                q(
                    "SELECT count(*) FROM incidents WHERE fu_status = 'contacted' AND first_contact_at IS NULL"
                )[0][0]
                == 0
            )
            # Indexes and constraints dropped for the load are all back.
            idx = {
                r[0] for r in q("SELECT indexname FROM pg_indexes WHERE tablename = 'incidents'")
            }
            assert (
                "ix_incidents_undiscussed_reported_at" in idx
                and "uq_incidents_source_agency_id_source_ref" in idx
            )
            fks = q(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = 'contact_attempts'::regclass AND contype = 'f'"
            )
            assert fks[0][0] == 2  # incident_id, agency_id
        with open(os.path.join(ROOT, "bench", "results", "dataset-nfod_bench_smoke.json")) as fh:
            described = json.load(fh)
        assert described["rows"]["incidents"] == 220
    finally:
        os.remove(os.path.join(ROOT, "bench", "results", "dataset-nfod_bench_smoke.json"))
        with psycopg.connect(libpq(with_database(PG_URL, "postgres")), autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "nfod_bench_smoke" WITH (FORCE)')


def test_database_outage_is_a_503_problem_not_a_500_or_a_hang():
    # Nothing listens on port 9: connecting fails at once, as during a PostgreSQL restart.
    url = "postgresql+psycopg://postgres@127.0.0.1:9/nfod_down"
    app = create_app(load_settings(database_url=url, env="test"), engine=make_engine(url))
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.get("/v1/users/me", headers={"Authorization": "Bearer nfod_whatever"})
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["status"] == 503
    assert "Retry-After" in resp.headers


def test_wrk_bodies_are_valid_notifications_each_with_its_own_key_and_source_ref(tmp_path):
    from api.schemas.incidents import IncidentCreate
    from bench.wrk import write_bodies

    people = [{"given_name": "Ann", "family_name": "Reid", "date_of_birth": "1980-02-03"}]
    path = tmp_path / "bodies.tsv"
    write_bodies(str(path), people, 300, "t")
    lines = path.read_text().splitlines()
    assert len(lines) == 300
    keys, refs = set(), set()
    for line in lines:
        key, body = line.split("\t")
        parsed = IncidentCreate.model_validate_json(body)  # what the API will accept
        keys.add(key)
        refs.add(parsed.source_ref)
    assert len(keys) == len(refs) == 300


@postgres_only
def test_the_speed_probe_times_python_and_postgresql():
    from bench.common import speed_probe

    probe = speed_probe(PG_URL, runs=2)
    assert set(probe) == {"python_ms", "postgres_ms"}
    assert probe["python_ms"] > 0 and probe["postgres_ms"] > 0


@postgres_only
def test_the_load_is_written_out_before_anything_is_timed():
    from bench.common import flush_writes

    flushed = flush_writes(PG_URL, timeout=5)
    assert set(flushed) == {"seconds", "dirty_mb_before", "dirty_mb_after"}
    assert 0 <= flushed["seconds"] <= 30


def test_the_results_table_says_what_was_written_out_before_each_paced_run():
    from bench.run import render_md

    # The least a run's results hold for the table to render (not the committed results,
    # which a partial run may lack).
    res = {
        "started": "2026-12-07T17:15:00Z",
        "finished": "2026-12-07T17:24:00Z",
        "config": {"BENCH_ONLY": ""},
        "machine": {"cpus": 2, "platform": "test"},
        "commit": "0000000",
        "versions": {"python": "3.11"},
        "results": {
            "ingest": {
                "baseline_max": {"throughput_rps": 300.0},
                "api_max": {"throughput_rps": 250.0},
                "api_max_keys": {"throughput_rps": 240.0},
                "baseline_rate100": {"latency": {"p99_ms": 10.0}},
                "api_rate100": {"latency": {"p99_ms": 14.0}},
            }
        },
    }
    assert "Before each 100 req/s run" not in render_md(res)
    ingest = res["results"]["ingest"]
    ingest["baseline_rate100"]["flushed_before"] = {"seconds": 0.2, "dirty_mb_before": 96.5}
    ingest["api_rate100"]["flushed_before"] = {"seconds": 0.3, "dirty_mb_before": 159.0}
    table = render_md(res)
    assert "Before each 100 req/s run the full-speed runs' writes were written out" in table
    assert "'dirty_mb_before': 96.5" in table and "'dirty_mb_before': 159.0" in table
    assert "| api | 250.0 |" in table and "14.0 ms" in table
