"""How the library hands work to the workers: a small interface that ``workers/`` implements with
Celery on Redis (``workers.tasks.CeleryWorkQueue``), so that nothing under ``followup/`` but the
command line (the composition root) imports ``workers``.

The registry is the source of truth: every hand-over first makes (or reuses) the analysis row,
then sends its id. A message lost with the broker is found again by the reconciliation sweep
(``followup.service.reconcile``), which asks the queue which task messages it still holds
(``broker_messages``) and takes over the messages of dead workers
(``restore_message``).
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


class TaskKind(StrEnum):
    """The two tasks, both keyed by an analysis id."""
    ANALYZE = "analyze"  # workers.tasks.analyze_study
    DELIVER = "deliver"  # workers.tasks.send_results


@dataclass(frozen=True)
class BrokerMessage:
    """One task message in the broker. ``tag`` is None while it waits in a queue; once a worker
    took it and has not acknowledged it yet it has the broker's delivery tag, when the worker took
    it (``delivered_at``) and when it is due (``due_at``: the later of that and the task's ETA, a
    retry's countdown), both in seconds since the epoch."""
    kind: TaskKind
    analysis_id: int
    tag: str | None = None
    delivered_at: float | None = None
    due_at: float | None = None

    @property
    def waiting(self) -> bool:
        return self.tag is None


class WorkQueue(Protocol):
    def enqueue_study(self, study_uid: str, queue: str = QueueName.REALTIME, batch_id: int | None = None) -> int:
        """Hand the study over for analysis (``analysis_for_handover``); returns the analysis id.
        Raises when the broker cannot be reached (the row stays ``queued`` for the sweep)."""
        ...

    def enqueue_analysis(self, analysis_id: int, queue: str) -> None:
        """Send (again) the task of an existing analysis row."""
        ...

    def broker_messages(self) -> list[BrokerMessage] | None:
        """Every task message in the broker, waiting or unacknowledged; None when this queue cannot
        tell. Raises when the broker cannot be read."""
        ...

    def restore_message(self, tag: str) -> bool:
        """Put the unacknowledged message ``tag`` (its worker died) back at the head of its queue,
        as the broker itself does after the visibility timeout, and drop it from the unacknowledged
        ones, atomically; False when it was no longer there (acknowledged, or restored already)."""
        ...

    def enqueue_delivery(self, analysis_id: int, queue: str) -> None:
        """Send (again) the task that delivers the analysis's pending objects."""
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
    registry it makes the analysis rows as a real queue does; ``messages`` answers
    ``broker_messages``; without it, ``in_broker`` gives the analyses with a waiting message
    (neither: None, the queue cannot tell)."""
    registry: Registry | None = None
    in_broker: Callable[[], set[int]] | None = None
    messages: Callable[[], list[BrokerMessage]] | None = None
    studies: list[str] = field(default_factory=list)
    analyses: list[tuple[int, str]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    deliveries: list[tuple[int, str]] = field(default_factory=list)

    def enqueue_study(self, study_uid: str, queue: str = QueueName.REALTIME, batch_id: int | None = None) -> int:
        self.studies.append(study_uid)
        if self.registry is None:
            return -len(self.studies)
        a = analysis_for_handover(self.registry, study_uid, queue, batch_id)
        self.analyses.append((a.id, str(queue)))
        return a.id

    def enqueue_analysis(self, analysis_id: int, queue: str) -> None:
        self.analyses.append((analysis_id, str(queue)))

    def broker_messages(self) -> list[BrokerMessage] | None:
        if self.messages is not None:
            return self.messages()
        if self.in_broker is None:
            return None
        return [BrokerMessage(TaskKind.ANALYZE, i) for i in self.in_broker()]

    def restore_message(self, tag: str) -> bool:
        if tag in self.restored:
            return False
        self.restored.append(tag)
        return True

    def enqueue_delivery(self, analysis_id: int, queue: str) -> None:
        self.deliveries.append((analysis_id, str(queue)))
