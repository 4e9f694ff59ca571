"""What a worker does with one analysis row: decide from the registry's state, then act.

``process_analysis`` reads the rows (analysis, study, procedure, baseline candidate, lease), asks
the pure ``decide`` what to do (a ``Decision``: already done, fail, skip while another worker runs
it, defer, store as baseline, fetch the baseline from the PACS first, run), and applies it through
the registry's named transitions. A run calls the job entry shared with the command line
(``followup.job.run_job``) and records its report and the deliveries to PACS.

Idempotent: an analysis that already ended is not recomputed (its report stands, its pending
deliveries are re-scheduled); a redelivered task for an analysis that crashed mid-way recomputes
the same report with the same DICOM UIDs, and deliveries are unique per (analysis, object,
destination), so PACS never receives two sets of objects for one analysis.

Bounded: every start of the computation counts on the analysis row (``attempts``). A study whose
analysis kills the worker process itself (an out-of-memory kill) is redelivered by the broker
(``acks_late`` + ``reject_on_worker_lost``) and would otherwise be retried forever; after
``MAX_ATTEMPTS`` starts it ends ``failed`` with that reason instead.

Superseding: a study analysed again (a series received after its report, a reanalysis) gets a new
revision whose report names the earlier one (``_predecessor``: the study's newest earlier analysis
that made a report) and whose SR lists the earlier SR as its predecessor document. A revision
whose study still has an earlier one running waits for it (``WAIT_FOR_EARLIER``): the earlier one,
when it ends, hands the study over again (``Outcome.resume``), so the later revision always
knows the report it supersedes. An unfinished analysis whose worker died, taken over after a
later revision of its study has started, ends ``failed`` without running (its report would reach
the PACS after the later one, unlinked). An analysis whose study was reopened by new images while
it ran leaves the study ``receiving``: the next quiet period makes the next revision.

Exclusive: the worker running an analysis holds a lease on its row (a heartbeat refreshed every
quarter lease, ``Settings.analysis_lease_s``). A second delivery of the same task while the lease
is live does nothing; one after the worker died finds it expired (the lease is shorter than the
broker's visibility timeout) and takes over. The reconciliation sweep does not wait for the broker:
it puts the task of a running analysis whose lease expired back in its queue
(``followup.service.reconcile``); the claim below counts that takeover as one more start.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from followup.config import Settings, parse_remote
from followup.errors import FollowupError
from followup.evidence import MIN_DAYS_AFTER_PROCEDURE
from followup.procedure import parse_procedure
from followup.reporting.supersede import Predecessor, read_predecessor
from followup.service import metrics
from followup.service.priors import (
    WAITING_FOR_PRIORS,
    earlier_followups,
    later_followups_to_resume,
    retrieve_priors,
)
from followup.service.registry import Analysis, IllegalTransition, Procedure, Registry, Study
from followup.service.store import Store
from followup.service.work_queue import QueueName, WorkQueue, new_analysis
from followup.states import TERMINAL_ANALYSIS, AnalysisStatus, DeliveryStatus, StudyRole, StudyState

__all__ = ["MAX_ATTEMPTS", "Decision", "DecisionKind", "Outcome", "Retrieval", "decide", "earlier_running",
           "fail_crashed", "find_baseline", "heartbeat", "injected_fault", "later_started", "new_analysis",
           "process_analysis", "resume_for_procedure", "retrieve_baseline", "waiting_followups"]

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # starts of one analysis, whatever ended them (exception, killed worker)
FAULT_INJECT_ENV = "FOLLOWUP_FAULT_INJECT"  # its name in messages; read by followup.config

NO_PROCEDURE = ("no procedure record for this patient: add it with `followup procedures add` "
                "(the analysis resumes by itself)")
BASELINE_STORED = "baseline study (before the procedure): stored as baseline, not analysed"
RUNNING_ELSEWHERE = "running in another worker"
EARLIER_RUNNING = ("an earlier analysis of this study is still running: this revision starts when it "
                   "ends (it supersedes that one's report)")
SUPERSEDED_UNFINISHED = ("superseded before it finished: a later revision of this study (with the images "
                         "received since) was started meanwhile; not analysed, nothing sent")
# Deferred studies that a new baseline or procedure record resumes (their reasons say so).
WAITING_FOR = ("no baseline study", "no procedure record")
NOT_A_BASELINE = frozenset({StudyState.RECEIVING, StudyState.OBJECTS_ONLY, StudyState.QUARANTINED})


@contextmanager
def heartbeat(registry: Registry, analysis_id: int, every_s: float) -> Iterator[None]:
    """Refresh the analysis's heartbeat every ``every_s`` seconds while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                registry.beat(analysis_id)
            except Exception as exc:  # the registry is briefly unreachable: try again next time
                log.warning("analysis %d: heartbeat failed (%s)", analysis_id, type(exc).__name__)

    thread = threading.Thread(target=beat, name=f"heartbeat-{analysis_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@dataclass(frozen=True)
class Outcome:
    analysis_id: int | None
    # an AnalysisStatus (complete | deferred | failed), StudyState.BASELINE, or
    # AnalysisStatus.RUNNING (in another worker: nothing done)
    status: str
    reason: str | None
    deliveries: list[int]
    # studies to hand over again: deferred follow-ups waiting for this baseline; this study when a
    # later revision of it waits for this analysis to end
    resume: list[str]


# --- baselines and deferred studies ---------------------------------------------------------------
def find_baseline(registry: Registry, study: Study, procedure_date: dt.date) -> Study | None:
    """The patient's latest MRI study dated before the procedure, already in the store and fully
    received. A study still receiving, one holding no image (objects-only) and a quarantined one
    (two patients in it) are never a baseline."""
    candidates = [s for s in registry.patient_studies(study.patient_id)
                  if s.study_uid != study.study_uid and s.study_date is not None
                  and s.study_date < procedure_date and s.modality in ("MR", "")
                  and s.state not in NOT_A_BASELINE]
    return candidates[-1] if candidates else None


def retrieve_baseline(settings: Settings, registry: Registry, store: Store, study: Study,
                      procedure_date: dt.date) -> Study | None:
    """Fetch the latest MR study before the procedure from the configured PACS: C-FIND + C-GET, or
    QIDO-RS + WADO-RS when it is a DICOMweb URL."""
    from followup.service import remote

    source = settings.retrieve_from
    if source is None:
        return None
    matches = [m for m in remote.find_studies(settings, source, study.patient_id, procedure_date)
               if m.study_date is not None]
    if not matches:
        return None
    best = max(matches, key=lambda m: m.study_date or dt.date.min)  # all dated

    def on_instance(path: Path, ds) -> None:
        registry.record_instance(
            study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
            sop_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID), path=str(path),
            size=path.stat().st_size, patient_id=str(ds.get("PatientID", "")),
            study_date=best.study_date, modality=str(ds.get("Modality", "")),
            accession_number=str(ds.get("AccessionNumber", "")), calling_ae=remote.origin(source))

    n = remote.get_study(settings, source, best.study_uid, store, on_instance)
    log.info("retrieved baseline study %s (%d instances) from %s", best.study_uid, n, source)
    registry.mark_study(best.study_uid, StudyState.BASELINE, role=StudyRole.BASELINE)
    return registry.study(best.study_uid)


