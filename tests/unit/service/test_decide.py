"""The orchestrator's decision, on plain values: every branch of ``decide`` (no registry, no I/O)."""

from __future__ import annotations

import datetime as dt

import pytest

from followup.evidence import MIN_DAYS_AFTER_PROCEDURE
from followup.service.baselines import waiting_followups
from followup.service.decision import (
    BASELINE_STORED,
    MAX_ATTEMPTS,
    NO_PROCEDURE,
    RUNNING_ELSEWHERE,
    Decision,
    DecisionKind,
    Retrieval,
    decide,
)
from followup.service.registry import Analysis, Procedure, Study
from followup.states import AnalysisStatus, StudyRole, StudyState

K = DecisionKind
PROC_DATE = dt.date(2026, 1, 10)
LATE = PROC_DATE + dt.timedelta(days=MIN_DAYS_AFTER_PROCEDURE)  # the first day a baseline is needed
EARLY = LATE - dt.timedelta(days=1)


def analysis(status=AnalysisStatus.QUEUED, attempts=0, reason=None) -> Analysis:
    return Analysis(id=7, study_uid="1.2.3", status=status, attempts=attempts, reason=reason)


def study(uid="1.2.3", state=StudyState.STABLE, date=LATE, reason=None) -> Study:
    return Study(study_uid=uid, patient_id="P", state=state, study_date=date, reason=reason, modality="MR")


PROC = Procedure(patient_id="P", procedure_date=PROC_DATE, laterality="L", record={})
BASE = study("1.2.1", StudyState.BASELINE, PROC_DATE - dt.timedelta(days=30))


def run(a=None, st=None, proc=PROC, base=BASE, **kw) -> Decision:
    kw.setdefault("lease_held", False)
    return decide(a or analysis(), st or study(), proc, base, **kw)


@pytest.mark.parametrize("status", [AnalysisStatus.COMPLETE, AnalysisStatus.DEFERRED, AnalysisStatus.FAILED])
def test_an_analysis_that_ended_is_not_recomputed(status):
    # whatever else holds: even a quarantined study or a live lease
    d = run(analysis(status, reason="why"), study(state=StudyState.QUARANTINED), lease_held=True)
    assert d == Decision(K.ALREADY_DONE, "why")


def test_quarantined_study_fails_its_analysis_and_stays_quarantined():
    d = run(st=study(state=StudyState.QUARANTINED, reason="mixed patients"), lease_held=True)
    assert d == Decision(K.FAIL, "mixed patients", study_state=None)


@pytest.mark.parametrize("proc", [PROC, None])
def test_a_live_lease_means_another_worker_runs_it(proc):
    assert run(analysis(AnalysisStatus.RUNNING, attempts=1), proc=proc, lease_held=True) == Decision(
        K.SKIP_RUNNING, RUNNING_ELSEWHERE)


def test_no_procedure_record_defers():
    d = run(proc=None, base=None)
    assert d == Decision(K.DEFER, NO_PROCEDURE, study_state=StudyState.DEFERRED, role=StudyRole.FOLLOWUP)


def test_a_study_before_the_procedure_is_a_baseline():
    d = run(st=study(date=PROC_DATE - dt.timedelta(days=1)), base=None, retrieve_from="PACS@h:104")
    assert d == Decision(K.BASELINE, BASELINE_STORED, study_state=StudyState.BASELINE, role=StudyRole.BASELINE)


@pytest.mark.parametrize("date", [LATE, None])
def test_missing_baseline_is_retrieved_first_when_a_pacs_is_configured(date):
    assert run(st=study(date=date), base=None, retrieve_from="PACS@h:104").kind is K.RETRIEVE_BASELINE


def test_missing_baseline_after_retrieval():
    failed = run(base=None, retrieve_from="PACS@h:104", retrieval=Retrieval("PACS@h:104", "PacsError: refused"))
    assert failed.kind is K.DEFER and failed.study_state is StudyState.DEFERRED
    assert failed.reason == ("no baseline study in the store and retrieval from PACS@h:104 failed "
                             "(PacsError: refused)")
    none = run(base=None, retrieve_from="PACS@h:104", retrieval=Retrieval("PACS@h:104"))
    assert none.kind is K.DEFER and none.reason == (
        f"no baseline study (the patient's latest MRI before the procedure date {PROC_DATE}) in the store: "
        "the analysis resumes when it arrives")


def test_missing_baseline_without_retrieval_defers():
    d = run(base=None)
    assert d.kind is K.DEFER and d.role is StudyRole.FOLLOWUP
    assert d.reason.endswith("in the store and no PACS retrieval configured: the analysis resumes when it arrives")


def test_an_early_follow_up_runs_without_a_baseline():
    """Before MIN_DAYS_AFTER_PROCEDURE the analysis itself defers (with its SR and PDF): no
    baseline needed, none fetched."""
    d = run(st=study(date=EARLY), base=None, retrieve_from="PACS@h:104")
    assert d == Decision(K.RUN, baseline_uid=None, study_state=StudyState.ANALYSING, role=StudyRole.FOLLOWUP)


def test_runs_against_the_baseline():
    assert run(analysis(AnalysisStatus.RUNNING, attempts=MAX_ATTEMPTS - 1)) == Decision(
        K.RUN, baseline_uid="1.2.1", study_state=StudyState.ANALYSING, role=StudyRole.FOLLOWUP)


def test_too_many_starts_fail_for_good():
    d = run(analysis(AnalysisStatus.RUNNING, attempts=MAX_ATTEMPTS))
    assert d.kind is K.FAIL and d.study_state is StudyState.FAILED and d.role is None
    assert d.reason.startswith(f"the analysis was started {MAX_ATTEMPTS} times and never finished")
    assert run(analysis(attempts=2), max_attempts=2).kind is K.FAIL


def test_deferral_reasons_say_what_resumes_them():
    """The reasons of deferrals that a new baseline or procedure record resumes carry the words
    ``waiting_followups`` looks for; a study deferred for its timing (by the analysis) does not."""

    class Reg:
        def patient_studies(self, patient_id):
            return [study("1", StudyState.DEFERRED, reason=NO_PROCEDURE),
                    study("2", StudyState.DEFERRED, reason=run(base=None).reason),
                    study("3", StudyState.DEFERRED, reason=run(base=None, retrieve_from="X", retrieval=Retrieval(
                        "X", "E")).reason),
                    study("4", StudyState.DEFERRED, reason="follow-up 10 days after the procedure: too early"),
                    study("5", StudyState.COMPLETE, reason=NO_PROCEDURE)]

    assert waiting_followups(Reg(), "P") == ["1", "2", "3"]
    assert waiting_followups(Reg(), "P", ("procedure record",)) == ["1"]


def test_a_later_revision_waits_while_an_earlier_one_runs():
    """Its report supersedes the earlier one's, which is not known before that one ends."""
    d = run(earlier_running=True)
    assert d.kind is K.WAIT_FOR_EARLIER and d.study_state is None
    assert run(analysis(AnalysisStatus.COMPLETE, reason="r"), earlier_running=True).kind is K.ALREADY_DONE
    assert run(earlier_running=True, lease_held=True).kind is K.SKIP_RUNNING


def test_an_unfinished_analysis_is_not_run_once_a_later_revision_started():
    d = run(analysis(AnalysisStatus.RUNNING, attempts=1), later_started=True)
    assert d.kind is K.FAIL and "superseded before it finished" in (d.reason or "") and d.study_state is None
    assert run(analysis(AnalysisStatus.COMPLETE, reason="r"), later_started=True).kind is K.ALREADY_DONE
