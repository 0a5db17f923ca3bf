"""Responses whose body a route has already built JSON-safe (plain dicts, lists, strings,
numbers: datetimes as RFC 3339 strings), rendered without validating it again.

For the large read models (the agenda) validating the finished answer into its response
model and dumping it again cost more than building it; the route keeps its
``response_model`` for the OpenAPI document, and a test checks that the body round-trips
through that model unchanged.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from starlette.responses import Response


class RenderedJSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)
