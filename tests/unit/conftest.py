"""The ``registry`` fixture, shared by service/test_registry.py and test_states.py."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy

from followup.service.registry import Registry

PG_ADMIN_URL = os.environ.get("FOLLOWUP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


# The PostgreSQL case talks to a real server (FOLLOWUP_TEST_PG): an integration test, skipped
# where none is reachable.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def registry(request, tmp_path):
    """An empty registry on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield Registry(f"sqlite:///{tmp_path}/r.db")
        return
    name = f"followup_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({type(exc).__name__}): PostgreSQL NOT tested")
    reg = Registry(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield reg
    finally:
        reg.engine.dispose()
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
