"""The study-patient rule (issue 22, F2) and the per-instance quarantine, through
``StoreHandler.handle`` (no network), and the way out (``followup.service.quarantine``). The wire
and the analysis: tests/integration/test_study_patient.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage, generate_uid

from followup.procedure import parse_procedure
from followup.service.listener import CANNOT_UNDERSTAND, StoreHandler
from followup.service.listener.study_patient import Contest, Owner, study_owner
from followup.service.quarantine import Quarantine, QuarantineError
from followup.service.registry import Registry
from followup.service.store import Store
from followup.states import StudyState
from followup.testing.instances import encode, mr

PACS_AET = "PACS"
GENUINE, STRAY = "P-GENUINE", "P-STRAY"


def record(patient_id: str):
    return parse_procedure({
        "patient_id": patient_id, "procedure_date": "2023-06-01", "laterality": "L",
        "lesion": {"center_lps_mm": [10.0, -20.0, 5.0], "diameter_mm": 12, "histology": "IDC", "grade": 2,
                   "dcis_component_pct": 0, "insitu_grade": None},
        "freeze_thaw_cycles": 2, "margin_mm": 10})


@pytest.fixture
def env(tmp_path):
    store = Store(tmp_path / "data", sync=False)
    registry = Registry(f"sqlite:///{tmp_path}/r.db", sync=False)
    return store, registry, StoreHandler(store, registry), Quarantine(store, registry, StoreHandler(store, registry))


def send(handler: StoreHandler, ds: Dataset) -> tuple[int, str]:
    status, outcome = handler.handle(encode(ds), MRImageStorage, str(ds.SOPInstanceUID), PACS_AET)
    return status.Status, outcome


# --- the rule, pure -------------------------------------------------------------------------------
@pytest.mark.parametrize("contest, owner", [
    (Contest(True, False, True, 1, 5), Owner.KEEP),  # analysed: keeps its patient whatever comes
    (Contest(False, True, False, 1, 9), Owner.KEEP),  # the record's patient keeps it
    (Contest(False, False, True, 9, 1), Owner.SWITCH),  # the record's patient takes it
    (Contest(False, False, False, 1, 1), Owner.KEEP),  # a tie keeps the first
    (Contest(False, False, False, 1, 2), Owner.SWITCH),  # the majority
    (Contest(False, True, True, 3, 2), Owner.KEEP),
    (Contest(False, True, True, 3, 4), Owner.SWITCH),
])
def test_rule(contest, owner):
    assert study_owner(contest) is owner


# --- F2 through the handler -----------------------------------------------------------------------
def test_stray_after_the_study_is_quarantined_alone(env):
    _store, registry, handler, _ = env
    study = generate_uid()
    assert send(handler, mr(study_uid=study, patient=GENUINE)) == (0, "stored")
    assert send(handler, mr(study_uid=study, patient=STRAY)) == (CANNOT_UNDERSTAND, "refused")
    assert send(handler, mr(study_uid=study, patient=GENUINE)) == (0, "stored")
    st = registry.study(study)
    assert (st.patient_id, st.n_instances, st.state) == (GENUINE, 2, StudyState.RECEIVING)
    assert st.review_reason
    (entry,) = registry.quarantined(study_uid=study)
    assert (entry.kind, entry.patient_id, entry.status) == ("stray", STRAY, "0xC000")


def test_stray_first_without_records_loses_the_study_to_the_majority(env):
    """No procedure record for either: the first genuine instance ties (1 - 1) and is held, the
    second outnumbers the stray: the study becomes the genuine patient's, the held one is stored
    and the stray moved to the quarantine."""
    store, registry, handler, _ = env
    study = generate_uid()
    assert send(handler, mr(study_uid=study, patient=STRAY)) == (0, "stored")
    first = mr(study_uid=study, patient=GENUINE)
    assert send(handler, first) == (CANNOT_UNDERSTAND, "refused")
    assert send(handler, mr(study_uid=study, patient=GENUINE)) == (0, "stored")
    assert [send(handler, mr(study_uid=study, patient=GENUINE))[0] for _ in range(3)] == [0, 0, 0]
    st = registry.study(study)
    assert (st.patient_id, st.n_instances) == (GENUINE, 5) and st.review_reason
    assert registry.instance_path(str(first.SOPInstanceUID)) is not None  # the held one, put back
    (held,) = registry.quarantined(study_uid=study)
    assert (held.kind, held.patient_id) == ("stray", STRAY) and "outnumber" in held.reason
    released = registry.quarantined(study_uid=study, state="released")
    assert [(e.sop_uid, e.action_by) for e in released] == [(str(first.SOPInstanceUID), "listener")]
    assert len(list(store.instances.rglob("*.dcm"))) == 5


def test_stray_first_loses_to_the_procedure_records_patient_at_once(env):
    _store, registry, handler, _ = env
    registry.add_procedure(record(GENUINE))
    study = generate_uid()
    assert send(handler, mr(study_uid=study, patient=STRAY)) == (0, "stored")
    assert send(handler, mr(study_uid=study, patient=GENUINE)) == (0, "stored")
    assert registry.study(study).patient_id == GENUINE
    # and a later stray of the same patient is held, whatever their number
    assert {send(handler, mr(study_uid=study, patient=STRAY))[0] for _ in range(3)} == {CANNOT_UNDERSTAND}
    assert registry.study(study).patient_id == GENUINE and len(registry.quarantined(study_uid=study)) == 4


def test_a_reported_study_is_never_withdrawn(env):
    _store, registry, handler, _ = env
    study = generate_uid()
    assert send(handler, mr(study_uid=study, patient=GENUINE))[0] == 0
    a = registry.get_or_create_analysis(study, "1.0.0", 1, "realtime")
    registry.update_analysis(a.id, status="complete", report_dir="/reports/x", started_at=dt.datetime(2024, 1, 1))
    registry.set_study(study, state=StudyState.COMPLETE)
    registry.add_procedure(record(STRAY))  # even a patient with a record and a majority
    assert {send(handler, mr(study_uid=study, patient=STRAY))[0] for _ in range(3)} == {CANNOT_UNDERSTAND}
    st = registry.study(study)
    assert (st.patient_id, st.state) == (GENUINE, StudyState.COMPLETE) and st.review_reason


# --- F13 ----------------------------------------------------------------------------------------
def test_duplicate_sop_uid_with_other_content_is_quarantined_first_copy_kept(env):
    _store, registry, handler, _ = env
    ds = mr(patient=GENUINE)
    assert send(handler, ds) == (0, "stored")
    stored = registry.instance_path(str(ds.SOPInstanceUID))
    first = Path(stored).read_bytes()
    assert send(handler, ds) == (0, "duplicate")  # the same again: a duplicate, answered success
    ds.PixelData = b"\x01" * len(ds.PixelData)  # other content under the same UID
    assert send(handler, ds) == (CANNOT_UNDERSTAND, "refused")
    assert Path(stored).read_bytes() == first
    (entry,) = registry.quarantined()
    assert entry.kind == "duplicate" and "first copy is kept" in entry.reason


# --- the way out ----------------------------------------------------------------------------------
def test_release_after_the_record_is_added_gives_the_study_back(env):
    """Stray first, no record: the first genuine instance is held. Release it: refused again
    (tie) and kept held. Add the genuine patient's record, release it: stored, the study is
    the genuine patient's, the stray is quarantined; the action records who, when, why."""
    store, registry, handler, q = env
    study = generate_uid()
    assert send(handler, mr(study_uid=study, patient=STRAY))[0] == 0
    genuine = mr(study_uid=study, patient=GENUINE)
    assert send(handler, genuine)[0] == CANNOT_UNDERSTAND
    (held,) = q.list()
    with pytest.raises(QuarantineError, match="refused again and stays held"):
        q.release(str(held.id), by="dr-admin")
    assert registry.quarantine_entry(held.id).state == "held"
    registry.add_procedure(record(GENUINE))
    out = q.release(f"#{held.id}", by="dr-admin", why="genuine patient's image")
    assert out.done == {held.id: "released"}
    e = registry.quarantine_entry(held.id)
    assert (e.state, e.action_by, e.action_note) == ("released", "dr-admin", "genuine patient's image")
    assert e.action_at is not None and not (store.root / "quarantine" / e.file).exists()
    assert registry.instance_path(str(genuine.SOPInstanceUID)) is not None
    assert registry.study(study).patient_id == GENUINE
    (stray,) = q.list()
    assert stray.patient_id == STRAY
    with pytest.raises(QuarantineError, match="released already"):
        q.release(str(held.id), by="someone-else")


