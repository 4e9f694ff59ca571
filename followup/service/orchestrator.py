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
revision whose report names the earlier one (``revisions.find_predecessor``: the study's newest earlier analysis
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

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from followup.config import Settings
from followup.errors import FollowupError
from followup.procedure import parse_procedure
from followup.remote_nodes import parse_remote
from followup.service import metrics
from followup.service.baselines import find_baseline, retrieve_baseline, waiting_followups
from followup.service.decision import RUNNING_ELSEWHERE, Decision, DecisionKind, Retrieval, decide
from followup.service.priors import earlier_followups, later_followups_to_resume, retrieve_priors
from followup.service.registry import Analysis, IllegalTransition, Procedure, Registry, Study
from followup.service.revisions import (
    earlier_running,
    end_study,
    find_predecessor,
    later_started,
    waiting_after,
)
from followup.service.store import Store
from followup.service.work_queue import new_analysis
from followup.states import AnalysisStatus, DeliveryStatus, StudyRole, StudyState

__all__ = ["FAULT_INJECT_ENV", "Outcome", "WorkItem", "execute", "fail_crashed", "heartbeat", "injected_fault",
           "new_analysis", "process_analysis"]

log = logging.getLogger(__name__)
FAULT_INJECT_ENV = "FOLLOWUP_FAULT_INJECT"  # its name in messages; read by followup.config


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
    predecessor = find_predecessor(reg, a)
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
        end_study(reg, a, StudyState.FAILED, reason)
        resume = waiting_after(reg, a) + later_followups_to_resume(reg, a, AnalysisStatus.FAILED)
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
    sendable = end_study(reg, a, StudyState(status), report.reason) != StudyState.QUARANTINED
    deliveries = _add_deliveries(item, report.outputs, out_dir) if sendable else []
    log.info("analysis %d of study %s: %s in %.1f s", a.id, a.study_uid, status, time.perf_counter() - started)
    resume = waiting_after(reg, a) + later_followups_to_resume(reg, a, status)
    return Outcome(a.id, status, report.reason, deliveries, resume)

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
