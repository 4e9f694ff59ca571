"""The orchestrator's decision: what to do with one analysis, pure, from plain values (the rows as
read, the patient's procedure, the baseline candidate, the lease, the retrieval, the study's other
revisions, the patient's earlier follow-ups). ``followup.service.orchestrator`` acts on it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from followup.evidence import MIN_DAYS_AFTER_PROCEDURE
from followup.service.priors import WAITING_FOR_PRIORS
from followup.service.registry import Analysis, Procedure, Study
from followup.states import TERMINAL_ANALYSIS, StudyRole, StudyState

MAX_ATTEMPTS = 3  # starts of one analysis, whatever ended them (exception, killed worker)

NO_PROCEDURE = ("no procedure record for this patient: add it with `followup procedures add` "
                "(the analysis resumes by itself)")
BASELINE_STORED = "baseline study (before the procedure): stored as baseline, not analysed"
RUNNING_ELSEWHERE = "running in another worker"
EARLIER_RUNNING = ("an earlier analysis of this study is still running: this revision starts when it "
                   "ends (it supersedes that one's report)")
SUPERSEDED_UNFINISHED = ("superseded before it finished: a later revision of this study (with the images "
                         "received since) was started meanwhile; not analysed, nothing sent")


class DecisionKind(StrEnum):
    ALREADY_DONE = "already-done"  # the analysis ended: its report stands, re-offer pending deliveries
    FAIL = "fail"  # end it failed without running (a quarantined study, too many starts)
    SKIP_RUNNING = "skip-running"  # a live worker runs it (its lease is held): do nothing
    DEFER = "defer"  # cannot be analysed yet (no procedure record, no baseline): say why
    BASELINE = "baseline"  # dated before the procedure: stored as the patient's baseline
    RETRIEVE_BASELINE = "retrieve-baseline"  # fetch the baseline from the PACS, then decide again
    RUN = "run"  # run the analysis (against ``baseline_uid`` when there is one)
    WAIT_FOR_EARLIER = "wait-for-earlier"  # an earlier revision of the study runs: handed over again when it ends
    WAIT_FOR_PRIORS = "wait-for-priors"  # an earlier follow-up of the patient is still arriving (issue 14)


@dataclass(frozen=True)
class Decision:
    kind: DecisionKind
    reason: str | None = None
    baseline_uid: str | None = None  # RUN: the baseline study (None: the analysis needs none yet)
    study_state: StudyState | None = None  # what the study becomes (None: left as it is)
    role: StudyRole | None = None  # the study's role, when the decision sets it
    prior_uids: tuple[str, ...] = ()  # RUN: the patient's earlier follow-ups to compare with (issue 14)


@dataclass(frozen=True)
class Retrieval:
    """A baseline retrieval from the PACS was tried: from ``source``; ``error`` when it failed."""
    source: str
    error: str | None = None


def _needs_baseline_now(study_date: dt.date | None, procedure_date: dt.date) -> bool:
    """Before MIN_DAYS_AFTER_PROCEDURE the analysis defers by itself (too early), baseline or not."""
    return study_date is None or (study_date - procedure_date).days >= MIN_DAYS_AFTER_PROCEDURE


def _defer(reason: str) -> Decision:
    return Decision(DecisionKind.DEFER, reason, study_state=StudyState.DEFERRED, role=StudyRole.FOLLOWUP)


def _no_baseline(procedure_date: dt.date, retrieve_from: str | None, retrieval: Retrieval | None) -> Decision:
    if retrieval is not None and retrieval.error is not None:
        return _defer(f"no baseline study in the store and retrieval from {retrieval.source} failed "
                      f"({retrieval.error})")
    if retrieval is None and retrieve_from:
        return Decision(DecisionKind.RETRIEVE_BASELINE)
    return _defer("no baseline study (the patient's latest MRI before "
                  f"the procedure date {procedure_date}) in the store"
                  + ("" if retrieve_from else " and no PACS retrieval configured")
                  + ": the analysis resumes when it arrives")


def decide(analysis: Analysis, study: Study, procedure: Procedure | None, baseline: Study | None, *,
           lease_held: bool, retrieve_from: str | None = None, retrieval: Retrieval | None = None,
           max_attempts: int = MAX_ATTEMPTS, earlier_running: bool = False,
           later_started: bool = False, priors: tuple[str, ...] = (),
           priors_arriving: tuple[str, ...] = ()) -> Decision:
    """What to do with ``analysis`` of ``study``: pure, from plain values (the rows as read, the
    patient's procedure for the study, the baseline candidate in the store, whether a live worker
    holds the lease, the retrieval PACS if any and, once tried, how the retrieval went, whether an
    earlier revision of the study is running in a live worker, whether a later one has started,
    the patient's earlier follow-ups in the store and those still arriving: ``followup.service.priors``)."""
    if analysis.status in TERMINAL_ANALYSIS:
        return Decision(DecisionKind.ALREADY_DONE, analysis.reason)
    if study.state == StudyState.QUARANTINED:  # the listener found two patients in it: never analysed
        return Decision(DecisionKind.FAIL, study.reason)
    if lease_held:
        return Decision(DecisionKind.SKIP_RUNNING, RUNNING_ELSEWHERE)
    if later_started:  # its worker died, a later revision went ahead: its report would come second, unlinked
        return Decision(DecisionKind.FAIL, SUPERSEDED_UNFINISHED)
    if earlier_running:  # its report is the one this revision supersedes: not known before it ends
        return Decision(DecisionKind.WAIT_FOR_EARLIER, EARLIER_RUNNING)
    if procedure is None:
        return _defer(NO_PROCEDURE)
    if study.study_date is not None and study.study_date < procedure.procedure_date:
        # A baseline candidate: stored and indexed, not analysed, nothing sent to PACS.
        return Decision(DecisionKind.BASELINE, BASELINE_STORED, study_state=StudyState.BASELINE,
                        role=StudyRole.BASELINE)
    if baseline is None and _needs_baseline_now(study.study_date, procedure.procedure_date):
        return _no_baseline(procedure.procedure_date, retrieve_from, retrieval)
    if (analysis.attempts or 0) >= max_attempts:
        return Decision(DecisionKind.FAIL, f"the analysis was started {analysis.attempts} times and never "
                        "finished: its worker process died each time (killed, e.g. for lack of memory); "
                        "not retried again", study_state=StudyState.FAILED)
    if priors_arriving:  # compared with every earlier follow-up: wait until they have arrived
        return Decision(DecisionKind.WAIT_FOR_PRIORS, WAITING_FOR_PRIORS)
    return Decision(DecisionKind.RUN, baseline_uid=baseline.study_uid if baseline is not None else None,
                    study_state=StudyState.ANALYSING, role=StudyRole.FOLLOWUP, prior_uids=priors)
