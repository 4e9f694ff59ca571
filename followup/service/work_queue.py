"""How the library hands work to the workers: a small interface that ``workers/`` implements with
Celery on Redis (``workers.tasks.CeleryWorkQueue``), so that nothing under ``followup/`` but the
command line (the composition root) imports ``workers``.

The registry is the source of truth: every hand-over first makes (or reuses) the analysis row,
then sends its id. A message lost with the broker is found again by the reconciliation sweep
(``followup.service.reconcile``), which asks the queue which analyses it still holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from followup import ALGORITHM_VERSION
from followup.service.registry import Analysis, Registry


class QueueName(StrEnum):
    """``realtime``: studies arriving from PACS and the deliveries of their results;
    ``batch``: reanalysis of stored studies."""
    REALTIME = "realtime"
    BATCH = "batch"


QUEUES = tuple(QueueName)


class WorkQueue(Protocol):
    def enqueue_study(self, study_uid: str, queue: str = QueueName.REALTIME, batch_id: int | None = None) -> int:
        """Hand the study over for analysis (``analysis_for_handover``); returns the analysis id.
        Raises when the broker cannot be reached (the row stays ``queued`` for the sweep)."""
        ...

    def enqueue_analysis(self, analysis_id: int, queue: str) -> None:
        """Send (again) the task of an existing analysis row."""
        ...

    def analysis_ids_in_broker(self) -> set[int] | None:
        """Analyses with a message in the broker (waiting or unacknowledged); None when this queue
        cannot tell (the sweep then goes by age alone). Raises when the broker cannot be read."""
        ...


def new_analysis(registry: Registry, study_uid: str, queue: str, batch_id: int | None = None) -> Analysis:
    """A new revision of the study's analysis with the current algorithm version."""
    revision = registry.next_revision(study_uid, ALGORITHM_VERSION)
    return registry.get_or_create_analysis(study_uid, ALGORITHM_VERSION, revision, queue, batch_id)


def analysis_for_handover(registry: Registry, study_uid: str, queue: str = QueueName.REALTIME,
                          batch_id: int | None = None) -> Analysis:
    """The analysis row a hand-over of the study sends: a study handed over again before its
    analysis started (the broker was down at the first hand-over, or more images came) reuses
    that analysis (one study arrival, one revision, one set of objects at the PACS); otherwise,
    and always for a batch, a new revision."""
    a = None if batch_id is not None else registry.unstarted_analysis(study_uid, ALGORITHM_VERSION, queue)
    return a if a is not None else new_analysis(registry, study_uid, queue, batch_id)


@dataclass
class RecordingQueue:
    """A WorkQueue that records what it is given instead of sending it (tests, dry runs). With a
    registry it makes the analysis rows as a real queue does; ``in_broker`` answers
    ``analysis_ids_in_broker`` (None: cannot tell)."""
    registry: Registry | None = None
    in_broker: Callable[[], set[int]] | None = None
    studies: list[str] = field(default_factory=list)
    analyses: list[tuple[int, str]] = field(default_factory=list)

    def enqueue_study(self, study_uid: str, queue: str = QueueName.REALTIME, batch_id: int | None = None) -> int:
        self.studies.append(study_uid)
        if self.registry is None:
            return -len(self.studies)
        a = analysis_for_handover(self.registry, study_uid, queue, batch_id)
        self.analyses.append((a.id, str(queue)))
        return a.id

    def enqueue_analysis(self, analysis_id: int, queue: str) -> None:
        self.analyses.append((analysis_id, str(queue)))

    def analysis_ids_in_broker(self) -> set[int] | None:
        return None if self.in_broker is None else self.in_broker()