def test_discard_deletes_the_data_and_keeps_the_record(env):
    _store, registry, handler, q = env
    study = generate_uid()
    send(handler, mr(study_uid=study, patient=GENUINE))
    send(handler, mr(study_uid=study, patient=STRAY))
    (e,) = q.list()
    kept = e.file
    out = q.discard(str(e.id), by="dr-admin", why="misfiled")
    assert out.done == {e.id: "discarded"}
    after = registry.quarantine_entry(e.id)
    assert (after.state, after.action_by, after.action_note) == ("discarded", "dr-admin", "misfiled")
    assert not Path(kept).exists()
    assert registry.study(study).review_reason is None  # nothing held any more: unflagged
    assert q.list() == [] and len(q.list(state=None)) == 1


def test_a_study_quarantined_whole_is_released_to_receiving(env):
    """A study the listener quarantined whole before issue 22 ("mixed patients") goes back to
    receiving (handed over again after its quiet period); the action is an entry of its own."""
    _store, registry, handler, q = env
    study = generate_uid()
    send(handler, mr(study_uid=study, patient=GENUINE))
    registry.mark_study(study, StudyState.QUARANTINED, reason="mixed patients")
    with pytest.raises(QuarantineError, match="no study"):
        q.release(generate_uid(), by="dr-admin")
    out = q.release(study, by="dr-admin", why="checked")
    assert out.study_state == StudyState.RECEIVING
    st = registry.study(study)
    assert st.state == StudyState.RECEIVING and st.reason is None
    (action,) = registry.quarantined(state="released", kind="study")
    assert (action.study_uid, action.action_by, action.action_note) == (study, "dr-admin", "checked")
    assert registry.claim_stable_studies(0) == [study]


