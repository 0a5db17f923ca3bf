"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from api import direct, problems, routes
from api.logging_setup import configure_logging
from api.middleware import RequestContextMiddleware
from services import accounts
from services.config import Settings, get_settings
from services.db import (
    Timeouts,
    make_engine,
    make_request_session_factory,
    make_session_factory,
)
from services.security import limit_hashing

log = logging.getLogger("nfod.app")
WEB_DIR = next(
    (d for d in (Path(__file__).resolve().parent.parent / "web", Path.cwd() / "web") if d.is_dir()),
    Path(__file__).resolve().parent.parent / "web",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def bootstrap_admin(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    if not (settings.admin_username and settings.admin_password):
        return
    session = app.state.session_factory()
    try:
        if accounts.ensure_bootstrap_admin(
            session,
            now=app.state.clock(),
            username=settings.admin_username,
            password=settings.admin_password,
        ):
            log.info("created the first administrator from NFOD_ADMIN_USERNAME")
        session.commit()
    except Exception:  # noqa: BLE001 - e.g. not migrated yet; /readyz says so
        session.rollback()
        log.warning("could not create the first administrator (is the database migrated?)")
    finally:
        session.close()


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = utc_now,
    run_scheduler: bool = False,
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    limit_hashing(settings.password_hash_slots)
    engine = engine or make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        timeouts=Timeouts.from_settings(settings),
        application_name="nfod-api",
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_size
        bootstrap_admin(app)
        runner = None
        if run_scheduler:
            from api.scheduler import BackgroundScheduler

            runner = BackgroundScheduler(app.state.session_factory, settings=settings, clock=clock)
            runner.start()
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()
            direct.shutdown(app)

    app = FastAPI(
        title="NFOD Response",
        version="1.0.0",
        description="Case management for a multi-agency non-fatal overdose rapid response team.",
        lifespan=lifespan,
        telemetry=None
        if settings.opentelemetry
        else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.request_session_factory = make_request_session_factory(engine)
    app.state.clock = clock

    problems.install(app)
    routes.install(app)
    if WEB_DIR.is_dir():
        app.mount("/app", StaticFiles(directory=WEB_DIR, html=True), name="web")

        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse("/app/")

    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
