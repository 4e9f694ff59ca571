"""Shared fixtures: synthetic study pairs are generated once per test session and reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from followup.synth import generate_pair


@pytest.fixture(scope="session")
def synth_pair(tmp_path_factory):
    """``synth_pair(scenario, seed, vendor)`` -> folder with baseline/, followup/, *.json."""
    cache: dict[tuple, Path] = {}

    def make(scenario: str = "residual", seed: int = 1, vendor: str = "per-phase",
             size: str = "small") -> Path:
        key = (scenario, seed, vendor, size)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{scenario}-{seed}-{vendor}-{size}")
            generate_pair(out, scenario, seed, vendor, size)
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(autouse=True)
def patient_ref_key():
    """Each test's own patient-ref key (a service installs its configured one at start, and the
    API's ``create_app`` replaces this with its data directory's): ``patient_ref`` needs one."""
    import secrets

    from followup import pseudonym

    previous = pseudonym.installed_key()
    key = secrets.token_bytes(pseudonym.KEY_BYTES)
    pseudonym.install(key)
    yield key
    pseudonym._installed_key = previous
