"""The registry (SQLAlchemy 2): procedures, studies, instances, analyses, deliveries, batches.

SQLite file by default, PostgreSQL through ``FOLLOWUP_DB_URL``. The registry and the store are
the source of truth; Redis only carries work.

States (``followup.states``: the enums, the diagram and the tables of allowed transitions):

* Study.state: ``receiving`` -> ``stable`` (quiet period over, task enqueued) -> ``baseline`` |
  ``analysing`` -> ``complete`` | ``deferred`` | ``failed``. New MR images after ``stable`` put it
  back to ``receiving`` (the study changed); other objects never do (``objects-only`` for a study
  holding no image). ``quarantined``: the listener found two patients in the study (before issue
  22; an instance of another patient is now quarantined alone): never analysed, new images do not
  reopen it; ``release_quarantined_study`` (an administrator's ``followup quarantine release``)
  puts it back to ``receiving``.
* QuarantineEntry.state: ``held`` -> ``released`` | ``discarded`` (``close_quarantined``).
* Analysis.status: ``queued`` -> ``running`` -> ``complete`` | ``deferred`` | ``failed``.
  One row per (study, algorithm version, revision); a reanalysis is a new revision.
* Delivery.status: ``pending`` -> ``sent`` | ``failed`` (after the last retry).

The service changes a state only through the named transitions (``mark_study``,
``finish_analysis``, ``mark_delivery_sent``, ``record_delivery_failure``): each is one conditional
UPDATE whose WHERE holds the states the target may be reached from, and raises
``IllegalTransition`` when the row was in another. The atomic claims (``claim_stable_studies``,
``claim_for_sweep``, ``claim_analysis``) are conditional UPDATEs of their own. ``set_study``,
``update_analysis`` and ``update_delivery`` write columns unchecked: for other columns, and for
tests that set up a row in a given state.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    case,
    create_engine,
    event,
    func,
    insert,
    inspect as sa_inspect,
    or_,
    select,
    update,
)
from sqlalchemy.engine import CursorResult, Engine, Result
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from followup.dicom.scan import MR_SOP_CLASSES
from followup.states import (
    ANALYSIS_TRANSITIONS,
    DELIVERY_TRANSITIONS,
    STUDY_TRANSITIONS,
    TERMINAL_ANALYSIS,
    AnalysisStatus,
    DeliveryStatus,
    IllegalTransition,
    StudyRole,
    StudyState,
    Transitions,
)

_KEEP = object()  # mark_study: leave the reason as it is
QUARANTINE_STATES = ("held", "released", "discarded")


class PatientMismatch(Exception):
    """The study holds another patient's instances (``record_instance(same_patient=True)``)."""

    def __init__(self, study_uid: str) -> None:
        super().__init__(f"study {study_uid} belongs to another patient")
        self.study_uid = study_uid


