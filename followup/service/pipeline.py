"""What a worker does with one analysis row: classify the study, find its procedure record and
baseline, run the analysis, record the result and the deliveries to PACS.

Idempotent: an analysis that already ended is not recomputed (its report stands, its pending
deliveries are re-scheduled); a redelivered task for an analysis that crashed mid-way recomputes
the same report with the same DICOM UIDs, and deliveries are unique per (analysis, object,
destination), so PACS never receives two sets of objects for one analysis.

Bounded: every start of the computation counts on the analysis row (``attempts``). A study whose
analysis kills the worker process itself (an out-of-memory kill) is redelivered by the broker
(``acks_late`` + ``reject_on_worker_lost``) and would otherwise be retried forever; after
``MAX_ATTEMPTS`` starts it ends ``failed`` with that reason instead.

Exclusive: the worker running an analysis holds a lease on its row (a heartbeat refreshed every
quarter lease). A second delivery of the same task while the lease is live does nothing; one
after the worker died finds it expired (the lease is shorter than the broker's visibility
timeout) and takes over.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from followup.config import DicomNode, Settings
from followup.errors import FollowupError
from followup import ALGORITHM_VERSION
from followup.service.registry import Analysis, Registry, Study, utcnow
from followup.service.store import Store

log = logging.getLogger(__name__)
TERMINAL = ("complete", "deferred", "failed")
MAX_ATTEMPTS = 3  # starts of one analysis, whatever ended them (exception, killed worker)
FAULT_INJECT_ENV = "FOLLOWUP_FAULT_INJECT"
LEASE_ENV = "FOLLOWUP_ANALYSIS_LEASE"


def analysis_lease_s() -> float:
    """How long a running analysis's heartbeat stays valid (s). A broker redelivers a task only
    after its visibility timeout, so the lease is at most half of that (a redelivery after a
    worker died always finds the lease expired) and at most a minute."""
    if os.environ.get(LEASE_ENV):
        return max(1.0, float(os.environ[LEASE_ENV]))
    visibility = float(os.environ.get("FOLLOWUP_VISIBILITY_TIMEOUT", "3600"))
    return max(1.0, min(60.0, visibility / 2))


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


def _running_elsewhere(analysis: Analysis) -> Outcome:
    log.warning("analysis %d is running in another worker (live heartbeat): this delivery of its "
                "task does nothing", analysis.id)
    return Outcome(analysis.id, "running", "running in another worker", [], [])


@dataclass(frozen=True)
class Outcome:
    analysis_id: int | None
    status: str  # complete | deferred | failed | baseline | running (in another worker: nothing done)
    reason: str | None
    deliveries: list[int]
    resume: list[str]  # studies to re-enqueue (deferred follow-ups waiting for this baseline)


def new_analysis(registry: Registry, study_uid: str, queue: str, batch_id: int | None = None) -> Analysis:
    """A new revision of the study's analysis with the current algorithm version."""
    revision = registry.next_revision(study_uid, ALGORITHM_VERSION)
    return registry.get_or_create_analysis(study_uid, ALGORITHM_VERSION, revision, queue, batch_id)


def find_baseline(registry: Registry, study: Study, procedure_date: dt.date) -> Study | None:
    """The patient's latest MRI study dated before the procedure, already in the store."""
    candidates = [s for s in registry.patient_studies(study.patient_id)
                  if s.study_uid != study.study_uid and s.study_date is not None
                  and s.study_date < procedure_date and s.modality in ("MR", "")
                  and s.state not in ("receiving",)]
    return candidates[-1] if candidates else None


