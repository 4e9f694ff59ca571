"""Revisions of one study: whether an earlier one runs or a later one started, the report a
revision supersedes, the study's state when a run ends, and the hand-over to a waiting revision."""

from __future__ import annotations

import logging
from pathlib import Path

from followup.reporting.supersede import Predecessor, read_predecessor
from followup.service.registry import Analysis, IllegalTransition, Registry
from followup.service.work_queue import QueueName
from followup.states import TERMINAL_ANALYSIS, AnalysisStatus, StudyState

log = logging.getLogger(__name__)


def earlier_running(registry: Registry, analysis: Analysis, lease_s: float) -> bool:
    """Is an earlier analysis of the same study running in a live worker (lease held)?"""
    return any(b.id < analysis.id and registry.lease_held(b, lease_s)
               for b in registry.analyses(study_uid=analysis.study_uid, statuses=(AnalysisStatus.RUNNING,)))


def later_started(registry: Registry, analysis: Analysis) -> bool:
    """Has a later analysis of the same study started (or ended)? One still waiting unstarted
    (``WAIT_FOR_EARLIER``) does not count."""
    return any(b.id > analysis.id and (b.status != AnalysisStatus.QUEUED or b.attempts or b.started_at)
               for b in registry.analyses(study_uid=analysis.study_uid))


def find_predecessor(registry: Registry, analysis: Analysis) -> Predecessor | None:
    """The report ``analysis`` supersedes: that of the study's newest earlier analysis that made one
    (with an SR; any algorithm version). Deferrals decided without a run made none."""
    for b in reversed(registry.analyses(study_uid=analysis.study_uid)):
        if b.id < analysis.id and b.status in TERMINAL_ANALYSIS and b.report_dir:
            found = read_predecessor(Path(b.report_dir) / "report.json")
            if found is not None:
                return found
    return None


def end_study(registry: Registry, analysis: Analysis, state: StudyState, reason: str | None) -> str:
    """The run ended: its study takes the analysis's end state, unless new images reopened it
    meanwhile (it is no longer ``analysing``): then it stays as it is and its next quiet period
    makes a new revision, which supersedes this one's report. The state the study is left in."""
    try:
        registry.mark_study(analysis.study_uid, state, reason=reason, only_from=frozenset({StudyState.ANALYSING}))
    except IllegalTransition as exc:
        log.info("analysis %d ended %s; study %s left as it is (%s)", analysis.id, state, analysis.study_uid, exc)
        return exc.current
    return state


def waiting_after(registry: Registry, analysis: Analysis) -> list[str]:
    """The study, when a later revision of it waits unstarted for this analysis to end
    (``WAIT_FOR_EARLIER``): handing the study over again sends that revision (an unstarted
    real-time analysis is reused, ``analysis_for_handover``). A batch revision is left to the
    reconciliation sweep (a hand-over would make another revision)."""
    later = [b for b in registry.analyses(study_uid=analysis.study_uid, statuses=(AnalysisStatus.QUEUED,))
             if b.id > analysis.id]
    if later and later[-1].queue == QueueName.REALTIME and later[-1].batch_id is None and not later[-1].attempts:
        return [analysis.study_uid]
    return []
