"""The DICOM listener over a real network on 127.0.0.1.

dcmtk (storescu, echoscu) sends like a PACS; pynetdicom crafts the refused inputs. The stability
monitor: tests/unit/service/test_stability.py."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from pydicom import config, dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    EnhancedSRStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification

from followup.config import Settings
from followup.service.listener import STORAGE_CLASSES, serve_dicom
from followup.service.registry import Registry
from followup.service.store import Store
from followup.testing.instances import n_instances
from followup.testing.service_harness import free_port

OUR_AET = "FOLLOWUP"
PACS_AET = "PACS"
HAVE_STORESCU = shutil.which("storescu") is not None
HAVE_ECHOSCU = shutil.which("echoscu") is not None
NO_DCMTK = "dcmtk is not installed (storescu/echoscu missing): THE DCMTK INTEROPERABILITY TESTS DID NOT RUN"


class Listener:
    def __init__(self, data_dir: Path, quiet_seconds: float = 3600.0) -> None:
        self.port = free_port()
        self.stable: list[str] = []
        self.settings = Settings(data_dir=data_dir, ae_title=OUR_AET)
        self.server = serve_dicom(self.settings, ae_title=OUR_AET, port=self.port,
                                  allow=[PACS_AET, "MODALITY"], quiet_seconds=quiet_seconds,
                                  on_stable=self.stable.append, block=False, poll_seconds=0.1)
        self.store: Store = self.server.store
        self.registry: Registry = self.server.registry

    def n_instances(self) -> int:
        return n_instances(self.registry)

    def stored_files(self) -> list[Path]:
        return sorted(self.store.instances.rglob("*.dcm"))

    def quarantined(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.store.quarantine_dir.glob("*.json"))]


@pytest.fixture
def listener(tmp_path):
    lst = Listener(tmp_path / "data")
    yield lst
    lst.server.shutdown()


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    from followup.synth import generate_pair
    out = tmp_path_factory.mktemp("listener-synth")
    generate_pair(out, "complete", 3, "per-phase", "small")
    return out / "followup"


def scu(calling: str = PACS_AET, contexts=(MRImageStorage,), tsyntax: str = ExplicitVRLittleEndian) -> AE:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    for c in contexts:
        ae.add_requested_context(c, tsyntax)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae


def mr_dataset(sop_uid: str | None = None, modality: str = "MR", sop_class: str = MRImageStorage) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = "SECRET-ID-4711"
    ds.PatientName = "DOE^SECRET"
    ds.StudyDate = "20240102"
    ds.AccessionNumber = "ACC1"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(32))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def send(port: int, ds: Dataset | Path, calling: str = PACS_AET, sop_class: str = MRImageStorage,
         tsyntax: str = ExplicitVRLittleEndian) -> int:
    assoc = scu(calling, (sop_class,), tsyntax).associate("127.0.0.1", port, ae_title=OUR_AET)
    assert assoc.is_established
    try:
        rsp = assoc.send_c_store(ds)
        return int(rsp.Status)
    finally:
        assoc.release()


def send_raw_file(port: int, path: Path, **kw) -> int:
    """Send a file's data set bytes as they are (the request UIDs come from its file meta)."""
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return send(port, path, **kw)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old


def raw_file(path: Path, body: bytes, sop_class: str, sop_uid: str) -> Path:
    """A DICOM file: preamble, file meta (explicit VR LE) and ``body`` as the data set."""
    def el(group, elem, vr, value: bytes) -> bytes:
        if len(value) % 2:
            value += b"\0"
        if vr in (b"OB",):
            return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
        return struct.pack("<HH2sH", group, elem, vr, len(value)) + value
    meta = (el(2, 1, b"OB", b"\0\1") + el(2, 2, b"UI", sop_class.encode())
            + el(2, 3, b"UI", sop_uid.encode()) + el(2, 0x10, b"UI", ExplicitVRLittleEndian.encode())
            + el(2, 0x12, b"UI", b"1.2.3.4"))
    data = b"\0" * 128 + b"DICM" + el(2, 0, b"UL", struct.pack("<I", len(meta))) + meta + body
    path.write_bytes(data)
    return path


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set of a DICOM file, without preamble and file meta."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    group_len = struct.unpack("<I", data[140:144])[0]
    return data[144 + group_len:]