def _rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE run through ``Session.execute`` (typed as a plain ``Result``; at
    run time a DML statement always gives a ``CursorResult``)."""
    return cast(CursorResult, result).rowcount


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Procedure(Base):
    __tablename__ = "procedures"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    procedure_date: Mapped[dt.date] = mapped_column(Date)
    laterality: Mapped[str] = mapped_column(String(1))
    record: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # who added or last replaced the record (the API's authenticated user, ``cli:<login>``)
    recorded_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    __table_args__ = (UniqueConstraint("patient_id", "procedure_date", "laterality"),)


class Study(Base):
    __tablename__ = "studies"
    study_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True, default="")
    study_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="")
    # From a stored instance's header, for the authenticated page (``followup.service.patients``):
    # NULL until indexed, "" when the header has none. DICOM PN as received, DA as received.
    patient_name: Mapped[str | None] = mapped_column(String(324), nullable=True)
    patient_birth_date: Mapped[str | None] = mapped_column(String(16), nullable=True)
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    n_instances: Mapped[int] = mapped_column(Integer, default=0)
    first_received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RECEIVING, index=True)
    role: Mapped[str] = mapped_column(String(16), default=StudyRole.UNKNOWN)  # baseline | followup | unknown
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # Flagged for review (e.g. an instance of another patient was quarantined from it): why;
    # NULL when not flagged. Cleared when its quarantined instances are released or discarded.
    review_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class QuarantineEntry(Base):
    """Input the listener refused (the data kept in ``DATA_DIR/quarantine``), or a study released
    or discarded, with what became of it: ``held`` until an administrator ``released`` or
    ``discarded`` it (who, when, why). Rows are never deleted: the record of a discard stays.

    ``kind``: ``refused`` (failed a check), ``stray`` (another patient than its study's),
    ``duplicate`` (a SOP Instance UID stored already, with other content), ``study`` (an action
    on a whole study). ``patient_id`` (of a stray): what the study-patient rule counts; never
    logged."""
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="refused", index=True)
    state: Mapped[str] = mapped_column(String(16), default="held", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(8), default="")  # the C-STORE status answered, 0xC000
    file: Mapped[str | None] = mapped_column(Text, nullable=True)  # the kept .dcm; None for a study
    size: Mapped[int] = mapped_column(Integer, default=0)  # bytes received
    study_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sop_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sop_class_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    action_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    action_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    action_note: Mapped[str | None] = mapped_column(Text, nullable=True)


class Instance(Base):
    __tablename__ = "instances"
    sop_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(ForeignKey("studies.study_uid"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Analysis(Base):
    __tablename__ = "analyses"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(ForeignKey("studies.study_uid"), index=True)
    algorithm_version: Mapped[str] = mapped_column(String(40))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    queue: Mapped[str] = mapped_column(String(16), default="realtime")
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default=AnalysisStatus.QUEUED, index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    interval_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    interval_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    baseline_study_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    report_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Refreshed by the worker running it: a running analysis whose heartbeat is older than the
    # lease was abandoned (its worker died) and may be taken over.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (UniqueConstraint("study_uid", "algorithm_version", "revision"),)


class Delivery(Base):
    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # sr | seg | pdf
    sop_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    destination: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    __table_args__ = (UniqueConstraint("analysis_id", "kind", "destination"),)


class Batch(Base):
    __tablename__ = "batches"
    id: Mapped[int] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    selector: Mapped[dict] = mapped_column(JSON)
    algorithm_version: Mapped[str] = mapped_column(String(40))
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(100), nullable=True)  # who started it


class ChangeReview(Base):
    """A clinician's "reviewed" mark on a reanalysis result that changed (one per analysis)."""
    __tablename__ = "change_reviews"
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id"), primary_key=True)
    reviewed_by: Mapped[str] = mapped_column(String(100))
    reviewed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApiUser(Base):
    """A user of the API (``followup.service.users``): a role and the SHA-256 of their token."""
    __tablename__ = "api_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | reviewer | admin
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class AuditEvent(Base):
    """One row of the audit trail (``followup.service.audit``, its only writer and reader):
    append-only (SQLite refuses UPDATE and DELETE through triggers, ``_protect_audit``)."""
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)
    role: Mapped[str] = mapped_column(String(16), default="")
    source: Mapped[str] = mapped_column(String(128), default="")  # client address, "cli", "worker"
    action: Mapped[str] = mapped_column(String(64))
    patient_ref: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    study_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class ServiceSetting(Base):
    """Settings one process publishes for the others (e.g. the PACS destination of serve-dicom)."""
    __tablename__ = "service_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def make_engine(url: str, *, sync: bool = True) -> Engine:
    """``sync``: SQLite commits reach the disk (synchronous=FULL) before they return; without it
    (NORMAL, in WAL mode) a commit survives a process crash but maybe not a power cut."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # WAL: readers never block the writer
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={'FULL' if sync else 'NORMAL'}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
        return engine
    return create_engine(url, pool_pre_ping=True)


class Registry:
    def __init__(self, url: str, *, sync: bool = True) -> None:
        self.engine = make_engine(url, sync=sync)
        Base.metadata.create_all(self.engine)
        self._add_new_columns()
        self._protect_audit()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    # --- settings ------------------------------------------------------------------------------
    def put_setting(self, key: str, value: str) -> None:
        with self.session() as s:
            row = s.get(ServiceSetting, key)
            if row is None:
                s.add(ServiceSetting(key=key, value=value))
            else:
                row.value = value

    def get_setting(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(ServiceSetting, key)
            return None if row is None else row.value

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
                if _rowcount(res) == 1:
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
            return _rowcount(res) == 1

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

    # --- named transitions -------------------------------------------------------------------------
    def _transition(self, table: Transitions, column, key_column, key: object, target: str,
                    values: dict, only_from: frozenset[str] | None = None) -> None:
        """One conditional UPDATE to ``target`` from the states ``table`` allows (and, given
        ``only_from``, only from those of them); IllegalTransition (naming the state found) when the
        row was in another, LookupError when there is no row."""
        with self.session() as s:
            allowed = table.sources(target) if only_from is None else table.sources(target) & only_from
            sources = sorted(str(state) for state in allowed)  # plain strings for any driver
            done = s.execute(update(column.class_).where(key_column == key, column.in_(sources))
                             .values({column.key: str(target), **values}))
            if _rowcount(done) == 1:
                return
            current = s.scalar(select(column).where(key_column == key))
        if current is None:
            raise LookupError(f"no {table.what} {key}")
        table.check(key, current, target)  # raises: the row was in a state target is not reached from
        if only_from is not None and current not in only_from:
            raise IllegalTransition(table.what, key, current, target, f"only from {', '.join(sorted(only_from))}")
        raise IllegalTransition(table.what, key, current, target, "changed meanwhile")  # pragma: no cover

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
        self._transition(STUDY_TRANSITIONS, Study.state, Study.study_uid, study_uid, StudyState(state), values,
                         None if only_from is None else frozenset(str(x) for x in only_from))

    def instance_paths(self, study_uid: str) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(Instance.path).where(Instance.study_uid == study_uid)))

    def patient_studies(self, patient_id: str) -> list[Study]:
        with self.session() as s:
            return list(s.scalars(select(Study).where(Study.patient_id == patient_id)
                                  .order_by(Study.study_date)))

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

    # Columns added after a registry may have been created: (table, column, SQL type).
    NEW_COLUMNS = (("analyses", "heartbeat_at", "TIMESTAMP"), ("studies", "patient_name", "VARCHAR(324)"),
                   ("studies", "patient_birth_date", "VARCHAR(16)"), ("procedures", "recorded_by", "VARCHAR(100)"),
                   ("batches", "created_by", "VARCHAR(100)"),
                   ("studies", "review_reason", "TEXT"))

    def _protect_audit(self) -> None:
        """The audit trail is append-only: the database itself refuses to change or delete a row
        (SQLite: triggers; PostgreSQL: rules that drop the statement)."""
        if self.engine.dialect.name == "sqlite":
            statements = [f"CREATE TRIGGER IF NOT EXISTS audit_events_no_{op.lower()} BEFORE {op} ON audit_events "
                          f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
                          for op in ("UPDATE", "DELETE")]
        elif self.engine.dialect.name == "postgresql":
            statements = [f"CREATE OR REPLACE RULE audit_events_no_{op.lower()} AS ON {op} TO audit_events "
                          f"DO INSTEAD NOTHING" for op in ("UPDATE", "DELETE")]
        else:
            return
        with self.engine.begin() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)

    def _add_new_columns(self) -> None:
        """``create_all`` makes missing tables, not missing columns: add those to an older
        registry (SQLite and PostgreSQL both take ``ALTER TABLE .. ADD COLUMN``)."""
        inspector = sa_inspect(self.engine)
        for table, column, sql_type in self.NEW_COLUMNS:
            if column not in {c["name"] for c in inspector.get_columns(table)}:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")

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
            return _rowcount(done) == 1

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
        self._transition(ANALYSIS_TRANSITIONS, Analysis.status, Analysis.id, analysis_id, status,
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

    # --- deliveries ------------------------------------------------------------------------------
    def add_delivery(self, analysis_id: int, kind: str, sop_uid: str, path: str, destination: str) -> Delivery:
        with self.session() as s:
            d = s.scalar(select(Delivery).where(Delivery.analysis_id == analysis_id, Delivery.kind == kind,
                                                Delivery.destination == destination))
            if d is None:
                d = Delivery(analysis_id=analysis_id, kind=kind, sop_uid=sop_uid, path=path,
                             destination=destination)
                s.add(d)
                s.flush()
            return d

    def deliveries(self, analysis_id: int | None = None, status: str | None = None) -> list[Delivery]:
        with self.session() as s:
            q = select(Delivery).order_by(Delivery.id)
            if analysis_id is not None:
                q = q.where(Delivery.analysis_id == analysis_id)
            if status:
                q = q.where(Delivery.status == status)
            return list(s.scalars(q))

    def update_delivery(self, delivery_id: int, **values) -> None:
        """Write columns unchecked (tests). The service uses ``mark_delivery_sent`` and
        ``record_delivery_failure``."""
        with self.session() as s:
            s.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))

    def mark_delivery_sent(self, delivery_id: int) -> None:
        """pending -> sent (one more attempt, the error cleared)."""
        self._transition(DELIVERY_TRANSITIONS, Delivery.status, Delivery.id, delivery_id, DeliveryStatus.SENT,
                         {"sent_at": utcnow(), "last_error": None, "updated_at": utcnow(),
                          "attempts": func.coalesce(Delivery.attempts, 0) + 1})

    def record_delivery_failure(self, delivery_id: int, error: str, *, final: bool = False) -> None:
        """An attempt failed: pending -> pending (retried later), or -> failed after the last one."""
        target = DeliveryStatus.FAILED if final else DeliveryStatus.PENDING
        self._transition(DELIVERY_TRANSITIONS, Delivery.status, Delivery.id, delivery_id, target,
                         {"last_error": error[:500], "updated_at": utcnow(),
                          "attempts": func.coalesce(Delivery.attempts, 0) + 1})

    # --- batches ---------------------------------------------------------------------------------
    def create_batch(self, reason: str, selector: dict, version: str, total: int,
                     created_by: str | None = None) -> Batch:
        with self.session() as s:
            b = Batch(reason=reason, selector=selector, algorithm_version=version, total=total,
                      created_by=created_by)
            s.add(b)
            s.flush()
            return b

    def batch(self, batch_id: int) -> Batch | None:
        with self.session() as s:
            return s.get(Batch, batch_id)

    def batches(self) -> list[Batch]:
        with self.session() as s:
            return list(s.scalars(select(Batch).order_by(Batch.id.desc())))

    def batch_progress(self, batch_id: int) -> dict:
        with self.session() as s:
            rows = s.execute(select(Analysis.status, func.count()).where(Analysis.batch_id == batch_id)
                             .group_by(Analysis.status)).all()
            b = s.get(Batch, batch_id)
        counts = {status: n for status, n in rows}
        done = sum(counts.get(k, 0) for k in TERMINAL_ANALYSIS)
        total = b.total if b else 0
        return {"batch_id": batch_id, "total": total, "done": done, "by_status": counts,
                "remaining": max(total - done, 0)}

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
            return _rowcount(done) == 1

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
            return _rowcount(done) == 1

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
            return _rowcount(done) == 1

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
