"""The Celery application: Redis broker and result backend, two queues.

* ``realtime``: studies arriving from PACS and the deliveries of results back to PACS;
* ``batch``: reanalysis of stored studies.
A worker takes one task at a time (prefetch 1) and acknowledges it only when done (``acks_late``),
so a worker killed mid-analysis leaves its task to be redelivered; the visibility timeout is
longer than the longest analysis. A task whose pool process was killed is put back at once
(``reject_on_worker_lost``); one whose whole worker died stays in Redis's ``unacked`` set and is
given back once it is older than the visibility timeout, checked every ``RESTORE_INTERVAL_S``
by every running worker. The analysis row counts its starts, so neither loops forever
(``followup.service.pipeline.MAX_ATTEMPTS``). Run a worker per queue (docker-compose does) or one worker on
both: Celery's Redis transport polls the queues in turn, so a long batch delays a new study by one
task at most.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

from followup.config import Settings

settings = Settings.from_env()

VISIBILITY_TIMEOUT_S = int(os.environ.get("FOLLOWUP_VISIBILITY_TIMEOUT", "3600"))  # > longest analysis
# Scan for messages of dead workers every tenth of the timeout (1 s .. 60 s), not kombu's 100 s.
RESTORE_INTERVAL_S = max(1, min(60, VISIBILITY_TIMEOUT_S // 10))
MAX_MEMORY_PER_CHILD_KB = int(os.environ.get("FOLLOWUP_MAX_MEMORY_PER_CHILD_KB", str(4 * 1024 * 1024)))

QUEUES = ("realtime", "batch")

app = Celery("followup", broker=settings.redis_url, backend=settings.redis_url, include=["workers.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_max_memory_per_child=MAX_MEMORY_PER_CHILD_KB,
    worker_max_tasks_per_child=200,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S,
                              "unacked_restore_interval": RESTORE_INTERVAL_S, "unacked_restore_throttle": 1},
    result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
    broker_connection_retry_on_startup=True,
    # Each queue its own exchange and routing key: a task sent to one queue lands in that queue only.
    task_queues=tuple(Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES),
    task_default_exchange="realtime",
    task_default_routing_key="realtime",
    task_default_queue="realtime",
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    result_expires=7 * 24 * 3600,
    # Outcomes live in the registry; nobody reads Celery results. Ignoring them also keeps a
    # publisher (the listener) off the result backend: no subscription per task, and a Redis
    # outage makes a hand-over fail at once instead of after ~20 s of backend reconnects.
    task_ignore_result=True,
    task_track_started=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=True,
    task_send_sent_event=True,
)
