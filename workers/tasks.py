"""Celery tasks. Each is idempotent: running it twice has the effect of running it once.

* ``analyze_study(analysis_id)``: one analysis row (study + algorithm version + revision).
* ``send_results(analysis_id)``: the analysis's DICOM objects not yet at the PACS, retried with
  exponential backoff (the first attempt is made at the end of ``analyze_study``).
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
    if outcome.deliveries:
        # First attempt right away (the radiologist is waiting); retries go to the analysis's own
        # queue, so a batch's results never crowd a new study's.
        analysis = reg.analysis(analysis_id)
        queue = analysis.queue if analysis is not None else "realtime"
        if not deliver_pending(analysis_id):
            send_results.apply_async(args=[analysis_id], queue=queue, countdown=5)
    return {"analysis_id": outcome.analysis_id, "status": outcome.status}


def deliver_pending(analysis_id: int, final: bool = False) -> bool:
    """C-STORE the analysis's pending objects, one association per destination.

    Returns True when nothing is left pending. Each failure is recorded on its delivery row
    (attempts, last error; ``failed`` when ``final``), visible in the API and `followup status`."""
    from followup.service.pacs import send_files

    reg = registry()
    pending = [d for d in reg.deliveries(analysis_id=analysis_id) if d.status == "pending"]
    by_destination: dict[str, list] = {}
    for d in pending:
        by_destination.setdefault(d.destination, []).append(d)
    ok = True
    for destination, items in by_destination.items():
        try:
            send_files([Path(d.path) for d in items], DicomNode.parse(destination), settings.ae_title)
        except Exception as exc:
            ok = False
            for d in items:
                reg.update_delivery(d.id, attempts=(d.attempts or 0) + 1, status="failed" if final else "pending",
                                    last_error=f"{type(exc).__name__}: {exc}"[:500])
            log.warning("delivery of analysis %d to %s failed (%s)", analysis_id, destination, type(exc).__name__)
            continue
        for d in items:
            reg.update_delivery(d.id, status="sent", sent_at=utcnow(), attempts=(d.attempts or 0) + 1,
                                last_error=None)
    return ok


@app.task(bind=True, name="followup.send_results", max_retries=DELIVERY_MAX_RETRIES)
def send_results(self, analysis_id: int) -> dict:
    """Retry the pending deliveries of an analysis with exponential backoff (5 s .. 10 min)."""
    final = self.request.retries >= DELIVERY_MAX_RETRIES
    if deliver_pending(analysis_id, final=final) or final:
        return {"analysis_id": analysis_id, "delivered": not final}
    raise self.retry(countdown=min(600, 5 * 2 ** self.request.retries))
