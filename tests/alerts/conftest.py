from __future__ import annotations

import pytest

from services.db import make_session_factory
from tests.alerts.helpers import Data


@pytest.fixture
def sf(engine):
    return make_session_factory(engine)


@pytest.fixture
def data(sf) -> Data:
    return Data(sf)
