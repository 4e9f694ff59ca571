"""The audit trail: who did what to which patient's data, when, from where, and how it ended.

This module is the only one that writes or reads the registry's ``audit_events`` table
(``followup.service.registry.AuditEvent``). Rows are appended, never changed: the database refuses
UPDATE and DELETE on the table (``Registry._protect_audit``). A row names the patient by the
pseudonymous ``patient_ref`` and the study by its Study Instance UID, never by a name or a Patient
ID, so the trail keeps no other copy of the identifiers it records.

Recorded (docs/security/api.md has the table of actions): every API route that reads or changes
patient data (the page goes through the same routes), every procedure-record change, every batch,
every "reviewed" mark, every delivery to the PACS (actor ``system``), every user change and every
read of the trail itself; the quarantine's release and discard call ``record`` too.

``fhir_audit_event`` turns a row into a FHIR R5 AuditEvent resource (JSON), the form in which
``followup audit --fhir`` exports the trail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from followup.service.registry import AuditEvent, Registry, utcnow

# actor of what the service does by itself (deliveries); of the command line: ``cli:<login>``
SYSTEM = "system"
OK, DENIED, FAILED = "ok", "denied", "failed"

# FHIR AuditEvent.action of each action (C create, R read, U update, D delete, E execute);
# an action not listed is E.
ACTION_CODES = {
    "patient.list": "R", "patient.search": "E", "patient.read": "R", "study.list": "R", "study.read": "R",
    "analysis.read": "R", "report.read": "R", "report.fragment": "R", "file.read": "R", "image.read": "R",
    "procedure.list": "R", "procedure.add": "C", "procedure.replace": "U", "batch.list": "R", "batch.read": "R",
    "batch.changes": "R", "batch.start": "C", "batch.resume": "E", "review.mark": "U", "delivery.list": "R",
    "delivery.send": "E", "audit.read": "R", "user.add": "C", "user.disable": "U", "quarantine.release": "U",
    "quarantine.discard": "D", "quarantine.list": "R", "quarantine.read": "R", "auth.throttled": "E",
    "access.denied": "E",
}
# DICOM audit event IDs (DCM) used as the FHIR AuditEvent.category
_CATEGORY = {"C": ("110110", "Patient Record"), "U": ("110110", "Patient Record"),
             "D": ("110110", "Patient Record"), "R": ("110110", "Patient Record"), "E": ("110112", "Query")}
_SPECIAL_CATEGORY = {"delivery.send": ("110106", "Export"), "audit.read": ("110101", "Audit Log Used"),
                     "user.add": ("110136", "Security Roles Changed"),
                     "user.disable": ("110136", "Security Roles Changed"),
                     "auth.throttled": ("110114", "User Authentication"),
                     "access.denied": ("110114", "User Authentication")}
_OUTCOME_CODES = {OK: ("0", "Success"), DENIED: ("4", "Minor failure"), FAILED: ("8", "Serious failure")}


def record(registry: Registry, actor: str, action: str, *, role: str, source: str,
           patient_ref: str | None = None, study_uid: str | None = None, outcome: str = OK,
           detail: str | None = None) -> None:
    """Append one row. Raises when the database cannot take it: a caller serving patient data
    answers an error rather than serve it unrecorded."""
    with registry.session() as s:
        s.add(AuditEvent(at=utcnow(), actor=actor[:100], role=role[:16], source=source[:128], action=action[:64],
                         patient_ref=patient_ref or None, study_uid=study_uid or None, outcome=outcome[:16],
                         detail=detail[:500] if detail else None))


def record_many(registry: Registry, actor: str, action: str, subjects: Sequence[tuple[str | None, str | None]], *,
                role: str, source: str, outcome: str = OK, detail: str | None = None) -> None:
    """One row per (patient_ref, study_uid) of ``subjects``, in one transaction (a list of patients
    shown: a row for each)."""
    if not subjects:
        return
    now = utcnow()
    with registry.session() as s:
        s.add_all([AuditEvent(at=now, actor=actor[:100], role=role[:16], source=source[:128], action=action[:64],
                              patient_ref=ref or None, study_uid=uid or None, outcome=outcome[:16],
                              detail=detail[:500] if detail else None) for ref, uid in subjects])


def events(registry: Registry, *, since: dt.datetime | None = None, actor: str | None = None,
           study_uid: str | None = None, patient_ref: str | None = None, limit: int = 1000) -> list[AuditEvent]:
    """Rows of the trail, oldest first, filtered; at most ``limit`` (the newest ones)."""
    q = select(AuditEvent)
    if since is not None:
        q = q.where(AuditEvent.at >= since)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if study_uid:
        q = q.where(AuditEvent.study_uid == study_uid)
    if patient_ref:
        q = q.where(AuditEvent.patient_ref == patient_ref)
    with registry.session() as s:
        rows = list(s.scalars(q.order_by(AuditEvent.id.desc()).limit(limit)))
    return rows[::-1]


def as_dict(ev: AuditEvent) -> dict[str, Any]:
    return {"id": ev.id, "at": ev.at.replace(tzinfo=dt.UTC).isoformat(), "actor": ev.actor, "role": ev.role,
            "source": ev.source, "action": ev.action, "patient_ref": ev.patient_ref, "study_uid": ev.study_uid,
            "outcome": ev.outcome, "detail": ev.detail}


def fhir_audit_event(ev: AuditEvent, observer: str = "followup") -> dict[str, Any]:
    """The row as a FHIR R5 AuditEvent (JSON-ready dict): ``code`` is the action, ``action`` its
    C/R/U/D/E, ``category`` the DICOM audit event ID, the agent the user with their role and
    client address, the patient by its pseudonymous reference, the study as an entity."""
    action_code = ACTION_CODES.get(ev.action, "E")
    cat_code, cat_display = _SPECIAL_CATEGORY.get(ev.action) or _CATEGORY[action_code]
    out_code, out_display = _OUTCOME_CODES.get(ev.outcome, _OUTCOME_CODES[FAILED])
    human = ev.actor != SYSTEM
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                             "code": "humanuser" if human else "dataprocessor",
                             "display": "human user" if human else "data processor"}]},
        "who": {"identifier": {"system": "urn:followup:user", "value": ev.actor}, "display": ev.actor},
        "requestor": human,
    }
    if ev.role:
        agent["role"] = [{"text": ev.role}]
    if ev.source:
        agent["networkString"] = ev.source
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(ev.id),
        "category": [{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": cat_code,
                                  "display": cat_display}]}],
        "code": {"coding": [{"system": "urn:followup:audit-action", "code": ev.action}], "text": ev.action},
        "action": action_code,
        "recorded": ev.at.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z"),
        "outcome": {"code": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-outcome",
                             "code": out_code, "display": out_display}},
        "agent": [agent],
        "source": {"observer": {"display": observer},
                   "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                                         "code": "4", "display": "Application Server"}]}]},
    }
    if ev.outcome != OK:
        resource["outcome"]["detail"] = [{"text": ev.outcome}]
    if ev.patient_ref:
        resource["patient"] = {"identifier": {"system": "urn:followup:patient-ref", "value": ev.patient_ref}}
    entities: list[dict[str, Any]] = []
    if ev.study_uid:
        entities.append({"what": {"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{ev.study_uid}"}},
                         "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/object-role",
                                              "code": "3", "display": "Report"}]}})
    if ev.detail:
        entities.append({"detail": [{"type": {"text": "detail"}, "valueString": ev.detail}]})
    if entities:
        resource["entity"] = entities
    return resource


def fhir_bundle(rows: list[AuditEvent], observer: str = "followup") -> dict[str, Any]:
    """The rows as a FHIR R5 Bundle (type ``collection``) of AuditEvents."""
    return {"resourceType": "Bundle", "type": "collection",
            "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "entry": [{"resource": fhir_audit_event(ev, observer)} for ev in rows]}


__all__ = ["ACTION_CODES", "DENIED", "FAILED", "OK", "SYSTEM", "as_dict", "events", "fhir_audit_event",
           "fhir_bundle", "record", "record_many"]
