"""``/batches``: reanalysis batches (start one, list them, one batch's progress) and their review
(the results that changed, and the "reviewed" marks)."""

from __future__ import annotations

import importlib
import logging

from fastapi import HTTPException, status

from followup.api.dependencies import (
    AuditDep,
    DataRootDep,
    QueueDep,
    RegistryDep,
    RowId,
    protected_router,
    requires,
)
from followup.api.models import (
    BatchChanges,
    BatchOut,
    BatchProgress,
    BatchRequest,
    ErrorOut,
    ReviewOut,
    ReviewRequest,
)
from followup.api.review import batch_changes
from followup.errors import FollowupError
from followup.pseudonym import patient_ref
from followup.service import audit
from followup.service.registry import Batch, Registry
from followup.service.store import valid_uid
from followup.service.users import Role

log = logging.getLogger("followup.api")

router = protected_router(tags=["batches"])


def batch_out(registry: Registry, b: Batch) -> BatchOut:
    progress = registry.batch_progress(b.id)
    return BatchOut(id=b.id, reason=b.reason or "", selector=dict(b.selector or {}),
                    algorithm_version=b.algorithm_version, total=b.total, created_at=b.created_at,
                    created_by=b.created_by, progress=BatchProgress.model_validate(progress))


def _check_request(req: BatchRequest) -> None:
    if req.since is None and not req.study_uids and not req.all:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "choose the studies: since, study_uids or all")
    bad = [u for u in (req.study_uids or []) if not valid_uid(u)]
    if bad:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid Study Instance UID: {str(bad[0])[:80]!r}")


@router.get("/batches", response_model=list[BatchOut])
def list_batches(registry: RegistryDep, auditor: AuditDep) -> list[BatchOut]:
    out = [batch_out(registry, b) for b in registry.batches()]
    auditor.record("batch.list", detail=f"{len(out)} batches")
    return out


def _batch(registry: Registry, batch_id: int) -> BatchOut:
    b = registry.batch(batch_id)
    if b is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown batch")
    return batch_out(registry, b)


@router.get("/batches/{batch_id}", response_model=BatchOut, responses={404: {"model": ErrorOut}})
def get_batch(batch_id: RowId, registry: RegistryDep, auditor: AuditDep) -> BatchOut:
    out = _batch(registry, batch_id)
    auditor.record("batch.read", detail=f"batch {batch_id}")
    return out


@router.post("/batches", response_model=BatchOut, status_code=status.HTTP_201_CREATED,
             dependencies=[requires(Role.ADMIN)], responses={400: {"model": ErrorOut}, 503: {"model": ErrorOut}})
def create_batch(req: BatchRequest, registry: RegistryDep, queue: QueueDep, auditor: AuditDep) -> BatchOut:
    """Start a reanalysis batch (admin); the batch records who started it, and the audit trail
    has one row for it and one per study it re-sends."""
    _check_request(req)
    try:
        batch_module = importlib.import_module("followup.service.batch")
    except ImportError:
        log.error("batch reanalysis module unavailable")
        auditor.record("batch.start", outcome=audit.FAILED, detail="batch reanalysis unavailable")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "batch reanalysis unavailable") from None
    if queue is None:
        log.error("batch reanalysis refused: the API was started without a work queue")
        auditor.record("batch.start", outcome=audit.FAILED, detail="no work queue")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "batch reanalysis unavailable (no work queue)")
    try:
        b = batch_module.start_reanalysis(registry, queue, since=req.since, study_uids=req.study_uids or None,
                                          all_studies=req.all, reason=req.reason,
                                          created_by=auditor.principal.name)
    except (ValueError, FollowupError) as exc:
        auditor.record("batch.start", outcome=audit.FAILED, detail="refused: invalid selection")
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    log.info("batch %d started: %d studies", b.id, b.total)
    auditor.record("batch.start", detail=f"batch {b.id}: {b.total} studies")
    subjects = []
    for a in registry.analyses(batch_id=b.id):
        st = registry.study(a.study_uid)
        subjects.append((patient_ref(st.patient_id) if st else None, a.study_uid))
    auditor.record_many("batch.start", subjects, detail=f"batch {b.id}")
    return batch_out(registry, b)


@router.get("/batches/{batch_id}/changes", response_model=BatchChanges, responses={404: {"model": ErrorOut}})
def batch_changes_view(batch_id: RowId, registry: RegistryDep, data_root: DataRootDep,
                       auditor: AuditDep) -> BatchChanges:
    """The batch's results that changed enough to review (``followup.api.review``), old beside new,
    with their "reviewed" marks (one audit row per patient shown)."""
    out = batch_changes(registry, _batch(registry, batch_id), data_root)
    auditor.record("batch.changes", detail=f"batch {batch_id}: {len(out.changes)} changes")
    auditor.record_many("batch.changes", [(c.patient_ref, c.study_uid) for c in out.changes],
                        detail=f"batch {batch_id}")
    return out


@router.post("/batches/{batch_id}/changes/{analysis_id}/review", response_model=ReviewOut,
             dependencies=[requires(Role.REVIEWER)], responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
def mark_reviewed(batch_id: RowId, analysis_id: RowId, registry: RegistryDep, auditor: AuditDep,
                  req: ReviewRequest | None = None) -> ReviewOut:
    """Store the "reviewed" mark of one changed result: the authenticated user and the time (a
    name in the body is ignored). Marked already by this user: the mark as it is (200); by someone
    else: 409, the first mark stands."""
    a = registry.analysis(analysis_id)
    if a is None or a.batch_id != batch_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such analysis in this batch")
    st = registry.study(a.study_uid)
    ref = patient_ref(st.patient_id) if st else None
    reviewer = auditor.principal.name
    mark = registry.mark_reviewed(analysis_id, reviewer)
    if mark.reviewed_by != reviewer:
        auditor.record("review.mark", patient_ref=ref, study_uid=a.study_uid, outcome=audit.DENIED,
                       detail=f"analysis {analysis_id}: reviewed already by another user")
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"already marked reviewed by {mark.reviewed_by} at {mark.reviewed_at:%Y-%m-%d %H:%M} UTC")
    log.info("batch %d: analysis %d marked reviewed", batch_id, analysis_id)
    auditor.record("review.mark", patient_ref=ref, study_uid=a.study_uid, detail=f"analysis {analysis_id}")
    return ReviewOut.model_validate(mark)
