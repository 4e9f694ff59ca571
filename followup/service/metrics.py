"""Prometheus metrics of the service: every metric's definition, in one place
(docs/operations/monitoring.md lists them with the alerts built on them).

Two kinds:

* **events**, counted where they happen: the listener's instances and associations, a worker's
  analyses and deliveries, the API's requests. A worker's pool processes write theirs to
  ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, which ``followup worker``
  sets up through ``use_multiprocess_dir`` before any metric exists) and its main process serves
  them all;
* **state**, read when Prometheus scrapes (``ServiceState``, served by the listener, the one
  process there is always exactly one of): studies by state, deliveries by status and the age of
  the oldest pending one, held quarantine entries, reanalysis batches, the broker's queues and the
  age of their oldest task, the store's size, the data volume's free bytes, and the workers' last
  heartbeats (``workers.heartbeat`` writes them to Redis).

Labels hold only bounded, non-identifying values (an outcome, a state, a queue, a stage, a
C-STORE status name, a batch number, a worker's node name): never a patient's name or ID, a UID or
free text (a refusal's reason can quote the data set; its status names the kind of refusal)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The Redis hash of the workers' heartbeats: node name -> seconds since the epoch (workers.heartbeat)
HEARTBEATS_KEY = "followup:worker-heartbeats"
HEARTBEAT_FORGET_S = 24 * 3600  # a worker silent this long is dropped from the hash (scaled away)
# The header every task message carries: when it was published (seconds since the epoch), so the
# age of a queue's oldest waiting task can be read from Redis (workers.tasks stamps it).
SENT_AT_HEADER = "followup_sent_at"
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
ASSOCIATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# C-STORE status -> the label of its refusals (followup.service.listener.statuses)
STATUS_NAMES = {0xA700: "out_of_resources", 0xA701: "instance_too_large", 0xA702: "study_too_large",
                0xA900: "dataset_does_not_match", 0xC000: "cannot_understand"}


def use_multiprocess_dir(path: Path) -> Path:
    """Make this process (and the pool processes it forks) write metrics to files in ``path``,
    emptied first (a restarted worker's old files would be added to its new counts). Must run
    before any metric below is updated; ``followup worker`` calls it first thing."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    values.ValueClass = values.get_value_class()  # chosen at import: choose again with the folder set
    return path


def multiprocess_registry() -> CollectorRegistry:
    """A registry collecting every process's files in ``PROMETHEUS_MULTIPROC_DIR`` (a worker's)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


# --- events: the listener ---------------------------------------------------------------------------
INSTANCES = Counter("followup_instances", "C-STOREs answered by the listener, by outcome "
                    "(stored, duplicate, refused, failed: out of resources, the sender retries)", ["outcome"])
REFUSED = Counter("followup_instances_refused", "Instances refused (and quarantined), by the C-STORE status "
                  "of the refusal", ["reason"])
QUARANTINED = Counter("followup_instances_quarantined", "Instances put in the quarantine, by kind (refused, "
                      "stray: another patient than its study's, duplicate: a stored UID with other content) "
                      "and the C-STORE status of the refusal", ["kind", "reason"])
ASSOCIATIONS = Counter("followup_associations", "Associations requested of the listener, by outcome "
                       "(accepted, rejected)", ["outcome"])
ASSOCIATION_SECONDS = Histogram("followup_association_duration_seconds", "How long accepted associations "
                                "lasted, by how they ended (released, aborted)", ["end"],
                                buckets=ASSOCIATION_BUCKETS)
HANDOVERS = Counter("followup_studies_handed_over", "Stable studies handed to the workers by the listener")

# --- events: the workers ------------------------------------------------------------------------------
ANALYSES = Counter("followup_analyses", "Analysis tasks ended, by queue and outcome (the analysis's status: "
                   "complete, deferred, failed, queued: waits for an earlier one; crashed: retried)",
                   ["queue", "outcome"])
STAGE_SECONDS = Histogram("followup_analysis_stage_seconds", "Time of each stage of the analyses run "
                          "(stage total: the whole run)", ["stage"], buckets=STAGE_BUCKETS)
DELIVERIES = Counter("followup_deliveries", "Objects sent to PACS, by outcome (sent; retry: an attempt failed, "
                     "another follows; failed: the last attempt failed)", ["outcome"])

# --- events: the API ----------------------------------------------------------------------------------
API_REQUESTS = Counter("followup_api_requests", "API requests answered, by method, route template and status",
                       ["method", "route", "status"])
API_SECONDS = Histogram("followup_api_request_duration_seconds", "API response time, by route template",
                        ["route"], buckets=REQUEST_BUCKETS)


def initialise_listener() -> None:
    """Every listener series at 0 from the start, so that the first refusal is an increase to
    Prometheus (a series born at 1 is not)."""
    for outcome in ("stored", "duplicate", "refused", "failed"):
        INSTANCES.labels(outcome)
    for reason in (*STATUS_NAMES.values(), "other"):
        REFUSED.labels(reason)
        for kind in ("refused", "stray", "duplicate"):
            QUARANTINED.labels(kind, reason)
    for outcome in ("accepted", "rejected"):
        ASSOCIATIONS.labels(outcome)


def initialise_worker(queues: Iterable[str]) -> None:
    """Every worker series at 0 from the start (see ``initialise_listener``)."""
    for queue in queues:
        for outcome in ("complete", "baseline", "deferred", "failed", "crashed"):
            ANALYSES.labels(str(queue), outcome)
    for outcome in ("sent", "retry", "failed"):
        DELIVERIES.labels(outcome)


def refusal_reason(status: int) -> str:
    """The label of a refusal with this C-STORE status (a bounded set, never the free-text reason)."""
    return STATUS_NAMES.get(int(status), "other")


def observe_stages(timings_s: dict[str, float]) -> None:
    """A run's stage timings (``followup.job.JobResult.timings_s``)."""
    for stage, seconds in timings_s.items():
        STAGE_SECONDS.labels(stage).observe(max(0.0, float(seconds)))


# --- state, read at each scrape -------------------------------------------------------------------------
def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _age_s(then: dt.datetime | None, now: dt.datetime) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.UTC)
    return max(0.0, (now - then).total_seconds())


