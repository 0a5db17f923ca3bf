"""Every router, in the order they appear in the OpenAPI document.

Each feature module exposes ``router``; add new modules to ``_MODULES``.
"""

from __future__ import annotations

import importlib

_MODULES = [
    "health",
    "auth",
    "agencies",
    "users",
    "clients",
    "audit",
    "incidents",
    "persons",
    "contacts",
    "huddles",
    "safety_plans",
    "alerts",
    "webhooks",
    "reports",
]


def _load():
    routers = []
    for name in _MODULES:
        try:
            module = importlib.import_module(f"api.routes.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"api.routes.{name}":
                continue  # feature not built yet
            raise
        routers.append(module.router)
    return routers


ROUTERS = _load()
