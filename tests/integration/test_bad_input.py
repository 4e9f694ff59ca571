"""Bad input, each a clear error, quarantined (or recorded) with its reason, nothing else disturbed.

Coverage table (issue 6, "Bad input"): where each kind of bad input is tested. Files are named
from tests/; a bare file name is this folder's (tests/integration/).

| bad input | at the listener (C-STORE over a real association) | further in (ingestion, pipeline, CLI/API) |
| --- | --- | --- |
| truncated file | ``test_refused_over_the_wire[truncated-pixel-data]``, ``test_real_truncated_file_refused``; test_listener.py ``test_non_dicom_payload_quarantined[truncated]`` (cut header) | unit/dicom/test_ingest_errors.py ``test_truncated_file_in_dce_series``; unit/dicom/test_ingest_real_files.py ``test_truncated_file_is_rejected_and_errors`` |
| non-DICOM bytes | ``test_refused_over_the_wire[non-dicom]``; test_listener.py ``test_non_dicom_payload_quarantined[garbage]`` | unit/dicom/test_ingest_errors.py ``test_non_dicom_bytes``; unit/dicom/test_fuzz_ingest.py (random bytes) |
| DICOM with no pixel data | ``test_refused_over_the_wire[no-pixel-data]`` | unit/dicom/test_ingest_layouts.py ``test_distractors_are_ignored_with_reasons`` |
| wrong SOP class | ``test_refused_over_the_wire[sop-class-differs]``; test_listener.py ``test_ct_rejected_at_presentation_context`` (refused at association), ``test_sr_with_mr_modality_refused`` | |
| pixel data shorter than its header says | ``test_refused_over_the_wire[short-pixel-data]`` | unit/dicom/test_fuzz_ingest.py (``dims`` mutation) |
| absurd dimensions (memory bomb) | ``test_refused_over_the_wire[absurd-dimensions]``; test_bounds.py (instance size) | unit/dicom/test_fuzz_ingest.py ``test_absurd_dimensions_do_not_allocate`` |
| NaN/inf geometry | ``test_refused_over_the_wire[nan-position]``, ``[inf-spacing]`` | unit/dicom/test_ingest_errors.py ``test_nan_in_ipp``; unit/dicom/test_fuzz_ingest.py (``ipp``, ``spacing``) |
| SOP Instance UID with path characters | ``test_refused_over_the_wire[path-in-sop-uid]``, ``[path-in-study-uid]``; test_listener.py ``test_invalid_sop_instance_uid_quarantined`` | unit/dicom/test_fuzz_ingest.py (``sop`` mutation); unit/api/test_api.py (UIDs in URLs) |
| two patients in one study | ``test_two_patients_in_one_study``; test_study_patient.py (issue 22, F2) | unit/dicom/test_ingest_errors.py ``test_mixed_patients`` |
| follow-up whose PatientID has no procedure | | unit/test_bad_input.py ``test_followup_without_procedure_is_deferred``; unit/service/test_orchestrator.py ``test_followup_waits_for_its_procedure_and_baseline_then_completes`` |
| unknown calling AE title | ``test_unknown_calling_ae_rejected_and_logged``; test_listener.py ``test_unknown_calling_ae_rejected_*``; test_tls.py (over TLS) | |
| malformed procedure record | | unit/test_bad_input.py ``test_malformed_procedure_record_cli``; unit/test_procedure.py ``test_invalid_record_names_the_field``, ``test_load_errors_are_clear``; unit/api/test_api.py ``test_procedures_add_list_and_422`` |
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, JPEG2000Lossless, MRImageStorage, generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification

from followup.config import Settings
from followup.service.listener import TRANSFER_SYNTAXES, serve_dicom
from followup.service.orchestrator import new_analysis, process_analysis
from followup.service.registry import Registry
from followup.service.store import Store
from followup.testing.service_harness import free_port

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR", "ignore:The value length")

OUR_AET, PACS_AET = "FOLLOWUP", "PACS"


@pytest.fixture(scope="module")
def real(synth_pair) -> list[Path]:
    """Real MR instances of one synthetic follow-up study."""
    return sorted((synth_pair("complete", 3) / "followup").glob("*.dcm"))


class Listener:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.server = serve_dicom(Settings(data_dir=data_dir, ae_title=OUR_AET), port=self.port,
                                  allow=[PACS_AET], quiet_seconds=3600, on_stable=lambda uid: None,
                                  block=False, poll_seconds=0.5)
        self.store: Store = self.server.store
        self.registry: Registry = self.server.registry

    def stored(self) -> list[Path]:
        return sorted(self.store.instances.rglob("*.dcm"))

    def quarantined(self) -> list[tuple[dict, bytes]]:
        return [(json.loads(p.read_text()), p.with_suffix(".dcm").read_bytes())
                for p in sorted(self.store.quarantine_dir.glob("*.json"))]


@pytest.fixture
def listener(tmp_path):
    lst = Listener(tmp_path / "data")
    yield lst
    lst.server.shutdown()


def send_file(port: int, path: Path, calling: str = PACS_AET) -> int:
    """C-STORE a file's bytes exactly as they are (request UIDs from its file meta)."""
    meta = dcmread(path, stop_before_pixels=True, force=True).file_meta
    ae = AE(ae_title=calling)
    ae.add_requested_context(str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    assoc = ae.associate("127.0.0.1", port, ae_title=OUR_AET)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
        assoc.release()


def raw_file(path: Path, body: bytes, sop_class: str, sop_uid: str, tsyntax: str) -> Path:
    """A DICOM file: preamble, file meta and ``body`` (any bytes) as the data set."""
    def el(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
        value += b"\0" * (len(value) % 2)
        if vr == b"OB":
            return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
        return struct.pack("<HH2sH", group, elem, vr, len(value)) + value
    meta = (el(2, 1, b"OB", b"\0\1") + el(2, 2, b"UI", sop_class.encode()) + el(2, 3, b"UI", sop_uid.encode())
            + el(2, 0x10, b"UI", tsyntax.encode()) + el(2, 0x12, b"UI", b"1.2.3.4"))
    path.write_bytes(b"\0" * 128 + b"DICM" + el(2, 0, b"UL", struct.pack("<I", len(meta))) + meta + body)
    return path


def body_of(ds: Dataset) -> tuple[bytes, str]:
    """The encoded data set (no preamble, no meta) and its transfer syntax."""
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    group_len = struct.unpack("<I", data[140:144])[0]
    return data[144 + group_len:], str(ds.file_meta.TransferSyntaxUID)


def fresh(ds: Dataset) -> Dataset:
    """The same image as a new instance of the same series."""
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


# Each maker turns a real instance into bad input: (file to send, expected status, reason part).
def _truncated(ds: Dataset, d: Path):
    body, ts = body_of(ds)
    return raw_file(d / "bad.dcm", body[:-1000], MRImageStorage, ds.SOPInstanceUID, ts), 0xC000, "truncated"


def _non_dicom(ds: Dataset, d: Path):
    return (raw_file(d / "bad.dcm", b"%PDF-1.4 this is not DICOM \x00\x01" * 50, MRImageStorage,
                     ds.SOPInstanceUID, str(ds.file_meta.TransferSyntaxUID)), 0xC000, "not a usable DICOM")


def _no_pixel_data(ds: Dataset, d: Path):
    del ds.PixelData
    return _as_file(ds, d), 0xA900, "no pixel data"


def _sop_class_differs(ds: Dataset, d: Path):
    ds.SOPClassUID = CTImageStorage  # the data set says CT, the C-STORE request says MR
    body, ts = body_of(ds)
    return raw_file(d / "bad.dcm", body, MRImageStorage, ds.SOPInstanceUID, ts), 0xA900, "SOP Class UID differs"


def _short_pixel_data(ds: Dataset, d: Path):
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    return _as_file(ds, d), 0xC000, "pixel data shorter than its header says"


def _absurd_dimensions(ds: Dataset, d: Path):
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = "2147483647"
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 a few bytes"])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    return _as_file(ds, d), 0xA900, "absurd image size"


def _nan_position(ds: Dataset, d: Path):
    ds.ImagePositionPatient = ["NaN", "-40.0", "13.0"]
    return _as_file(ds, d), 0xA900, "ImagePositionPatient is not finite"


def _inf_spacing(ds: Dataset, d: Path):
    ds.PixelSpacing = ["inf", "1.0"]
    return _as_file(ds, d), 0xA900, "PixelSpacing is not finite"


def _path_in_sop_uid(ds: Dataset, d: Path):
    ds.SOPInstanceUID = "1.2.3/../../../evil"
    body, ts = body_of(ds)
    bad = raw_file(d / "bad.dcm", body, MRImageStorage, ds.SOPInstanceUID, ts)
    return bad, 0xC000, "invalid SOP Instance UID"


def _path_in_study_uid(ds: Dataset, d: Path):
    ds.StudyInstanceUID = "../../../evil"
    return _as_file(ds, d), 0xC000, "invalid Study Instance UID"


def _as_file(ds: Dataset, d: Path) -> Path:
    ds.save_as(d / "bad.dcm", enforce_file_format=True)
    return d / "bad.dcm"


BAD: dict[str, Callable] = {
    "truncated-pixel-data": _truncated, "non-dicom": _non_dicom, "no-pixel-data": _no_pixel_data,
    "sop-class-differs": _sop_class_differs, "short-pixel-data": _short_pixel_data,
    "absurd-dimensions": _absurd_dimensions, "nan-position": _nan_position, "inf-spacing": _inf_spacing,
    "path-in-sop-uid": _path_in_sop_uid, "path-in-study-uid": _path_in_study_uid,
}


@pytest.mark.parametrize("kind", list(BAD))
def test_refused_over_the_wire(listener, real, tmp_path, kind):
    """A good instance, the bad one, another good one on the same study: the bad one gets a
    failure status and lies in the quarantine as it came with its reason; the good ones are
    stored and registered; nothing lands outside the store."""
    first, second = real[0], real[1]
    assert send_file(listener.port, first) == 0
    bad, status, reason = BAD[kind](fresh(dcmread(real[2])), tmp_path)
    assert send_file(listener.port, bad) == status
    assert send_file(listener.port, second) == 0

    ((info, kept),) = listener.quarantined()
    assert reason.lower() in info["reason"].lower(), info
    assert info["status"] == f"0x{status:04X}" and info["calling_ae"] == PACS_AET
    sent = bad.read_bytes()
    assert kept.endswith(sent[144 + struct.unpack("<I", sent[140:144])[0]:])  # the data set as received
    study = dcmread(first, stop_before_pixels=True).StudyInstanceUID
    assert len(listener.stored()) == 2
    assert listener.registry.study(study).n_instances == 2
    assert listener.registry.study(study).state == "receiving"
    assert not list(listener.store.root.parent.rglob("evil*"))  # no path escaped the store


def test_real_truncated_file_refused(listener, real):
    """pydicom's own MR_truncated.dcm (its pixel data cut short) sent as it is."""
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file("MR_truncated.dcm"))
    assert send_file(listener.port, path) == 0xC000
    ((info, _),) = listener.quarantined()
    assert info["reason"].startswith("truncated: the data ends")
    assert not listener.stored() and send_file(listener.port, real[0]) == 0


def test_two_patients_in_one_study(listener, real, tmp_path):
    """An instance of another patient in a study: refused 0xC000 and quarantined alone (kind
    ``stray``); the study keeps receiving its own patient's images, is flagged for review, and
    an analysis of it runs on them (issue 22, F2: before, the whole study was quarantined for
    good and its analysis failed "mixed patients"). Other studies carry on. The round trips
    through the worker and the quarantine commands: test_study_patient.py."""
    study = str(dcmread(real[0], stop_before_pixels=True).StudyInstanceUID)
    assert send_file(listener.port, real[0]) == 0
    intruder = fresh(dcmread(real[1]))
    intruder.PatientID = "OTHER-PATIENT-77"
    assert send_file(listener.port, _as_file(intruder, tmp_path)) == 0xC000
    ((info, _),) = listener.quarantined()
    assert "two patients in one study" in info["reason"] and info["kind"] == "stray"
    (entry,) = listener.registry.quarantined()
    assert (entry.kind, entry.state, entry.study_uid) == ("stray", "held", study)
    st = listener.registry.study(study)
    assert st.state == "receiving" and st.n_instances == 1 and st.review_reason

    # more images of the study's own patient are stored
    assert send_file(listener.port, real[2]) == 0
    assert listener.registry.study(study).n_instances == 2
    # another study is not disturbed
    other = dcmread(real[3])
    other.StudyInstanceUID, other.SeriesInstanceUID = generate_uid(), generate_uid()
    assert send_file(listener.port, _as_file(fresh(other), tmp_path)) == 0
    assert sorted(listener.registry.claim_stable_studies(0)) == sorted([study, str(other.StudyInstanceUID)])
    # an analysis of it is not failed for "mixed patients" (no procedure record here: deferred)
    settings = Settings(data_dir=listener.store.root)
    a = new_analysis(listener.registry, study, "realtime")
    out = process_analysis(settings, listener.registry, listener.store, a.id)
    assert out.status == "deferred" and "procedure record" in out.reason


def test_unknown_calling_ae_rejected_and_logged(listener, real, caplog):
    caplog.set_level("WARNING", logger="followup")
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(Verification)
    ae.add_requested_context(MRImageStorage, TRANSFER_SYNTAXES[:2])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=OUR_AET)
    assert assoc.is_rejected and not assoc.is_established
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)  # calling AE not recognised
    logged = [r.getMessage() for r in caplog.records if "association rejected" in r.getMessage()]
    assert logged and "'INTRUDER'" in logged[0] and "127.0.0.1" in logged[0]
    assert not listener.stored() and not listener.registry.studies()
    assert send_file(listener.port, real[0]) == 0  # the allowed PACS is not disturbed
