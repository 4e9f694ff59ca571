"""A series that arrives after its study was analysed (a technologist re-sends a missed phase): once
the study is stable again a new revision of its analysis is made with every series, its SR names
the first SR as its predecessor document, its objects for the PACS are new ones, and the readable
reports say which revision they supersede. Duplicates and our own objects routed back change
nothing. On a real registry and store, the hand-over through ``RecordingQueue`` as the stability
monitor does it."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from followup.config import Settings
from followup.procedure import load_procedure
from followup.remote_nodes import DicomNode
from followup.service import orchestrator, revisions
from followup.service.decision import DecisionKind
from followup.service.importer import import_folder
from followup.service.orchestrator import process_analysis
from followup.service.work_queue import RecordingQueue
from followup.states import AnalysisStatus, StudyState
from followup.testing.pairs import study_uid

LATE = "post4"  # the phase held back at first and sent later


def _split_followup(pair: Path, into: Path) -> tuple[Path, Path, str]:
    """The pair's follow-up in two folders: every series but the last DCE phase (sent first), and
    that phase (sent later); the late series' UID."""
    first, late = into / "first", into / "late"
    late_uid = ""
    for f in sorted((pair / "followup").rglob("*")):
        if not f.is_file() or f.suffix == ".json":
            continue
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        held_back = str(ds.get("SeriesDescription", "")).endswith(LATE)
        if held_back:
            late_uid = str(ds.SeriesInstanceUID)
        dest = (late if held_back else first) / f.relative_to(pair / "followup")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    assert late_uid
    return first, late, late_uid


def _stable_handover(reg, queue: RecordingQueue) -> list[int]:
    """What the stability monitor does: claim the quiet studies, hand each over."""
    return [queue.enqueue_study(uid) for uid in reg.claim_stable_studies(0)]


def _report(store, a) -> dict:
    return json.loads((store.report_dir(a.study_uid, a.algorithm_version, a.revision) / "report.json").read_text())


def _read(store, a, name: str) -> pydicom.Dataset:
    return pydicom.dcmread(store.report_dir(a.study_uid, a.algorithm_version, a.revision) / name)


@pytest.fixture()
def analysed_without_late_phase(service, synth_pair, tmp_path):
    """Baseline and follow-up analysed, the follow-up's last DCE phase not sent yet."""
    settings, reg, store = service
    settings = Settings(data_dir=settings.data_dir, destination=DicomNode("PACS", "127.0.0.1", 11113))
    pair = synth_pair("complete", 3, "per-phase")
    first, late, late_uid = _split_followup(pair, tmp_path / "split")
    reg.add_procedure(load_procedure(pair / "procedure.json"))
    import_folder(pair / "baseline", store, reg)
    import_folder(first, store, reg)
    queue = RecordingQueue(registry=reg)
    for analysis_id in _stable_handover(reg, queue):
        process_analysis(settings, reg, store, analysis_id)
    fu = study_uid(pair, "followup")
    assert reg.study(fu).state == StudyState.COMPLETE
    return settings, reg, store, queue, fu, first, late, late_uid


