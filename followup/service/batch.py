"""Batch reanalysis: re-run stored follow-up studies (after an algorithm change) on the ``batch``
queue. Each study gets a new analysis revision (reports are versioned, never overwritten); the
batch can be resumed (its analyses still queued are sent again) and its progress is in the registry.
"""

from __future__ import annotations

import datetime as dt

from followup.config import Settings
from followup import ALGORITHM_VERSION
from followup.service.registry import Batch, Registry

REANALYSABLE = ("complete", "deferred", "failed")


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
        if s.role == "baseline" or s.state not in REANALYSABLE:
            continue
        if since is not None and (s.study_date is None or s.study_date < since):
            continue
        out.append(s.study_uid)
    return sorted(out)


def start_reanalysis(settings: Settings, registry: Registry, *, since: dt.date | None = None,
                     study_uids: list[str] | None = None, all_studies: bool = False, reason: str = "",
                     enqueue=None) -> Batch:
    """Create the batch and enqueue one analysis per study on the ``batch`` queue."""
    from followup.service.pipeline import new_analysis

    uids = select_studies(registry, since=since, study_uids=study_uids, all_studies=all_studies)
    selector = {"since": since.isoformat() if since else None, "study_uids": study_uids or None,
                "all": all_studies}
    batch = registry.create_batch(reason, selector, ALGORITHM_VERSION, len(uids))
    send = enqueue or _celery_enqueue
    for uid in uids:
        a = new_analysis(registry, uid, "batch", batch.id)
        send(a.id, "batch")
    return batch


def resume_batch(registry: Registry, batch_id: int, enqueue=None) -> int:
    """Send again the batch's analyses that have not started (lost with a broker restart)."""
    send = enqueue or _celery_enqueue
    n = 0
    for a in registry.analyses(batch_id=batch_id):
        if a.status in ("queued",):
            send(a.id, "batch")
            n += 1
    return n


def _celery_enqueue(analysis_id: int, queue: str) -> None:
    from workers.tasks import enqueue_analysis

    enqueue_analysis(analysis_id, queue)