def waiting_followups(registry: Registry, patient_id: str, waiting_for: tuple[str, ...] = WAITING_FOR) -> list[str]:
    """The patient's deferred studies whose reason names one of ``waiting_for``. Not the ones
    deferred for their timing ("... days after the procedure"): a new baseline changes nothing
    for them, and re-running them would only send PACS a second, identical deferral."""
    return [s.study_uid for s in registry.patient_studies(patient_id)
            if s.state == StudyState.DEFERRED and s.reason and any(w in s.reason for w in waiting_for)]


def resume_for_procedure(registry: Registry, queue: WorkQueue, patient_id: str) -> list[str]:
    """A procedure record was added: re-enqueue the patient's studies deferred for want of one."""
    waiting = waiting_followups(registry, patient_id, ("procedure record",))
    for uid in waiting:
        queue.enqueue_study(uid)
    return waiting


def injected_fault(spec: str | None, study_uid: str) -> None:
    """Test support, inert in production: ``Settings.fault_inject`` (FOLLOWUP_FAULT_INJECT)
    ``"raise:<Study UID>,kill:<UID>"`` makes the analysis of exactly those studies raise (a bug) or
    SIGKILL its own worker process (an out-of-memory kill), so that tests/integration/test_faults.py can make a
    poison study in a real worker. Unset (as it is everywhere but in that test), this returns at once."""
    if not spec:
        return
    for item in spec.split(","):
        kind, _, uid = item.strip().partition(":")
        if uid != study_uid:
            continue
        log.warning("fault injection (%s): %s for study %s", FAULT_INJECT_ENV, kind, study_uid)
        if kind == "raise":
            raise RuntimeError(f"fault injected by {FAULT_INJECT_ENV}")
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)