def storescu(port: int, folder: Path, calling: str = PACS_AET) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["storescu", "-aet", calling, "-aec", OUR_AET, "+sd", "+r", "-xs", "127.0.0.1", str(port),
         str(folder)],
        env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, timeout=120)


# --- association level ----------------------------------------------------------------------------
def test_c_echo_ok(listener):
    assoc = scu().associate("127.0.0.1", listener.port, ae_title=OUR_AET)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


@pytest.mark.skipif(not HAVE_ECHOSCU, reason=NO_DCMTK)
def test_echoscu_ok(listener):
    r = subprocess.run(["echoscu", "-aet", PACS_AET, "-aec", OUR_AET, "127.0.0.1", str(listener.port)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_unknown_calling_ae_rejected_pynetdicom(listener):
    assoc = scu("INTRUDER").associate("127.0.0.1", listener.port, ae_title=OUR_AET)
    assert assoc.is_rejected and not assoc.is_established
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)  # calling AE not recognised


@pytest.mark.skipif(not HAVE_ECHOSCU, reason=NO_DCMTK)
def test_unknown_calling_ae_rejected_echoscu(listener):
    r = subprocess.run(["echoscu", "-aet", "INTRUDER", "-aec", OUR_AET, "127.0.0.1", str(listener.port)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "calling ae title not recognized" in (r.stdout + r.stderr).lower()


def test_ct_rejected_at_presentation_context(listener):
    assoc = scu(contexts=(CTImageStorage, MRImageStorage)).associate("127.0.0.1", listener.port,
                                                                    ae_title=OUR_AET)
    assert assoc.is_established
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    rejected = {cx.abstract_syntax for cx in assoc.rejected_contexts}
    assert CTImageStorage in rejected and CTImageStorage not in accepted and MRImageStorage in accepted
    with pytest.raises(ValueError):
        assoc.send_c_store(mr_dataset(modality="CT", sop_class=CTImageStorage))
    assoc.release()
    assert listener.n_instances() == 0


def test_empty_allow_list_refused(tmp_path):
    with pytest.raises(ValueError):
        serve_dicom(Settings(data_dir=tmp_path), ae_title=OUR_AET, port=free_port(), allow=[],
                    quiet_seconds=1, on_stable=lambda uid: None, block=False)


@pytest.mark.parametrize("sop_class, modality", sorted(
    (c, m) for c, ms in STORAGE_CLASSES.items() for m in ms))
def test_each_storage_class_accepted(listener, sop_class, modality):
    assert send(listener.port, mr_dataset(modality=modality, sop_class=sop_class), sop_class=sop_class) == 0
    assert listener.n_instances() == 1 and len(listener.stored_files()) == 1


def test_sr_with_mr_modality_refused(listener):
    status = send(listener.port, mr_dataset(modality="MR", sop_class=EnhancedSRStorage),
                  sop_class=EnhancedSRStorage)
    assert_refused(listener, status, 0xA900, "modality 'MR'")


@pytest.mark.parametrize("tsyntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless])
def test_compressed_stored_as_received_without_decoding(listener, tmp_path, tsyntax):
    ds = mr_dataset()
    # a JPEG 2000 main header of the image's 4 x 4 pixels (checked against Rows and Columns),
    # then bytes that are no codestream: never decoded
    siz = b"\xff\x4f\xff\x51" + struct.pack(">HHIIII", 41, 0, 4, 4, 0, 0)
    ds.PixelData = encapsulate([siz + b" not a real codestream, never decoded"])
    ds["PixelData"].VR = "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = tsyntax
    src = tmp_path / "compressed.dcm"
    ds.save_as(src, enforce_file_format=True)
    assert send_raw_file(listener.port, src, tsyntax=tsyntax) == 0x0000
    (dst,) = listener.stored_files()
    assert dataset_bytes(dst) == dataset_bytes(src)
    assert dcmread(dst).file_meta.TransferSyntaxUID == tsyntax


# --- a whole study from dcmtk ---------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_STORESCU, reason=NO_DCMTK)
def test_storescu_study_arrives_completely_once(tmp_path, study_dir, caplog):
    caplog.set_level("DEBUG")
    lst = Listener(tmp_path / "data", quiet_seconds=1.0)
    try:
        sources = sorted(study_dir.rglob("*.dcm"))
        assert len(sources) > 200
        t0 = time.monotonic()
        r = storescu(lst.port, study_dir)
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r.stderr[-2000:]
        print(f"\ningest: {len(sources)} instances in {elapsed:.2f} s = {len(sources) / elapsed:.0f} instances/s")

        study_uids = set()
        for src in sources:
            ds = dcmread(src)
            study_uids.add(ds.StudyInstanceUID)
            dst = lst.store.instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
            assert dst.is_file(), dst
            assert dataset_bytes(dst) == dataset_bytes(src)  # the data set exactly as sent
            got = dcmread(dst)
            assert got.SOPInstanceUID == ds.SOPInstanceUID
            assert got.PixelData == ds.PixelData
        assert len(lst.stored_files()) == len(sources)
        assert lst.n_instances() == len(sources)
        (study_uid,) = study_uids
        study = lst.registry.study(study_uid)
        assert study.n_instances == len(sources) and study.calling_ae == PACS_AET
        assert set(map(Path, lst.registry.instance_paths(study_uid))) == {
            p.absolute() for p in lst.stored_files()}
        assert not list(lst.store.spool.iterdir()) and not lst.quarantined()

        # re-sending the same study: no duplicates, first files kept
        inodes = {p: p.stat().st_ino for p in lst.stored_files()}
        r = storescu(lst.port, study_dir)
        assert r.returncode == 0, r.stderr[-2000:]
        assert lst.n_instances() == len(sources)
        assert lst.registry.study(study_uid).n_instances == len(sources)
        assert {p: p.stat().st_ino for p in lst.stored_files()} == inodes
        assert lst.server.store_handler.totals["duplicate"] == len(sources)

        # stable once (quiet 1 s); the duplicates do not make it change again
        deadline = time.monotonic() + 10
        while not lst.stable and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)
        assert lst.stable == [study_uid]
        assert lst.registry.study(study_uid).state == "stable"
    finally:
        lst.server.shutdown()
    # logs never carry patient identifiers
    ds0 = dcmread(sources[0], stop_before_pixels=True)
    for secret in (str(ds0.PatientID), str(ds0.PatientName), str(ds0.PatientBirthDate)):
        assert secret not in caplog.text


# --- refused input --------------------------------------------------------------------------------
def assert_refused(lst: Listener, status: int, expected: int, reason_part: str) -> None:
    assert status == expected, hex(status)
    q = lst.quarantined()
    assert len(q) == 1 and reason_part.lower() in q[0]["reason"].lower(), q
    assert q[0]["status"] == f"0x{expected:04X}"
    dcm = sorted(lst.store.quarantine_dir.glob("*.dcm"))
    assert len(dcm) == 1 and dcm[0].stat().st_size == int(q[0]["bytes"])
    assert lst.stored_files() == [] and lst.n_instances() == 0


@pytest.mark.parametrize("body, reason", [
    (b"this is not DICOM at all \x01\x02" * 40, "not a usable DICOM data set"),
    # a sequence of undefined length cut short: the header parser raises
    (struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF) + b"\0" * 20,
     "header could not be parsed"),
], ids=["garbage", "truncated"])
def test_non_dicom_payload_quarantined(listener, tmp_path, body, reason):
    path = raw_file(tmp_path / "junk.dcm", body, MRImageStorage, generate_uid())
    status = send_raw_file(listener.port, path)
    assert_refused(listener, status, 0xC000, reason)


def test_wrong_modality_quarantined(listener):
    status = send(listener.port, mr_dataset(modality="CT"))
    assert_refused(listener, status, 0xA900, "modality 'CT'")


def test_invalid_sop_instance_uid_quarantined(listener):
    status = send(listener.port, mr_dataset(sop_uid="1.2.3/../4"))
    assert_refused(listener, status, 0xC000, "invalid SOP Instance UID")
    assert not (listener.store.root / "4.dcm").exists()
    assert not list(listener.store.root.rglob("4.dcm"))


def test_sop_uid_mismatch_quarantined(listener, tmp_path):
    ds = mr_dataset()
    ds.save_as(tmp_path / "ok.dcm", enforce_file_format=True)
    body = dataset_bytes(tmp_path / "ok.dcm")
    path = raw_file(tmp_path / "mismatch.dcm", body, MRImageStorage, generate_uid())  # other UID
    status = send_raw_file(listener.port, path)
    assert_refused(listener, status, 0xA900, "differs from the C-STORE request")


def test_logs_without_patient_identifiers(listener, caplog):
    caplog.set_level("DEBUG")
    odd = mr_dataset()
    with config.disable_value_validation():  # non-conformant values: pydicom would log them
        odd.PatientID = "SECRET-" * 12  # LO longer than 64
        odd.PatientName = "SECRET^" * 12
        odd.AccessionNumber = "SECRET\\SECRET"
    assert send(listener.port, odd) == 0x0000
    assert send(listener.port, mr_dataset(modality="CT")) == 0xA900
    assert send(listener.port, mr_dataset(sop_uid="1.2.3/../4")) == 0xC000
    assert "SOP instance" in caplog.text  # the listener did log
    assert not [r.getMessage() for r in caplog.records if "SECRET" in r.getMessage()]


# --- out of resources -----------------------------------------------------------------------------
def test_write_failure_answers_out_of_resources(listener, monkeypatch):
    def disk_full(self, final, data=None, *, src_tmp=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Store, "write_atomic", disk_full)
    ds = mr_dataset()
    assert send(listener.port, ds) == 0xA700
    assert listener.stored_files() == [] and listener.n_instances() == 0
    assert not list(listener.store.spool.iterdir())
    monkeypatch.undo()  # the PACS retries once the disk has room
    assert send(listener.port, ds) == 0x0000
    assert len(listener.stored_files()) == 1 and listener.n_instances() == 1


def test_registry_failure_answers_out_of_resources(listener, monkeypatch):
    def db_down(self, **kw):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(Registry, "record_instance", db_down)
    assert send(listener.port, mr_dataset()) == 0xA700
    assert listener.stored_files() == [] and not list(listener.store.spool.iterdir())


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: file permissions do not stop writes (covered by the "
                           "monkeypatched write failure)")
def test_read_only_store_answers_out_of_resources(listener):
    for d in (listener.store.instances, listener.store.spool):
        d.chmod(0o555)
    try:
        assert send(listener.port, mr_dataset()) == 0xA700
    finally:
        for d in (listener.store.instances, listener.store.spool):
            d.chmod(0o755)
    assert listener.stored_files() == [] and listener.n_instances() == 0


def test_clean_spool_on_start(tmp_path):
    store = Store(tmp_path / "data")
    (store.spool / "crashed.part").write_bytes(b"partial")
    lst = Listener(tmp_path / "data")
    try:
        assert not list(lst.store.spool.iterdir())
    finally:
        lst.server.shutdown()