def test_late_series_makes_a_new_revision_that_supersedes_the_first(analysed_without_late_phase):
    settings, reg, store, queue, fu, _, late, late_uid = analysed_without_late_phase
    (r1,) = reg.analyses(study_uid=fu)
    rep1 = _report(store, r1)
    assert r1.revision == 1 and rep1["supersedes"] is None and rep1["studies"]["followup"]["phases"] == 4
    sr1 = _read(store, r1, "sr.dcm")
    assert "PredecessorDocumentsSequence" not in sr1

    # The missed phase arrives: the study receives again, then is stable again: a new revision.
    assert import_folder(late, store, reg).stored == 48
    assert reg.study(fu).state == StudyState.RECEIVING
    (new_id,) = _stable_handover(reg, queue)
    assert new_id != r1.id
    out = process_analysis(settings, reg, store, new_id)
    assert out.status == AnalysisStatus.COMPLETE and out.resume == []
    r2 = reg.analysis(new_id)
    assert (r2.revision, r2.algorithm_version) == (2, r1.algorithm_version)
    assert [a.revision for a in reg.analyses(study_uid=fu)] == [1, 2]  # both kept
    assert reg.latest_analysis(fu).id == r2.id and reg.study(fu).state == StudyState.COMPLETE
    assert r2.report_dir != r1.report_dir

    # Analysed with every series; the report says what it supersedes, decided before rendering.
    rep2 = _report(store, r2)
    followup = rep2["studies"]["followup"]
    assert followup["phases"] == 5 and late_uid in followup["series_instance_uids"]
    sup = rep2["supersedes"]
    assert sup["revision"] == 1 and sup["algorithm_version"] == r1.algorithm_version
    assert sup["created"] == rep1["created"] and sup["series_added"] == [late_uid]
    assert sup["outputs"] == rep1["outputs"]

    # The new SR names the first SR as its predecessor document (study, series, SOP UIDs).
    sr2 = _read(store, r2, "sr.dcm")
    (pre,) = sr2.PredecessorDocumentsSequence
    assert pre.StudyInstanceUID == fu == sr1.StudyInstanceUID
    (series,) = pre.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == sr1.SeriesInstanceUID
    (sop,) = series.ReferencedSOPSequence
    assert (sop.ReferencedSOPInstanceUID, sop.ReferencedSOPClassUID) == (sr1.SOPInstanceUID, sr1.SOPClassUID)
    texts = [str(getattr(i, "TextValue", "")) for c in sr2.ContentSequence for i in getattr(c, "ContentSequence", [])]
    assert any("supersedes revision 1" in t for t in texts)
    sr2_path = store.report_dir(fu, r2.algorithm_version, 2) / "sr.dcm"
    if shutil.which("dciodvfy"):  # DICOM validity of the SR with its predecessor documents
        res = subprocess.run(["dciodvfy", str(sr2_path)], capture_output=True, text=True)
        assert not [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]
    if shutil.which("dsrdump"):
        assert subprocess.run(["dsrdump", str(sr2_path)], capture_output=True).returncode == 0

    # New objects for the PACS: new series and SOP Instance UIDs; the first set is not re-sent.
    d1, d2 = reg.deliveries(analysis_id=r1.id), reg.deliveries(analysis_id=r2.id)
    assert sorted(d.kind for d in d2) == ["pdf", "seg", "sr"] and len(d1) == 3
    assert not {d.sop_uid for d in d1} & {d.sop_uid for d in d2}
    assert sorted(out.deliveries) == sorted(d.id for d in d2)
    uids1 = {(o["series_instance_uid"], o["sop_instance_uid"]) for o in rep1["outputs"].values()}
    uids2 = {(o["series_instance_uid"], o["sop_instance_uid"]) for o in rep2["outputs"].values()}
    assert len(uids2) == 3 and not {u for pair in uids1 for u in pair} & {u for pair in uids2 for u in pair}
    assert {d.sop_uid for d in d2} == {o["sop_instance_uid"] for o in rep2["outputs"].values()}

    # The readable reports say so.
    folder = store.report_dir(fu, r2.algorithm_version, 2)
    assert "supersedes revision 1" in (folder / "report.html").read_text()
    bundle = json.loads((folder / "report.fhir.json").read_text())
    (dr,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert dr["status"] == "amended" and "supersedes revision 1" in dr["note"][0]["text"]
    pdf = pydicom.dcmread(folder / "report-pdf.dcm")
    assert "PredecessorDocumentsSequence" not in pdf
    assert pdf.SOPInstanceUID != _read(store, r1, "report-pdf.dcm").SOPInstanceUID


    # The API and `followup status` show the newest revision; both are listed.
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from followup.api.app import create_app
    from followup.cli import app as cli

    token = "test-token-" + "0123456789abcdef" * 2  # the API refuses a token under 128 bits
    api = TestClient(create_app(Settings(data_dir=settings.data_dir, api_token=token), reg, queue=RecordingQueue()))
    auth = {"Authorization": "Bearer " + token}
    detail = api.get(f"/studies/{fu}", headers=auth).json()
    assert detail["latest_analysis"]["revision"] == detail["reported_analysis"]["revision"] == 2
    assert [a["revision"] for a in detail["analyses"]] == [1, 2] and len(detail["deliveries"]) == 6
    report = api.get(f"/studies/{fu}/report.json", headers=auth).json()
    assert report["revision"] == 2 and report["supersedes"]["revision"] == 1
    res = CliRunner().invoke(cli, ["--data-dir", str(settings.data_dir), "status", "--json"])
    assert res.exit_code == 0, res.output
    rows = [r for r in json.loads(res.output) if r["study_uid"] == fu]
    assert len(rows) == 1, res.output[:3000]
    (row,) = rows
    assert row["analysis"] == f"{r2.algorithm_version}-r2 complete"


def test_resent_instances_and_our_own_objects_make_no_new_revision(analysed_without_late_phase, tmp_path):
    settings, reg, store, queue, fu, first, late, _ = analysed_without_late_phase
    import_folder(late, store, reg)
    (new_id,) = _stable_handover(reg, queue)
    process_analysis(settings, reg, store, new_id)
    n = reg.study(fu).n_instances

    # The PACS re-sends the whole study (duplicates): nothing new, no revision 3.
    again = import_folder(first, store, reg)
    again_late = import_folder(late, store, reg)
    assert again.stored == again_late.stored == 0 and again.duplicates > 0 and again_late.duplicates == 48
    assert reg.study(fu).state == StudyState.COMPLETE and reg.study(fu).n_instances == n
    assert _stable_handover(reg, queue) == []

    # Our own SR, SEG and PDF of both revisions routed back by the PACS: kept, no new analysis.
    for a in reg.analyses(study_uid=fu):
        routed = tmp_path / f"routed-back-r{a.revision}"
        routed.mkdir()
        for f in store.report_dir(fu, a.algorithm_version, a.revision).glob("*.dcm"):
            shutil.copy2(f, routed / f.name)
        res = import_folder(routed, store, reg)
        assert res.stored == 3 and not res.quarantined
    assert reg.study(fu).state == StudyState.COMPLETE and reg.study(fu).n_instances == n + 6
    assert _stable_handover(reg, queue) == []
    assert [a.revision for a in reg.analyses(study_uid=fu)] == [1, 2]

    # A redelivered task of either revision recomputes nothing and adds no delivery.
    for a in reg.analyses(study_uid=fu):
        assert process_analysis(settings, reg, store, a.id).status == AnalysisStatus.COMPLETE
        assert len(reg.deliveries(analysis_id=a.id)) == 3
    assert [a.revision for a in reg.analyses(study_uid=fu)] == [1, 2]


def test_images_arriving_during_the_run_leave_the_study_receiving_for_the_next_revision(
        analysed_without_late_phase, monkeypatch):
    """New images reopen the study while revision 1 of a re-analysis still runs: the run ends
    complete and delivers, the study stays ``receiving`` (not ``complete``), and its next quiet
    period makes the next revision, which supersedes the one that just ended."""
    settings, reg, store, queue, fu, _, late, late_uid = analysed_without_late_phase
    real_run_job = __import__("followup.job", fromlist=["run_job"]).run_job
    calls = []

    def run_job_with_late_arrival(*args, **kwargs):
        result = real_run_job(*args, **kwargs)
        if not calls:  # the phase arrives while the first re-analysis runs
            import_folder(late, store, reg)
        calls.append(kwargs["revision"])
        return result

    monkeypatch.setattr("followup.job.run_job", run_job_with_late_arrival)
    r2_id = queue.enqueue_study(fu)  # a re-analysis of the study (as `followup reanalyze` would)
    out = process_analysis(settings, reg, store, r2_id)
    assert out.status == AnalysisStatus.COMPLETE and len(out.deliveries) == 3
    assert reg.study(fu).state == StudyState.RECEIVING  # reopened: not marked complete over it
    (r3_id,) = _stable_handover(reg, queue)
    assert process_analysis(settings, reg, store, r3_id).status == AnalysisStatus.COMPLETE
    assert calls == [2, 3] and reg.study(fu).state == StudyState.COMPLETE
    r3 = reg.analysis(r3_id)
    rep3 = _report(store, r3)
    assert rep3["supersedes"]["revision"] == 2 and rep3["supersedes"]["series_added"] == [late_uid]


def test_a_later_revision_waits_while_an_earlier_one_runs(analysed_without_late_phase):
    """Revision 2 handed over while revision 1's worker is still live: it does not run (it could
    not know the report it supersedes); revision 1, when it ends, hands the study over again."""
    settings, reg, store, queue, fu, _, late, _ = analysed_without_late_phase
    (r1,) = reg.analyses(study_uid=fu)
    # Revision 1 as if it still ran in a live worker.
    reg.update_analysis(r1.id, status=AnalysisStatus.RUNNING, heartbeat_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    import_folder(late, store, reg)
    (r2_id,) = _stable_handover(reg, queue)
    item = orchestrator.WorkItem.load(settings, reg, store, r2_id)
    assert item.decide().kind is DecisionKind.WAIT_FOR_EARLIER
    out = process_analysis(settings, reg, store, r2_id)
    assert out.status == AnalysisStatus.QUEUED and out.deliveries == []
    r2 = reg.analysis(r2_id)
    assert r2.status == AnalysisStatus.QUEUED and not r2.attempts and r2.started_at is None
    # Revision 1 ends: its study is handed over again, which sends the waiting revision 2 (reused).
    assert revisions.waiting_after(reg, reg.analysis(r1.id)) == [fu]
    reg.update_analysis(r1.id, status=AnalysisStatus.COMPLETE, heartbeat_at=None)
    assert queue.enqueue_study(fu) == r2_id
    assert process_analysis(settings, reg, store, r2_id).status == AnalysisStatus.COMPLETE
    assert _report(store, reg.analysis(r2_id))["supersedes"]["revision"] == 1


def test_an_unfinished_revision_taken_over_after_a_later_one_started_is_not_run(analysed_without_late_phase):
    """Revision 1's worker died mid-run (lease expired, no report); the late phase made revision 2,
    which ran (there was no live earlier one to wait for). Revision 1's task, taken over later, must
    not run: its report would reach the PACS after revision 2's, unlinked."""
    settings, reg, store, queue, fu, _, late, _ = analysed_without_late_phase
    (r1,) = reg.analyses(study_uid=fu)
    long_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
    reg.update_analysis(r1.id, status=AnalysisStatus.RUNNING, heartbeat_at=long_ago, report_dir=None)
    import_folder(late, store, reg)
    (r2_id,) = _stable_handover(reg, queue)
    out2 = process_analysis(settings, reg, store, r2_id)
    assert out2.status == AnalysisStatus.COMPLETE and _report(store, reg.analysis(r2_id))["supersedes"] is None
    out1 = process_analysis(settings, reg, store, r1.id)  # the dead worker's task, taken over
    assert out1.status == AnalysisStatus.FAILED and out1.deliveries == []
    assert "superseded before it finished" in reg.analysis(r1.id).reason
    assert reg.study(fu).state == StudyState.COMPLETE and reg.latest_analysis(fu).id == r2_id


def test_a_study_quarantined_during_the_run_stays_quarantined_and_gets_nothing_sent(
        analysed_without_late_phase, monkeypatch):
    settings, reg, store, queue, fu, _, _, _ = analysed_without_late_phase
    real_run_job = __import__("followup.job", fromlist=["run_job"]).run_job

    def run_job_then_quarantine(*args, **kwargs):
        result = real_run_job(*args, **kwargs)
        reg.set_study(fu, state=StudyState.QUARANTINED)  # the listener found another patient's image
        return result

    monkeypatch.setattr("followup.job.run_job", run_job_then_quarantine)
    r2_id = queue.enqueue_study(fu)
    out = process_analysis(settings, reg, store, r2_id)
    assert out.status == AnalysisStatus.COMPLETE and out.deliveries == []
    assert reg.deliveries(analysis_id=r2_id) == [] and reg.study(fu).state == StudyState.QUARANTINED
