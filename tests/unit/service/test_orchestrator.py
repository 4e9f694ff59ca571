"""The worker's orchestration without Celery: classification, deferral and resumption, idempotency,
deliveries and batch reanalysis on a real registry and store."""

from __future__ import annotations

import pytest

from followup.config import Settings
from followup.procedure import load_procedure
from followup.remote_nodes import DicomNode
from followup.service.batch import resume_batch, start_reanalysis
from followup.service.importer import import_folder
from followup.service.orchestrator import new_analysis, process_analysis
from followup.service.work_queue import RecordingQueue
from followup.testing.pairs import store_pair, study_uid


def _run(settings, reg, store, uid, queue="realtime"):
    a = new_analysis(reg, uid, queue)
    return process_analysis(settings, reg, store, a.id)


def _deferred_followup(settings, reg, store, synth_pair):
    """A follow-up stored without its procedure record: its analysis is deferred."""
    pair = synth_pair("complete", 3, "single-series")
    fu = study_uid(pair, "followup")
    import_folder(pair / "followup", store, reg)
    reg.claim_stable_studies(0)
    assert _run(settings, reg, store, fu).status == "deferred"
    return pair, fu


def test_followup_waits_for_its_procedure_and_baseline_then_completes(service, synth_pair):
    settings, reg, store = service
    pair = synth_pair("residual", 1, "per-phase")
    fu, base = study_uid(pair, "followup"), study_uid(pair, "baseline")
    import_folder(pair / "followup", store, reg)
    reg.claim_stable_studies(0)
    out = _run(settings, reg, store, fu)
    assert out.status == "deferred" and "procedure record" in out.reason
    reg.add_procedure(load_procedure(pair / "procedure.json"))
    out = _run(settings, reg, store, fu)
    assert out.status == "deferred" and "no baseline" in out.reason
    assert reg.study(fu).state == "deferred"
    import_folder(pair / "baseline", store, reg)
    reg.claim_stable_studies(0)
    out = _run(settings, reg, store, base)
    assert out.status == "baseline" and out.deliveries == []
    assert out.resume == [fu]  # the waiting follow-up resumes automatically
    assert reg.study(base).role == "baseline"
    out = _run(settings, reg, store, fu)
    assert out.status == "complete"
    a = reg.latest_analysis(fu)
    assert a.revision == 3 and a.baseline_study_uid == base and a.probability > 0.1  # residual: BI-RADS 4B or higher
    assert (store.report_dir(fu, a.algorithm_version, a.revision) / "sr.dcm").exists()


def test_analysis_is_idempotent_and_deliveries_are_unique(service, synth_pair, tmp_path):
    settings, reg, store = service
    settings = Settings(data_dir=settings.data_dir, destination=DicomNode("PACS", "127.0.0.1", 11113))
    pair = synth_pair("complete", 3, "single-series")
    store_pair(reg, store, pair)
    _run(settings, reg, store, study_uid(pair, "baseline"))
    a = new_analysis(reg, study_uid(pair, "followup"), "realtime")
    first = process_analysis(settings, reg, store, a.id)
    assert first.status == "complete" and len(first.deliveries) == 3
    mtime = (store.report_dir(a.study_uid, a.algorithm_version, a.revision) / "report.json").stat().st_mtime
    again = process_analysis(settings, reg, store, a.id)  # a redelivered task
    assert sorted(again.deliveries) == sorted(first.deliveries)
    assert len(reg.deliveries(analysis_id=a.id)) == 3
    assert (store.report_dir(a.study_uid, a.algorithm_version, a.revision) / "report.json").stat().st_mtime == mtime


def test_batch_reanalysis_makes_new_versions(service, synth_pair):
    settings, reg, store = service
    pair = synth_pair("complete", 3, "single-series")
    store_pair(reg, store, pair)
    _run(settings, reg, store, study_uid(pair, "baseline"))
    _run(settings, reg, store, study_uid(pair, "followup"))
    queue = RecordingQueue()
    sent = queue.analyses
    batch = start_reanalysis(reg, queue, all_studies=True, reason="algorithm change")
    assert batch.total == 1 and [q for _, q in sent] == ["batch"]  # the baseline is not reanalysed
    assert reg.batch_progress(batch.id)["remaining"] == 1
    assert resume_batch(reg, queue, batch.id) == 1
    out = process_analysis(settings, reg, store, sent[0][0])
    assert out.status == "complete"
    revs = [a.revision for a in reg.analyses(study_uid=study_uid(pair, "followup"))]
    assert revs == [1, 2]  # a new version, the first report is kept
    dirs = {a.report_dir for a in reg.analyses(study_uid=study_uid(pair, "followup"))}
    assert len(dirs) == 2 and all(dirs)
    assert reg.batch_progress(batch.id) == {"batch_id": batch.id, "total": 1, "done": 1,
                                            "by_status": {"complete": 1}, "remaining": 0}
    with pytest.raises(ValueError):
        start_reanalysis(reg, queue)


def test_adding_the_procedure_resumes_the_deferred_study(service, synth_pair):
    from followup.service.baselines import resume_for_procedure

    settings, reg, store = service
    pair, fu = _deferred_followup(settings, reg, store, synth_pair)
    rec = load_procedure(pair / "procedure.json")
    reg.add_procedure(rec)
    queue = RecordingQueue()
    assert resume_for_procedure(reg, queue, rec.patient_id) == [fu] and queue.studies == [fu]


def test_api_procedure_post_resumes_deferred_studies(service, synth_pair):
    from fastapi.testclient import TestClient

    from followup.api.app import create_app

    settings, reg, store = service
    token = "test-token-" + "0123456789abcdef" * 2  # the API refuses a token under 128 bits
    settings = Settings(data_dir=settings.data_dir, api_token=token)
    pair, fu = _deferred_followup(settings, reg, store, synth_pair)
    queue = RecordingQueue()
    client = TestClient(create_app(settings, reg, queue=queue))
    res = client.post("/procedures", content=(pair / "procedure.json").read_bytes(),
                      headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    assert res.status_code == 201, res.text
    assert queue.studies == [fu]
