"""``/patients``: the patient list, searched in the registry (name, Patient ID, accession number),
and one patient's page data (procedure records, every study in date order with its state,
probability, revisions and key images). Authenticated like every data route; the only routes
that carry names and Patient IDs. A patient's URL key is its ``patient_ref``, and a search goes
in the request body, so no identifier reaches an access log."""

from __future__ import annotations

from collections import defaultdict

from fastapi import HTTPException, status

from followup.api.dependencies import AuditDep, Auditor, DataRootDep, RegistryDep, protected_router
from followup.api.models import ErrorOut, PatientDetail, PatientSearch, PatientSummary
from followup.api.routers.procedures import procedure_out
from followup.api.routers.reports import reported_analyses
from followup.api.views import longitudinal_out, patient_study, patient_summaries
from followup.service.patients import index_patients, iso_date, patient_id_of, person_name, search_words
from followup.service.registry import Analysis, Registry

router = protected_router(tags=["patients"])


def _summaries(registry: Registry, text: str, limit: int, auditor: Auditor, action: str) -> list[PatientSummary]:
    """The patients found, each shown patient one row of the audit trail (the search words are
    not recorded: they are names and identifiers)."""
    index_patients(registry)
    ids = registry.search_patient_ids(search_words(text), limit=limit)
    studies = registry.studies_of_patients(ids)
    reported = reported_analyses(registry, [s.study_uid for s in studies])
    out = patient_summaries(ids, studies, reported)
    auditor.record(action, detail=f"{len(out)} patients shown")
    auditor.record_many(action, [(p.patient_ref, None) for p in out])
    return out


@router.get("/patients", response_model=list[PatientSummary])
def list_patients(registry: RegistryDep, auditor: AuditDep) -> list[PatientSummary]:
    """Every patient, the most recently imaged first (at most 200; search for more)."""
    return _summaries(registry, "", 200, auditor, "patient.list")


@router.post("/patients/search", response_model=list[PatientSummary])
def search_patients(req: PatientSearch, registry: RegistryDep, auditor: AuditDep) -> list[PatientSummary]:
    """Patients with a study matching every word of ``q`` (name, Patient ID, accession number)."""
    return _summaries(registry, req.q, req.limit, auditor, "patient.search")


@router.get("/patients/{patient_ref}", response_model=PatientDetail,
            responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})
def patient_detail(patient_ref: str, registry: RegistryDep, data_root: DataRootDep,
                   auditor: AuditDep) -> PatientDetail:
    if len(patient_ref) != 12 or any(c not in "0123456789abcdef" for c in patient_ref):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown patient")
    index_patients(registry)
    pid = patient_id_of(registry, patient_ref)
    auditor.record("patient.read", patient_ref=patient_ref, outcome="ok" if pid else "failed",
                   detail=None if pid else "unknown patient")
    if pid is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown patient")
    studies = registry.studies_of_patients([pid])
    uids = [s.study_uid for s in studies]
    by_study: dict[str, list[Analysis]] = defaultdict(list)
    for a in registry.analyses_of_studies(uids):
        by_study[a.study_uid].append(a)
    reported = reported_analyses(registry, uids)
    named = next((s for s in reversed(studies) if s.patient_name), None)
    return PatientDetail(
        patient_ref=patient_ref, patient_id=pid, name=person_name(named.patient_name if named else ""),
        birth_date=iso_date(named.patient_birth_date) if named else None,
        procedures=[procedure_out(p) for p in registry.procedures(pid)],
        studies=[patient_study(s, by_study[s.study_uid], reported.get(s.study_uid), data_root) for s in studies],
        longitudinal=longitudinal_out([reported[s.study_uid] for s in studies if s.study_uid in reported], data_root))
