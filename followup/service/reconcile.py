"""Reconciliation sweep: the store and the registry are the source of truth, Redis only carries
work. After a broker restart (or any lost message) this re-sends what was received but never
analysed, and the analyses that were queued or running when their task vanished. Tasks are
idempotent, so a message that was not lost after all only costs a second, identical run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from followup.service.registry import Registry, utcnow


@dataclass
class SweepResult:
    studies_enqueued: list[str] = field(default_factory=list)
    analyses_resent: list[int] = field(default_factory=list)


def sweep(registry: Registry, enqueue_study, enqueue_analysis, older_than_s: float = 600.0) -> SweepResult:
    """``enqueue_study(uid)`` starts a new analysis; ``enqueue_analysis(id, queue)`` re-sends one.

    * a study claimed as stable whose analysis was never created (the hand-over failed);
    * analyses ``queued`` or ``running`` for longer than ``older_than_s`` (their message is
      presumed lost: a worker that died mid-task has its message redelivered by Redis within the
      visibility timeout, so set ``older_than_s`` above that timeout for running analyses).
    """
    cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
    res = SweepResult()
    for s in registry.studies(state="stable", limit=10**9):
        if registry.latest_analysis(s.study_uid) is None and (s.enqueued_at or s.last_received_at) <= cutoff:
            enqueue_study(s.study_uid)
            res.studies_enqueued.append(s.study_uid)
    for a in registry.analyses():
        started = a.started_at or a.created_at
        if a.status in ("queued", "running") and started <= cutoff:
            enqueue_analysis(a.id, a.queue)
            res.analyses_resent.append(a.id)
    return res
