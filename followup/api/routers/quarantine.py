"""``/admin/quarantine``: what the listener refused, and the way out (``followup.service.quarantine``;
the same actions as ``followup quarantine``). Admins only. Each release or discard records who did
it (the signed-in user), when and why with the entry, and a row of the audit trail
(``quarantine.release`` / ``quarantine.discard``, ``quarantine.read`` for the listing).

Entries carry UIDs, reasons and AE titles, never a Patient ID."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, HTTPException, Query, status
from pydantic import BaseModel, Field

from followup.api.auth import Role
from followup.api.dependencies import AuditDep, RegistryDep, RowId, SettingsDep, checked_study_uid, protected_router
from followup.api.models import ErrorOut
from followup.service.quarantine import Quarantine, QuarantineError, entry_dict

router = protected_router(Role.ADMIN, tags=["quarantine"])

ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}, 409: {"model": ErrorOut}}


class ActionIn(BaseModel):
    why: str | None = Field(None, max_length=1000, description="Why (kept with the entry).")


def _quarantine(settings, registry) -> Quarantine:
    return Quarantine.open(settings, registry)


def _act(q: Quarantine, action: str, target: str, auditor: AuditDep, body: ActionIn | None) -> dict:
    try:
        out = getattr(q, action)(target, by=auditor.principal.name[:100], why=body.why if body else None)
    except QuarantineError as exc:
        auditor.record(f"quarantine.{action}", outcome="failed", detail=f"entry {target}: {exc.message}"[:500])
        raise HTTPException(status.HTTP_404_NOT_FOUND if exc.not_found else status.HTTP_409_CONFLICT,
                            exc.message) from None
    auditor.record(f"quarantine.{action}", study_uid=q.study_of(target),
                   detail=f"entry {target}: done {sorted(out.done)}, kept {sorted(out.kept)}")
    return out.as_dict()


@router.get("/admin/quarantine")
def quarantine_list(settings: SettingsDep, registry: RegistryDep, auditor: AuditDep,
                    state: Annotated[str, Query(pattern="^(held|released|discarded|all)$")] = "held",
                    study: str | None = None) -> list[dict]:
    """Quarantine entries, newest first (held by default)."""
    if study is not None:
        checked_study_uid(study)
    q = _quarantine(settings, registry)
    rows = [entry_dict(e) for e in q.list(state=None if state == "all" else state, study_uid=study)]
    auditor.record("quarantine.read", study_uid=study, detail=f"{len(rows)} entries ({state})")
    return rows


@router.get("/admin/quarantine/{entry_id}", responses=ERRORS)
def quarantine_show(entry_id: RowId, settings: SettingsDep, registry: RegistryDep, auditor: AuditDep) -> dict:
    try:
        shown = _quarantine(settings, registry).show(entry_id)
    except QuarantineError as exc:
        auditor.record("quarantine.read", outcome="failed", detail=f"entry {entry_id}: {exc.message}"[:500])
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    auditor.record("quarantine.read", study_uid=shown.get("study_uid"), detail=f"entry {entry_id}")
    return shown


@router.post("/admin/quarantine/{entry_id}/release", responses=ERRORS)
def quarantine_release(entry_id: RowId, auditor: AuditDep, settings: SettingsDep, registry: RegistryDep,
                       body: Annotated[ActionIn | None, Body()] = None) -> dict:
    """Offer the instance to the store again (every check applies); 409 with the reason when it
    is refused again (it stays held) or was released or discarded already."""
    return _act(_quarantine(settings, registry), "release", str(entry_id), auditor, body)


@router.post("/admin/quarantine/{entry_id}/discard", responses=ERRORS)
def quarantine_discard(entry_id: RowId, auditor: AuditDep, settings: SettingsDep, registry: RegistryDep,
                       body: Annotated[ActionIn | None, Body()] = None) -> dict:
    """Delete the kept data; the entry stays as the record."""
    return _act(_quarantine(settings, registry), "discard", str(entry_id), auditor, body)


@router.post("/admin/quarantine/studies/{study_uid}/release", responses=ERRORS)
def quarantine_release_study(study_uid: str, auditor: AuditDep, settings: SettingsDep, registry: RegistryDep,
                             body: Annotated[ActionIn | None, Body()] = None) -> dict:
    """A study quarantined whole goes back to receiving; each of its held entries is offered
    again."""
    return _act(_quarantine(settings, registry), "release", checked_study_uid(study_uid), auditor, body)


@router.post("/admin/quarantine/studies/{study_uid}/discard", responses=ERRORS)
def quarantine_discard_study(study_uid: str, auditor: AuditDep, settings: SettingsDep, registry: RegistryDep,
                             body: Annotated[ActionIn | None, Body()] = None) -> dict:
    """Its held entries discarded; of a study quarantined whole, its stored instances too."""
    return _act(_quarantine(settings, registry), "discard", checked_study_uid(study_uid), auditor, body)
