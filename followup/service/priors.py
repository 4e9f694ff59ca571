"""A follow-up's earlier follow-ups in the service (issue 14, longitudinal surveillance).

When a follow-up is analysed, the worker compares it with every earlier follow-up of the patient
(:func:`followup.job.run_job` ``priors=``):

* :func:`earlier_followups` finds them in the registry: the patient's MR studies dated on or after
  the procedure and before this study (a study of the same day is not taken: which came first is
  not known), fully received; one still ``receiving`` makes the analysis wait
  (``DecisionKind.WAIT_FOR_PRIORS``) until it has arrived and been analysed itself (its end hands
  the waiting study over again: :func:`later_followups_to_resume`);
* :func:`retrieve_priors` fetches from the PACS (``FOLLOWUP_RETRIEVE``: C-FIND + C-GET, or QIDO-RS +
  WADO-RS for a DICOMweb URL, as for a missing baseline) those the store does not hold; they are
  stored for comparison only, marked ``deferred`` with :data:`RETRIEVED_PRIOR` (not analysed on
  their own, nothing sent for them);
* :func:`later_followups_to_resume`: a follow-up that arrives after a later one of the same patient
  was analysed without it (out of order) hands that later one over again, so that its newest report
  (a new revision that supersedes the earlier) compares with every earlier study. Batch reanalyses
  do not (the batch reanalyses every study anyway).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from followup.config import Settings
from followup.service.registry import Analysis, Registry, Study
from followup.service.store import Store
from followup.states import AnalysisStatus, StudyRole, StudyState

log = logging.getLogger(__name__)

WAITING_FOR_PRIORS = ("an earlier follow-up of this patient is still arriving: the analysis starts "
                      "when it has arrived (it is compared with every earlier follow-up)")
RETRIEVED_PRIOR = ("earlier follow-up retrieved from the PACS for comparison only: not analysed on its "
                   "own (`followup reanalyze --study UID` analyses it)")
NOT_USABLE = frozenset({StudyState.OBJECTS_ONLY, StudyState.QUARANTINED})


def _earlier(s: Study, study: Study, procedure_date: dt.date) -> bool:
    return (s.study_uid != study.study_uid and s.study_date is not None and study.study_date is not None
            and s.modality in ("MR", "") and procedure_date <= s.study_date < study.study_date)


def earlier_followups(registry: Registry, study: Study, procedure_date: dt.date) -> tuple[list[Study], list[Study]]:
    """The patient's earlier follow-ups in the registry: (usable ones, ones still arriving), by date."""
    usable: list[Study] = []
    arriving: list[Study] = []
    for s in registry.patient_studies(study.patient_id):
        if not _earlier(s, study, procedure_date) or s.state in NOT_USABLE:
            continue
        (arriving if s.state == StudyState.RECEIVING else usable).append(s)
    return usable, arriving


def retrieve_priors(settings: Settings, registry: Registry, store: Store, study: Study,
                    procedure_date: dt.date) -> list[str]:
    """Find the patient's MR studies from the procedure to the day before ``study`` at the
    retrieval PACS (C-FIND or QIDO-RS), fetch those the registry does not hold (C-GET or WADO-RS);
    their Study Instance UIDs."""
    from followup.service import remote

    source = settings.retrieve_from
    if source is None or study.study_date is None:
        return []
    matches = remote.find_studies(settings, source, study.patient_id, study.study_date, after=procedure_date)
    out = []
    for m in matches:
        if m.study_uid == study.study_uid or registry.study(m.study_uid) is not None or m.study_date is None \
                or not procedure_date <= m.study_date < study.study_date:
            continue
        date = m.study_date

        def on_instance(path: Path, ds, date: dt.date = date) -> None:
            registry.record_instance(
                study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
                sop_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID), path=str(path),
                size=path.stat().st_size, patient_id=str(ds.get("PatientID", "")), study_date=date,
                modality=str(ds.get("Modality", "")), accession_number=str(ds.get("AccessionNumber", "")),
                calling_ae=remote.origin(source))

        n = remote.get_study(settings, source, m.study_uid, store, on_instance)
        if n == 0 or registry.study(m.study_uid) is None:
            continue
        registry.mark_study(m.study_uid, StudyState.DEFERRED, reason=RETRIEVED_PRIOR, role=StudyRole.FOLLOWUP)
        log.info("retrieved earlier follow-up %s (%d instances) from %s", m.study_uid, n, source)
        out.append(m.study_uid)
    return out


def compared_studies(analysis: Analysis | None) -> set[str] | None:
    """The studies the analysis's report compared (its ``longitudinal`` time points, itself
    included); None when it has no report to read."""
    if analysis is None or not analysis.report_dir:
        return None
    try:
        report = json.loads((Path(analysis.report_dir) / "report.json").read_text())
    except (OSError, ValueError):
        return None
    lon = report.get("longitudinal") or {}
    return {t["study_instance_uid"] for t in lon.get("time_points", ())} | {analysis.study_uid}


def _waiting(registry: Registry, study_uid: str) -> bool:
    """Has the study an unstarted real-time analysis (one that waits, e.g. for its priors)?"""
    return any(b.attempts == 0 and b.batch_id is None and b.started_at is None
               for b in registry.analyses(study_uid=study_uid, statuses=(AnalysisStatus.QUEUED,)))


def later_followups_to_resume(registry: Registry, analysis: Analysis, status: str) -> list[str]:
    """The patient's later follow-ups to hand over again now that ``analysis`` (of an earlier
    follow-up) ended: those waiting unstarted (for their priors to arrive), and, after a complete
    real-time analysis, finished ones whose newest report did not compare with this study."""
    study = registry.study(analysis.study_uid)
    if study is None or study.study_date is None:
        return []
    out = []
    for s in registry.patient_studies(study.patient_id):
        if s.study_uid == study.study_uid or s.study_date is None or s.study_date <= study.study_date \
                or s.modality not in ("MR", "") or s.state in NOT_USABLE:
            continue
        if _waiting(registry, s.study_uid):
            out.append(s.study_uid)
        elif status == AnalysisStatus.COMPLETE and analysis.batch_id is None and s.state == StudyState.COMPLETE:
            compared = compared_studies(registry.latest_analysis(s.study_uid))
            if compared is not None and study.study_uid not in compared:
                out.append(s.study_uid)
    return out


__all__ = ["RETRIEVED_PRIOR", "WAITING_FOR_PRIORS", "compared_studies", "earlier_followups",
           "later_followups_to_resume", "retrieve_priors"]
