"""The named states and their transitions: the tables in followup.states, and the registry's named
transitions that enforce them (one conditional UPDATE each; an illegal one raises)."""

from __future__ import annotations

import datetime as dt

import pytest

from followup.states import (
    ANALYSIS_TRANSITIONS,
    DELIVERY_TRANSITIONS,
    STUDY_TRANSITIONS,
    TERMINAL_ANALYSIS,
    AnalysisStatus,
    DeliveryStatus,
    IllegalTransition,
    StudyRole,
    StudyState,
)

S, A, D = StudyState, AnalysisStatus, DeliveryStatus

# Every flow the service makes today, as (from, to).
STUDY_FLOWS = [
    (S.RECEIVING, S.STABLE),  # the quiet period ended
    (S.STABLE, S.RECEIVING),  # the hand-over to the broker failed; or new images
    (S.STABLE, S.ANALYSING), (S.ANALYSING, S.COMPLETE), (S.ANALYSING, S.DEFERRED), (S.ANALYSING, S.FAILED),
    (S.STABLE, S.BASELINE), (S.STABLE, S.DEFERRED), (S.STABLE, S.FAILED),  # decided before a run
    (S.ANALYSING, S.ANALYSING),  # a dead worker's analysis taken over
    (S.COMPLETE, S.ANALYSING), (S.FAILED, S.ANALYSING),  # reanalysis
    (S.DEFERRED, S.ANALYSING), (S.DEFERRED, S.DEFERRED), (S.DEFERRED, S.BASELINE),  # resumed deferral
    (S.BASELINE, S.BASELINE),  # a baseline reanalysed, or fetched again from the PACS
    (S.RECEIVING, S.BASELINE),  # a baseline retrieved from the PACS
    (S.RECEIVING, S.ANALYSING),  # new images arrived after the hand-over, before the worker
    (S.OBJECTS_ONLY, S.RECEIVING),  # its first image
    (S.COMPLETE, S.RECEIVING), (S.BASELINE, S.RECEIVING), (S.ANALYSING, S.RECEIVING),  # new images
    (S.RECEIVING, S.QUARANTINED), (S.COMPLETE, S.QUARANTINED),  # a second patient's instance
]
ILLEGAL_STUDY = [
    (S.QUARANTINED, S.ANALYSING), (S.QUARANTINED, S.RECEIVING), (S.QUARANTINED, S.FAILED),  # final
    (S.STABLE, S.COMPLETE), (S.DEFERRED, S.COMPLETE),  # complete takes a run
    (S.COMPLETE, S.STABLE), (S.ANALYSING, S.STABLE),  # stable only from receiving (the claim)
    (S.RECEIVING, S.OBJECTS_ONLY), (S.QUARANTINED, S.QUARANTINED),
]


@pytest.mark.parametrize("current,target", STUDY_FLOWS)
def test_every_study_flow_of_the_service_is_allowed(current, target):
    STUDY_TRANSITIONS.check("1.2.3", current, target)


@pytest.mark.parametrize("current,target", ILLEGAL_STUDY)
def test_illegal_study_transitions_raise(current, target):
    with pytest.raises(IllegalTransition, match=f"{current} -> {target}"):
        STUDY_TRANSITIONS.check("1.2.3", current, target)


