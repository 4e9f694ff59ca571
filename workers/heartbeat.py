"""A worker's heartbeat: once the worker is ready, every ``INTERVAL_S`` its main process writes the
time to Redis (``followup.service.metrics.HEARTBEATS_KEY``, field: the worker's node name, which
the listener's metrics report as ``followup_worker_last_heartbeat_timestamp_seconds``) and, when
``followup worker --heartbeat-file`` named one, touches a file (a cluster's liveness probe reads
its age: deploy/k8s). A worker that stops cleanly takes its field out, so scaling down is no alarm;
one that dies leaves its last beat to age.

Beats are written by a thread of the main process; a main process stuck or dead stops them."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from followup.service.metrics import HEARTBEATS_KEY
from followup.service.periodic import PeriodicThread
from workers import celery_app

log = logging.getLogger(__name__)
INTERVAL_S = 15.0
heartbeat_file: Path | None = None  # set by ``followup worker --heartbeat-file``
_beat: Heartbeat | None = None


class Heartbeat(PeriodicThread):
    name = "followup-heartbeat"

    def __init__(self, redis_url: str, node: str, file: Path | None, interval_s: float = INTERVAL_S) -> None:
        super().__init__(interval_s)
        self.redis_url, self.node, self.file = redis_url, node, file
        self.last_beat: float | None = None

    def _client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=3)

    def tick(self) -> None:
        now = time.time()
        if self.file is not None:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            self.file.write_text(f"{now:.0f}\n")
        client = self._client()
        try:
            client.hset(HEARTBEATS_KEY, self.node, f"{now:.3f}")
        finally:
            client.close()
        self.last_beat = now

    def forget(self) -> None:
        """Take this worker's field out (a clean stop); the file goes too."""
        if self.file is not None:
            self.file.unlink(missing_ok=True)
        client = self._client()
        try:
            client.hdel(HEARTBEATS_KEY, self.node)
        finally:
            client.close()


def alive(max_age_s: float = 4 * INTERVAL_S) -> bool:
    """The worker is ready and its last beat reached Redis within ``max_age_s`` (its /healthz)."""
    beat = _beat
    return beat is not None and beat.last_beat is not None and time.time() - beat.last_beat <= max_age_s


@worker_ready.connect
def start_heartbeat(sender: Any = None, **_: Any) -> None:
    global _beat
    node = str(getattr(sender, "hostname", "") or "worker")
    _beat = Heartbeat(celery_app.settings().redis_url, node, heartbeat_file).start()
    log.info("heartbeat of %s every %.0f s", node, INTERVAL_S)


@worker_shutdown.connect
def stop_heartbeat(**_: Any) -> None:
    global _beat
    beat, _beat = _beat, None
    if beat is None:
        return
    beat.stop()
    try:
        beat.forget()
    except Exception as exc:  # noqa: BLE001  (the broker may be gone; the beat just ages)
        log.warning("heartbeat: could not take %s out (%s)", beat.node, type(exc).__name__)
