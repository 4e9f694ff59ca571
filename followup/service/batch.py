"""Batch reanalysis: re-run stored follow-up studies (after an algorithm change) on the ``batch``
queue. Each study gets a new analysis revision (reports are versioned, never overwritten); the
batch can be resumed (its analyses still queued are sent again) and its progress is in the registry.
"""

from __future__ import annotations

import datetime as dt

from followup import ALGORITHM_VERSION
from followup.service.registry import Batch, Registry
from followup.service.work_queue import QueueName, WorkQueue, new_analysis
from followup.states import AnalysisStatus, StudyRole, StudyState

REANALYSABLE = (StudyState.COMPLETE, StudyState.DEFERRED, StudyState.FAILED)


def select_studies(registry: Registry, *, since: dt.date | None = None, study_uids: list[str] | None = None,
                   all_studies: bool = False) -> list[str]:
    if study_uids:
        known = {s.study_uid for s in registry.studies(limit=10**9)}
        missing = [u for u in study_uids if u not in known]
        if missing:
            raise ValueError(f"unknown study UID(s): {', '.join(missing[:5])}")
        return list(dict.fromkeys(study_uids))
    if not (since or all_studies):
        raise ValueError("choose --since DATE, --study UID... or --all")
    out = []
    for s in registry.studies(limit=10**9):
        if s.role == StudyRole.BASELINE or s.state not in REANALYSABLE:
            continue
        if since is not None and (s.study_date is None or s.study_date < since):
            continue
        out.append(s.study_uid)
    return sorted(out)


def start_reanalysis(registry: Registry, queue: WorkQueue, *, since: dt.date | None = None,
                     study_uids: list[str] | None = None, all_studies: bool = False, reason: str = "",
                     created_by: str | None = None) -> Batch:
    """Create the batch and enqueue one analysis per study on the ``batch`` queue. ValueError
    when the selection is missing or names unknown studies."""
    uids = select_studies(registry, since=since, study_uids=study_uids, all_studies=all_studies)
    selector = {"since": since.isoformat() if since else None, "study_uids": study_uids or None,
                "all": all_studies}
    batch = registry.create_batch(reason, selector, ALGORITHM_VERSION, len(uids), created_by=created_by)
    for uid in uids:
        a = new_analysis(registry, uid, QueueName.BATCH, batch.id)
        queue.enqueue_analysis(a.id, QueueName.BATCH)
    return batch


def resume_batch(registry: Registry, queue: WorkQueue, batch_id: int) -> int:
    """Send again the batch's analyses that have not started (lost with a broker restart)."""
    n = 0
    for a in registry.analyses(batch_id=batch_id):
        if a.status == AnalysisStatus.QUEUED:
            queue.enqueue_analysis(a.id, QueueName.BATCH)
            n += 1
    return n
