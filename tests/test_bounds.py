"""Resource bounds of the listener, all configurable (Settings, FOLLOWUP_MAX_* variables,
serve-dicom options): maximum instance size, maximum instances per study, maximum concurrent
associations. Unit level through ``StoreHandler.handle``; wire level through real pynetdicom
associations and a real ``followup serve-dicom`` process."""

from __future__ import annotations

import json
import os
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom import AE
from service_harness import FOLLOWUP, free_port, process, wait_for, wait_port
from sqlalchemy import func, select

from followup.config import DEFAULT_MAX_ASSOCIATIONS, Settings
from followup.service.listener import (
    INSTANCE_TOO_LARGE,
    QUARANTINE_KEEP_BYTES,
    STUDY_TOO_LARGE,
    StoreHandler,
    serve_dicom,
)
from followup.service.registry import Instance, Registry
from followup.service.store import Store

OUR_AET, PACS_AET = "FOLLOWUP", "PACS"


def mr(rows: int = 64, cols: int = 64, study_uid: str | None = None, patient: str = "P-BOUNDS") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.PatientID = patient
    ds.StudyDate = "20240102"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(rows * cols * 2)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def encode(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def handle(handler: StoreHandler, ds: Dataset, **kw):
    return handler.handle(encode(ds), MRImageStorage, str(ds.SOPInstanceUID), PACS_AET, **kw)


def quarantined(store: Store) -> list[tuple[dict, int]]:
    """(reason record, size of the kept .dcm) per quarantined input."""
    return [(json.loads(p.read_text()), p.with_suffix(".dcm").stat().st_size)
            for p in sorted(store.quarantine_dir.glob("*.json"))]


def n_instances(registry: Registry) -> int:
    with registry.session() as s:
        return s.scalar(select(func.count()).select_from(Instance))


@pytest.fixture
def env(tmp_path):
    store = Store(tmp_path / "data")
    registry = Registry(f"sqlite:///{tmp_path}/r.db")
    return store, registry


# --- unit level -----------------------------------------------------------------------------------
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


# --- wire level -----------------------------------------------------------------------------------
def scu(calling: str = PACS_AET) -> AE:
    ae = AE(ae_title=calling)
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 20
    return ae


@pytest.fixture
def bounded(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", max_instance_bytes=200_000, max_study_instances=4,
                        max_associations=2)
    port = free_port()
    server = serve_dicom(settings, ae_title=OUR_AET, port=port, allow=[PACS_AET], quiet_seconds=3600,
                         on_stable=lambda uid: None, block=False, poll_seconds=0.5)
    yield port, server
    server.shutdown()


def test_oversized_instance_over_the_wire(bounded):
    """A 1 MiB instance against a 200 kB limit: 0xA701, its bytes beyond the limit never held,
    the association still usable."""
    port, server = bounded
    handler = server.store_handler
    seen: list[int] = []
    real_handle = handler.handle

    def spy(data, *args, **kw):  # observes what reached the handler; the real code runs
        seen.append(len(data))
        return real_handle(data, *args, **kw)

    handler.handle = spy
    big = mr(1024, 512)
    sent = len(encode(big))
    assoc = scu().associate("127.0.0.1", port, ae_title=OUR_AET)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(big).Status == INSTANCE_TOO_LARGE
        assert assoc.send_c_store(mr()).Status == 0  # the next message is counted afresh
    finally:
        assoc.release()
    assert seen[0] < 200_000 + 1024 < sent, "the guard should have dropped the excess"
    ((info, kept),) = quarantined(server.store)
    assert info["status"] == "0xA701" and int(info["received_bytes"]) >= sent - 1024
    assert kept <= QUARANTINE_KEEP_BYTES
    assert n_instances(server.registry) == 1


def test_association_beyond_the_limit_is_rejected(bounded):
    port, server = bounded
    open_ = [scu().associate("127.0.0.1", port, ae_title=OUR_AET) for _ in range(2)]
    try:
        assert all(a.is_established for a in open_)
        third = scu().associate("127.0.0.1", port, ae_title=OUR_AET)
        assert third.is_rejected and not third.is_established
        rj = third.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)  # transient, local limit
        assert open_[0].send_c_store(mr()).Status == 0  # the open ones carry on
    finally:
        open_[0].release()
    try:  # one slot free again: a new association is accepted
        def accepted():
            a = scu().associate("127.0.0.1", port, ae_title=OUR_AET)
            if a.is_established:
                return a
            return None
        again = wait_for(accepted, 20, "a free association slot", interval=0.3)
        assert again.send_c_store(mr()).Status == 0
        again.release()
    finally:
        open_[1].release()
    assert n_instances(server.registry) == 2


def test_serve_dicom_command_line_options(tmp_path):
    """The bounds given as serve-dicom options reach the running listener."""
    port = free_port()
    env = dict(os.environ, FOLLOWUP_DATA_DIR=str(tmp_path / "data"),
               FOLLOWUP_REDIS_URL="redis://127.0.0.1:1/0",  # never reached: nothing gets stable
               FOLLOWUP_RECONCILE_SECONDS="0")
    cmd = [FOLLOWUP, "serve-dicom", "--port", str(port), "--host", "127.0.0.1", "--allow", PACS_AET,
           "--quiet-seconds", "3600", "--max-associations", "1", "--max-instance-bytes", "50000",
           "--max-study-instances", "1"]
    with process(cmd, tmp_path / "listener.log", env):
        wait_port(port, timeout=60)
        held = scu().associate("127.0.0.1", port, ae_title=OUR_AET)
        assert held.is_established
        try:
            assert scu().associate("127.0.0.1", port, ae_title=OUR_AET).is_rejected
            study = generate_uid()
            assert held.send_c_store(mr(256, 256, study_uid=study)).Status == INSTANCE_TOO_LARGE
            assert held.send_c_store(mr(study_uid=study)).Status == 0
            assert held.send_c_store(mr(study_uid=study)).Status == STUDY_TOO_LARGE
        finally:
            held.release()
    log = (tmp_path / "listener.log").read_text()
    assert "at most 1 associations, 50000 bytes an instance, 1 instances a study" in log
    bad = subprocess.run([*cmd[:2], "--port", str(port), "--allow", PACS_AET, "--max-associations", "0"],
                         check=False, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_absent_setting_path_is_the_default(tmp_path):
    """Without FOLLOWUP_MAX_* the listener uses the documented defaults."""
    s = Settings(data_dir=tmp_path)
    assert (s.max_instance_bytes, s.max_study_instances) == (512 * 1024 * 1024, 10_000)
    assert Path(s.data_dir) == tmp_path