# --- the decision ------------------------------------------------------------------------------------
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


# --- acting on it ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkItem:
    """One analysis as the registry holds it, with what the worker needs to act on it."""
    settings: Settings
    registry: Registry
    store: Store
    analysis: Analysis
    study: Study
    procedure: Procedure | None
    baseline: Study | None
    priors: tuple[Study, ...] = ()  # the patient's earlier follow-ups in the store (issue 14)
    priors_arriving: tuple[Study, ...] = ()  # ... and those still arriving

    @classmethod
    def load(cls, settings: Settings, registry: Registry, store: Store, analysis_id: int) -> WorkItem:
        analysis = registry.analysis(analysis_id)
        if analysis is None:
            raise ValueError(f"no analysis {analysis_id}")
        study = registry.study(analysis.study_uid)
        assert study is not None
        proc = registry.procedure_for(study.patient_id, study.study_date)
        baseline = find_baseline(registry, study, proc.procedure_date) if proc is not None else None
        usable, arriving = earlier_followups(registry, study, proc.procedure_date) if proc is not None else ([], [])
        return cls(settings, registry, store, analysis, study, proc, baseline, tuple(usable), tuple(arriving))

    def decide(self, retrieval: Retrieval | None = None) -> Decision:
        retrieve_from = self.settings.retrieve_from
        lease_s = self.settings.analysis_lease_s
        return decide(self.analysis, self.study, self.procedure, self.baseline,
                      lease_held=self.registry.lease_held(self.analysis, lease_s),
                      retrieve_from=str(retrieve_from) if retrieve_from else None, retrieval=retrieval,
                      earlier_running=earlier_running(self.registry, self.analysis, lease_s),
                      later_started=later_started(self.registry, self.analysis),
                      priors=tuple(s.study_uid for s in self.priors),
                      priors_arriving=tuple(s.study_uid for s in self.priors_arriving))


def process_analysis(settings: Settings, registry: Registry, store: Store, analysis_id: int) -> Outcome:
    """Decide what the analysis needs (``decide``), then do it; the worker's whole task."""
    item = WorkItem.load(settings, registry, store, analysis_id)
    decision = item.decide()
    if decision.kind is DecisionKind.RETRIEVE_BASELINE:
        item, retrieval = _retrieve(item)
        decision = item.decide(retrieval)
    if decision.kind is DecisionKind.RUN and item.settings.retrieve_from is not None:
        item = _retrieve_priors(item)
        decision = item.decide()
    return execute(item, decision)


def _retrieve_priors(item: WorkItem) -> WorkItem:
    """Fetch the earlier follow-ups the store lacks from the PACS (issue 14); a PACS that cannot be
    reached leaves the analysis with the ones in the store (logged)."""
    assert item.procedure is not None
    try:
        fetched = retrieve_priors(item.settings, item.registry, item.store, item.study, item.procedure.procedure_date)
    except Exception as exc:  # noqa: BLE001  (the comparison is an addition: analyse without them)
        log.warning("study %s: earlier follow-ups not retrieved (%s)", item.study.study_uid, type(exc).__name__)
        return item
    if not fetched:
        return item
    usable, arriving = earlier_followups(item.registry, item.study, item.procedure.procedure_date)
    return replace(item, priors=tuple(usable), priors_arriving=tuple(arriving))


def _retrieve(item: WorkItem) -> tuple[WorkItem, Retrieval]:
    assert item.procedure is not None and item.settings.retrieve_from is not None
    source = str(item.settings.retrieve_from)
    try:
        baseline = retrieve_baseline(item.settings, item.registry, item.store, item.study,
                                     item.procedure.procedure_date)
    except Exception as exc:  # the PACS may be down: defer, say why, resume later
        return item, Retrieval(source, f"{type(exc).__name__}: {exc}")
    return replace(item, baseline=baseline), Retrieval(source)


