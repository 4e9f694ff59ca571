"""``/studies``: the received studies with their newest and their reported analysis, and one
study's detail (analyses, deliveries). No patient identity: ``patient_ref`` only."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Query, status

from followup.api.dependencies import AuditDep, RegistryDep, checked_study_uid, protected_router
from followup.api.models import (
    AnalysisBrief,
    AnalysisOut,
    DeliveryOut,
    ErrorOut,
    StudyDetail,
    StudySummary,
)
from followup.api.routers.reports import reported_analyses
from followup.pseudonym import patient_ref
from followup.service.registry import Analysis, Study
from followup.states import StudyState

router = protected_router(tags=["studies"])


def _summary_fields(st: Study, latest: Analysis | None, rep: Analysis | None) -> dict[str, Any]:
    return dict(study_uid=st.study_uid, study_date=st.study_date, accession_number=st.accession_number or "",
                patient_ref=patient_ref(st.patient_id or ""), modality=st.modality or "", state=st.state,
                role=st.role, n_instances=st.n_instances or 0, last_received_at=st.last_received_at,
                latest_analysis=AnalysisBrief.of(latest), reported_analysis=AnalysisBrief.of(rep))


@router.get("/studies", response_model=list[StudySummary])
def list_studies(registry: RegistryDep, auditor: AuditDep, state: StudyState | None = Query(None),
                 limit: int = Query(500, ge=1, le=5000)) -> list[StudySummary]:
    studies = registry.studies(state, limit=limit)
    auditor.record("study.list", detail=f"{len(studies)} studies (patient_ref and accession number only)")
    uids = [st.study_uid for st in studies]
    latest, rep = registry.newest_analyses(uids), reported_analyses(registry, uids)
    return [StudySummary(**_summary_fields(st, latest.get(st.study_uid), rep.get(st.study_uid)))
            for st in studies]


@router.get("/studies/{study_uid}", response_model=StudyDetail,
            responses={400: {"model": ErrorOut}, 404: {"model": ErrorOut}})
def study_detail(study_uid: str, registry: RegistryDep, auditor: AuditDep) -> StudyDetail:
    st = registry.study(checked_study_uid(study_uid))
    auditor.record("study.read", study_uid=study_uid, patient_ref=patient_ref(st.patient_id or "") if st else None,
                   outcome="ok" if st else "failed", detail=None if st else "unknown study")
    if st is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown study")
    analyses = registry.analyses(study_uid=study_uid)
    latest, rep = registry.newest_analyses([study_uid]), reported_analyses(registry, [study_uid])
    deliveries = [DeliveryOut.of(d, study_uid) for a in analyses for d in registry.deliveries(a.id)]
    return StudyDetail(**_summary_fields(st, latest.get(study_uid), rep.get(study_uid)),
                       reason=st.reason, first_received_at=st.first_received_at,
                       enqueued_at=st.enqueued_at, updated_at=st.updated_at,
                       analyses=[AnalysisOut.of(a) for a in analyses], deliveries=deliveries)
