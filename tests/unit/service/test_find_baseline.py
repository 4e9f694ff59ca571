"""Which stored study serves as a follow-up's baseline: the patient's latest MRI before the
procedure that is fully received; never one still receiving, one without images or a quarantined
one (two patients in it)."""

from __future__ import annotations

import datetime as dt

from followup.dicom.header_records import MR_SOP_CLASSES
from followup.service.baselines import find_baseline
from followup.service.registry import Registry
from followup.states import StudyState

PROCEDURE = dt.date(2026, 3, 2)
MR = next(iter(MR_SOP_CLASSES))


def _study(reg: Registry, uid: str, date: dt.date, sop_class: str = MR) -> None:
    reg.record_instance(study_uid=uid, series_uid=uid + ".1", sop_uid=uid + ".1.1", sop_class_uid=sop_class,
                        path=f"/nowhere/{uid}.dcm", size=1, patient_id="P1", study_date=date,
                        modality="MR", accession_number="", calling_ae="PACS")


def test_latest_received_study_before_the_procedure_is_the_baseline(tmp_path):
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    _study(reg, "1.2.1", dt.date(2025, 11, 1))
    _study(reg, "1.2.2", dt.date(2026, 2, 1))
    _study(reg, "1.2.9", dt.date(2026, 4, 1))  # the follow-up
    reg.claim_stable_studies(0)
    followup = reg.study("1.2.9")
    assert followup is not None
    found = find_baseline(reg, followup, PROCEDURE)
    assert found is not None and found.study_uid == "1.2.2"


def test_quarantined_or_receiving_studies_are_never_the_baseline(tmp_path):
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    _study(reg, "1.2.1", dt.date(2025, 11, 1))
    _study(reg, "1.2.2", dt.date(2026, 2, 1))
    _study(reg, "1.2.9", dt.date(2026, 4, 1))
    reg.claim_stable_studies(0)
    reg.mark_study("1.2.2", StudyState.QUARANTINED, reason="two patients in one study")
    followup = reg.study("1.2.9")
    assert followup is not None
    found = find_baseline(reg, followup, PROCEDURE)
    assert found is not None and found.study_uid == "1.2.1"  # the older, clean one
    _study(reg, "1.2.3", dt.date(2026, 2, 20))  # newest, but still arriving
    found = find_baseline(reg, followup, PROCEDURE)
    assert found is not None and found.study_uid == "1.2.1"
    reg.mark_study("1.2.1", StudyState.QUARANTINED, reason="two patients in one study")
    assert find_baseline(reg, followup, PROCEDURE) is None
