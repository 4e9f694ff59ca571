"""Shared fixtures: synthetic study pairs are generated once per test session (per xdist worker)
and reused. Tests that share a module-scoped fixture (one service stack, one generated cohort) are
kept together in one xdist worker (``--dist loadgroup``, scripts/run-tests.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from followup.synth import generate_pair

SHARED_SCOPES = ("module", "class", "package")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist's ``--dist loadgroup`` (the slow set in scripts/run-tests.sh), a test that
    uses a module- or class-scoped fixture (a service stack its module's tests share, a cohort made
    once) runs in the worker that runs its module's other such tests, in file order, so the stack
    is built once; every other test is handed to whichever worker is free. Without xdist the mark
    does nothing. (tryfirst: xdist reads the mark in its own hook of the same name.)"""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = any(str(d.scope) in SHARED_SCOPES for name in info.names_closure
                     for d in info.name2fixturedefs.get(name, ()))
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


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
