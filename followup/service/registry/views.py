"""Read-only views of the registry for the API and the listener."""

from __future__ import annotations

from sqlalchemy import func, select

from followup.service.registry.core import RegistryCore
from followup.service.registry.tables import Analysis, Delivery, Instance, Study


class RegistryViews(RegistryCore):
    """Counts and joined reads (no writes)."""

    # --- read-only views (the API, the listener) -------------------------------------------------
    def studies_by_state(self) -> dict[str, int]:
        """How many studies are in each state (raises when the database is unreachable)."""
        with self.session() as s:
            rows = s.execute(select(Study.state, func.count()).group_by(Study.state)).all()
        return {state: n for state, n in rows}

    def newest_analyses(self, study_uids: list[str], *, statuses: tuple[str, ...] | None = None,
                        with_report: bool = False) -> dict[str, Analysis]:
        """Study UID -> its newest analysis (one query for all of them); only analyses in
        ``statuses`` and, with ``with_report``, only those with a report directory."""
        if not study_uids:
            return {}
        where = [Analysis.study_uid.in_(study_uids)]
        if statuses is not None:
            where.append(Analysis.status.in_(statuses))
        if with_report:
            where.append(Analysis.report_dir.is_not(None))
        newest = select(func.max(Analysis.id)).where(*where).group_by(Analysis.study_uid)
        with self.session() as s:
            return {a.study_uid: a for a in s.scalars(select(Analysis).where(Analysis.id.in_(newest)))}

    def deliveries_with_study(self, status: str | None = None,
                              limit: int = 1000) -> list[tuple[Delivery, str]]:
        """Deliveries, newest first, each with the Study Instance UID of its analysis."""
        q = (select(Delivery, Analysis.study_uid).join(Analysis, Analysis.id == Delivery.analysis_id)
             .order_by(Delivery.id.desc()).limit(limit))
        if status:
            q = q.where(Delivery.status == status)
        with self.session() as s:
            return [(d, uid) for d, uid in s.execute(q).all()]

    def instance_path(self, sop_uid: str) -> str | None:
        """Where the instance with this SOP Instance UID is stored; None when not registered."""
        with self.session() as s:
            inst = s.get(Instance, sop_uid)
            return None if inst is None else inst.path
