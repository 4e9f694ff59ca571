"""``/deliveries``: the objects sent (or to be sent) to PACS, newest first, by status."""

from __future__ import annotations

from fastapi import Query

from followup.api.dependencies import AuditDep, RegistryDep, protected_router
from followup.api.models import DeliveryOut
from followup.states import DeliveryStatus

router = protected_router(tags=["deliveries"])


@router.get("/deliveries", response_model=list[DeliveryOut])
def list_deliveries(registry: RegistryDep, auditor: AuditDep,
                    status_: DeliveryStatus | None = Query(None, alias="status"),
                    limit: int = Query(1000, ge=1, le=10000)) -> list[DeliveryOut]:
    out = [DeliveryOut.of(d, uid) for d, uid in registry.deliveries_with_study(status_, limit=limit)]
    auditor.record("delivery.list", detail=f"{len(out)} deliveries")
    return out
