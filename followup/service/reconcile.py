"""Reconciliation sweep: the store and the registry are the source of truth, Redis only carries
work. After a broker restart (or any lost message) this re-sends what was received but never
analysed, and the analyses that were queued when their task vanished. Tasks are idempotent, so a
message that was not lost after all only costs a second, identical run.

It also takes over the work of a worker that died whole (SIGKILL of its process group, an OOM kill
of its container, a lost node): its task stays in Redis's ``unacked`` hash until the visibility
timeout (an hour by default), but the analysis row knows sooner: its heartbeat lease
(``Settings.analysis_lease_s``, 60 s) expired. Such an analysis's message is put back in its queue
at once (or, when the broker holds none, a new one is sent), and the atomic claim of the analysis
(``Registry.claim_analysis``) keeps it analysed once. Pending deliveries of a finished analysis
that no task tried when it was due are re-sent the same way.

``followup serve-dicom`` runs the sweep by itself every ``Settings.reconcile_seconds``
(FOLLOWUP_RECONCILE_SECONDS, default 5; 0 turns it off) for work older than
``Settings.reconcile_older_than_s`` (FOLLOWUP_RECONCILE_OLDER_THAN, default 300);
``followup reconcile`` runs it once by hand. The work goes through a ``WorkQueue``, which also
says which tasks still have a message in the broker.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from followup.config import Settings
from followup.service.delivery import next_attempt_within
from followup.service.periodic import PeriodicThread
from followup.service.registry import Analysis, Registry, utcnow
from followup.service.work_queue import BrokerMessage, TaskKind, WorkQueue
from followup.states import TERMINAL_ANALYSIS, AnalysisStatus, DeliveryStatus, StudyState

log = logging.getLogger(__name__)
ACTIVE = (AnalysisStatus.QUEUED, AnalysisStatus.RUNNING)
DEFAULT_LEASE_S = Settings().analysis_lease_s  # with the default visibility timeout


@dataclass
class SweepResult:
    studies_enqueued: list[str] = field(default_factory=list)
    analyses_resent: list[int] = field(default_factory=list)  # lost messages, and taken-over ones
    analyses_taken_over: list[int] = field(default_factory=list)  # of those: their worker died
    deliveries_resent: list[int] = field(default_factory=list)  # analyses whose pending deliveries were re-sent
    errors: int = 0  # enqueue calls that raised (broker still down): tried again next sweep
    broker_unreadable: bool = False  # analyses were not re-sent: their messages could not be checked

    def __bool__(self) -> bool:  # something was done or went wrong (an unreadable broker is logged apart)
        return bool(self.studies_enqueued or self.analyses_resent or self.deliveries_resent or self.errors)


def sweep(registry: Registry, queue: WorkQueue, older_than_s: float = 600.0,
          lease_s: float = DEFAULT_LEASE_S) -> SweepResult:
    """Re-send through ``queue`` what the broker lost or a dead worker holds:

    * a study claimed as stable whose analysis was never created (the hand-over failed or the
      listener died in between), taken with an atomic claim so that two sweeps enqueue it once
      (``queue.enqueue_study``);
    * analyses ``queued`` for longer than ``older_than_s`` whose message is lost
      (``queue.enqueue_analysis``): only those with no message in the broker (waiting or
      unacknowledged: ``queue.broker_messages()``), so a long queue is left alone;
    * analyses ``running`` whose lease expired (no heartbeat for ``lease_s``: their worker died),
      whatever their age: unless a message of theirs waits in a queue or a worker took one just
      now, the dead worker's unacknowledged message goes back to its queue
      (``queue.restore_message``: not redelivered again an hour later), or a new one is sent
      when the broker holds none. A running analysis with a live lease is never touched;
    * pending deliveries of a finished analysis that no task tried when due (``_undelivered``:
      its retry countdown plus two leases): likewise restored or re-sent
      (``queue.enqueue_delivery``).

    When the queue cannot tell what the broker holds (None), age alone decides (set
    ``older_than_s`` above the visibility timeout and the longest wait in the queue). When the
    broker cannot be read, nothing but forgotten studies is re-sent.
    """
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=older_than_s)
    res = SweepResult()
    _sweep_stable(registry, queue, cutoff, res)
    active = registry.analyses(statuses=ACTIVE)
    stale = [a for a in active if a.status == AnalysisStatus.QUEUED and a.created_at <= cutoff]
    abandoned = [a for a in active if a.status == AnalysisStatus.RUNNING and not registry.lease_held(a, lease_s)]
    undelivered = _undelivered(registry, now, 2 * lease_s)
    if not (stale or abandoned or undelivered):
        return res
    try:
        messages = queue.broker_messages()
    except Exception as exc:  # noqa: BLE001 - whatever the broker client raises
        log.error("reconcile: the broker could not be read (%s); no analysis re-sent", type(exc).__name__)
        res.broker_unreadable = True
        return res
    if messages is None:  # cannot tell: age alone decides
        stale += [a for a in abandoned if (a.started_at or a.created_at) <= cutoff]
        for a in stale:
            _resend(registry, queue, a, res)
        for a, changed in undelivered:
            if changed <= cutoff and _call(_delivery_sender(queue, a), res, f"deliveries of analysis {a.id}"):
                res.deliveries_resent.append(a.id)
        return res
    in_broker = {m.analysis_id for m in messages if m.kind is TaskKind.ANALYZE}
    for a in stale:
        if a.id not in in_broker:
            _resend(registry, queue, a, res)
    grace_s = lease_s  # a worker that took a message this recently may not have claimed it yet
    for a in abandoned:
        _take_over_analysis(registry, queue, a, messages, grace_s, lease_s, res)
    for a, _changed in undelivered:  # an attempt in progress (a slow PACS) may take a while: more grace
        done = _take_over(queue, messages, a.id, (TaskKind.ANALYZE, TaskKind.DELIVER), 2 * grace_s,
                          _delivery_sender(queue, a), res)
        if done:
            res.deliveries_resent.append(a.id)
            log.warning("reconcile: pending deliveries of analysis %d of study %s were not tried when due "
                        "(their worker died): task %s", a.id, a.study_uid, done)
    return res


def _delivery_sender(queue: WorkQueue, a: Analysis) -> Callable[[], None]:
    return lambda: queue.enqueue_delivery(a.id, a.queue)


def _resend(registry: Registry, queue: WorkQueue, a: Analysis, res: SweepResult) -> None:
    """A queued analysis whose message the broker lost: send it again."""
    current = registry.analysis(a.id)  # it may have started or ended while the broker was read
    if current is None or current.status != a.status or current.status not in ACTIVE:
        return
    if not _call(lambda: queue.enqueue_analysis(a.id, a.queue), res, f"analysis {a.id}"):
        return
    res.analyses_resent.append(a.id)
    log.warning("reconcile: analysis %d of study %s was %s with no message in the broker: re-sent to %s",
                a.id, a.study_uid, current.status, a.queue)


def _take_over_analysis(registry: Registry, queue: WorkQueue, a: Analysis, messages: list[BrokerMessage],
                        grace_s: float, lease_s: float, res: SweepResult) -> None:
    current = registry.analysis(a.id)  # a worker may have claimed or ended it while the broker was read
    if current is None or current.status != AnalysisStatus.RUNNING or registry.lease_held(current, lease_s):
        return
    done = _take_over(queue, messages, a.id, (TaskKind.ANALYZE,), grace_s,
                      lambda: queue.enqueue_analysis(a.id, a.queue), res)
    if not done:
        return
    res.analyses_resent.append(a.id)
    res.analyses_taken_over.append(a.id)
    beat = current.heartbeat_at or current.started_at or current.created_at
    log.warning("reconcile: analysis %d of study %s was running with no heartbeat for %.0f s (lease %.0f s): "
                "its worker died; task %s to %s (%d attempt(s) so far)", a.id, a.study_uid,
                (utcnow() - beat).total_seconds(), lease_s, done, a.queue, current.attempts or 0)


def _take_over(queue: WorkQueue, messages: list[BrokerMessage], analysis_id: int, kinds: Collection[TaskKind],
               grace_s: float, send: Callable[[], None], res: SweepResult) -> str | None:
    """Make one message of the analysis's task reach a live worker: None when one waits in a queue
    or a worker took (or holds for its countdown) one less than ``grace_s`` ago; else the dead
    workers' unacknowledged messages go back to their queue ("restored"), or ``send`` sends a new
    one when there is none ("re-sent")."""
    mine = [m for m in messages if m.analysis_id == analysis_id and m.kind in kinds]
    if any(m.waiting for m in mine):
        return None
    horizon = time.time() - grace_s
    if any((m.due_at or 0.0) > horizon for m in mine):
        return None
    restored = [m.tag for m in mine if m.tag is not None and _restore(queue, m.tag, res)]
    if restored:
        return "restored"
    return "re-sent" if _call(send, res, f"analysis {analysis_id}") else None


def _restore(queue: WorkQueue, tag: str, res: SweepResult) -> bool:
    try:
        return queue.restore_message(tag)
    except Exception as exc:  # noqa: BLE001 - the broker went away: the next sweep tries again
        res.errors += 1
        log.error("reconcile: message %s could not be restored (%s)", tag, type(exc).__name__)
        return False


def _call(send: Callable[[], None], res: SweepResult, what: str) -> bool:
    try:
        send()
    except Exception as exc:  # noqa: BLE001 - broker down: tried again next sweep
        res.errors += 1
        log.error("reconcile: %s could not be re-sent (%s)", what, type(exc).__name__)
        return False
    return True


def _undelivered(registry: Registry, now: dt.datetime, grace_s: float) -> list[tuple[Analysis, dt.datetime]]:
    """Finished analyses whose every pending delivery was left untried past its due time (the last
    attempt, or its making, plus the retry countdown, plus ``grace_s``), each with the latest such
    change: the task that should have tried them died with its worker."""
    by_analysis: dict[int, list] = {}
    for d in registry.deliveries(status=DeliveryStatus.PENDING):
        by_analysis.setdefault(d.analysis_id, []).append(d)
    out = []
    for analysis_id, pending in by_analysis.items():
        due = [d.updated_at + dt.timedelta(seconds=next_attempt_within(d.attempts or 0) + grace_s)
               for d in pending]
        if max(due) > now:
            continue
        a = registry.analysis(analysis_id)
        if a is not None and a.status in TERMINAL_ANALYSIS:
            out.append((a, max(d.updated_at for d in pending)))
    return out


def _sweep_stable(registry: Registry, queue: WorkQueue, cutoff: dt.datetime, res: SweepResult) -> None:
    for s in registry.studies(state=StudyState.STABLE, limit=10**9):
        if registry.latest_analysis(s.study_uid) is not None:
            continue
        if not registry.claim_for_sweep(s.study_uid, cutoff):
            continue  # handed over recently, or another sweep took it
        try:
            queue.enqueue_study(s.study_uid)
        except Exception as exc:  # noqa: BLE001 - broker down: the claim ages, the next sweep retries
            res.errors += 1
            log.error("reconcile: study %s could not be enqueued (%s)", s.study_uid, type(exc).__name__)
            continue
        res.studies_enqueued.append(s.study_uid)
        log.warning("reconcile: study %s was stable with no analysis: enqueued", s.study_uid)


class PeriodicSweep(PeriodicThread):
    """A daemon thread running ``run()`` (one sweep) every ``interval_s`` seconds, the first one
    at once: after a restart of everything, lost work resumes without anyone typing a command."""

    name = "followup-reconcile"

    def __init__(self, run: Callable[[], SweepResult], interval_s: float) -> None:
        super().__init__(interval_s)
        self.run = run

    def tick(self) -> None:
        res = self.run()
        if res:
            log.info("reconcile: %d studies enqueued, %d analyses re-sent (%d of dead workers), "
                     "deliveries of %d analyses re-sent, %d errors", len(res.studies_enqueued),
                     len(res.analyses_resent), len(res.analyses_taken_over), len(res.deliveries_resent),
                     res.errors)


def start_periodic_sweep(settings: Settings, registry: Registry, queue: WorkQueue) -> PeriodicSweep | None:
    """The listener's sweeper: every ``settings.reconcile_seconds`` (0: none) for work older than
    ``settings.reconcile_older_than_s`` and analyses whose lease (``settings.analysis_lease_s``)
    expired, through ``queue``."""
    interval, older_than, lease = settings.reconcile_seconds, settings.reconcile_older_than_s, settings.analysis_lease_s
    if interval <= 0:
        log.info("reconcile: periodic sweep off (FOLLOWUP_RECONCILE_SECONDS=0)")
        return None
    log.info("reconcile: sweep every %.0f s for work older than %.0f s and leases older than %.0f s",
             interval, older_than, lease)
    return PeriodicSweep(lambda: sweep(registry, queue, older_than_s=older_than, lease_s=lease), interval).start()
