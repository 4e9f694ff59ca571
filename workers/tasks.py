"""Celery tasks, and the ``WorkQueue`` (``followup.service.work_queue``) the library sends through.
Each task is idempotent: running it twice has the effect of running it once.

* ``analyze_study(analysis_id)``: one analysis row (study + algorithm version + revision),
  ``followup.service.orchestrator.process_analysis``.
* ``send_results(analysis_id)``: the analysis's DICOM objects not yet at the PACS, retried with
  exponential backoff (the first attempt is made at the end of ``analyze_study``).

``CeleryWorkQueue.broker_messages()`` tells the reconciliation sweep which tasks still have a
message in Redis (waiting, or taken by a worker and not acknowledged, since when), so that it
re-sends only the ones a broker restart really lost; ``restore_message`` puts the message of a
worker that died (its analysis's lease expired) back in its queue at once instead of after the
visibility timeout.

Tasks run with the settings given to ``workers.celery_app.configure`` (by ``followup worker``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
from typing import Any

from celery.signals import before_task_publish

from followup.config import Settings
from followup.service import metrics
from followup.service.decision import MAX_ATTEMPTS
from followup.service.delivery import DELIVERY_MAX_RETRIES, deliver_pending, retry_countdown
from followup.service.orchestrator import fail_crashed, process_analysis
from followup.service.registry import Registry
from followup.service.store import Store
from followup.service.work_queue import QUEUES, BrokerMessage, QueueName, TaskKind, analysis_for_handover
from followup.states import AnalysisStatus
from workers import celery_app
from workers.celery_app import app

log = logging.getLogger(__name__)
ANALYSIS_MAX_RETRIES = MAX_ATTEMPTS - 1  # a study that crashes the analysis ends "failed" after 3 attempts
# kombu's Redis layout (kombu.transport.redis.Channel): queue lists per priority step, and the
# hash of delivered, unacknowledged messages with its index of delivery times.
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"
UNACKED_KEY, UNACKED_INDEX_KEY = "unacked", "unacked_index"
TASK_KINDS = {"followup.analyze_study": TaskKind.ANALYZE, "followup.send_results": TaskKind.DELIVER}
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

    def enqueue_delivery(self, analysis_id: int, queue: str) -> None:
        send_results.apply_async(args=[analysis_id], queue=str(queue))

    def broker_messages(self) -> list[BrokerMessage]:
        return broker_messages(self.settings.redis_url)

    def restore_message(self, tag: str) -> bool:
        return restore_message(self.settings.redis_url, tag)


def celery_queue(settings: Settings, registry: Registry | None = None) -> CeleryWorkQueue:
    """The Celery app configured with ``settings`` and a WorkQueue on it (connects on first use)."""
    celery_app.configure(settings)
    return CeleryWorkQueue(settings, registry if registry is not None else Registry(settings.database_url))


def _task_of(msg: Any) -> tuple[TaskKind, int] | None:
    """(task, analysis id) of one kombu Redis message (a JSON envelope around a base64 JSON body),
    if it is an ``analyze_study`` or ``send_results`` task; None for anything else or anything
    unreadable."""
    try:
        kind = TASK_KINDS.get(msg["headers"].get("task"))
        if kind is None:
            return None
        body = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return kind, int(args[0])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def _eta(msg: Any) -> float | None:
    """The task's ETA (a retry's countdown) in seconds since the epoch, None when due at once."""
    try:
        eta = msg["headers"].get("eta")
        return dt.datetime.fromisoformat(eta).timestamp() if eta else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _queue_keys() -> list[str]:
    """kombu's Redis lists of our queues, one per priority step (the name, then name + sep + step)."""
    return [_queue_key(q, p) for q in map(str, QUEUES) for p in PRIORITY_STEPS]


def _queue_key(queue: str, priority: int) -> str:
    return queue if priority == 0 else f"{queue}{PRIORITY_SEP}{priority}"


def broker_messages(redis_url: str, settle_s: float = 0.5) -> list[BrokerMessage]:
    """Our task messages in Redis: waiting in a queue, or delivered to a worker and not acknowledged
    yet (kombu's ``unacked`` hash, with when each was delivered in ``unacked_index``: with
    ``acks_late`` that holds the task running now, retries waiting for their countdown, and the
    task of a worker that died, which Redis gives back after the visibility timeout). Raises when
    Redis cannot be read.

    Each look is one MULTI snapshot; two looks ``settle_s`` apart, because a worker moves a message
    from its queue to ``unacked`` in two steps and it could be seen in neither by one look."""
    import redis  # kombu's own client

    client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
    keys = _queue_keys()
    found: dict[tuple[TaskKind, int, str | None], BrokerMessage] = {}
    try:
        for look in range(2):
            if look:
                time.sleep(settle_s)
            pipe = client.pipeline(transaction=True)
            for key in keys:
                pipe.lrange(key, 0, -1)
            pipe.hgetall(UNACKED_KEY)
            pipe.zrange(UNACKED_INDEX_KEY, 0, -1, withscores=True)
            *queued, unacked, index = pipe.execute()
            delivered = {(t.decode() if isinstance(t, bytes) else str(t)): float(score) for t, score in index}
            for raw in (m for items in queued for m in items):
                task = _task_of(_json(raw))
                if task is not None:
                    found[(*task, None)] = BrokerMessage(*task)
            for raw_tag, raw in unacked.items():
                tag = raw_tag.decode() if isinstance(raw_tag, bytes) else str(raw_tag)
                msg = (_json(raw) or [None])[0]  # [message, exchange, routing key]
                task = _task_of(msg)
                if task is None:
                    continue
                at = delivered.get(tag)
                due = max((t for t in (at, _eta(msg)) if t is not None), default=None)
                found[(*task, tag)] = BrokerMessage(*task, tag=tag, delivered_at=at, due_at=due)
    finally:
        client.close()
    return list(found.values())


