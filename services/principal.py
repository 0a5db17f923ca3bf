"""Who is acting: a signed-in user or a partner system (API client)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ROLES = ("admin", "coordinator", "outreach", "analyst", "partner")


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "client", "system"]
    id: str
    role: str
    agency_id: str | None
    username: str | None = None
    display_name: str | None = None

    @property
    def key(self) -> str:
        """Stable identity for per-caller state such as idempotency keys."""
        return f"{self.kind}:{self.id}"


SYSTEM = Principal(kind="system", id="system", role="system", agency_id=None, username="system")
