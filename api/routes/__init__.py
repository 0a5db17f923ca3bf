"""Every router, in the order requests are matched against them and they appear in the
OpenAPI document.

Each feature module exposes ``router``; add new modules to ``_MODULES``. Incidents come
first: every partner notification is a ``POST /v1/incidents``, and a request is compared
with each route before it in turn (about 4 % of an intake's CPU when the incidents came
seventh; BENCHMARKS.md, eighth round). No two modules' paths overlap, so the order decides
nothing else. :func:`install` puts them on an app.
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI
from fastapi.routing import APIRoute

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


def install(app: FastAPI) -> None:
    """Every module's routes straight onto the app's own router, in ``_MODULES`` order.

    Not ``app.include_router``: since FastAPI 0.137 that keeps each included router as a
    node which every request walks twice (to match, then again to handle) while recounting
    its routes' version: under wrk, routing took 10 % of the event loop's time with fourteen
    included routers and 4.5 % with their routes added directly (BENCHMARKS.md, ninth
    round). Nothing is lost by adding the routes themselves: the module routers have
    no prefix, and an APIRouter bakes its tags, dependencies and route class into each route
    it makes, so the routes (and the OpenAPI document) are the same objects either way. The
    one difference: ``app.dependency_overrides`` does not reach routes added this way
    (nothing here overrides dependencies; include_router a router that needs it).
    """
    for router in ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute):  # a nested router, a mount: include it
                raise TypeError(f"api.routes: {route!r} is not a plain route")
        app.router.routes.extend(router.routes)
