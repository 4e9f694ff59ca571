"""Baselines and deferred studies: the patient's baseline study in the store or on the PACS, and
the deferred follow-ups that a new baseline or procedure record resumes."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from followup.config import Settings
from followup.service.registry import Registry, Study
from followup.service.store import Store
from followup.service.work_queue import WorkQueue
from followup.states import StudyRole, StudyState

log = logging.getLogger(__name__)

# Deferred studies that a new baseline or procedure record resumes (their reasons say so).
WAITING_FOR = ("no baseline study", "no procedure record")
NOT_A_BASELINE = frozenset({StudyState.RECEIVING, StudyState.OBJECTS_ONLY, StudyState.QUARANTINED})


def find_baseline(registry: Registry, study: Study, procedure_date: dt.date) -> Study | None:
    """The patient's latest MRI study dated before the procedure, already in the store and fully
    received. A study still receiving, one holding no image (objects-only) and a quarantined one
    (two patients in it) are never a baseline."""
    candidates = [s for s in registry.patient_studies(study.patient_id)
                  if s.study_uid != study.study_uid and s.study_date is not None
                  and s.study_date < procedure_date and s.modality in ("MR", "")
                  and s.state not in NOT_A_BASELINE]
    return candidates[-1] if candidates else None


def retrieve_baseline(settings: Settings, registry: Registry, store: Store, study: Study,
                      procedure_date: dt.date) -> Study | None:
    """Fetch the latest MR study before the procedure from the configured PACS: C-FIND + C-GET, or
    QIDO-RS + WADO-RS when it is a DICOMweb URL."""
    from followup.service import remote

    source = settings.retrieve_from
    if source is None:
        return None
    matches = [m for m in remote.find_studies(settings, source, study.patient_id, procedure_date)
               if m.study_date is not None]
    if not matches:
        return None
    best = max(matches, key=lambda m: m.study_date or dt.date.min)  # all dated

    def on_instance(path: Path, ds) -> None:
        registry.record_instance(
            study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
            sop_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID), path=str(path),
            size=path.stat().st_size, patient_id=str(ds.get("PatientID", "")),
            study_date=best.study_date, modality=str(ds.get("Modality", "")),
            accession_number=str(ds.get("AccessionNumber", "")), calling_ae=remote.origin(source))

    n = remote.get_study(settings, source, best.study_uid, store, on_instance)
    log.info("retrieved baseline study %s (%d instances) from %s", best.study_uid, n, source)
    registry.mark_study(best.study_uid, StudyState.BASELINE, role=StudyRole.BASELINE)
    return registry.study(best.study_uid)


def waiting_followups(registry: Registry, patient_id: str, waiting_for: tuple[str, ...] = WAITING_FOR) -> list[str]:
    """The patient's deferred studies whose reason names one of ``waiting_for``. Not the ones
    deferred for their timing ("... days after the procedure"): a new baseline changes nothing
    for them, and re-running them would only send PACS a second, identical deferral."""
    return [s.study_uid for s in registry.patient_studies(patient_id)
            if s.state == StudyState.DEFERRED and s.reason and any(w in s.reason for w in waiting_for)]


def resume_for_procedure(registry: Registry, queue: WorkQueue, patient_id: str) -> list[str]:
    """A procedure record was added: re-enqueue the patient's studies deferred for want of one."""
    waiting = waiting_followups(registry, patient_id, ("procedure record",))
    for uid in waiting:
        queue.enqueue_study(uid)
    return waiting
