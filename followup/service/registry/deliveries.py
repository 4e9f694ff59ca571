"""Deliveries of results to the PACS (SR, SEG, PDF) and their retries."""

from __future__ import annotations

from sqlalchemy import func, select, update

from followup.service.registry.core import RegistryCore
from followup.service.registry.tables import Delivery, utcnow
from followup.states import DELIVERY_TRANSITIONS, DeliveryStatus


class DeliveryRecords(RegistryCore):
    """Deliveries: pending -> sent | failed."""

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
        self.transition(DELIVERY_TRANSITIONS, Delivery.status, Delivery.id, delivery_id, DeliveryStatus.SENT,
                        {"sent_at": utcnow(), "last_error": None, "updated_at": utcnow(),
                         "attempts": func.coalesce(Delivery.attempts, 0) + 1})

    def record_delivery_failure(self, delivery_id: int, error: str, *, final: bool = False) -> None:
        """An attempt failed: pending -> pending (retried later), or -> failed after the last one."""
        target = DeliveryStatus.FAILED if final else DeliveryStatus.PENDING
        self.transition(DELIVERY_TRANSITIONS, Delivery.status, Delivery.id, delivery_id, target,
                        {"last_error": error[:500], "updated_at": utcnow(),
                         "attempts": func.coalesce(Delivery.attempts, 0) + 1})
