"""Configuration from ``NFOD_*`` environment variables (and a ``.env`` file)."""

from __future__ import annotations

from datetime import date, time
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "development-only-secret-key-do-not-use-in-production"
MIN_SECRET_KEY_LENGTH = 32


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NFOD_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///./nfod.db"
    secret_key: str | None = None
    timezone: str = "Europe/London"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    # FastAPI's own OpenTelemetry spans and metrics (through the global providers). Off by
    # default: the service exports Prometheus metrics and JSON logs itself, and with no
    # provider configured FastAPI still asked the global providers on every request.
    opentelemetry: bool = False

    # Accounts
    admin_username: str | None = None
    admin_password: str | None = None
    token_ttl_seconds: int = Field(default=8 * 3600, ge=60)
    login_max_failures: int = Field(default=10, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    login_max_failures_per_address: int = Field(default=50, ge=1)
    # Password hashes (argon2id: 64 MiB each, its lanes in threads) a process makes at once;
    # more sign-ins wait their turn (api.deps.hashing_turn, services.security.limit_hashing).
    password_hash_slots: int = Field(default=1, ge=1, le=64)

    # Intake and follow-ups
    contact_window_hours: int = Field(default=72, ge=1)
    idempotency_ttl_hours: int = Field(default=48, ge=24)
    max_body_bytes: int = 1024 * 1024
    # Threads that run the (synchronous) route handlers and database work of one worker
    # process (anyio's default is 40).
    threadpool_size: int = Field(default=40, ge=1, le=200)
    # Requests that hold a database session at once, per worker process (at most
    # threadpool_size). The rest wait their turn on the event loop, holding neither a thread
    # nor a connection, so overload queues instead of exhausting the connection pool; and
    # since every admitted request can always get a thread, none can starve another that
    # holds a lock (SQLite's write lock, matching's identity lock) of the thread it needs.
    db_sessions: int = Field(default=10, ge=1, le=200)
    # How long a request waits for one of those before it is answered 503 "retry" (api.deps.admit).
    db_queue_timeout_seconds: float = Field(default=10, gt=0)
    # PostgreSQL: how long the service waits on the database before it answers 503 "retry"
    # instead of hanging (services.db.Timeouts); 0 turns one off. A statement (any, COMMIT
    # included; not the sweep's); a lock (a table held by a migration, a row, an advisory
    # lock); a transaction left idle by a stalled process (the server ends it, releasing its
    # locks); and the network (the server's host gone without a word: TCP keep-alives and
    # TCP_USER_TIMEOUT).
    db_statement_timeout_seconds: float = Field(default=30, ge=0)
    db_lock_timeout_seconds: float = Field(default=10, ge=0)
    db_idle_in_transaction_timeout_seconds: float = Field(default=60, ge=0)
    db_tcp_timeout_seconds: float = Field(default=30, ge=0)
    # And the backstop, kept by the service itself (services.db_watchdog): the longest any
    # one wait for the server's answer lasts, for a server process frozen while its host
    # is fine (stopped, or stuck on a hung disk), which the limits above do not end. Above
    # the statement limit, so that a server that runs always answers first.
    db_answer_timeout_seconds: float = Field(default=40, ge=0)

    # Huddles
    huddle_cutoff: time = time(9, 0)
    closed_dates: str = ""

    # Scheduler and alerts
    sweep_seconds: float = Field(default=60, gt=0)
    due_soon_hours: int = Field(default=24, ge=1)
    cluster_min: int = Field(default=3, ge=2)
    cluster_hours: int = Field(default=24, ge=1)
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_max_attempts: int = Field(default=10, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable zone
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("closed_dates")
    @classmethod
    def _valid_closed_dates(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            date.fromisoformat(part)
        return value

    @model_validator(mode="after")
    def _answer_limit_above_statement_limit(self) -> Settings:
        answer, statement = self.db_answer_timeout_seconds, self.db_statement_timeout_seconds
        if answer and statement and answer <= statement:
            raise ValueError(
                f"NFOD_DB_ANSWER_TIMEOUT_SECONDS ({answer:g}) must be above "
                f"NFOD_DB_STATEMENT_TIMEOUT_SECONDS ({statement:g}), so that a server that "
                "runs answers with its own limit first (or 0, to turn it off)"
            )
        return self

    @model_validator(mode="after")
    def _secret_key_required_outside_development(self) -> Settings:
        if self.env == "development" or self.env == "test":
            return self
        if not self.secret_key:
            raise ValueError(
                "NFOD_SECRET_KEY is required when NFOD_ENV is not development: "
                f"set it to a random string of at least {MIN_SECRET_KEY_LENGTH} characters"
            )
        if len(self.secret_key) < MIN_SECRET_KEY_LENGTH or self.secret_key == DEV_SECRET_KEY:
            raise ValueError(
                f"NFOD_SECRET_KEY is too weak: use at least {MIN_SECRET_KEY_LENGTH} random "
                "characters (for example: "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    @property
    def session_slots(self) -> int:
        return min(self.db_sessions, self.threadpool_size)

    @property
    def db_pool_size(self) -> int:
        """Connections kept open: every admitted request's, plus a few for the in-process
        scheduler and probes, so that steady load never opens and closes connections."""
        return self.session_slots + 4

    @property
    def effective_secret_key(self) -> str:
        return self.secret_key or DEV_SECRET_KEY

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def closed_date_set(self) -> frozenset[date]:
        return frozenset(
            date.fromisoformat(p.strip()) for p in self.closed_dates.split(",") if p.strip()
        )


def load_settings(**overrides) -> Settings:
    """Build settings, turning validation failures into one clear ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # One line per problem, naming the variable; never the values (secrets, passwords).
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            name = "NFOD_" + "_".join(str(p) for p in err.get("loc", ())).upper()
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(msg if name == "NFOD_" else f"{name}: {msg}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
