"""Analyses: revisions, the workers' claims and heartbeats, and their end."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError

from followup.service.registry.core import RegistryCore, rowcount
from followup.service.registry.tables import Analysis, utcnow
from followup.states import ANALYSIS_TRANSITIONS, TERMINAL_ANALYSIS, AnalysisStatus


class AnalysisRecords(RegistryCore):
    """Analyses of studies (one row per study, algorithm version and revision)."""

    # --- analyses --------------------------------------------------------------------------------
    def next_revision(self, study_uid: str, version: str) -> int:
        with self.session() as s:
            current = s.scalar(select(func.max(Analysis.revision)).where(
                Analysis.study_uid == study_uid, Analysis.algorithm_version == version))
            return (current or 0) + 1

    def get_or_create_analysis(self, study_uid: str, version: str, revision: int, queue: str,
                               batch_id: int | None = None) -> Analysis:
        where = (Analysis.study_uid == study_uid, Analysis.algorithm_version == version,
                 Analysis.revision == revision)
        try:
            with self.session() as s:
                a = s.scalar(select(Analysis).where(*where))
                if a is None:
                    a = Analysis(study_uid=study_uid, algorithm_version=version, revision=revision,
                                 queue=queue, batch_id=batch_id)
                    s.add(a)
                    s.flush()
                return a
        except IntegrityError:  # another process created the same revision just now: that one
            with self.session() as s:
                return s.scalars(select(Analysis).where(*where)).one()

    def unstarted_analysis(self, study_uid: str, version: str, queue: str) -> Analysis | None:
        """The study's latest analysis on ``queue`` (not part of a batch) still ``queued`` and never
        started: a new hand-over of the study reuses it instead of making a new revision (whose
        objects would have new UIDs: a second set at the PACS)."""
        with self.session() as s:
            a = s.scalar(select(Analysis).where(Analysis.study_uid == study_uid,
                                                Analysis.algorithm_version == version)
                         .order_by(Analysis.revision.desc()).limit(1))
            if (a is not None and a.status == AnalysisStatus.QUEUED and a.queue == queue and a.batch_id is None
                    and not a.attempts and a.started_at is None):
                return a
            return None

    def analysis(self, analysis_id: int) -> Analysis | None:
        with self.session() as s:
            return s.get(Analysis, analysis_id)

    @staticmethod
    def lease_held(analysis: Analysis, lease_s: float) -> bool:
        """Is ``analysis`` running in a live worker (heartbeat within ``lease_s`` seconds)?"""
        return (analysis.status == AnalysisStatus.RUNNING and analysis.heartbeat_at is not None
                and analysis.heartbeat_at > utcnow() - dt.timedelta(seconds=lease_s))

    def claim_analysis(self, analysis_id: int, lease_s: float) -> bool:
        """Atomically mark the analysis running for this worker (one more attempt) unless a live
        worker holds it. Of two workers given the same task (a broker redelivery while the
        first still runs), one wins; the other must do nothing."""
        now = utcnow()
        held = and_(Analysis.status == AnalysisStatus.RUNNING, Analysis.heartbeat_at.is_not(None),
                    Analysis.heartbeat_at > now - dt.timedelta(seconds=lease_s))
        with self.session() as s:
            done = s.execute(update(Analysis).where(Analysis.id == analysis_id, ~held).values(
                status=AnalysisStatus.RUNNING, started_at=now, heartbeat_at=now,
                attempts=func.coalesce(Analysis.attempts, 0) + 1))
            return rowcount(done) == 1

    def beat(self, analysis_id: int) -> None:
        """The running worker is alive."""
        self.update_analysis(analysis_id, heartbeat_at=utcnow())

    def update_analysis(self, analysis_id: int, **values) -> None:
        """Write columns unchecked (the heartbeat; tests). The service ends an analysis with
        ``finish_analysis``."""
        with self.session() as s:
            s.execute(update(Analysis).where(Analysis.id == analysis_id).values(**values))

    RESULT_COLUMNS = frozenset({"probability", "interval_low", "interval_high", "baseline_study_uid",
                                "report_dir", "duration_s"})

    def finish_analysis(self, analysis_id: int, status: AnalysisStatus, reason: str | None,
                        **results) -> None:
        """End the analysis (queued or running -> complete | deferred | failed) with its reason and
        results (``RESULT_COLUMNS``); an analysis that already ended raises IllegalTransition."""
        status = AnalysisStatus(status)
        if status not in TERMINAL_ANALYSIS:
            raise ValueError(f"finish_analysis: {status} is not an end state")
        unknown = set(results) - self.RESULT_COLUMNS
        if unknown:
            raise TypeError(f"finish_analysis: unknown result column(s) {sorted(unknown)}")
        self.transition(ANALYSIS_TRANSITIONS, Analysis.status, Analysis.id, analysis_id, status,
                        {"reason": reason, "finished_at": utcnow(), **results})

    def analyses(self, study_uid: str | None = None, batch_id: int | None = None,
                 statuses: tuple[str, ...] | None = None) -> list[Analysis]:
        with self.session() as s:
            q = select(Analysis).order_by(Analysis.id)
            if study_uid:
                q = q.where(Analysis.study_uid == study_uid)
            if batch_id is not None:
                q = q.where(Analysis.batch_id == batch_id)
            if statuses is not None:
                q = q.where(Analysis.status.in_(statuses))
            return list(s.scalars(q))

    def latest_analysis(self, study_uid: str) -> Analysis | None:
        with self.session() as s:
            return s.scalar(select(Analysis).where(Analysis.study_uid == study_uid)
                            .order_by(Analysis.id.desc()).limit(1))
