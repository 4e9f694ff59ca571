"""Results to PACS: send an analysis's pending objects, one association (C-STORE) or one request
(STOW-RS, when the destination is a DICOMweb URL) per destination.

One attempt per call; the retries with backoff are the worker's (``workers.tasks.send_results``).
Each outcome goes through the registry's named transitions: pending -> sent, pending -> pending
(the attempt and its error recorded, visible in the API and ``followup status``), pending -> failed
after the last retry. A delivery another worker sent meanwhile is left as it is. Every attempt is
a row of the audit trail (actor ``system``, one per object: sent, or failed with the error's type).
"""

from __future__ import annotations

import logging
from pathlib import Path

from followup.config import Settings
from followup.pseudonym import patient_ref
from followup.remote_nodes import RemoteNode, parse_remote
from followup.service import audit, metrics
from followup.service.registry import Delivery, IllegalTransition, Registry
from followup.states import DeliveryStatus

log = logging.getLogger(__name__)
DELIVERY_MAX_RETRIES = 8  # retries of the delivery task after the first attempt (workers.tasks.send_results)


def retry_countdown(retries: int) -> float:
    """Seconds the delivery task waits before its retry number ``retries + 1``: 5 s, doubling, at
    most 10 minutes."""
    return float(min(600, 5 * 2 ** retries))


def next_attempt_within(attempts: int) -> float:
    """At most this long after a pending delivery's last change (``updated_at``: made, or its
    attempt number ``attempts`` failed) a live worker tries it again: the first attempt right after
    the analysis, the second ``retry_countdown(0)`` after that (``workers.tasks``), then ``retry_countdown``. A
    delivery left untried longer than this (plus a grace period) lost its task with its worker."""
    return 0.0 if attempts <= 0 else retry_countdown(max(0, attempts - 2))


def deliver_pending(settings: Settings, registry: Registry, analysis_id: int, final: bool = False) -> bool:
    """Send the analysis's pending objects (C-STORE or STOW-RS); True when nothing is left pending. ``final``: this
    was the last retry, a failure marks the deliveries ``failed``."""
    pending = [d for d in registry.deliveries(analysis_id=analysis_id) if d.status == DeliveryStatus.PENDING]
    by_destination: dict[str, list[Delivery]] = {}
    for d in pending:
        by_destination.setdefault(d.destination, []).append(d)
    ok = True
    for destination, items in by_destination.items():
        ok = _send(settings, registry, analysis_id, parse_remote(destination), items, final) and ok
    return ok


def _send(settings: Settings, registry: Registry, analysis_id: int, node: RemoteNode, items: list[Delivery],
          final: bool) -> bool:
    from followup.service.remote import send_files

    try:
        send_files(settings, node, [Path(d.path) for d in items])
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        _each(items, lambda d: registry.record_delivery_failure(d.id, error, final=final))
        metrics.DELIVERIES.labels("failed" if final else "retry").inc(len(items))
        log.warning("delivery of analysis %d to %s failed (%s)", analysis_id, node, type(exc).__name__)
        _audit(registry, analysis_id, node, items, audit.FAILED, type(exc).__name__)
        return False
    _each(items, lambda d: registry.mark_delivery_sent(d.id))
    metrics.DELIVERIES.labels("sent").inc(len(items))
    _audit(registry, analysis_id, node, items, audit.OK, "sent")
    return True


def _audit(registry: Registry, analysis_id: int, node: RemoteNode, items: list[Delivery], outcome: str,
           what: str) -> None:
    """One audit row per object sent (or not): actor ``system``, the study, its patient_ref."""
    try:
        a = registry.analysis(analysis_id)
        st = registry.study(a.study_uid) if a is not None else None
        for d in items:
            audit.record(registry, audit.SYSTEM, "delivery.send", role="system", source="worker",
                         patient_ref=patient_ref(st.patient_id or "") if st else None,
                         study_uid=a.study_uid if a is not None else None, outcome=outcome,
                         detail=f"delivery {d.id}: {d.kind} to {node} (analysis {analysis_id}): {what}")
    except Exception as exc:  # the delivery happened: say so in the log, do not undo it
        log.error("audit: delivery of analysis %d not recorded (%s)", analysis_id, type(exc).__name__)


def _each(items: list[Delivery], transition) -> None:
    for d in items:
        try:
            transition(d)
        except IllegalTransition as exc:  # another worker recorded this delivery meanwhile
            log.info("delivery %d: %s", d.id, exc)
