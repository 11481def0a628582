"""The unit tier: no PostgreSQL, no Redis, no worker. `make unit` runs this folder alone."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_server_in_the_unit_tier(request: pytest.FixtureRequest) -> None:
    """A unit test that asks for the servers belongs in tests/integration (or e2e)."""
    assert "servers" not in request.fixturenames, "a unit test asked for the servers"