def test_discard_of_a_study_quarantined_whole_removes_its_instances(env):
    store, registry, handler, q = env
    study = generate_uid()
    send(handler, mr(study_uid=study, patient=GENUINE))
    send(handler, mr(study_uid=study, patient=STRAY))
    registry.mark_study(study, StudyState.QUARANTINED, reason="mixed patients")
    out = q.discard(study, by="dr-admin")
    assert len(out.done) == 1
    assert registry.instances_of(study) == [] and not list(store.instances.rglob("*.dcm"))
    assert registry.study(study).state == StudyState.QUARANTINED
    (action,) = registry.quarantined(state="discarded", kind="study")
    assert "1 stored instance" in action.reason


def test_files_quarantined_before_the_table_are_adopted(env):
    store, _registry, _handler, q = env
    store.quarantine(b"not dicom", "header could not be parsed (InvalidDicomError)", status="0xC000",
                     calling_ae="PACS", sop_class_uid=MRImageStorage, sop_instance_uid="1.2.3")
    (e,) = q.list()
    assert (e.kind, e.status, e.sop_uid) == ("refused", "0xC000", "1.2.3")
    assert len(q.list()) == 1  # adopted once


def test_targets_are_parsed_strictly(env):
    *_, q = env
    assert Quarantine.parse_target("#12") == 12 and Quarantine.parse_target("1.2.840.1") == "1.2.840.1"
    with pytest.raises(QuarantineError, match="neither"):
        Quarantine.parse_target("../etc")
    with pytest.raises(QuarantineError, match="no quarantine entry"):
        q.release("99", by="x")


def test_an_older_registry_gets_the_quarantine_table_and_the_review_flag(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    reg = Registry(url)
    study = generate_uid()
    reg.record_instance(study_uid=study, series_uid=study + ".1", sop_uid=study + ".1.1", sop_class_uid=MRImageStorage,
                        path="/x", size=1, patient_id=GENUINE, study_date=None, modality="MR",
                        accession_number="", calling_ae="PACS")
    with reg.engine.begin() as conn:  # as a registry made before issue 22
        conn.exec_driver_sql("DROP TABLE quarantine")
        conn.exec_driver_sql("ALTER TABLE studies DROP COLUMN review_reason")
    reg.engine.dispose()
    reg = Registry(url)
    assert reg.study(study).review_reason is None and reg.quarantined() == []
    reg.flag_study(study, "why")
    assert reg.study(study).review_reason == "why"
