"""Issue 14 in the service: a follow-up is analysed with every earlier follow-up of its patient.
Three follow-ups of one patient (a synthetic surveillance series) arriving in order, one of them
still arriving when the next is handed over, and out of order; on a real registry and store, the
hand-overs through ``RecordingQueue`` as the stability monitor and the worker make them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from followup.procedure import load_procedure
from followup.service.decision import DecisionKind, decide
from followup.service.importer import import_folder
from followup.service.orchestrator import process_analysis
from followup.service.priors import WAITING_FOR_PRIORS, earlier_followups
from followup.service.registry import Analysis, Procedure, Study
from followup.service.work_queue import RecordingQueue
from followup.states import AnalysisStatus, StudyState
from followup.synth.surveillance import generate_surveillance

pytestmark = pytest.mark.slow  # about ten small analyses, some with two priors

SEED = 4  # baseline + follow-ups at 1, 6 and 12 months


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    out = tmp_path_factory.mktemp("series")
    truth = generate_surveillance(out, SEED)
    uids = [tp["study_uid"] for tp in truth["time_points"]]
    return out, uids


def _work(settings, reg, store, queue: RecordingQueue, analysis_ids: list[int]) -> list:
    """Process the analyses and every study their outcomes hand over again, as the worker task does."""
    outcomes, pending = [], list(analysis_ids)
    while pending:
        outcome = process_analysis(settings, reg, store, pending.pop(0))
        outcomes.append(outcome)
        pending += [queue.enqueue_study(uid) for uid in outcome.resume]
    return outcomes


def _handover(settings, reg, store, queue) -> list:
    return _work(settings, reg, store, queue, [queue.enqueue_study(u) for u in reg.claim_stable_studies(0)])


def _compared(reg, uid: str) -> list[str] | None:
    a = reg.latest_analysis(uid)
    assert a.status == AnalysisStatus.COMPLETE and a.report_dir
    lon = json.loads((Path(a.report_dir) / "report.json").read_text()).get("longitudinal")
    return None if lon is None else [t["study_instance_uid"] for t in lon["time_points"]]


def _setup(service, series):
    settings, reg, store = service
    d, uids = series
    reg.add_procedure(load_procedure(d / "procedure.json"))
    import_folder(d / "baseline", store, reg)
    return settings, reg, store, RecordingQueue(registry=reg), d, uids


def test_in_order_with_one_still_arriving(service, series):
    settings, reg, store, queue, d, (fu1, fu2, fu3) = _setup(service, series)
    import_folder(d / "followup-1", store, reg)
    _handover(settings, reg, store, queue)
    assert _compared(reg, fu1) is None  # the first follow-up: nothing to compare with
    import_folder(d / "followup-3", store, reg)
    (a3,) = [queue.enqueue_study(u) for u in reg.claim_stable_studies(0)]
    import_folder(d / "followup-2", store, reg)  # still arriving when the 12-month study is read
    (waiting,) = _work(settings, reg, store, queue, [a3])
    assert waiting.status == AnalysisStatus.QUEUED and waiting.reason == WAITING_FOR_PRIORS
    assert reg.analysis(a3).attempts == 0
    outcomes = _handover(settings, reg, store, queue)  # fu2 quiet: analysed, then fu3 resumed
    assert [o.analysis_id for o in outcomes][1] == a3  # the waiting analysis itself, not a new one
    assert all(o.status == AnalysisStatus.COMPLETE for o in outcomes)
    assert _compared(reg, fu2) == [fu1, fu2]
    assert _compared(reg, fu3) == [fu1, fu2, fu3]
    assert [a.revision for a in reg.analyses(study_uid=fu3)] == [1]
    report = json.loads((Path(reg.latest_analysis(fu3).report_dir) / "report.json").read_text())
    assert report["longitudinal"]["trend"] == "new-enhancement"  # the month-12 nodule
    assert reg.study(fu3).state == StudyState.COMPLETE


def test_out_of_order_the_latest_report_compares_every_earlier_follow_up(service, series):
    settings, reg, store, queue, d, (fu1, fu2, fu3) = _setup(service, series)
    import_folder(d / "followup-3", store, reg)
    _handover(settings, reg, store, queue)
    assert _compared(reg, fu3) is None
    import_folder(d / "followup-1", store, reg)
    _handover(settings, reg, store, queue)  # fu1, then fu3 again (it had not compared fu1)
    assert _compared(reg, fu3) == [fu1, fu3]
    import_folder(d / "followup-2", store, reg)
    _handover(settings, reg, store, queue)  # fu2 (with fu1), then fu3 again
    assert _compared(reg, fu2) == [fu1, fu2]
    assert _compared(reg, fu3) == [fu1, fu2, fu3]
    revisions = reg.analyses(study_uid=fu3)
    assert [a.revision for a in revisions] == [1, 2, 3]
    latest = json.loads((Path(revisions[-1].report_dir) / "report.json").read_text())
    assert latest["supersedes"]["revision"] == 2
    # nothing more to do: fu1's and fu2's reports are not redone
    assert [a.revision for a in reg.analyses(study_uid=fu1)] == [1]
    assert _handover(settings, reg, store, queue) == []


def test_earlier_followups_and_the_decision():
    proc_date = dt.date(2026, 1, 1)

    def st(uid, days, state=StudyState.COMPLETE) -> Study:
        return Study(study_uid=uid, patient_id="P", state=state, study_date=proc_date + dt.timedelta(days=days),
                     modality="MR")

    class Reg:
        def patient_studies(self, patient_id):
            return [st("b", -20, StudyState.BASELINE), st("1", 30), st("2", 180, StudyState.RECEIVING),
                    st("q", 200, StudyState.QUARANTINED), st("same", 365), st("3", 365), st("4", 730)]

    usable, arriving = earlier_followups(Reg(), st("3", 365), proc_date)
    assert [s.study_uid for s in usable] == ["1"] and [s.study_uid for s in arriving] == ["2"]
    proc = Procedure(patient_id="P", procedure_date=proc_date, laterality="L", record={})
    a = Analysis(id=7, study_uid="3", status=AnalysisStatus.QUEUED, attempts=0)
    base = st("b", -20, StudyState.BASELINE)
    d = decide(a, st("3", 365, StudyState.STABLE), proc, base, lease_held=False, priors=("1",), priors_arriving=("2",))
    assert d.kind is DecisionKind.WAIT_FOR_PRIORS
    d = decide(a, st("3", 365, StudyState.STABLE), proc, base, lease_held=False, priors=("1", "2"))
    assert d.kind is DecisionKind.RUN and d.prior_uids == ("1", "2")
