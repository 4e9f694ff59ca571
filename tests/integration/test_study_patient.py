"""A stray instance (the study's UID, another Patient ID) against a genuine study, over real
associations on 127.0.0.1, with the study analysed and reported (issue 22, F2). Before issue 22,
a stray sent first made the listener answer all genuine instances 0xC000, and one sent after the
report quarantined the study for good (its reanalysis failed "mixed patients").

The analysis runs in-process (``process_analysis``: the worker's whole task) on the listener's
store and registry; the round trip through Redis and a Celery worker is test_service_e2e.py's.
The rule itself: tests/unit/service/listener/test_study_patient.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE

from followup.config import Settings
from followup.procedure import load_procedure
from followup.service.listener import serve_dicom
from followup.service.orchestrator import process_analysis
from followup.service.pacs import keep_responses
from followup.service.work_queue import new_analysis
from followup.testing.service_harness import free_port

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Invalid value for VR")]

OUR_AET, PACS_AET = "FOLLOWUP", "PACS"
STRAY_PATIENT = "STRAY-PATIENT-404"


@pytest.fixture(scope="module")
def pair(synth_pair) -> Path:
    return synth_pair("residual", 1, "per-phase")


@pytest.fixture
def listener(tmp_path, pair):
    settings = Settings(data_dir=tmp_path / "data", ae_title=OUR_AET)
    server = serve_dicom(settings, ae_title=OUR_AET, port=(port := free_port()), allow=[PACS_AET],
                         quiet_seconds=3600, on_stable=lambda uid: None, block=False, poll_seconds=60)
    server.registry.add_procedure(load_procedure(pair / "procedure.json"))
    server.port, server.settings = port, settings
    yield server
    server.shutdown()


def datasets(folder: Path) -> list[Dataset]:
    return [dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def send(port: int, items: list[Dataset]) -> list[int]:
    """C-STORE each data set on one association; their statuses."""
    ae = AE(ae_title=PACS_AET)
    for sop_class, syntax in {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in items}:
        ae.add_requested_context(sop_class, syntax)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", port, ae_title=OUR_AET)
    assert assoc.is_established
    keep_responses(assoc)  # pynetdicom's reactor can drop a quick response under load (followup.service.pacs)
    try:
        return [assoc.send_c_store(d).Status for d in items]
    finally:
        assoc.release()


def stray_of(genuine: Dataset) -> Dataset:
    """An instance of the genuine study (its UIDs) under another Patient ID, as a new instance."""
    ds = dcmread(genuine.filename)
    ds.PatientID = STRAY_PATIENT
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def analyse(server, study_uid: str):
    """Hand the study over (stable) and run its analysis as a worker would."""
    a = new_analysis(server.registry, study_uid, "realtime")
    return process_analysis(server.settings, server.registry, server.store, a.id)


def baseline_in_store(server, pair: Path) -> None:
    base = datasets(pair / "baseline")
    assert set(send(server.port, base)) == {0}
    out = analyse(server, str(base[0].StudyInstanceUID))
    assert out.status == "baseline"  # a baseline is stored, not analysed


def test_stray_sent_first_loses_the_study_to_its_procedure_records_patient(listener, pair):
    """The stray arrives first (so it is answered 0x0000: nothing says it is a stray yet), then
    the 279-instance-like genuine study: every genuine instance is stored (0x0000), the stray is
    moved to the quarantine, the study is the record's patient's, flagged for review, and its
    analysis completes with a report."""
    baseline_in_store(listener, pair)
    genuine = datasets(pair / "followup")
    study = str(genuine[0].StudyInstanceUID)
    assert send(listener.port, [stray_of(genuine[0])]) == [0]
    statuses = send(listener.port, genuine)
    assert set(statuses) == {0}, f"genuine instances refused: {sorted(set(statuses))}"
    st = listener.registry.study(study)
    assert st.patient_id == str(genuine[0].PatientID) and st.n_instances == len(genuine)
    assert st.review_reason
    (entry,) = listener.registry.quarantined(study_uid=study)
    assert (entry.kind, entry.patient_id) == ("stray", STRAY_PATIENT)
    assert "procedure record" in entry.reason
    out = analyse(listener, study)
    assert out.status == "complete", out.reason
    assert listener.registry.latest_analysis(study).report_dir


def test_stray_sent_after_the_report_is_quarantined_alone(listener, pair):
    """The genuine study is analysed and reported, then a stray arrives: 0xC000, quarantined
    alone; the study stays complete (its report is not withdrawn), is flagged for review, and a
    reanalysis of it completes."""
    baseline_in_store(listener, pair)
    genuine = datasets(pair / "followup")
    study = str(genuine[0].StudyInstanceUID)
    assert set(send(listener.port, genuine)) == {0}
    assert analyse(listener, study).status == "complete"
    assert send(listener.port, [stray_of(genuine[1])]) == [0xC000]
    st = listener.registry.study(study)
    assert st.state == "complete" and st.review_reason and st.n_instances == len(genuine)
    (entry,) = listener.registry.quarantined(study_uid=study)
    assert entry.kind == "stray" and "has been analysed" in entry.reason
    again = analyse(listener, study)
    assert again.status == "complete", again.reason