class ServiceState(Collector):
    """The service's state for Prometheus, read from the registry, the broker and the disk at each
    scrape. Each source is read on its own: one that fails is reported by its ``_up`` gauge as 0,
    the others still answer."""

    def __init__(self, registry: Any, data_dir: Path, redis_url: str | None,
                 queues: Iterable[str] = ("realtime", "batch"), recent_batches: int = 5) -> None:
        self.registry, self.data_dir, self.redis_url = registry, Path(data_dir), redis_url
        self.queues, self.recent_batches = tuple(map(str, queues)), recent_batches

    def describe(self) -> list[Metric]:
        return []  # collected only when scraped: registering must not touch the database

    def collect(self) -> Iterable[Metric]:
        now = dt.datetime.now(dt.UTC)
        yield from self._guarded("followup_registry_up", "1 when the registry could be read", self._registry, now)
        if self.redis_url:
            yield from self._guarded("followup_broker_up", "1 when the broker (Redis) could be read", self._broker,
                                     time.time())
        yield from self._disk()

    def _guarded(self, name: str, doc: str, read: Callable[[Any], list[Metric]], now: Any) -> list[Metric]:
        up = _gauge(name, doc)
        try:
            found = read(now)
        except Exception as exc:  # noqa: BLE001  (a scrape reports the outage, it does not fail)
            log.warning("metrics: %s: %s", name, type(exc).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *found]

    def _registry(self, now: dt.datetime) -> list[Metric]:
        from sqlalchemy import func, select

        from followup.service.registry import Analysis, Batch, Delivery, Instance, QuarantineEntry
        from followup.states import TERMINAL_ANALYSIS, AnalysisStatus, DeliveryStatus, StudyState

        studies = _gauge("followup_studies", "Studies in the registry, by state", ["state"])
        found = self.registry.studies_by_state()
        for state in StudyState:
            studies.add_metric([str(state)], found.get(str(state), 0))
        with self.registry.session() as s:
            deliveries = dict(s.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
            oldest = s.execute(select(func.min(Analysis.finished_at))
                               .join(Delivery, Delivery.analysis_id == Analysis.id)
                               .where(Delivery.status == DeliveryStatus.PENDING)).scalar()
            most_attempts = s.execute(select(func.max(Delivery.attempts))
                                      .where(Delivery.status == DeliveryStatus.PENDING)).scalar()
            analyses = dict(s.execute(select(Analysis.status, func.count()).where(
                Analysis.status.in_([AnalysisStatus.QUEUED, AnalysisStatus.RUNNING])).group_by(Analysis.status)).all())
            held = dict(s.execute(select(QuarantineEntry.kind, func.count()).where(QuarantineEntry.state == "held")
                                  .group_by(QuarantineEntry.kind)).all())
            store_bytes = s.execute(select(func.coalesce(func.sum(Instance.size), 0))).scalar()
            batches = list(s.scalars(select(Batch).order_by(Batch.id.desc()).limit(self.recent_batches)))
            batch_done = dict(s.execute(select(Analysis.batch_id, func.count()).where(
                Analysis.batch_id.in_([b.id for b in batches]), Analysis.status.in_(list(TERMINAL_ANALYSIS)))
                .group_by(Analysis.batch_id)).all()) if batches else {}
        out = [studies]
        by_status = _gauge("followup_deliveries", "Deliveries to PACS in the registry, by status", ["status"])
        for status in DeliveryStatus:
            by_status.add_metric([str(status)], deliveries.get(str(status), 0))
        pending_age = _gauge("followup_delivery_oldest_pending_age_seconds",
                             "Time since the analysis of the oldest pending delivery ended (0: none pending)")
        pending_age.add_metric([], _age_s(oldest, now) if oldest is not None else 0.0)
        attempts = _gauge("followup_delivery_pending_max_attempts", "Most attempts made of a pending delivery")
        attempts.add_metric([], most_attempts or 0)
        active = _gauge("followup_analyses_active", "Analyses queued or running, by status", ["status"])
        for running in (AnalysisStatus.QUEUED, AnalysisStatus.RUNNING):
            active.add_metric([str(running)], analyses.get(str(running), 0))
        quarantine = _gauge("followup_quarantine_held", "Quarantine entries held (not released or discarded), "
                            "by kind", ["kind"])
        for kind in sorted({"refused", "stray", "duplicate", *held}):
            quarantine.add_metric([kind], held.get(kind, 0))
        stored = _gauge("followup_store_instance_bytes", "Bytes of the instances registered in the store")
        stored.add_metric([], float(store_bytes or 0))
        total = _gauge("followup_batch_studies", "Studies of the latest reanalysis batches", ["batch"])
        done = _gauge("followup_batch_studies_done", "Studies of the latest reanalysis batches whose analysis "
                      "ended", ["batch"])
        for b in batches:
            total.add_metric([str(b.id)], b.total)
            done.add_metric([str(b.id)], batch_done.get(b.id, 0))
        return [*out, by_status, pending_age, attempts, active, quarantine, stored, total, done]

    def _broker(self, now: float) -> list[Metric]:
        import redis

        from workers.tasks import PRIORITY_SEP, PRIORITY_STEPS, UNACKED_KEY

        client = redis.Redis.from_url(str(self.redis_url), socket_timeout=5, socket_connect_timeout=3)
        try:
            pipe = client.pipeline(transaction=False)
            keys = [(q, q if p == 0 else f"{q}{PRIORITY_SEP}{p}") for q in self.queues for p in PRIORITY_STEPS]
            for _q, key in keys:
                pipe.llen(key)
                pipe.lindex(key, -1)  # kombu pushes on the left and pops on the right: the oldest
            pipe.hlen(UNACKED_KEY)
            pipe.hgetall(HEARTBEATS_KEY)
            *per_key, unacked, beats = pipe.execute()
            stale = [w for w, t in beats.items() if now - float(t) > HEARTBEAT_FORGET_S]
            if stale:
                client.hdel(HEARTBEATS_KEY, *stale)
        finally:
            client.close()
        depth = _gauge("followup_queue_depth", "Tasks waiting in the broker's queue", ["queue"])
        age = _gauge("followup_queue_oldest_task_age_seconds", "Age of the oldest task waiting in the queue "
                     "(0: none waiting)", ["queue"])
        waiting = {q: 0 for q in self.queues}
        oldest: dict[str, float] = {}
        for (queue, _key), n, tail in zip(keys, per_key[0::2], per_key[1::2], strict=True):
            waiting[queue] += int(n)
            sent = _sent_at(tail)
            if sent is not None:
                oldest[queue] = min(oldest.get(queue, sent), sent)
        for queue in self.queues:
            depth.add_metric([queue], waiting[queue])
            age.add_metric([queue], max(0.0, now - oldest[queue]) if queue in oldest else 0.0)
        taken = _gauge("followup_tasks_unacknowledged", "Tasks taken by a worker and not acknowledged yet "
                       "(running, or waiting for a retry's countdown)")
        taken.add_metric([], unacked)
        heartbeat = _gauge("followup_worker_last_heartbeat_timestamp_seconds", "When each worker last said it "
                           "was alive (seconds since the epoch)", ["worker"])
        for worker, at in sorted(beats.items()):
            if now - float(at) <= HEARTBEAT_FORGET_S:
                heartbeat.add_metric([_text(worker)], float(at))
        return [depth, age, taken, heartbeat]

    def _disk(self) -> list[Metric]:
        free = _gauge("followup_disk_free_bytes", "Free bytes of the volume holding the store", ["volume"])
        size = _gauge("followup_disk_size_bytes", "Size of the volume holding the store", ["volume"])
        try:
            usage = shutil.disk_usage(self.data_dir)
        except OSError as exc:
            log.warning("metrics: the data directory's volume: %s", type(exc).__name__)
            return []
        free.add_metric(["data"], usage.free)
        size.add_metric(["data"], usage.total)
        return [free, size]


def serve(port: int, host: str, registry: CollectorRegistry, healthy: Callable[[], bool] | None = None) -> Any:
    """Serve ``registry`` at ``/metrics`` (and at every other path, as prometheus-client does) and
    ``healthy()`` at ``/healthz`` (200 "ok" or 503), from a daemon thread; returns the server
    (``shutdown()`` stops it). The probes of a cluster ask ``/healthz`` (deploy/k8s)."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # a scrape is no news
            pass

    metrics_app = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok = _check(healthy)
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"unhealthy\n"]
        return metrics_app(environ, start_response)

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server


def _check(healthy: Callable[[], bool] | None) -> bool:
    try:
        return True if healthy is None else bool(healthy())
    except Exception as exc:  # noqa: BLE001  (unhealthy, said as such)
        log.warning("health check failed: %s", type(exc).__name__)
        return False


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _sent_at(raw: bytes | str | None) -> float | None:
    """When a kombu Redis message was published (its ``SENT_AT_HEADER``), None when unknown."""
    if raw is None:
        return None
    try:
        return float(json.loads(raw)["headers"][SENT_AT_HEADER])
    except (ValueError, KeyError, TypeError):
        return None