def restore_message(redis_url: str, tag: str) -> bool:
    """Put the unacknowledged message ``tag`` back at the head of the queue it was routed to and
    drop it from ``unacked``/``unacked_index``, in one transaction watched on ``unacked`` (what
    kombu's ``QoS.restore_by_tag`` does when the visibility timeout expired, so a worker restoring
    it at the same moment restores it once); marked redelivered. False when it was no longer there
    (acknowledged, restored already) or names a queue that is not ours."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
    try:
        with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(UNACKED_KEY)
                    raw = pipe.hget(UNACKED_KEY, tag)
                    entry = _json(raw) if raw is not None else None
                    if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], dict)
                            and entry[2] in QUEUES):
                        pipe.unwatch()
                        return False
                    payload, _exchange, routing_key = entry
                    try:
                        payload["headers"]["redelivered"] = True
                        payload["properties"]["delivery_info"]["redelivered"] = True
                    except (KeyError, TypeError):
                        pass
                    try:
                        priority = int(payload.get("properties", {}).get("priority") or 0)
                    except (TypeError, ValueError):
                        priority = 0
                    step = max(p for p in PRIORITY_STEPS if p <= min(max(priority, 0), PRIORITY_STEPS[-1]))
                    pipe.multi()
                    pipe.zrem(UNACKED_INDEX_KEY, tag)
                    pipe.hdel(UNACKED_KEY, tag)
                    pipe.rpush(_queue_key(routing_key, step), json.dumps(payload))  # the head: popped next
                    pipe.execute()
                    return True
                except redis.WatchError:  # acknowledged or restored meanwhile: look again
                    continue
    finally:
        client.close()


def _queue_of(request: Any) -> str:
    """The queue a task came from (its routing key), for the metrics' label."""
    name = str((getattr(request, "delivery_info", None) or {}).get("routing_key") or "")
    return name if name in QUEUES else "other"


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
            metrics.ANALYSES.labels(_queue_of(self.request), str(AnalysisStatus.FAILED)).inc()
            return {"analysis_id": analysis_id, "status": str(AnalysisStatus.FAILED)}
        log.warning("analysis %d crashed (%s); retrying", analysis_id, type(exc).__name__)
        metrics.ANALYSES.labels(_queue_of(self.request), "crashed").inc()
        raise self.retry(exc=exc, countdown=5 * (self.request.retries + 1)) from exc
    metrics.ANALYSES.labels(_queue_of(self.request), str(outcome.status)).inc()
    queue = CeleryWorkQueue(settings, reg)
    for study_uid in outcome.resume:
        queue.enqueue_study(study_uid)
    if outcome.deliveries:
        # First attempt right away (the radiologist is waiting); retries go to the analysis's own
        # queue, so a batch's results never crowd a new study's.
        analysis = reg.analysis(analysis_id)
        name = analysis.queue if analysis is not None else QueueName.REALTIME
        if not deliver_pending(settings, reg, analysis_id):
            send_results.apply_async(args=[analysis_id], queue=str(name), countdown=retry_countdown(0))
    return {"analysis_id": outcome.analysis_id, "status": str(outcome.status)}


@before_task_publish.connect
def stamp_sent_at(headers: dict | None = None, **_: Any) -> None:
    """Every task message says when it was published (the age of a queue's oldest task,
    ``followup.service.metrics``)."""
    if headers is not None:
        headers.setdefault(metrics.SENT_AT_HEADER, time.time())


@app.task(bind=True, name="followup.send_results", max_retries=DELIVERY_MAX_RETRIES)
def send_results(self, analysis_id: int) -> dict:
    """Retry the pending deliveries of an analysis with exponential backoff (5 s .. 10 min)."""
    final = self.request.retries >= DELIVERY_MAX_RETRIES
    if deliver_pending(celery_app.settings(), registry(), analysis_id, final=final) or final:
        return {"analysis_id": analysis_id, "delivered": not final}
    raise self.retry(countdown=retry_countdown(self.request.retries))
