"""The registry's tables (SQLAlchemy 2 declarative models): procedures, studies, the
quarantine, instances, analyses, deliveries, batches, review marks, users, the audit trail
and the settings processes publish."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Date, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from followup.states import AnalysisStatus, DeliveryStatus, StudyRole, StudyState

QUARANTINE_STATES = ("held", "released", "discarded")


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

