"""The Celery application: Redis broker and result backend, two queues.

* ``realtime``: studies arriving from PACS and the deliveries of results back to PACS;
* ``batch``: reanalysis of stored studies.
A worker takes one task at a time (prefetch 1) and acknowledges it only when done (``acks_late``),
so a worker killed mid-analysis leaves its task to be redelivered; the visibility timeout is
longer than the longest analysis. Run a worker per queue (docker-compose does) or one worker on
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
MAX_MEMORY_PER_CHILD_KB = int(os.environ.get("FOLLOWUP_MAX_MEMORY_PER_CHILD_KB", str(4 * 1024 * 1024)))

app = Celery("followup", broker=settings.redis_url, backend=settings.redis_url, include=["workers.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_max_memory_per_child=MAX_MEMORY_PER_CHILD_KB,
    worker_max_tasks_per_child=200,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
    result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
    broker_connection_retry_on_startup=True,
    # Each queue its own exchange and routing key: a task sent to one queue lands in that queue only.
    task_queues=(Queue("realtime", Exchange("realtime", type="direct"), routing_key="realtime"),
                 Queue("batch", Exchange("batch", type="direct"), routing_key="batch")),
    task_default_exchange="realtime",
    task_default_routing_key="realtime",
    task_default_queue="realtime",
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    result_expires=7 * 24 * 3600,
    task_track_started=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=True,
    task_send_sent_event=True,
)