def retrieve_baseline(settings: Settings, registry: Registry, store: Store, study: Study,
                      procedure_date: dt.date) -> Study | None:
    """C-FIND + C-GET the latest MR study before the procedure from the configured PACS."""
    from followup.service import pacs

    if settings.retrieve_from is None:
        return None
    matches = [m for m in pacs.find_studies(settings.retrieve_from, settings.ae_title, study.patient_id,
                                            procedure_date) if m.study_date is not None]
    if not matches:
        return None
    best = max(matches, key=lambda m: m.study_date)

    def on_instance(path: Path, ds) -> None:
        registry.record_instance(
            study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
            sop_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID), path=str(path),
            size=path.stat().st_size, patient_id=str(ds.get("PatientID", "")),
            study_date=best.study_date, modality=str(ds.get("Modality", "")),
            accession_number=str(ds.get("AccessionNumber", "")), calling_ae=settings.retrieve_from.ae_title)

    n = pacs.get_study(settings.retrieve_from, settings.ae_title, best.study_uid, store, on_instance)
    log.info("retrieved baseline study %s (%d instances) from %s", best.study_uid, n, settings.retrieve_from)
    registry.set_study(best.study_uid, state="baseline", role="baseline")
    return registry.study(best.study_uid)


def waiting_followups(registry: Registry, patient_id: str,
                      waiting_for: tuple[str, ...] = ("no baseline study", "no procedure record")) -> list[str]:
    """The patient's deferred studies whose reason names one of ``waiting_for``. Not the ones
    deferred for their timing ("... days after the procedure"): a new baseline changes nothing
    for them, and re-running them would only send PACS a second, identical deferral."""
    return [s.study_uid for s in registry.patient_studies(patient_id)
            if s.state == "deferred" and s.reason and any(w in s.reason for w in waiting_for)]


def resume_for_procedure(registry: Registry, patient_id: str, enqueue=None) -> list[str]:
    """A procedure record was added: re-enqueue the patient's studies deferred for want of one."""
    waiting = waiting_followups(registry, patient_id, ("procedure record",))
    if enqueue is None:
        from workers.tasks import enqueue_study as enqueue
    for uid in waiting:
        enqueue(uid)
    return waiting


def _defer(registry: Registry, analysis: Analysis, study: Study, reason: str) -> Outcome:
    now = utcnow()
    registry.update_analysis(analysis.id, status="deferred", reason=reason, finished_at=now)
    registry.set_study(study.study_uid, state="deferred", reason=reason, role="followup")
    log.info("analysis %d of study %s deferred: %s", analysis.id, study.study_uid, reason.split(":")[0])
    return Outcome(analysis.id, "deferred", reason, [], [])


def _fail(registry: Registry, analysis: Analysis, reason: str, started: float | None = None) -> Outcome:
    registry.update_analysis(analysis.id, status="failed", reason=reason, finished_at=utcnow(),
                             duration_s=None if started is None else time.perf_counter() - started)
    registry.set_study(analysis.study_uid, state="failed", reason=reason)
    return Outcome(analysis.id, "failed", reason, [], [])


def injected_fault(study_uid: str) -> None:
    """Test support, inert in production: ``FOLLOWUP_FAULT_INJECT="raise:<Study UID>,kill:<UID>"``
    makes the analysis of exactly those studies raise (a bug) or SIGKILL its own worker process
    (an out-of-memory kill), so that tests/test_faults.py can make a poison study in a real worker.
    Unset (as it is everywhere but in that test), this returns at once."""
    spec = os.environ.get(FAULT_INJECT_ENV)
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


