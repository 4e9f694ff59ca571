"""Integration tests: real processes and servers (redis-server, dcmtk storescu/storescp/echoscu,
Orthanc, TLS over sockets, ``followup`` listener and worker subprocesses, fault injection, load).

Every test in this folder is marked ``integration``: ``pytest -m "not integration"`` runs the
fast unit set alone."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
