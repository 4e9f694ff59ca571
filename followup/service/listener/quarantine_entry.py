"""Keeping a refused instance: its bytes (all, or the first ``keep_bytes``) in the store's
quarantine with the reason, and its row in the registry's quarantine."""

from __future__ import annotations

import logging

from followup.service import metrics
from followup.service.listener.validation import Refused
from followup.service.registry import Registry
from followup.service.store import Store

log = logging.getLogger("followup.service.listener")


def quarantine_refused(store: Store, registry: Registry, data: bytes, r: Refused, *, size: int,
                       sop_class_uid: str, sop_uid: str, calling_ae: str) -> str:
    """Keep ``data`` (or its first ``r.keep_bytes``) in the quarantine with the reason, and
    its row in the registry; the entry's name (``#id``, or the file's when the registry
    failed: the file stays, and ``followup quarantine list`` adopts it later)."""
    kept = data if r.keep_bytes is None else data[:r.keep_bytes]
    extra = {} if len(kept) == size else {"received_bytes": size, "truncated": "kept the first "
                                          f"{len(kept)} bytes only"}
    inst = r.instance
    where = {"study_instance_uid": inst.study_uid, "series_instance_uid": inst.series_uid} if inst else {}
    qpath = store.quarantine(kept, r.reason, status=f"0x{r.status:04X}", calling_ae=calling_ae,
                             sop_class_uid=sop_class_uid[:64], sop_instance_uid=sop_uid[:64],
                             kind=r.kind, **extra, **where)
    metrics.QUARANTINED.labels(r.kind, metrics.refusal_reason(r.status)).inc()
    try:
        entry_id = registry.add_quarantined(
            kind=r.kind, reason=r.reason, status=f"0x{r.status:04X}", file=str(qpath.absolute()),
            size=size, study_uid=inst.study_uid if inst else None,
            series_uid=inst.series_uid if inst else None, sop_uid=sop_uid or None,
            sop_class_uid=sop_class_uid or None, patient_id=inst.patient_id if inst else None,
            calling_ae=calling_ae)
    except Exception as exc:
        log.error("quarantined %s not recorded in the registry (%s); its file is kept",
                  qpath.name, type(exc).__name__)
        return qpath.name
    return f"#{entry_id} ({qpath.name})"
