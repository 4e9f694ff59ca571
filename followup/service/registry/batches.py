"""Reanalysis batches and their progress."""

from __future__ import annotations

from sqlalchemy import func, select

from followup.service.registry.core import RegistryCore
from followup.service.registry.tables import Analysis, Batch
from followup.states import TERMINAL_ANALYSIS


class BatchRecords(RegistryCore):
    """Batches of reanalyses on the batch queue."""

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
