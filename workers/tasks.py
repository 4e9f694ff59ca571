"""Celery tasks. Each is idempotent: running it twice has the effect of running it once.

* ``analyze_study(analysis_id)``: one analysis row (study + algorithm version + revision).
* ``send_delivery(delivery_id)``: one DICOM object to the PACS, retried with exponential backoff.
"""

from __future__ import annotations

import logging
from pathlib import Path

from followup.config import DicomNode
from followup.service.pipeline import new_analysis, process_analysis
from followup.service.registry import Registry, utcnow
from followup.service.store import Store
from workers.celery_app import app, settings

log = logging.getLogger(__name__)
ANALYSIS_MAX_RETRIES = 2  # a study that crashes the analysis ends "failed" after 3 attempts
DELIVERY_MAX_RETRIES = 8
_registry: Registry | None = None
_store: Store | None = None


def registry() -> Registry:
    global _registry
    if _registry is None:
        _registry = Registry(settings.database_url)
    return _registry


def store() -> Store:
    global _store
    if _store is None:
        _store = Store(settings.data_dir)
    return _store


def enqueue_study(study_uid: str, queue: str = "realtime", batch_id: int | None = None) -> int:
    """A new analysis revision of the study, sent to ``queue``; returns its id."""
    a = new_analysis(registry(), study_uid, queue, batch_id)
    analyze_study.apply_async(args=[a.id], queue=queue)
    return a.id


def enqueue_analysis(analysis_id: int, queue: str) -> None:
    analyze_study.apply_async(args=[analysis_id], queue=queue)


@app.task(bind=True, name="followup.analyze_study", max_retries=ANALYSIS_MAX_RETRIES)
def analyze_study(self, analysis_id: int) -> dict:
    reg = registry()
    try:
        outcome = process_analysis(settings, reg, store(), analysis_id)
    except Exception as exc:  # a crash, not a finding: retry a bounded number of times
        if self.request.retries >= ANALYSIS_MAX_RETRIES:
            reason = f"analysis crashed {self.request.retries + 1} times: {type(exc).__name__}: {exc}"
            reg.update_analysis(analysis_id, status="failed", reason=reason, finished_at=utcnow())
            a = reg.analysis(analysis_id)
            if a is not None:
                reg.set_study(a.study_uid, state="failed", reason=reason)
            log.error("analysis %d failed for good: %s", analysis_id, type(exc).__name__)
            return {"analysis_id": analysis_id, "status": "failed"}
        log.warning("analysis %d crashed (%s); retrying", analysis_id, type(exc).__name__)
        raise self.retry(exc=exc, countdown=5 * (self.request.retries + 1))
    for study_uid in outcome.resume:
        enqueue_study(study_uid)
    # Deliveries ride on the analysis's own queue: a batch's results never crowd a new study's.
    analysis = reg.analysis(analysis_id)
    queue = analysis.queue if analysis is not None else "realtime"
    for delivery_id in outcome.deliveries:
        send_delivery.apply_async(args=[delivery_id], queue=queue)
    return {"analysis_id": outcome.analysis_id, "status": outcome.status}


@app.task(bind=True, name="followup.send_delivery", max_retries=DELIVERY_MAX_RETRIES)
def send_delivery(self, delivery_id: int) -> dict:
    from followup.service.pacs import send_files

    reg = registry()
    d = next((x for x in reg.deliveries() if x.id == delivery_id), None)
    if d is None or d.status == "sent":
        return {"delivery_id": delivery_id, "status": "sent" if d else "unknown"}
    try:
        send_files([Path(d.path)], DicomNode.parse(d.destination), settings.ae_title)
    except Exception as exc:
        attempts = (d.attempts or 0) + 1
        final = self.request.retries >= DELIVERY_MAX_RETRIES
        reg.update_delivery(delivery_id, attempts=attempts, last_error=f"{type(exc).__name__}: {exc}"[:500],
                            status="failed" if final else "pending")
        if final:
            log.error("delivery %d to %s failed for good", delivery_id, d.destination)
            return {"delivery_id": delivery_id, "status": "failed"}
        raise self.retry(exc=exc, countdown=min(600, 5 * 2 ** self.request.retries))
    reg.update_delivery(delivery_id, status="sent", sent_at=utcnow(), attempts=(d.attempts or 0) + 1,
                        last_error=None)
    return {"delivery_id": delivery_id, "status": "sent"}