def test_analysis_and_delivery_tables():
    for src in (A.QUEUED, A.RUNNING):
        for dst in TERMINAL_ANALYSIS:
            ANALYSIS_TRANSITIONS.check(1, src, dst)
    ANALYSIS_TRANSITIONS.check(1, A.QUEUED, A.RUNNING)
    ANALYSIS_TRANSITIONS.check(1, A.RUNNING, A.RUNNING)  # taken over from a dead worker
    for src in TERMINAL_ANALYSIS:  # an analysis that ended stands
        for dst in AnalysisStatus:
            assert not ANALYSIS_TRANSITIONS.allows(src, dst)
    for dst in (D.PENDING, D.SENT, D.FAILED):
        DELIVERY_TRANSITIONS.check(1, D.PENDING, dst)
    with pytest.raises(IllegalTransition, match=r"sent -> pending is not allowed \(sent is final"):
        DELIVERY_TRANSITIONS.check(1, D.SENT, D.PENDING)
    assert DELIVERY_TRANSITIONS.sources(D.SENT) == {D.PENDING}
    assert STUDY_TRANSITIONS.sources(S.COMPLETE) == {S.ANALYSING}
    assert STUDY_TRANSITIONS.sources(S.STABLE) == {S.RECEIVING}
    assert S.QUARANTINED not in STUDY_TRANSITIONS.sources(S.RECEIVING)
    # every state of each enum has its row in its table
    assert set(STUDY_TRANSITIONS.allowed) == set(StudyState)
    assert set(ANALYSIS_TRANSITIONS.allowed) == set(AnalysisStatus)
    assert set(DELIVERY_TRANSITIONS.allowed) == set(DeliveryStatus)


@pytest.fixture()
def reg(registry):  # conftest.py's: SQLite, and PostgreSQL where a server is reachable
    reg = registry
    reg.record_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1",
                        sop_class_uid="1.2.840.10008.5.1.4.1.1.4", path="/x", size=1, patient_id="P",
                        study_date=dt.date(2026, 1, 1), modality="MR", accession_number="", calling_ae="PACS")
    return reg


def test_registry_study_transitions(reg):
    assert reg.claim_stable_studies(0) == ["1.2.3"]
    reg.mark_study("1.2.3", S.ANALYSING, role=StudyRole.FOLLOWUP)
    reg.mark_study("1.2.3", S.COMPLETE, reason="done")
    st = reg.study("1.2.3")
    assert (st.state, st.role, st.reason) == ("complete", "followup", "done")
    reg.mark_study("1.2.3", S.ANALYSING)  # a reanalysis: the reason is kept unless given
    assert reg.study("1.2.3").reason == "done"
    with pytest.raises(IllegalTransition, match="analysing -> stable"):
        reg.mark_study("1.2.3", S.STABLE)
    reg.mark_study("1.2.3", S.QUARANTINED, reason="two patients")
    with pytest.raises(IllegalTransition, match=r"quarantined -> analysing is not allowed \(quarantined is final"):
        reg.mark_study("1.2.3", S.ANALYSING)
    assert reg.study("1.2.3").state == "quarantined"  # unchanged
    with pytest.raises(LookupError):
        reg.mark_study("9.9", S.FAILED)


def test_registry_analysis_and_delivery_transitions(reg):
    a = reg.get_or_create_analysis("1.2.3", "v", 1, "realtime")
    assert reg.claim_analysis(a.id, lease_s=30)
    reg.finish_analysis(a.id, A.COMPLETE, None, probability=0.25, report_dir="/r")
    row = reg.analysis(a.id)
    assert (row.status, row.probability, row.report_dir) == ("complete", 0.25, "/r") and row.finished_at
    with pytest.raises(IllegalTransition, match="complete -> failed"):  # a crash after the result
        reg.finish_analysis(a.id, A.FAILED, "crashed")
    assert reg.analysis(a.id).status == "complete"
    with pytest.raises(ValueError):
        reg.finish_analysis(a.id, A.RUNNING, None)  # not an end
    d = reg.add_delivery(a.id, "sr", "1.2.9", "/r/sr.dcm", "PACS@h:1")
    reg.record_delivery_failure(d.id, "refused")
    (row,) = reg.deliveries(a.id)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "refused")
    reg.mark_delivery_sent(d.id)
    (row,) = reg.deliveries(a.id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None) and row.sent_at
    with pytest.raises(IllegalTransition, match="sent -> pending"):  # a worker recording a late failure
        reg.record_delivery_failure(d.id, "refused")
    with pytest.raises(IllegalTransition, match="sent -> sent"):
        reg.mark_delivery_sent(d.id)
