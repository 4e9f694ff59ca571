"""Patients and review marks: what the web page searches and marks."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from followup.service.registry.core import RegistryCore
from followup.service.registry.tables import Analysis, ChangeReview, Instance, Study, utcnow


class PatientRecords(RegistryCore):
    """Patient search over studies, and the clinicians' review marks."""

    # --- patients and review marks (the web page) ------------------------------------------------
    def studies_to_index(self, limit: int = 1000) -> list[tuple[str, str]]:
        """(Study UID, one stored instance's path) of studies whose patient name is not read yet."""
        q = (select(Study.study_uid, func.min(Instance.path)).join(Instance, Instance.study_uid == Study.study_uid)
             .where(Study.patient_name.is_(None)).group_by(Study.study_uid).limit(limit))
        with self.session() as s:
            return [(uid, path) for uid, path in s.execute(q).all()]

    def search_patient_ids(self, words: list[str], limit: int = 200) -> list[str]:
        """Patient IDs with a study matching every word (in the name, the Patient ID or an
        accession number; case-insensitive; the name's ``^`` read as spaces), most recent first."""
        name = func.lower(func.replace(func.coalesce(Study.patient_name, ""), "^", " "))
        where = []
        for word in words:
            pattern = "%" + word.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(or_(name.like(pattern, escape="\\"), func.lower(Study.patient_id).like(pattern, escape="\\"),
                             func.lower(Study.accession_number).like(pattern, escape="\\")))
        q = (select(Study.patient_id).where(Study.patient_id != "", *where).group_by(Study.patient_id)
             .order_by(func.max(Study.study_date).desc().nulls_last(), Study.patient_id).limit(limit))
        with self.session() as s:
            return list(s.scalars(q))

    def studies_of_patients(self, patient_ids: list[str]) -> list[Study]:
        """Every study of these patients, by date (undated last)."""
        if not patient_ids:
            return []
        with self.session() as s:
            return list(s.scalars(select(Study).where(Study.patient_id.in_(patient_ids))
                                  .order_by(Study.study_date.is_(None), Study.study_date, Study.first_received_at)))

    def analyses_of_studies(self, study_uids: list[str]) -> list[Analysis]:
        if not study_uids:
            return []
        with self.session() as s:
            return list(s.scalars(select(Analysis).where(Analysis.study_uid.in_(study_uids)).order_by(Analysis.id)))

    def mark_reviewed(self, analysis_id: int, reviewed_by: str) -> ChangeReview:
        """Store the "reviewed" mark (who, when); an analysis already marked keeps its first mark."""
        try:
            with self.session() as s:
                mark = s.get(ChangeReview, analysis_id)
                if mark is None:
                    mark = ChangeReview(analysis_id=analysis_id, reviewed_by=reviewed_by[:100], reviewed_at=utcnow())
                    s.add(mark)
                return mark
        except IntegrityError:  # marked by someone else just now: theirs stands
            with self.session() as s:
                return s.get_one(ChangeReview, analysis_id)

    def reviews(self, analysis_ids: list[int]) -> dict[int, ChangeReview]:
        if not analysis_ids:
            return {}
        with self.session() as s:
            return {m.analysis_id: m for m in s.scalars(select(ChangeReview)
                                                         .where(ChangeReview.analysis_id.in_(analysis_ids)))}