def execute(item: WorkItem, decision: Decision) -> Outcome:
    """Apply ``decision`` to the registry (and, to run, the store and the analysis)."""
    a, reg = item.analysis, item.registry
    kind = decision.kind
    if kind is DecisionKind.ALREADY_DONE:
        pending = [d.id for d in reg.deliveries(analysis_id=a.id) if d.status == DeliveryStatus.PENDING]
        return Outcome(a.id, a.status, a.reason, pending, [])
    if kind is DecisionKind.SKIP_RUNNING:
        return _running_elsewhere(a)
    if kind is DecisionKind.WAIT_FOR_EARLIER:
        log.info("analysis %d of study %s waits for the study's earlier analysis to end", a.id, a.study_uid)
        return Outcome(a.id, AnalysisStatus.QUEUED, decision.reason, [], [])
    if kind is DecisionKind.WAIT_FOR_PRIORS:
        log.info("analysis %d of study %s waits for an earlier follow-up still arriving", a.id, a.study_uid)
        return Outcome(a.id, AnalysisStatus.QUEUED, decision.reason, [], [])
    if kind is DecisionKind.RUN:
        return _run(item, decision)
    if kind is DecisionKind.RETRIEVE_BASELINE:
        raise ValueError("retrieve the baseline and decide again before executing (process_analysis does)")
    if kind is DecisionKind.FAIL and decision.study_state is StudyState.FAILED:
        log.error("analysis %d of study %s: %d attempts already, failed for good", a.id, a.study_uid, a.attempts)
    status = {DecisionKind.FAIL: AnalysisStatus.FAILED, DecisionKind.DEFER: AnalysisStatus.DEFERRED,
              DecisionKind.BASELINE: AnalysisStatus.COMPLETE}[kind]
    reg.finish_analysis(a.id, status, decision.reason)
    if decision.study_state is not None:
        study_reason = None if kind is DecisionKind.BASELINE else decision.reason  # a baseline carries none
        reg.mark_study(a.study_uid, decision.study_state, reason=study_reason, role=decision.role)
    if kind is DecisionKind.DEFER:
        log.info("analysis %d of study %s deferred: %s", a.id, a.study_uid, (decision.reason or "").split(":")[0])
    if kind is DecisionKind.BASELINE:
        return Outcome(a.id, StudyState.BASELINE, None, [], waiting_followups(reg, item.study.patient_id))
    return Outcome(a.id, status, decision.reason, [], [])


def _running_elsewhere(analysis: Analysis) -> Outcome:
    log.warning("analysis %d is running in another worker (live heartbeat): this delivery of its "
                "task does nothing", analysis.id)
    return Outcome(analysis.id, AnalysisStatus.RUNNING, RUNNING_ELSEWHERE, [], [])


def _run(item: WorkItem, decision: Decision) -> Outcome:
    settings, reg, store, a, study = item.settings, item.registry, item.store, item.analysis, item.study
    assert item.procedure is not None
    lease_s = settings.analysis_lease_s
    started = time.perf_counter()
    # One conditional UPDATE (attempts + 1): of two workers racing for it, one runs it.
    if not reg.claim_analysis(a.id, lease_s):
        return _running_elsewhere(a)
    reg.mark_study(study.study_uid, StudyState.ANALYSING, role=StudyRole.FOLLOWUP)
    out_dir = store.report_dir(study.study_uid, a.algorithm_version, a.revision)
    baseline_dir = store.study_dir(decision.baseline_uid) if decision.baseline_uid is not None else None
    predecessor = _predecessor(reg, a)
    try:
        record = parse_procedure(item.procedure.record)
        injected_fault(settings.fault_inject, study.study_uid)
        from followup.job import run_job  # torch & co.: only where an analysis runs

        with heartbeat(reg, a.id, lease_s / 4):
            result = run_job(store.study_dir(study.study_uid), baseline_dir, record, out_dir,
                             revision=a.revision, predecessor=predecessor,
                             priors=[store.study_dir(uid) for uid in decision.prior_uids], strict_priors=False)
    except FollowupError as err:
        reason = f"[{err.code}] {err.message}"
        reg.finish_analysis(a.id, AnalysisStatus.FAILED, reason, duration_s=time.perf_counter() - started)
        _end_study(reg, a, StudyState.FAILED, reason)
        resume = _waiting_after(reg, a) + later_followups_to_resume(reg, a, AnalysisStatus.FAILED)
        return Outcome(a.id, AnalysisStatus.FAILED, reason, [], resume)
    metrics.observe_stages(result.timings_s)
    return _record(item, decision, result.report, out_dir, started)


def _record(item: WorkItem, decision: Decision, report, out_dir: Path, started: float) -> Outcome:
    """The run's report: the analysis and the study end with its status, its objects go to PACS."""
    reg, a = item.registry, item.analysis
    status = AnalysisStatus(report.status)
    low, high = report.probability_interval or (None, None)
    reg.finish_analysis(a.id, status, report.reason, probability=report.residual_probability,
                        interval_low=low, interval_high=high, baseline_study_uid=decision.baseline_uid,
                        report_dir=str(out_dir), duration_s=time.perf_counter() - started)
    # A study quarantined meanwhile (an instance of another patient arrived) gets nothing sent.
    sendable = _end_study(reg, a, StudyState(status), report.reason) != StudyState.QUARANTINED
    deliveries = _add_deliveries(item, report.outputs, out_dir) if sendable else []
    log.info("analysis %d of study %s: %s in %.1f s", a.id, a.study_uid, status, time.perf_counter() - started)
    resume = _waiting_after(reg, a) + later_followups_to_resume(reg, a, status)
    return Outcome(a.id, status, report.reason, deliveries, resume)


