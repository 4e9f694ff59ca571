"""Celery tasks, and the ``WorkQueue`` (``followup.service.work_queue``) the library sends through.
Each task is idempotent: running it twice has the effect of running it once.

* ``analyze_study(analysis_id)``: one analysis row (study + algorithm version + revision),
  ``followup.service.orchestrator.process_analysis``.
* ``send_results(analysis_id)``: the analysis's DICOM objects not yet at the PACS, retried with
  exponential backoff (the first attempt is made at the end of ``analyze_study``).

``CeleryWorkQueue.analysis_ids_in_broker()`` tells the reconciliation sweep which analyses still
have a message in Redis, so that it re-sends only the ones a broker restart really lost.

Tasks run with the settings given to ``workers.celery_app.configure`` (by ``followup worker``).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

from followup.config import Settings
from followup.service.delivery import deliver_pending
from followup.service.orchestrator import MAX_ATTEMPTS, fail_crashed, process_analysis
from followup.service.registry import Registry
from followup.service.store import Store
from followup.service.work_queue import QUEUES, QueueName, analysis_for_handover
from followup.states import AnalysisStatus
from workers import celery_app
from workers.celery_app import app

log = logging.getLogger(__name__)
ANALYSIS_MAX_RETRIES = MAX_ATTEMPTS - 1  # a study that crashes the analysis ends "failed" after 3 attempts
DELIVERY_MAX_RETRIES = 8
_registry: Registry | None = None
_store: Store | None = None


def registry() -> Registry:
    """The registry of the configured settings (one per process)."""
    global _registry
    if _registry is None:
        _registry = Registry(celery_app.settings().database_url)
    return _registry


def store() -> Store:
    global _store
    if _store is None:
        _store = Store(celery_app.settings().data_dir)
    return _store


class CeleryWorkQueue:
    """The ``WorkQueue`` on Celery and Redis (``celery_queue`` makes one)."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings, self.registry = settings, registry

    def enqueue_study(self, study_uid: str, queue: str = QueueName.REALTIME, batch_id: int | None = None) -> int:
        """A hand-over of the study (``analysis_for_handover``), sent to ``queue``; its analysis id.
        If the broker is down the row stays ``queued`` and this raises; the next hand-over or the
        reconciliation sweep sends it."""
        a = analysis_for_handover(self.registry, study_uid, queue, batch_id)
        self.enqueue_analysis(a.id, queue)
        return a.id

    def enqueue_analysis(self, analysis_id: int, queue: str) -> None:
        analyze_study.apply_async(args=[analysis_id], queue=str(queue))

    def analysis_ids_in_broker(self) -> set[int]:
        return broker_analysis_ids(self.settings.redis_url)


def celery_queue(settings: Settings, registry: Registry | None = None) -> CeleryWorkQueue:
    """The Celery app configured with ``settings`` and a WorkQueue on it (connects on first use)."""
    celery_app.configure(settings)
    return CeleryWorkQueue(settings, registry if registry is not None else Registry(settings.database_url))


def _analysis_id(msg: Any) -> int | None:
    """The analysis id of one kombu Redis message (a JSON envelope around a base64 JSON body), if
    it is an ``analyze_study`` task; None for anything else or anything unreadable."""
    try:
        if msg["headers"].get("task") != analyze_study.name:
            return None
        body = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def _json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def broker_analysis_ids(redis_url: str, settle_s: float = 0.5) -> set[int]:
    """Analyses with an ``analyze_study`` message in Redis: waiting in a queue, or delivered to a
    worker and not acknowledged yet (kombu's ``unacked`` hash: with ``acks_late`` that holds the
    task running now, retries waiting for their countdown, and the task of a worker that died,
    which Redis gives back after the visibility timeout). Raises when Redis cannot be read.

    Each look is one MULTI snapshot; two looks ``settle_s`` apart, because a worker moves a message
    from its queue to ``unacked`` in two steps and it could be seen in neither by one look."""
    import redis  # kombu's own client

    client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
    keys = [q if p == 0 else f"{q}\x06\x16{p}" for q in map(str, QUEUES) for p in (0, 3, 6, 9)]  # priority lists
    ids: set[int] = set()
    try:
        for look in range(2):
            if look:
                time.sleep(settle_s)
            pipe = client.pipeline(transaction=True)
            for key in keys:
                pipe.lrange(key, 0, -1)
            pipe.hvals("unacked")
            *queued, unacked = pipe.execute()
            messages = [_json(m) for items in queued for m in items]
            messages += [(_json(v) or [None])[0] for v in unacked]  # [message, exchange, routing key]
            ids.update(i for i in map(_analysis_id, messages) if i is not None)
    finally:
        client.close()
    return ids


@app.task(bind=True, name="followup.analyze_study", max_retries=ANALYSIS_MAX_RETRIES)
def analyze_study(self, analysis_id: int) -> dict:
    settings, reg = celery_app.settings(), registry()
    try:
        outcome = process_analysis(settings, reg, store(), analysis_id)
    except Exception as exc:  # a crash, not a finding: retry a bounded number of times
        if self.request.retries >= ANALYSIS_MAX_RETRIES:
            fail_crashed(reg, analysis_id, f"analysis crashed {self.request.retries + 1} times: "
                                           f"{type(exc).__name__}: {exc}")
            log.error("analysis %d failed for good: %s", analysis_id, type(exc).__name__)
            return {"analysis_id": analysis_id, "status": str(AnalysisStatus.FAILED)}
        log.warning("analysis %d crashed (%s); retrying", analysis_id, type(exc).__name__)
        raise self.retry(exc=exc, countdown=5 * (self.request.retries + 1)) from exc
    queue = CeleryWorkQueue(settings, reg)
    for study_uid in outcome.resume:
        queue.enqueue_study(study_uid)
    if outcome.deliveries:
        # First attempt right away (the radiologist is waiting); retries go to the analysis's own
        # queue, so a batch's results never crowd a new study's.
        analysis = reg.analysis(analysis_id)
        name = analysis.queue if analysis is not None else QueueName.REALTIME
        if not deliver_pending(settings, reg, analysis_id):
            send_results.apply_async(args=[analysis_id], queue=str(name), countdown=5)
    return {"analysis_id": outcome.analysis_id, "status": str(outcome.status)}


@app.task(bind=True, name="followup.send_results", max_retries=DELIVERY_MAX_RETRIES)
def send_results(self, analysis_id: int) -> dict:
    """Retry the pending deliveries of an analysis with exponential backoff (5 s .. 10 min)."""
    final = self.request.retries >= DELIVERY_MAX_RETRIES
    if deliver_pending(celery_app.settings(), registry(), analysis_id, final=final) or final:
        return {"analysis_id": analysis_id, "delivered": not final}
    raise self.retry(countdown=min(600, 5 * 2 ** self.request.retries))