def process_analysis(settings: Settings, registry: Registry, store: Store, analysis_id: int) -> Outcome:
    analysis = registry.analysis(analysis_id)
    if analysis is None:
        raise ValueError(f"no analysis {analysis_id}")
    study = registry.study(analysis.study_uid)
    assert study is not None
    if analysis.status in TERMINAL:
        pending = [d.id for d in registry.deliveries(analysis_id=analysis.id) if d.status == "pending"]
        return Outcome(analysis.id, analysis.status, analysis.reason, pending, [])
    if study.state == "quarantined":  # the listener found two patients in it: never analysed
        registry.update_analysis(analysis.id, status="failed", reason=study.reason, finished_at=utcnow())
        return Outcome(analysis.id, "failed", study.reason, [], [])

    proc = registry.procedure_for(study.patient_id, study.study_date)
    if proc is None:
        return _defer(registry, analysis, study, "no procedure record for this patient: add it with "
                      "`followup procedures add` (the analysis resumes by itself)")
    if study.study_date is not None and study.study_date < proc.procedure_date:
        # A baseline candidate: stored and indexed, not analysed, nothing sent to PACS.
        registry.update_analysis(analysis.id, status="complete", reason="baseline study (before the "
                                 "procedure): stored as baseline, not analysed", finished_at=utcnow())
        registry.set_study(study.study_uid, state="baseline", role="baseline", reason=None)
        return Outcome(analysis.id, "baseline", None, [], waiting_followups(registry, study.patient_id))

    baseline = find_baseline(registry, study, proc.procedure_date)
    days = (study.study_date - proc.procedure_date).days if study.study_date else None
    if baseline is None and (days is None or days >= 21):
        try:
            baseline = retrieve_baseline(settings, registry, store, study, proc.procedure_date)
        except Exception as exc:  # the PACS may be down: defer, say why, resume later
            return _defer(registry, analysis, study, f"no baseline study in the store and retrieval "
                          f"from {settings.retrieve_from} failed ({type(exc).__name__}: {exc})")
        if baseline is None:
            return _defer(registry, analysis, study, "no baseline study (the patient's latest MRI before "
                          f"the procedure date {proc.procedure_date}) in the store"
                          + ("" if settings.retrieve_from else " and no PACS retrieval configured")
                          + ": the analysis resumes when it arrives")

    lease_s = analysis_lease_s()
    if registry.lease_held(analysis, lease_s):
        return _running_elsewhere(analysis)
    if (analysis.attempts or 0) >= MAX_ATTEMPTS:
        log.error("analysis %d of study %s: %d attempts already, failed for good", analysis.id,
                  study.study_uid, analysis.attempts)
        return _fail(registry, analysis, f"the analysis was started {analysis.attempts} times and never "
                     "finished: its worker process died each time (killed, e.g. for lack of memory); "
                     "not retried again")
    started = time.perf_counter()
    # One conditional UPDATE (attempts + 1): of two workers racing for it, one runs it.
    if not registry.claim_analysis(analysis.id, lease_s):
        return _running_elsewhere(analysis)
    registry.set_study(study.study_uid, state="analysing", role="followup")
    out_dir = store.report_dir(study.study_uid, analysis.algorithm_version, analysis.revision)
    with tempfile.TemporaryDirectory() as tmp:
        proc_file = Path(tmp) / "procedure.json"
        proc_file.write_text(json.dumps(proc.record))
        baseline_dir = store.study_dir(baseline.study_uid) if baseline is not None else Path(tmp) / "no-baseline"
        try:
            injected_fault(study.study_uid)
            from followup.analyze import run_analysis  # torch & co.: only where an analysis runs

            with heartbeat(registry, analysis.id, lease_s / 4):
                result = run_analysis(baseline_dir, store.study_dir(study.study_uid), proc_file,
                                      out_dir, revision=analysis.revision)
        except FollowupError as err:
            return _fail(registry, analysis, f"[{err.code}] {err.message}", started)
    r = result.report
    interval = r["probability_interval"] or [None, None]
    registry.update_analysis(
        analysis.id, status=r["status"], reason=r["reason"], probability=r["residual_probability"],
        interval_low=interval[0], interval_high=interval[1],
        baseline_study_uid=baseline.study_uid if baseline is not None else None,
        report_dir=str(out_dir), finished_at=utcnow(), duration_s=time.perf_counter() - started)
    registry.set_study(study.study_uid, state=r["status"], reason=r["reason"])
    deliveries = []
    destination = settings.destination
    if destination is None and registry.get_setting("destination"):
        destination = DicomNode.parse(registry.get_setting("destination"))  # published by serve-dicom
    if destination is not None:
        for kind, info in r.get("outputs", {}).items():
            d = registry.add_delivery(analysis.id, kind, info["sop_instance_uid"],
                                      str(out_dir / info["file"]), str(destination))
            if d.status == "pending":
                deliveries.append(d.id)
    log.info("analysis %d of study %s: %s in %.1f s", analysis.id, study.study_uid, r["status"],
             time.perf_counter() - started)
    return Outcome(analysis.id, r["status"], r["reason"], deliveries, [])