# --- revisions of one study ------------------------------------------------------------------------
def earlier_running(registry: Registry, analysis: Analysis, lease_s: float) -> bool:
    """Is an earlier analysis of the same study running in a live worker (lease held)?"""
    return any(b.id < analysis.id and registry.lease_held(b, lease_s)
               for b in registry.analyses(study_uid=analysis.study_uid, statuses=(AnalysisStatus.RUNNING,)))


def later_started(registry: Registry, analysis: Analysis) -> bool:
    """Has a later analysis of the same study started (or ended)? One still waiting unstarted
    (``WAIT_FOR_EARLIER``) does not count."""
    return any(b.id > analysis.id and (b.status != AnalysisStatus.QUEUED or b.attempts or b.started_at)
               for b in registry.analyses(study_uid=analysis.study_uid))


def _predecessor(registry: Registry, analysis: Analysis) -> Predecessor | None:
    """The report ``analysis`` supersedes: that of the study's newest earlier analysis that made one
    (with an SR; any algorithm version). Deferrals decided without a run made none."""
    for b in reversed(registry.analyses(study_uid=analysis.study_uid)):
        if b.id < analysis.id and b.status in TERMINAL_ANALYSIS and b.report_dir:
            found = read_predecessor(Path(b.report_dir) / "report.json")
            if found is not None:
                return found
    return None


def _end_study(registry: Registry, analysis: Analysis, state: StudyState, reason: str | None) -> str:
    """The run ended: its study takes the analysis's end state, unless new images reopened it
    meanwhile (it is no longer ``analysing``): then it stays as it is and its next quiet period
    makes a new revision, which supersedes this one's report. The state the study is left in."""
    try:
        registry.mark_study(analysis.study_uid, state, reason=reason, only_from=frozenset({StudyState.ANALYSING}))
    except IllegalTransition as exc:
        log.info("analysis %d ended %s; study %s left as it is (%s)", analysis.id, state, analysis.study_uid, exc)
        return exc.current
    return state


def _waiting_after(registry: Registry, analysis: Analysis) -> list[str]:
    """The study, when a later revision of it waits unstarted for this analysis to end
    (``WAIT_FOR_EARLIER``): handing the study over again sends that revision (an unstarted
    real-time analysis is reused, ``analysis_for_handover``). A batch revision is left to the
    reconciliation sweep (a hand-over would make another revision)."""
    later = [b for b in registry.analyses(study_uid=analysis.study_uid, statuses=(AnalysisStatus.QUEUED,))
             if b.id > analysis.id]
    if later and later[-1].queue == QueueName.REALTIME and later[-1].batch_id is None and not later[-1].attempts:
        return [analysis.study_uid]
    return []


def _add_deliveries(item: WorkItem, outputs: dict, out_dir: Path) -> list[int]:
    """One delivery per DICOM object to the destination (ours, or the one serve-dicom published);
    the ids of those still pending."""
    reg = item.registry
    destination = item.settings.destination
    published = reg.get_setting("destination") if destination is None else None
    if published:
        destination = parse_remote(published)
    if destination is None:
        return []
    pending = []
    for kind, obj in outputs.items():
        d = reg.add_delivery(item.analysis.id, kind, obj.sop_instance_uid, str(out_dir / obj.file), str(destination))
        if d.status == DeliveryStatus.PENDING:
            pending.append(d.id)
    return pending


def fail_crashed(registry: Registry, analysis_id: int, reason: str) -> bool:
    """The analysis's task crashed for the last time: the analysis and its study end ``failed``.
    False when the analysis had ended already (its result stands). A quarantined study stays so."""
    try:
        registry.finish_analysis(analysis_id, AnalysisStatus.FAILED, reason)
    except IllegalTransition as exc:
        log.warning("analysis %d: not marked failed after its crash (%s)", analysis_id, exc)
        return False
    a = registry.analysis(analysis_id)
    if a is not None:
        try:
            registry.mark_study(a.study_uid, StudyState.FAILED, reason=reason)
        except IllegalTransition as exc:
            log.warning("study %s left as it is (%s)", a.study_uid, exc)
    return True
