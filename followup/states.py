"""The named states of a study, an analysis and a delivery, and the transitions allowed between them.

Stored in the registry as their string values (``StrEnum``: ``StudyState.COMPLETE == "complete"``),
so rows written before this module existed read back unchanged.

Study (``Study.state``)::

    receiving --quiet period--> stable --worker--> analysing --> complete | deferred | failed
        ^                         |  \\--worker--> baseline (dated before the procedure)
        |                         \\--worker--> deferred | failed (no record, no baseline, ...)
        +-- new images after stable, or a hand-over to the broker that failed
    objects-only: holds only non-image objects (SR, SEG, PDF) so far
    quarantined: the listener found two patients in it; final, never analysed

A finished study (complete, deferred, failed, baseline) goes back to ``analysing`` when it is
analysed again (reanalysis, a resumed deferral) and to ``receiving`` when new images arrive.
``complete`` is reached from ``analysing`` only (it takes a run); ``stable`` from ``receiving``
only (``Registry.claim_stable_studies``).

Analysis (``Analysis.status``): queued -> running -> complete | deferred | failed; a running
analysis whose worker died is taken over (running -> running, ``Registry.claim_analysis``); one
that ends before it runs (deferred, a baseline: complete, quarantined: failed) goes from queued
straight to its end. An analysis that ended is final: a reanalysis is a new revision.

Delivery (``Delivery.status``): pending -> sent | failed (after the last retry); pending -> pending
for each failed attempt. Sent and failed are final.

The tables below (``STUDY_TRANSITIONS``, ``ANALYSIS_TRANSITIONS``, ``DELIVERY_TRANSITIONS``) are what
the registry's named transitions (``Registry.mark_study``, ``finish_analysis``,
``mark_delivery_sent``, ``record_delivery_failure``) enforce: any other change raises
``IllegalTransition``. The atomic claims (``claim_stable_studies``, ``claim_for_sweep``,
``claim_analysis``) are conditional UPDATEs of their own and stay within the tables.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum


class StudyState(StrEnum):
    RECEIVING = "receiving"
    OBJECTS_ONLY = "objects-only"
    STABLE = "stable"
    ANALYSING = "analysing"
    BASELINE = "baseline"
    COMPLETE = "complete"
    DEFERRED = "deferred"
    FAILED = "failed"
    QUARANTINED = "quarantined"


class AnalysisStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    DEFERRED = "deferred"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class StudyRole(StrEnum):
    UNKNOWN = "unknown"
    BASELINE = "baseline"
    FOLLOWUP = "followup"


# Analyses that ended: their report stands, a redelivered task does not recompute them.
TERMINAL_ANALYSIS = frozenset({AnalysisStatus.COMPLETE, AnalysisStatus.DEFERRED, AnalysisStatus.FAILED})


class IllegalTransition(ValueError):
    """A named registry transition found the row in a state it may not leave that way."""

    def __init__(self, what: str, key: object, current: str, target: str, why: str = "") -> None:
        self.what, self.key, self.current, self.target = what, key, current, target
        super().__init__(f"{what} {key}: {current} -> {target} is not allowed" + (f" ({why})" if why else ""))


class Transitions:
    """The allowed transitions of one kind of row: ``{from: {to, ...}}``. A state with no entry
    (or an empty one) is final."""

    def __init__(self, what: str, allowed: Mapping[str, Collection[str]], final_why: str = "") -> None:
        self.what = what
        self.allowed = {src: frozenset(dst) for src, dst in allowed.items()}
        self.final_why = final_why

    def allows(self, current: str, target: str) -> bool:
        return target in self.allowed.get(current, frozenset())

    def sources(self, target: str) -> frozenset[str]:
        """The states from which ``target`` may be reached (for a conditional UPDATE)."""
        return frozenset(src for src, dst in self.allowed.items() if target in dst)

    def check(self, key: object, current: str, target: str) -> None:
        if not self.allows(current, target):
            why = self.final_why.format(state=current) if not self.allowed.get(current) else ""
            raise IllegalTransition(self.what, key, current, target, why)


S = StudyState
# What the worker may make of a study it analyses. It may find the study in any state but
# quarantined: stable (the normal hand-over), complete/deferred/failed/baseline (a reanalysis, a
# resumed deferral), analysing (a task taken over from a dead worker), receiving (new images came
# after the hand-over), objects-only (a reanalysis forced on it by UID).
_WORKER = frozenset({S.ANALYSING, S.BASELINE, S.DEFERRED, S.FAILED})

STUDY_TRANSITIONS = Transitions("study", {
    # The quiet period ended (claim_stable_studies); or the worker got it early (new images
    # arrived after the hand-over, or a baseline fetched from the PACS is still arriving).
    S.RECEIVING: {S.STABLE, S.QUARANTINED} | _WORKER,
    # Its first image arrived; or a reanalysis forced on it.
    S.OBJECTS_ONLY: {S.RECEIVING, S.QUARANTINED} | _WORKER,
    # The hand-over to the broker failed (back to receiving, claimed again), new images, the worker.
    S.STABLE: {S.RECEIVING, S.QUARANTINED} | _WORKER,
    # The analysis ended (complete only this way: it needs a run); its worker died and another
    # took it over (analysing again); new images.
    S.ANALYSING: {S.COMPLETE, S.RECEIVING, S.QUARANTINED} | _WORKER,
    # Finished studies: new images, reanalysis, a resumed deferral, a procedure record added later.
    S.BASELINE: {S.RECEIVING, S.QUARANTINED} | _WORKER,
    S.COMPLETE: {S.RECEIVING, S.QUARANTINED} | _WORKER,
    S.DEFERRED: {S.RECEIVING, S.QUARANTINED} | _WORKER,
    S.FAILED: {S.RECEIVING, S.QUARANTINED} | _WORKER,
    S.QUARANTINED: set(),  # two patients in one study: never analysed, never reopened
}, final_why="{state} is final")

A = AnalysisStatus
ANALYSIS_TRANSITIONS = Transitions("analysis", {
    # claimed by a worker; or ended before any run (deferred, baseline -> complete, quarantined or
    # crashed -> failed)
    A.QUEUED: {A.RUNNING, A.COMPLETE, A.DEFERRED, A.FAILED},
    # taken over from a dead worker (running again), or ended
    A.RUNNING: {A.RUNNING, A.COMPLETE, A.DEFERRED, A.FAILED},
    # an analysis that ended stands: a reanalysis is a new revision
    A.COMPLETE: set(), A.DEFERRED: set(), A.FAILED: set(),
}, final_why="{state} is final: a reanalysis is a new revision")

D = DeliveryStatus
DELIVERY_TRANSITIONS = Transitions("delivery", {
    # one attempt failed (still pending), the object was stored, or the last retry failed
    D.PENDING: {D.PENDING, D.SENT, D.FAILED},
    D.SENT: set(), D.FAILED: set(),
}, final_why="{state} is final")
del S, A, D
