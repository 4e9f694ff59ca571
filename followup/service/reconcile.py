"""Reconciliation sweep: the store and the registry are the source of truth, Redis only carries
work. After a broker restart (or any lost message) this re-sends what was received but never
analysed, and the analyses that were queued or running when their task vanished. Tasks are
idempotent, so a message that was not lost after all only costs a second, identical run.

``followup serve-dicom`` runs the sweep by itself every ``Settings.reconcile_seconds``
(FOLLOWUP_RECONCILE_SECONDS, default 60; 0 turns it off) for work older than
``Settings.reconcile_older_than_s`` (FOLLOWUP_RECONCILE_OLDER_THAN, default 300);
``followup reconcile`` runs it once by hand. The work goes through a ``WorkQueue``, which also
says which analyses still have a message in the broker.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from followup.config import Settings
from followup.service.periodic import PeriodicThread
from followup.service.registry import Registry, utcnow
from followup.service.work_queue import WorkQueue
from followup.states import AnalysisStatus, StudyState

log = logging.getLogger(__name__)
ACTIVE = (AnalysisStatus.QUEUED, AnalysisStatus.RUNNING)


@dataclass
class SweepResult:
    studies_enqueued: list[str] = field(default_factory=list)
    analyses_resent: list[int] = field(default_factory=list)
    errors: int = 0  # enqueue calls that raised (broker still down): tried again next sweep
    broker_unreadable: bool = False  # analyses were not re-sent: their messages could not be checked

    def __bool__(self) -> bool:  # something was done or went wrong (an unreadable broker is logged apart)
        return bool(self.studies_enqueued or self.analyses_resent or self.errors)


def sweep(registry: Registry, queue: WorkQueue, older_than_s: float = 600.0) -> SweepResult:
    """Re-send through ``queue`` what the broker lost:

    * a study claimed as stable whose analysis was never created (the hand-over failed or the
      listener died in between), taken with an atomic claim so that two sweeps enqueue it once
      (``queue.enqueue_study``);
    * analyses ``queued`` or ``running`` for longer than ``older_than_s`` whose message is lost
      (``queue.enqueue_analysis``). When the queue can tell which analyses still have a message in
      the broker (waiting or unacknowledged: ``queue.analysis_ids_in_broker()``), only those
      absent from it are re-sent: a long queue or a long analysis is left alone, and the task of
      a dead worker is left to the broker's own redelivery. When it cannot (None), age alone
      decides (set ``older_than_s`` above the visibility timeout and the longest wait in the
      queue). When the broker cannot be read, no analysis is re-sent.
    """
    cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
    res = SweepResult()
    _sweep_stable(registry, queue, cutoff, res)
    stale = [a for a in registry.analyses(statuses=ACTIVE) if (a.started_at or a.created_at) <= cutoff]
    if stale:
        try:
            alive = queue.analysis_ids_in_broker()
        except Exception as exc:  # noqa: BLE001 - whatever the broker client raises
            log.error("reconcile: the broker could not be read (%s); no analysis re-sent", type(exc).__name__)
            res.broker_unreadable = True
            return res
        if alive is not None:
            stale = [a for a in stale if a.id not in alive]
    for a in stale:
        current = registry.analysis(a.id)  # it may have ended while the broker was read
        if current is None or current.status not in ACTIVE:
            continue
        try:
            queue.enqueue_analysis(a.id, a.queue)
        except Exception as exc:  # noqa: BLE001
            res.errors += 1
            log.error("reconcile: analysis %d could not be re-sent (%s)", a.id, type(exc).__name__)
            continue
        res.analyses_resent.append(a.id)
        log.warning("reconcile: analysis %d of study %s was %s with no message in the broker: re-sent to %s",
                    a.id, a.study_uid, current.status, a.queue)
    return res


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
            log.info("reconcile: %d studies enqueued, %d analyses re-sent, %d errors",
                     len(res.studies_enqueued), len(res.analyses_resent), res.errors)


def start_periodic_sweep(settings: Settings, registry: Registry, queue: WorkQueue) -> PeriodicSweep | None:
    """The listener's sweeper: every ``settings.reconcile_seconds`` (0: none) for work older than
    ``settings.reconcile_older_than_s``, through ``queue``."""
    interval, older_than = settings.reconcile_seconds, settings.reconcile_older_than_s
    if interval <= 0:
        log.info("reconcile: periodic sweep off (FOLLOWUP_RECONCILE_SECONDS=0)")
        return None
    log.info("reconcile: sweep every %.0f s for work older than %.0f s", interval, older_than)
    return PeriodicSweep(lambda: sweep(registry, queue, older_than_s=older_than), interval).start()
