"""Every router, in the order requests are matched against them and they appear in the
OpenAPI document.

Each feature module exposes ``router``; add new modules to ``_MODULES``. Incidents come
first: every partner notification is a ``POST /v1/incidents``, and a request is compared
with each route before it in turn (about 4 % of an intake's CPU when the incidents came
seventh; BENCHMARKS.md, eighth round). No two modules' paths overlap, so the order decides
nothing else.
"""

from __future__ import annotations

import importlib

_MODULES = [
    "incidents",
    "health",
    "auth",
    "agencies",
    "users",
    "clients",
    "audit",
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
