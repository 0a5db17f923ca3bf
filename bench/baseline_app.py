"""The baseline: a bare FastAPI endpoint doing one Core INSERT per request.

    uvicorn --factory bench.baseline_app:create_app --port 8101   (NFOD_DATABASE_URL = the bench db)

Same framework, same server (one uvicorn worker), same database, same table and indexes
(``incidents``), the same engine (services.db.make_engine; a pool that never has to close a
connection, see create_app), same sync endpoint style
(run in the thread pool) as the real API - but no authentication, validation, person
matching, idempotency or audit. The ingest figure is the real API's throughput divided by
this one's.
"""

from __future__ import annotations

import os
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from fastapi import Body, FastAPI
from sqlalchemy import insert, select

from models.agency import Agency
from models.incident import Incident
from services.config import load_settings
from services.db import make_engine


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def create_app() -> FastAPI:
    # The API's own engine settings, but for the pool's size. The API admits at most
    # db_sessions requests to the database at once (the rest wait on the event loop), so its
    # pool never overflows. This endpoint has no such limit: each of the thread pool's
    # threads may hold a connection. With the API's pool size, 16 connections of load
    # overflowed it and SQLAlchemy closed every connection returned to a full pool, so the
    # baseline opened a new PostgreSQL connection many times a second (every one of its
    # backends was replaced within 10 s), which cost it about 12 % of its CPU per request
    # (BENCHMARKS.md, eleventh round). A pool as large as the thread pool opens only the
    # connections the load needs, and keeps them.
    settings = load_settings()
    engine = make_engine(
        os.environ["NFOD_DATABASE_URL"], pool_size=settings.threadpool_size, max_overflow=0
    )
    with engine.connect() as conn:
        source = conn.execute(select(Agency.id).order_by(Agency.name).limit(1)).scalar_one()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # The API's thread pool, as the API sizes it (api.app).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_size
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/incidents", status_code=201)
    def ingest(body: dict[str, Any] = Body(...)) -> dict:
        # A sync handler runs in the thread pool, exactly like the real API's routes.
        return _write(body)

    def _write(body: dict) -> dict:
        now = datetime.now(UTC)
        occurred = _ts(body["occurred_at"])
        incident_id = str(uuid.uuid4())
        location = body.get("location") or {}
        postcode = location.get("postcode")
        with engine.begin() as conn:
            conn.execute(
                insert(Incident),
                {
                    "id": incident_id,
                    "source_agency_id": source,
                    "source_ref": body.get("source_ref"),
                    "created_by_type": "client",
                    "created_by_id": "baseline",
                    "occurred_at": occurred,
                    "reported_at": _ts(body["reported_at"]) if body.get("reported_at") else now,
                    "contact_due_at": occurred + timedelta(hours=72),
                    "postcode": postcode,
                    "postcode_district": postcode.split()[0] if postcode else None,
                    "fu_status": "awaiting_contact",
                    "created_at": now,
                    "updated_at": now,
                },
            )
        return {"id": incident_id}

    return app
