"""Alembic, driven programmatically: ``nfod migrate``, readiness and the migration tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def _project_root() -> Path:
    """Where alembic.ini and migrations/ live: beside the package in a checkout or an
    editable install, else the working directory (a plain ``pip install .``, as in the
    Docker image, whose WORKDIR holds them)."""
    for candidate in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (candidate / "alembic.ini").is_file() and (candidate / "migrations").is_dir():
            return candidate
    return Path(__file__).resolve().parent.parent


ROOT = _project_root()


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision(url: str = "sqlite://") -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


@dataclass
class DatabaseState:
    reachable: bool
    current: str | None = None
    head: str | None = None

    @property
    def at_head(self) -> bool:
        return self.reachable and self.current is not None and self.current == self.head


def database_state(engine: Engine) -> DatabaseState:
    head = head_revision(engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return DatabaseState(reachable=False, head=head)
    return DatabaseState(reachable=True, current=current, head=head)
