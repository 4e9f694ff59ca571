"""A service's settings, registry and store in the test's folder (no destination PACS)."""

from __future__ import annotations

import pytest

from followup.config import Settings
from followup.service.registry import Registry
from followup.service.store import Store


@pytest.fixture()
def service(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", destination=None)
    store = Store(settings.data_dir)
    return settings, Registry(settings.database_url), store
