"""``/procedures``: the cryoablation records (list by ``patient_ref``, add or replace)."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from fastapi import HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from followup.api.dependencies import AuditDep, Auditor, QueueDep, RegistryDep, protected_router, requires
from followup.api.json_body import strict_json_loads
from followup.api.models import ErrorOut, ProcedureOut
from followup.errors import ProcedureRecordError
from followup.procedure import ProcedureRecord, parse_procedure
from followup.pseudonym import patient_ref
from followup.record_rules import indication_notes
from followup.service.registry import Procedure, Registry
from followup.service.users import Role
from followup.service.work_queue import WorkQueue

log = logging.getLogger("followup.api")

router = protected_router(tags=["procedures"])

MAX_PROCEDURE_BYTES = 64 * 1024


def _inline_refs(schema: dict) -> dict:
    """A pydantic JSON schema with its ``$defs`` inlined (usable as an OpenAPI request body)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.split("/")[-1]])
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def procedure_out(p: Procedure) -> ProcedureOut:
    rec = dict(p.record or {})
    notes: list[str] = []
    with contextlib.suppress(Exception):  # an old record that no longer validates: list it without notes
        notes = indication_notes(ProcedureRecord.model_validate(rec))
    return ProcedureOut(id=p.id, patient_ref=patient_ref(p.patient_id or ""),
                        procedure_date=p.procedure_date, laterality=p.laterality,
                        lesion=rec.get("lesion") or {}, freeze_thaw_cycles=rec.get("freeze_thaw_cycles"),
                        margin_mm=rec.get("margin_mm"), indication_notes=notes, created_at=p.created_at,
                        recorded_by=p.recorded_by)


def _parse_record(raw: bytes) -> ProcedureRecord:
    """The request body as a validated procedure record; 413 or 422 (naming the field) otherwise."""
    if len(raw) > MAX_PROCEDURE_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "procedure record too large")
    try:
        data = strict_json_loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = f"not valid JSON ({exc.msg if isinstance(exc, json.JSONDecodeError) else 'encoding'})"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, msg) from None
    if not isinstance(data, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the procedure record must be a JSON object")
    try:
        return parse_procedure(data)
    except ProcedureRecordError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, err.message) from None


def _store(registry: Registry, record: ProcedureRecord, auditor: Auditor) -> tuple[Procedure, bool]:
    """Add the record, bound to the authenticated user and audited; True when it replaced one of
    the same patient, date and side."""
    existed = any(p.procedure_date == record.procedure_date and p.laterality == record.laterality
                  for p in registry.procedures(record.patient_id))
    proc = registry.add_procedure(record, recorded_by=auditor.principal.name)
    auditor.record("procedure.replace" if existed else "procedure.add", patient_ref=patient_ref(record.patient_id),
                   detail=f"procedure {proc.id} ({record.procedure_date}, {record.laterality})")
    return proc, existed


def _resume_deferred(registry: Registry, queue: WorkQueue | None, patient_id: str) -> list[str]:
    """Studies deferred for want of this patient's record resume, as with `followup procedures add`.
    (The one call from the API into the job orchestration.)"""
    if queue is None:
        log.warning("no work queue: studies deferred for want of this record are not resumed")
        return []
    from followup.service.baselines import resume_for_procedure

    return resume_for_procedure(registry, queue, patient_id)


@router.get("/procedures", response_model=list[ProcedureOut])
def list_procedures(registry: RegistryDep, auditor: AuditDep,
                    patient_ref_: str | None = Query(None, alias="patient_ref",
                                                     pattern="^[0-9a-f]{12}$")) -> list[ProcedureOut]:
    out = [procedure_out(p) for p in registry.procedures()]
    out = [p for p in out if patient_ref_ is None or p.patient_ref == patient_ref_]
    auditor.record("procedure.list", patient_ref=patient_ref_, detail=f"{len(out)} procedure records")
    if patient_ref_ is None:
        auditor.record_many("procedure.list", sorted({(p.patient_ref, None) for p in out}))
    return out


@router.post("/procedures", response_model=ProcedureOut, status_code=status.HTTP_201_CREATED,
             dependencies=[requires(Role.ADMIN)],
             responses={200: {"model": ProcedureOut,
                              "description": "replaced the record of the same patient, date and side"},
                        413: {"model": ErrorOut}, 422: {"model": ErrorOut}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": _inline_refs(ProcedureRecord.model_json_schema())}}}})
async def add_procedure(request: Request, response: Response, registry: RegistryDep,
                        queue: QueueDep, auditor: AuditDep) -> ProcedureOut:
    """Add or replace a procedure record (admin: it changes an analysis's clinical inputs); the
    record keeps who did it, and the audit trail has the change."""
    record = _parse_record(await request.body())
    proc, existed = await run_in_threadpool(_store, registry, record, auditor)
    try:
        resumed = await run_in_threadpool(_resume_deferred, registry, queue, record.patient_id)
        if resumed:
            log.info("procedure %d: resumed %d deferred study/studies", proc.id, len(resumed))
    except Exception as exc:  # the broker may be down: the record is kept, say so in the log
        log.error("procedure %d stored, but deferred studies could not be resumed (%s)",
                  proc.id, type(exc).__name__)
    if existed:
        response.status_code = status.HTTP_200_OK
    log.info("procedure %d %s", proc.id, "replaced" if existed else "added")
    return procedure_out(proc)
