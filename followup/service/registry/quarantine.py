"""The quarantine table and the study-patient rule (``followup.service.listener.study_patient``)."""

from __future__ import annotations

from sqlalchemy import func, or_, select, update

from followup.service.registry.core import RegistryCore, rowcount
from followup.service.registry.tables import Analysis, Instance, QuarantineEntry, Study, utcnow
from followup.states import AnalysisStatus, StudyState


class QuarantineRecords(RegistryCore):
    """Quarantine entries, review flags, and moving a study between patients."""

    # --- the quarantine and the study-patient rule (followup.service.listener.study_patient) -----
    QUARANTINE_FIELDS = frozenset({"kind", "reason", "status", "file", "size", "study_uid", "series_uid",
                                   "sop_uid", "sop_class_uid", "patient_id", "calling_ae"})

    def add_quarantined(self, **values) -> int:
        """Record refused input (``QUARANTINE_FIELDS``), held; its id."""
        unknown = set(values) - self.QUARANTINE_FIELDS
        if unknown:
            raise TypeError(f"add_quarantined: unknown field(s) {sorted(unknown)}")
        for key in ("study_uid", "series_uid", "sop_uid", "sop_class_uid", "patient_id"):
            if values.get(key) is not None:
                values[key] = str(values[key])[:64]
        values["calling_ae"] = str(values.get("calling_ae", ""))[:16]
        with self.session() as s:
            row = QuarantineEntry(**values, state="held", received_at=utcnow())
            s.add(row)
            s.flush()
            return row.id

    def add_quarantine_action(self, *, kind: str, state: str, study_uid: str, reason: str, by: str,
                              note: str | None) -> int:
        """Record an action on a whole study (released, discarded), done already; its id."""
        with self.session() as s:
            row = QuarantineEntry(kind=kind, state=state, study_uid=study_uid, reason=reason,
                                  received_at=utcnow(), action_by=by[:100], action_at=utcnow(),
                                  action_note=note)
            s.add(row)
            s.flush()
            return row.id

    def quarantined(self, *, state: str | None = "held", study_uid: str | None = None,
                    kind: str | None = None, limit: int = 1000) -> list[QuarantineEntry]:
        """Quarantine entries, newest first."""
        q = select(QuarantineEntry).order_by(QuarantineEntry.id.desc()).limit(limit)
        if state is not None:
            q = q.where(QuarantineEntry.state == state)
        if study_uid is not None:
            q = q.where(QuarantineEntry.study_uid == study_uid)
        if kind is not None:
            q = q.where(QuarantineEntry.kind == kind)
        with self.session() as s:
            return list(s.scalars(q))

    def quarantine_entry(self, entry_id: int) -> QuarantineEntry | None:
        with self.session() as s:
            return s.get(QuarantineEntry, entry_id)

    def quarantined_files(self) -> set[str]:
        """The kept files the quarantine table knows (to adopt older ones it does not)."""
        with self.session() as s:
            return {f for f in s.scalars(select(QuarantineEntry.file)) if f}

    def close_quarantined(self, entry_id: int, state: str, *, by: str, note: str | None) -> bool:
        """held -> released | discarded, with who, when and why; False when it was not held
        (another administrator acted on it first)."""
        if state not in ("released", "discarded"):
            raise ValueError(f"close_quarantined: {state!r} is not released or discarded")
        with self.session() as s:
            done = s.execute(update(QuarantineEntry).where(
                QuarantineEntry.id == entry_id, QuarantineEntry.state == "held").values(
                state=state, action_by=by[:100], action_at=utcnow(), action_note=note))
            return rowcount(done) == 1

    def count_strays(self, study_uid: str, patient_id: str) -> int:
        """Held instances of ``patient_id`` quarantined from the study as strays."""
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(QuarantineEntry).where(
                QuarantineEntry.study_uid == study_uid, QuarantineEntry.patient_id == patient_id,
                QuarantineEntry.kind == "stray", QuarantineEntry.state == "held")) or 0

    def flag_study(self, study_uid: str, reason: str | None) -> None:
        """Flag the study for review with ``reason`` (None: clear the flag)."""
        with self.session() as s:
            s.execute(update(Study).where(Study.study_uid == study_uid).values(review_reason=reason))

    # A study's patient may change only while nothing was made of it: not once analysed, reported
    # or kept as a baseline (``followup.service.listener.study_patient``).
    SETTLED_STATES = frozenset({StudyState.ANALYSING, StudyState.COMPLETE, StudyState.BASELINE})

    def study_settled(self, study_uid: str) -> bool:
        """Has the study been analysed (an analysis started or ended with a result), reported, or
        kept as a baseline?"""
        with self.session() as s:
            st = s.get(Study, study_uid)
            if st is None:
                return False
            if st.state in self.SETTLED_STATES:
                return True
            started = s.scalar(select(func.count()).select_from(Analysis).where(
                Analysis.study_uid == study_uid,
                or_(Analysis.started_at.is_not(None), Analysis.report_dir.is_not(None),
                    Analysis.status == AnalysisStatus.COMPLETE)))
            return bool(started)

    def reassign_study(self, study_uid: str, from_patient: str, to_patient: str, reason: str) -> bool:
        """The study becomes ``to_patient``'s (the study-patient rule), if it is still
        ``from_patient``'s and not settled: its instances must then be moved out by the caller
        (``instances_of`` / ``remove_instance``). The patient's name is read again from a stored
        instance (``followup.service.patients``). False when not done."""
        if self.study_settled(study_uid):
            return False
        with self.session() as s:
            done = s.execute(update(Study).where(
                Study.study_uid == study_uid, Study.patient_id == from_patient,
                Study.state.not_in(sorted(str(x) for x in self.SETTLED_STATES))).values(
                patient_id=to_patient[:64], patient_name=None, patient_birth_date=None,
                review_reason=reason, updated_at=utcnow()))
            return rowcount(done) == 1

    def instances_of(self, study_uid: str) -> list[Instance]:
        with self.session() as s:
            return list(s.scalars(select(Instance).where(Instance.study_uid == study_uid)))

    def remove_instance(self, sop_uid: str) -> bool:
        """Unregister an instance (moved to the quarantine, or discarded); its study counts one less."""
        with self.session() as s:
            inst = s.get(Instance, sop_uid)
            if inst is None:
                return False
            s.execute(update(Study).where(Study.study_uid == inst.study_uid).values(
                n_instances=func.max(Study.n_instances - 1, 0) if self.engine.dialect.name == "sqlite"
                else func.greatest(Study.n_instances - 1, 0), updated_at=utcnow()))
            s.delete(inst)
            return True

    def release_quarantined_study(self, study_uid: str) -> bool:
        """A study quarantined whole (by the listener before issue 22: two patients) goes back to
        ``receiving``: handed over again after its quiet period. Its own conditional UPDATE, like
        the claims: ``quarantined`` stays final for every other transition. False when the study
        was not quarantined."""
        now = utcnow()
        with self.session() as s:
            done = s.execute(update(Study).where(
                Study.study_uid == study_uid, Study.state == StudyState.QUARANTINED).values(
                state=StudyState.RECEIVING, reason=None, review_reason=None, last_received_at=now,
                updated_at=now))
            return rowcount(done) == 1
