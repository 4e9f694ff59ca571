"""Procedures, studies and their instances: the listener's records and the claims of stable studies."""

from __future__ import annotations

import datetime as dt
import json
from typing import cast

from sqlalchemy import Table, and_, case, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from followup.dicom.header_records import MR_SOP_CLASSES
from followup.service.registry.core import RegistryCore, rowcount
from followup.service.registry.tables import Instance, Procedure, Study, utcnow
from followup.states import STUDY_TRANSITIONS, StudyRole, StudyState

_KEEP = object()  # mark_study: leave the reason as it is


class PatientMismatch(Exception):
    """The study holds another patient's instances (``record_instance(same_patient=True)``)."""

    def __init__(self, study_uid: str) -> None:
        super().__init__(f"study {study_uid} belongs to another patient")
        self.study_uid = study_uid


class StudyRecords(RegistryCore):
    """Procedure records, studies and instances (the listener writes them)."""

    # --- procedures ----------------------------------------------------------------------------
    def add_procedure(self, record, recorded_by: str | None = None) -> Procedure:
        """Insert (or replace the same patient/date/side) from a validated ProcedureRecord;
        ``recorded_by``: who did (kept with the record)."""
        data = json.loads(record.model_dump_json())
        with self.session() as s:
            existing = s.scalar(select(Procedure).where(
                Procedure.patient_id == record.patient_id,
                Procedure.procedure_date == record.procedure_date,
                Procedure.laterality == record.laterality))
            if existing is not None:
                existing.record = data
                existing.recorded_by = recorded_by
                return existing
            p = Procedure(patient_id=record.patient_id, procedure_date=record.procedure_date,
                          laterality=record.laterality, record=data, recorded_by=recorded_by)
            s.add(p)
            s.flush()
            return p

    def procedures(self, patient_id: str | None = None) -> list[Procedure]:
        with self.session() as s:
            q = select(Procedure).order_by(Procedure.procedure_date)
            if patient_id is not None:
                q = q.where(Procedure.patient_id == patient_id)
            return list(s.scalars(q))

    def procedure_for(self, patient_id: str, study_date: dt.date | None) -> Procedure | None:
        """The latest procedure of the patient on or before the study date (a follow-up's),
        or the first after it (a baseline's) when none precedes."""
        procs = self.procedures(patient_id)
        if not procs:
            return None
        if study_date is None:
            return procs[-1]
        before = [p for p in procs if p.procedure_date <= study_date]
        return before[-1] if before else procs[0]

    # --- studies and instances -------------------------------------------------------------------
    def record_instance(self, *, study_uid: str, series_uid: str, sop_uid: str, sop_class_uid: str,
                        path: str, size: int, patient_id: str, study_date: dt.date | None,
                        modality: str, accession_number: str, calling_ae: str,
                        same_patient: bool = False) -> bool:
        """Register a stored instance; False when its SOP Instance UID was already there.

        ``same_patient``: only into a study of this ``patient_id`` (checked in the same
        transaction); a study of another patient raises :class:`PatientMismatch`.

        Only MR images (re)open a study for analysis. SR, SEG and PDF objects (ours, routed back
        by a PACS that forwards whole studies) are kept but change nothing: no analysis loop."""
        now = utcnow()
        is_image = sop_class_uid in MR_SOP_CLASSES
        # SQLAlchemy Core, one transaction, no ORM unit of work: this runs once per received
        # instance, before the C-STORE is answered (the ORM version cost ~2.5 ms an instance).
        studies, instances = cast(Table, Study.__table__), cast(Table, Instance.__table__)
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    existing = conn.execute(select(instances.c.study_uid).where(
                        instances.c.sop_uid == sop_uid)).first()
                    if existing is not None:
                        if is_image:  # the sender is (re)sending the study: it is not quiet yet
                            conn.execute(update(studies).where(
                                studies.c.study_uid == existing.study_uid,
                                studies.c.state == StudyState.RECEIVING).values(last_received_at=now))
                        return False
                    values: dict = {"n_instances": studies.c.n_instances + 1, "updated_at": now}
                    if is_image:  # new images after it was declared stable: it changed
                        values["last_received_at"] = now  # (quarantined stays so: for good)
                        values["state"] = case(
                            (studies.c.state.in_((StudyState.RECEIVING, StudyState.QUARANTINED)),
                             studies.c.state), else_=StudyState.RECEIVING)
                    where = [studies.c.study_uid == study_uid]
                    if same_patient:
                        where.append(studies.c.patient_id == patient_id)
                    done = conn.execute(update(studies).where(*where).values(**values))
                    if done.rowcount == 0 and same_patient:
                        other = conn.execute(select(studies.c.patient_id).where(
                            studies.c.study_uid == study_uid)).first()
                        if other is not None:
                            raise PatientMismatch(study_uid)
                    if done.rowcount == 0:
                        conn.execute(insert(studies).values(
                            study_uid=study_uid, patient_id=patient_id, study_date=study_date,
                            modality=modality, accession_number=accession_number,
                            calling_ae=calling_ae, n_instances=1, first_received_at=now,
                            last_received_at=now, updated_at=now, role=StudyRole.UNKNOWN,
                            state=StudyState.RECEIVING if is_image else StudyState.OBJECTS_ONLY))
                    conn.execute(insert(instances).values(
                        sop_uid=sop_uid, study_uid=study_uid, series_uid=series_uid,
                        sop_class_uid=sop_class_uid, path=path, size=size, received_at=now))
                    return True
            except IntegrityError:
                if attempt == 2:  # another writer created the same study or instance just now
                    raise
        return False  # pragma: no cover - the loop returns or raises

    def claim_stable_studies(self, quiet_seconds: float) -> list[str]:
        """Atomically move studies quiet for ``quiet_seconds`` from receiving to stable.

        The conditional UPDATE makes the claim exclusive: of two monitors, one wins."""
        cutoff = utcnow() - dt.timedelta(seconds=quiet_seconds)
        claimed = []
        with self.session() as s:
            candidates = list(s.scalars(select(Study.study_uid).where(
                Study.state == StudyState.RECEIVING, Study.last_received_at <= cutoff)))
            for uid in candidates:
                res = s.execute(update(Study).where(
                    Study.study_uid == uid, Study.state == StudyState.RECEIVING,
                    Study.last_received_at <= cutoff).values(state=StudyState.STABLE, enqueued_at=utcnow()))
                if rowcount(res) == 1:
                    claimed.append(uid)
        return claimed

    def claim_for_sweep(self, study_uid: str, cutoff: dt.datetime) -> bool:
        """Atomically take a stable study whose hand-over is older than ``cutoff`` (or never
        happened) for the reconciliation sweep: of two sweeps, one wins."""
        with self.session() as s:
            res = s.execute(update(Study).where(
                Study.study_uid == study_uid, Study.state == StudyState.STABLE,
                or_(Study.enqueued_at <= cutoff,
                    and_(Study.enqueued_at.is_(None), Study.last_received_at <= cutoff)))
                .values(enqueued_at=utcnow()))
            return rowcount(res) == 1

    def study(self, study_uid: str) -> Study | None:
        with self.session() as s:
            return s.get(Study, study_uid)

    def studies(self, state: str | None = None, limit: int = 500) -> list[Study]:
        with self.session() as s:
            q = select(Study).order_by(Study.last_received_at.desc()).limit(limit)
            if state:
                q = q.where(Study.state == state)
            return list(s.scalars(q))

    def set_study(self, study_uid: str, **values) -> None:
        """Write columns unchecked (not for state changes in the service: ``mark_study``)."""
        with self.session() as s:
            s.execute(update(Study).where(Study.study_uid == study_uid).values(**values))

    def mark_study(self, study_uid: str, state: StudyState, *, reason: str | object | None = _KEEP,
                   role: StudyRole | None = None, only_from: frozenset[StudyState] | None = None) -> None:
        """Move the study to ``state`` (``followup.states.STUDY_TRANSITIONS``); ``reason`` and
        ``role`` are written when given (``reason=None`` clears it). ``only_from``: only from these
        states (an analysis ending moves its study only if it is still ``analysing``: new images
        may have reopened it meanwhile)."""
        values: dict = {"updated_at": utcnow()}
        if reason is not _KEEP:
            values["reason"] = reason
        if role is not None:
            values["role"] = StudyRole(role)
        self.transition(STUDY_TRANSITIONS, Study.state, Study.study_uid, study_uid, StudyState(state), values,
                        None if only_from is None else frozenset(str(x) for x in only_from))

    def instance_paths(self, study_uid: str) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(Instance.path).where(Instance.study_uid == study_uid)))

    def patient_studies(self, patient_id: str) -> list[Study]:
        with self.session() as s:
            return list(s.scalars(select(Study).where(Study.patient_id == patient_id)
                                  .order_by(Study.study_date)))
