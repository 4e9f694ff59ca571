"""The worker's pipeline without Celery: classification, deferral and resumption, idempotency,
deliveries and batch reanalysis on a real registry and store."""

from __future__ import annotations

import json

import pytest

from followup.config import DicomNode, Settings
from followup.procedure import load_procedure
from followup.service.batch import resume_batch, start_reanalysis
from followup.service.importer import import_folder
from followup.service.pipeline import new_analysis, process_analysis
from followup.service.registry import Registry
from followup.service.store import Store


@pytest.fixture()
def service(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", destination=None)
    store = Store(settings.data_dir)
    return settings, Registry(settings.database_url), store


def _study_uid(pair, name):
    return json.loads((pair / "truth.json").read_text())["studies"][name]["study_uid"]


def _stored_pair(reg, store, pair):
    """Procedure record, baseline and follow-up in the store; the baseline classified."""
    reg.add_procedure(load_procedure(pair / "procedure.json"))
    for name in ("baseline", "followup"):
        import_folder(pair / name, store, reg)
    reg.claim_stable_studies(0)


def _run(settings, reg, store, uid, queue="realtime"):
    a = new_analysis(reg, uid, queue)
    return process_analysis(settings, reg, store, a.id)


def test_followup_waits_for_its_procedure_and_baseline_then_completes(service, synth_pair):
    settings, reg, store = service
    pair = synth_pair("residual", 1, "per-phase")
    fu, base = _study_uid(pair, "followup"), _study_uid(pair, "baseline")
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
    assert a.revision == 3 and a.baseline_study_uid == base and a.probability >= 0.5
    assert (store.report_dir(fu, a.algorithm_version, a.revision) / "sr.dcm").exists()


def test_analysis_is_idempotent_and_deliveries_are_unique(service, synth_pair, tmp_path):
    settings, reg, store = service
    settings = Settings(data_dir=settings.data_dir, destination=DicomNode("PACS", "127.0.0.1", 11113))
    pair = synth_pair("complete", 3, "single-series")
    _stored_pair(reg, store, pair)
    _run(settings, reg, store, _study_uid(pair, "baseline"))
    a = new_analysis(reg, _study_uid(pair, "followup"), "realtime")
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
    _stored_pair(reg, store, pair)
    _run(settings, reg, store, _study_uid(pair, "baseline"))
    _run(settings, reg, store, _study_uid(pair, "followup"))
    sent = []
    batch = start_reanalysis(settings, reg, all_studies=True, reason="algorithm change",
                             enqueue=lambda aid, q: sent.append((aid, q)))
    assert batch.total == 1 and [q for _, q in sent] == ["batch"]  # the baseline is not reanalysed
    assert reg.batch_progress(batch.id)["remaining"] == 1
    assert resume_batch(reg, batch.id, enqueue=lambda aid, q: sent.append((aid, q))) == 1
    out = process_analysis(settings, reg, store, sent[0][0])
    assert out.status == "complete"
    revs = [a.revision for a in reg.analyses(study_uid=_study_uid(pair, "followup"))]
    assert revs == [1, 2]  # a new version, the first report is kept
    dirs = {a.report_dir for a in reg.analyses(study_uid=_study_uid(pair, "followup"))}
    assert len(dirs) == 2 and all(dirs)
    assert reg.batch_progress(batch.id) == {"batch_id": batch.id, "total": 1, "done": 1,
                                            "by_status": {"complete": 1}, "remaining": 0}
    with pytest.raises(ValueError):
        start_reanalysis(settings, reg)


def test_adding_the_procedure_resumes_the_deferred_study(service, synth_pair):
    from followup.service.pipeline import resume_for_procedure

    settings, reg, store = service
    pair = synth_pair("complete", 3, "single-series")
    fu = _study_uid(pair, "followup")
    import_folder(pair / "followup", store, reg)
    reg.claim_stable_studies(0)
    assert _run(settings, reg, store, fu).status == "deferred"
    rec = load_procedure(pair / "procedure.json")
    reg.add_procedure(rec)
    sent = []
    assert resume_for_procedure(reg, rec.patient_id, enqueue=sent.append) == [fu] and sent == [fu]


def test_api_procedure_post_resumes_deferred_studies(service, synth_pair, monkeypatch):
    from fastapi.testclient import TestClient

    import workers.tasks as tasks
    from followup.api.app import create_app

    settings, reg, store = service
    settings = Settings(data_dir=settings.data_dir, api_token="t" * 20)
    pair = synth_pair("complete", 3, "single-series")
    fu = _study_uid(pair, "followup")
    import_folder(pair / "followup", store, reg)
    reg.claim_stable_studies(0)
    assert _run(settings, reg, store, fu).status == "deferred"
    sent = []
    monkeypatch.setattr(tasks, "enqueue_study", sent.append)
    client = TestClient(create_app(settings, reg))
    res = client.post("/procedures", content=(pair / "procedure.json").read_bytes(),
                      headers={"Authorization": "Bearer " + "t" * 20, "Content-Type": "application/json"})
    assert res.status_code == 201, res.text
    assert sent == [fu]
