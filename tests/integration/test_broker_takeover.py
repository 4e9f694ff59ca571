"""The Redis side of taking over a dead worker's task (``workers.tasks.broker_messages``,
``restore_message``), on a real redis-server with kombu's own consumer: a process takes a message
the way a Celery worker does (kombu's Redis transport moves it to the ``unacked`` hash) and is
SIGKILLed; the message is then seen as unacknowledged, put back in its queue once, and taken again
as a valid task message."""

from __future__ import annotations

import subprocess
import sys
import time

from followup.config import Settings
from followup.service.registry import Registry
from followup.service.work_queue import TaskKind
from followup.testing.service_harness import redis_server
from workers.tasks import broker_messages, celery_queue, restore_message

TAKE_AND_DIE = """
import os, signal, sys
from kombu import Connection
with Connection(sys.argv[1]) as conn:
    message = conn.default_channel.basic_get("realtime", no_ack=False)  # as a worker: into `unacked`
    assert message is not None
    os.kill(os.getpid(), signal.SIGKILL)  # never acknowledged, never restored
"""


def test_a_dead_consumers_message_is_seen_unacknowledged_and_restored_once(tmp_path):
    with redis_server(tmp_path) as url:
        settings = Settings(data_dir=tmp_path / "data", redis_url=url)
        (tmp_path / "data").mkdir()
        queue = celery_queue(settings, Registry(settings.database_url))
        queue.enqueue_analysis(7, "realtime")
        queue.enqueue_delivery(8, "realtime")
        seen = {(m.kind, m.analysis_id, m.waiting) for m in queue.broker_messages()}
        assert seen == {(TaskKind.ANALYZE, 7, True), (TaskKind.DELIVER, 8, True)}

        before = time.time()
        dead = subprocess.run([sys.executable, "-c", TAKE_AND_DIE, url], capture_output=True, text=True,
                              timeout=60, check=False)
        assert dead.returncode == -9, dead.stderr
        (taken,) = [m for m in broker_messages(url) if m.analysis_id == 7]
        assert taken.kind is TaskKind.ANALYZE and taken.tag is not None
        assert taken.delivered_at is not None and before - 1 <= taken.delivered_at <= time.time()
        assert taken.due_at == taken.delivered_at  # no countdown: due when taken
        assert {m.analysis_id for m in queue.broker_messages() if m.kind is TaskKind.ANALYZE} == {7}

        assert restore_message(url, taken.tag)
        assert not restore_message(url, taken.tag)  # once: it is no longer unacknowledged
        assert not restore_message(url, "no-such-tag")
        now = {(m.kind, m.analysis_id, m.waiting) for m in broker_messages(url)}
        assert now == {(TaskKind.ANALYZE, 7, True), (TaskKind.DELIVER, 8, True)}

        # Back at the head of its queue, a valid Celery task message, marked redelivered.
        from kombu import Connection

        with Connection(url) as conn:
            message = conn.default_channel.basic_get("realtime", no_ack=True)
            assert message is not None
            args, _kwargs, _embed = message.decode()
            assert message.headers["task"] == "followup.analyze_study" and args == [7]
            assert message.headers.get("redelivered") is True
