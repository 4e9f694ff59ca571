"""Resource bounds of the listener, all configurable (Settings, FOLLOWUP_MAX_* variables,
serve-dicom options): maximum instance size, maximum instances per study, maximum concurrent
associations. Unit level, through ``StoreHandler.handle``; the wire level (real pynetdicom
associations, a real ``followup serve-dicom`` process) is tests/integration/test_bounds.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage, generate_uid

from followup.config import DEFAULT_MAX_ASSOCIATIONS, Settings
from followup.service.listener import (
    INSTANCE_TOO_LARGE,
    QUARANTINE_KEEP_BYTES,
    STUDY_TOO_LARGE,
    StoreHandler,
)
from followup.service.registry import Registry
from followup.service.store import Store
from followup.testing.instances import encode, mr, n_instances, quarantined

PACS_AET = "PACS"


def handle(handler: StoreHandler, ds: Dataset, **kw):
    return handler.handle(encode(ds), MRImageStorage, str(ds.SOPInstanceUID), PACS_AET, **kw)


@pytest.fixture
def env(tmp_path):
    store = Store(tmp_path / "data")
    registry = Registry(f"sqlite:///{tmp_path}/r.db")
    return store, registry


def test_instance_over_the_size_limit_is_refused_and_only_its_head_kept(env):
    store, registry = env
    big = mr(512, 256)  # 256 KiB of pixels
    data = encode(big)
    handler = StoreHandler(store, registry, max_instance_bytes=len(data) - 1)
    status, outcome = handle(handler, big)
    assert (status.Status, outcome) == (INSTANCE_TOO_LARGE, "refused")
    assert "exceeds the maximum" in status.ErrorComment
    ((info, kept),) = quarantined(store)
    assert info["status"] == "0xA701" and f"instance of {len(data)} bytes" in info["reason"]
    assert kept == QUARANTINE_KEEP_BYTES < len(data)  # the header, not the bulk
    assert int(info["received_bytes"]) == len(data) and "first" in info["truncated"]
    assert n_instances(registry) == 0 and not list(store.instances.rglob("*.dcm"))

    # at the limit exactly: stored
    handler = StoreHandler(store, registry, max_instance_bytes=len(data))
    assert handle(handler, big)[1] == "stored"


def test_size_reported_by_the_wire_guard_counts(env):
    """The guard drops what comes beyond the limit; the handler refuses on the size sent."""
    store, registry = env
    handler = StoreHandler(store, registry, max_instance_bytes=100_000)
    small = mr(8, 8)
    status, outcome = handle(handler, small, received_bytes=5_000_000)
    assert (status.Status, outcome) == (INSTANCE_TOO_LARGE, "refused")
    ((info, kept),) = quarantined(store)
    assert int(info["received_bytes"]) == 5_000_000 and kept == len(encode(small))
    assert n_instances(registry) == 0


def test_study_beyond_its_instance_limit_is_refused(env):
    store, registry = env
    handler = StoreHandler(store, registry, max_study_instances=3)
    study = generate_uid()
    first = [mr(study_uid=study) for _ in range(3)]
    assert [handle(handler, ds)[1] for ds in first] == ["stored"] * 3
    extra = mr(256, 256, study_uid=study)  # 128 KiB: only its head goes to the quarantine
    status, outcome = handle(handler, extra)
    assert (status.Status, outcome) == (STUDY_TOO_LARGE, "refused")
    ((info, kept),) = quarantined(store)
    assert "study already holds 3 instances, the maximum is 3" in info["reason"]
    assert kept == QUARANTINE_KEEP_BYTES
    assert registry.study(study).n_instances == 3 and n_instances(registry) == 3
    # a PACS re-sending what we already hold still gets success (duplicates are not "more")
    assert handle(handler, first[0]) [1] == "duplicate"
    # other studies are not affected
    assert handle(handler, mr())[1] == "stored"


def test_bounds_come_from_the_environment(tmp_path, monkeypatch):
    assert Settings().max_associations == DEFAULT_MAX_ASSOCIATIONS
    monkeypatch.setenv("FOLLOWUP_MAX_INSTANCE_BYTES", "1234")
    monkeypatch.setenv("FOLLOWUP_MAX_STUDY_INSTANCES", "7")
    monkeypatch.setenv("FOLLOWUP_MAX_ASSOCIATIONS", "3")
    s = Settings.from_env(data_dir=tmp_path)
    assert (s.max_instance_bytes, s.max_study_instances, s.max_associations) == (1234, 7, 3)
    assert Settings.from_env(data_dir=tmp_path, max_associations=5).max_associations == 5
    monkeypatch.setenv("FOLLOWUP_MAX_ASSOCIATIONS", "0")
    with pytest.raises(ValueError, match="FOLLOWUP_MAX_ASSOCIATIONS"):
        Settings.from_env()
    monkeypatch.setenv("FOLLOWUP_MAX_ASSOCIATIONS", "lots")
    with pytest.raises(ValueError, match="whole number"):
        Settings.from_env()


def test_absent_setting_path_is_the_default(tmp_path):
    """Without FOLLOWUP_MAX_* the listener uses the documented defaults."""
    s = Settings(data_dir=tmp_path)
    assert (s.max_instance_bytes, s.max_study_instances) == (512 * 1024 * 1024, 10_000)
    assert Path(s.data_dir) == tmp_path
