"""Celery tasks. Each is idempotent: running it twice has the effect of running it once.

* ``analyze_study(analysis_id)``: one analysis row (study + algorithm version + revision).
* ``send_results(analysis_id)``: the analysis's DICOM objects not yet at the PACS, retried with
  exponential backoff (the first attempt is made at the end of ``analyze_study``).

``broker_analysis_ids()`` tells the reconciliation sweep which analyses still have a message in
Redis, so that it re-sends only the ones a broker restart really lost.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

from followup.config import DicomNode
from followup import ALGORITHM_VERSION
from followup.service.pipeline import MAX_ATTEMPTS, new_analysis, process_analysis
from followup.service.registry import Registry, utcnow
from followup.service.store import Store
from workers.celery_app import QUEUES, app, settings

log = logging.getLogger(__name__)
ANALYSIS_MAX_RETRIES = MAX_ATTEMPTS - 1  # a study that crashes the analysis ends "failed" after 3 attempts
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
    """A new analysis revision of the study, sent to ``queue``; returns its id.

    A study handed over again before its analysis started (the broker was down at the first
    hand-over, or more images came) reuses that analysis: one study arrival, one revision, one set
    of objects at the PACS. If the broker is down the row stays ``queued`` and this raises; the
    next hand-over or the reconciliation sweep sends it."""
    reg = registry()
    a = None if batch_id is not None else reg.unstarted_analysis(study_uid, ALGORITHM_VERSION, queue)
    if a is None:
        a = new_analysis(reg, study_uid, queue, batch_id)
    analyze_study.apply_async(args=[a.id], queue=queue)
    return a.id


def enqueue_analysis(analysis_id: int, queue: str) -> None:
    analyze_study.apply_async(args=[analysis_id], queue=queue)


def _analysis_id(msg: object) -> int | None:
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


def _json(raw: bytes | str) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def broker_analysis_ids(settle_s: float = 0.5) -> set[int]:
    """Analyses with an ``analyze_study`` message in Redis: waiting in a queue, or delivered to a
    worker and not acknowledged yet (kombu's ``unacked`` hash: with ``acks_late`` that holds the
    task running now, retries waiting for their countdown, and the task of a worker that died,
    which Redis gives back after the visibility timeout). Raises when Redis cannot be read.

    Each look is one MULTI snapshot; two looks ``settle_s`` apart, because a worker moves a message
    from its queue to ``unacked`` in two steps and it could be seen in neither by one look."""
    import redis  # kombu's own client

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    keys = [q if p == 0 else f"{q}\x06\x16{p}" for q in QUEUES for p in (0, 3, 6, 9)]  # priority lists
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


def reconcile(older_than_s: float):
    """One reconciliation sweep (``followup reconcile``, the listener's periodic one) with these
    enqueue functions and what the broker holds."""
    from followup.service.reconcile import sweep

    return sweep(registry(), enqueue_study, enqueue_analysis, older_than_s=older_than_s,
                 in_broker=broker_analysis_ids)


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
