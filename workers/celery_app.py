"""The Celery application: Redis broker and result backend, two queues.

* ``realtime``: studies arriving from PACS and the deliveries of results back to PACS;
* ``batch``: reanalysis of stored studies.
A worker takes one task at a time (prefetch 1) and acknowledges it only when done (``acks_late``),
so a worker killed mid-analysis leaves its task to be redelivered; the visibility timeout is
longer than the longest analysis. A task whose pool process was killed is put back at once
(``reject_on_worker_lost``); one whose whole worker died stays in Redis's ``unacked`` set and is
given back once it is older than the visibility timeout, checked every ``restore_interval_s``
by every running worker; the listener's reconciliation sweep puts it back much sooner, as soon
as its analysis's heartbeat lease expired (``followup.service.reconcile``). The analysis row
counts its starts, so neither loops forever (``followup.service.decision.MAX_ATTEMPTS``).
Run a worker per queue (docker-compose does) or one worker on both: Celery's Redis transport polls
the queues in turn, so a long batch delays a new study by one task at most.

The app is made at import without any configuration; ``configure(settings)`` gives it the broker
and the limits of a ``Settings`` (``followup worker`` and every process that enqueues call it, from
the command line: nothing here reads the environment).
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from followup.config import Settings
from followup.service.work_queue import QUEUES

app = Celery("followup", include=["workers.tasks", "workers.heartbeat"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=200,
    broker_connection_retry_on_startup=True,
    # Each queue its own exchange and routing key: a task sent to one queue lands in that queue only.
    task_queues=tuple(Queue(q, Exchange(q, type="direct"), routing_key=q) for q in map(str, QUEUES)),
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
_settings: Settings | None = None


def restore_interval_s(visibility_timeout_s: int) -> int:
    """Scan for messages of dead workers every tenth of the timeout (1 s .. 60 s), not kombu's 100 s."""
    return max(1, min(60, visibility_timeout_s // 10))


def configure(settings: Settings) -> Celery:
    """Point the app at ``settings``' broker with its timeouts and limits; returns the app. The
    tasks (``workers.tasks``) run with these settings."""
    global _settings
    visibility = settings.visibility_timeout_s  # > longest analysis
    app.conf.update(
        broker_url=settings.redis_url,
        result_backend=settings.redis_url,
        worker_max_memory_per_child=settings.max_memory_per_child_kb,
        broker_transport_options={"visibility_timeout": visibility,
                                  "unacked_restore_interval": restore_interval_s(visibility),
                                  "unacked_restore_throttle": 1},
        result_backend_transport_options={"visibility_timeout": visibility},
    )
    _settings = settings
    return app


def settings() -> Settings:
    """The settings ``configure`` was given."""
    if _settings is None:
        raise RuntimeError("workers.celery_app.configure(settings) was not called in this process")
    return _settings
