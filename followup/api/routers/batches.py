"""``/batches``: reanalysis batches (start one, list them, one batch's progress) and their review
(the results that changed, and the "reviewed" marks)."""

from __future__ import annotations

import importlib
import logging

from fastapi import HTTPException, status

from followup.api.dependencies import DataRootDep, QueueDep, RegistryDep, protected_router
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
from followup.service.registry import Batch, Registry
from followup.service.store import valid_uid

log = logging.getLogger("followup.api")

router = protected_router(tags=["batches"])


def batch_out(registry: Registry, b: Batch) -> BatchOut:
    progress = registry.batch_progress(b.id)
    return BatchOut(id=b.id, reason=b.reason or "", selector=dict(b.selector or {}),
                    algorithm_version=b.algorithm_version, total=b.total, created_at=b.created_at,
                    progress=BatchProgress.model_validate(progress))


def _check_request(req: BatchRequest) -> None:
    if req.since is None and not req.study_uids and not req.all:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "choose the studies: since, study_uids or all")
    bad = [u for u in (req.study_uids or []) if not valid_uid(u)]
    if bad:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid Study Instance UID: {str(bad[0])[:80]!r}")


@router.get("/batches", response_model=list[BatchOut])
def list_batches(registry: RegistryDep) -> list[BatchOut]:
    return [batch_out(registry, b) for b in registry.batches()]


@router.get("/batches/{batch_id}", response_model=BatchOut, responses={404: {"model": ErrorOut}})
def get_batch(batch_id: int, registry: RegistryDep) -> BatchOut:
    b = registry.batch(batch_id)
    if b is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown batch")
    return batch_out(registry, b)


@router.post("/batches", response_model=BatchOut, status_code=status.HTTP_201_CREATED,
             responses={400: {"model": ErrorOut}, 503: {"model": ErrorOut}})
def create_batch(req: BatchRequest, registry: RegistryDep, queue: QueueDep) -> BatchOut:
    _check_request(req)
    try:
        batch_module = importlib.import_module("followup.service.batch")
    except ImportError:
        log.error("batch reanalysis module unavailable")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "batch reanalysis unavailable") from None
    if queue is None:
        log.error("batch reanalysis refused: the API was started without a work queue")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "batch reanalysis unavailable (no work queue)")
    try:
        b = batch_module.start_reanalysis(registry, queue, since=req.since, study_uids=req.study_uids or None,
                                          all_studies=req.all, reason=req.reason)
    except (ValueError, FollowupError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    log.info("batch %d started: %d studies", b.id, b.total)
    return batch_out(registry, b)


@router.get("/batches/{batch_id}/changes", response_model=BatchChanges, responses={404: {"model": ErrorOut}})
def batch_changes_view(batch_id: int, registry: RegistryDep, data_root: DataRootDep) -> BatchChanges:
    """The batch's results that changed enough to review (``followup.api.review``), old beside new,
    with their "reviewed" marks."""
    return batch_changes(registry, get_batch(batch_id, registry), data_root)


@router.post("/batches/{batch_id}/changes/{analysis_id}/review", response_model=ReviewOut,
             responses={404: {"model": ErrorOut}})
def mark_reviewed(batch_id: int, analysis_id: int, req: ReviewRequest, registry: RegistryDep) -> ReviewOut:
    """Store the "reviewed" mark (who, when) of one changed result; a result already marked keeps its first mark."""
    a = registry.analysis(analysis_id)
    if a is None or a.batch_id != batch_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such analysis in this batch")
    reviewer = " ".join(req.reviewer.split())
    if not reviewer:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "reviewer: name who reviewed the change")
    mark = registry.mark_reviewed(analysis_id, reviewer)
    log.info("batch %d: analysis %d marked reviewed", batch_id, analysis_id)
    return ReviewOut.model_validate(mark)
