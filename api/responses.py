"""Responses whose body a route has already built JSON-safe (plain dicts, lists, strings,
numbers: datetimes as RFC 3339 strings), rendered without validating it again.

For the large read models (the agenda) validating the finished answer into its response
model and dumping it again cost more than building it; the route keeps its
``response_model`` for the OpenAPI document, and a test checks that the body round-trips
through that model unchanged. A ``services.db.JSONText`` (a model's ``model_dump_json()``)
is sent as it is.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from starlette.responses import Response

from services.db import JSONText


class RenderedJSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if type(content) is JSONText:  # rendered already (model_dump_json)
            return content.encode()
        return pydantic_core.to_json(content)
