"""HTTP API: authentication on every route, registry views, report files, batches, the page."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import sys
import types
from pathlib import Path

import pydicom
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from followup.api import ApiConfigError, create_app, patient_ref
from followup.config import Settings
from followup.service.registry import Registry
from followup.service.store import Store
from followup.service.work_queue import RecordingQueue
from followup.states import DeliveryStatus, StudyState

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PATIENT = "SYNPATIENT0042"
UID_A = "1.2.826.0.1.3680043.10.1"
UID_B = "1.2.826.0.1.3680043.10.2"

PROCEDURE = {
    "patient_id": PATIENT, "procedure_date": "2024-01-15", "laterality": "L",
    "lesion": {"center_lps_mm": [10.0, -20.0, 5.0], "diameter_mm": 12, "histology": "IDC", "grade": 2,
               "dcis_component_pct": 10, "insitu_grade": None},
    "freeze_thaw_cycles": 2, "margin_mm": 10,
}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, synth_pair):
    """One real analysis (synthetic pair of conftest, shared) written inside a data directory."""
    from followup.job import run_job
    from followup.procedure import load_procedure

    data_dir = tmp_path_factory.mktemp("api-data")
    pair = synth_pair("complete", 3, "per-phase", "small")
    first = next(p for p in sorted((pair / "followup").rglob("*")) if p.is_file())
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    uid, pid = str(ds.StudyInstanceUID), str(ds.PatientID)
    outdir = Store(data_dir).report_dir(uid, "1.0.0", 1)
    run_job(pair / "followup", pair / "baseline", load_procedure(pair / "procedure.json"), outdir)
    return {"data_dir": data_dir, "study_uid": uid, "patient_id": pid, "report_dir": outdir,
            "accession": str(ds.get("AccessionNumber", ""))}


@pytest.fixture(scope="module")
def env(analysed, tmp_path_factory):
    data_dir: Path = analysed["data_dir"]
    settings = Settings(data_dir=data_dir, api_token=TOKEN, api_auth_failures=10_000)
    reg = Registry(settings.database_url)
    uid = analysed["study_uid"]
    # the analysed follow-up, as the listener would have recorded it
    reg.record_instance(study_uid=uid, series_uid="1.2.3.4", sop_uid="1.2.3.4.5",
                        sop_class_uid="1.2.840.10008.5.1.4.1.1.4", path=str(data_dir / "store" / "x.dcm"), size=1,
                        patient_id=analysed["patient_id"],
                        study_date=dt.date(2024, 6, 1), modality="MR", accession_number="ACC-REAL",
                        calling_ae="MODALITY")
    reg.set_study(uid, state="complete", role="followup")
    a = reg.get_or_create_analysis(uid, "1.0.0", 1, "realtime")
    reg.update_analysis(a.id, status="complete", report_dir=str(analysed["report_dir"]), probability=0.12,
                        interval_low=0.05, interval_high=0.25, duration_s=6.0)
    d = reg.add_delivery(a.id, "sr", "1.2.3.9", str(analysed["report_dir"] / "sr.dcm"), "PACS@127.0.0.1:104")
    reg.update_delivery(d.id, status="failed", attempts=5, last_error="association rejected")
    # a reanalysis still queued: the study keeps serving the complete one
    reg.get_or_create_analysis(uid, "1.1.0", 1, "batch")
    # two studies filled directly: one receiving, one whose report dir lies outside the data dir
    for suid, state, acc in ((UID_A, "receiving", "ACC-A"), (UID_B, "complete", "ACC-B")):
        reg.record_instance(study_uid=suid, series_uid=suid + ".1", sop_uid=suid + ".1.1",
                            sop_class_uid="1.2.840.10008.5.1.4.1.1.4", path="/nonexistent", size=1,
                            patient_id=PATIENT, study_date=dt.date(2024, 5, 2), modality="MR",
                            accession_number=acc, calling_ae="MODALITY")
        reg.set_study(suid, state=state)
    outside = tmp_path_factory.mktemp("outside-data")
    shutil.copytree(analysed["report_dir"], outside / "r")
    b = reg.get_or_create_analysis(UID_B, "1.0.0", 1, "realtime")
    reg.update_analysis(b.id, status="complete", report_dir=str(outside / "r"), probability=0.5)
    app = create_app(settings, reg, RecordingQueue(registry=reg))
    return {"app": app, "client": TestClient(app), "registry": reg, "settings": settings,
            "analysis_id": a.id, "outside_analysis_id": b.id, "outside": outside, **analysed}


def _concrete(path: str) -> str:
    return (path.replace("{study_uid}", UID_A).replace("{analysis_id}", "1").replace("{batch_id}", "1")
            .replace("{fmt}", "json"))


# --- start-up and authentication -------------------------------------------------------------------
def test_refuses_to_start_without_token(tmp_path):
    for token in (None, "", "   "):
        with pytest.raises(ApiConfigError, match="FOLLOWUP_API_TOKEN"):
            create_app(Settings(data_dir=tmp_path, api_token=token), Registry("sqlite://"))


OPEN_ROUTES = ("/health", "/", "/favicon.svg", "/favicon.ico")


def test_every_route_but_health_and_page_needs_the_token(env):
    client = env["client"]
    checked = 0
    for route in env["app"].routes:
        if route.path in OPEN_ROUTES:
            continue
        methods = getattr(route, "methods", None) or {"GET"}
        for method in methods - {"HEAD", "OPTIONS"}:
            url = _concrete(route.path)
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                            {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}):
                r = client.request(method, url, headers=headers, json={"all": True})
                assert r.status_code == 401, (method, url, headers, r.status_code)
                assert r.headers.get("www-authenticate") == "Bearer"
                assert PATIENT not in r.text
            checked += 1
    assert checked >= 11


def test_health_without_token(env):
    r = env["client"].get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"] is True
    assert body["studies_by_state"] == {"complete": 2, "receiving": 1}
    assert PATIENT not in r.text and env["patient_id"] not in r.text


def test_security_headers(env):
    r = env["client"].get("/studies", headers=AUTH)
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"


# --- procedures ------------------------------------------------------------------------------------
def test_procedures_add_list_and_422(tmp_path):
    settings = Settings(data_dir=tmp_path, api_token=TOKEN)
    client = TestClient(create_app(settings, Registry(settings.database_url)))
    assert client.get("/procedures", headers=AUTH).json() == []
    r = client.post("/procedures", headers=AUTH, json=PROCEDURE)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["patient_ref"] == patient_ref(PATIENT) != hashlib.sha256(PATIENT.encode()).hexdigest()[:12]
    assert body["procedure_date"] == "2024-01-15" and body["laterality"] == "L"
    assert body["lesion"]["diameter_mm"] == 12 and body["indication_notes"] == []
    assert PATIENT not in r.text
    # same patient, date and side: replaced (200), still one row
    r = client.post("/procedures", headers=AUTH, json={**PROCEDURE, "margin_mm": 5})
    assert r.status_code == 200 and r.json()["margin_mm"] == 5
    assert any("margin" in n for n in r.json()["indication_notes"])
    listed = client.get("/procedures", headers=AUTH)
    assert len(listed.json()) == 1 and PATIENT not in listed.text
    assert len(client.get(f"/procedures?patient_ref={patient_ref(PATIENT)}", headers=AUTH).json()) == 1
    assert client.get(f"/procedures?patient_ref={patient_ref('other')}", headers=AUTH).json() == []
    # invalid records: 422 naming the field
    bad = json.loads(json.dumps(PROCEDURE))
    bad["lesion"]["diameter_mm"] = -3
    r = client.post("/procedures", headers=AUTH, json=bad)
    assert r.status_code == 422 and "lesion.diameter_mm" in r.json()["detail"]
    r = client.post("/procedures", headers=AUTH, json={k: v for k, v in PROCEDURE.items() if k != "laterality"})
    assert r.status_code == 422 and "laterality: missing required field" in r.json()["detail"]
    r = client.post("/procedures", headers=AUTH, json={**PROCEDURE, "surgeon": "x"})
    assert r.status_code == 422 and "surgeon" in r.json()["detail"]
    r = client.post("/procedures", headers=AUTH, content=b"{not json", )
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = client.post("/procedures", headers=AUTH, json=[PROCEDURE])
    assert r.status_code == 422
    assert len(client.get("/procedures", headers=AUTH).json()) == 1


def test_procedure_post_resumes_deferred_studies_through_the_queue(tmp_path):
    settings = Settings(data_dir=tmp_path, api_token=TOKEN)
    reg = Registry(settings.database_url)
    reg.record_instance(study_uid=UID_A, series_uid=UID_A + ".1", sop_uid=UID_A + ".1.1",
                        sop_class_uid="1.2.840.10008.5.1.4.1.1.4", path="/nonexistent", size=1,
                        patient_id=PATIENT, study_date=dt.date(2024, 5, 2), modality="MR",
                        accession_number="ACC-A", calling_ae="MODALITY")
    reg.set_study(UID_A, state="deferred", reason="no procedure record for this patient")
    queue = RecordingQueue()
    client = TestClient(create_app(settings, reg, queue))
    assert client.post("/procedures", headers=AUTH, json=PROCEDURE).status_code == 201
    assert queue.studies == [UID_A]


# --- studies ---------------------------------------------------------------------------------------
def test_studies_list(env):
    client = env["client"]
    r = client.get("/studies", headers=AUTH)
    assert r.status_code == 200
    rows = {s["study_uid"]: s for s in r.json()}
    assert set(rows) == {env["study_uid"], UID_A, UID_B}
    real = rows[env["study_uid"]]
    assert real["accession_number"] == "ACC-REAL" and real["state"] == "complete" and real["role"] == "followup"
    assert real["patient_ref"] == patient_ref(env["patient_id"]) and real["n_instances"] == 1
    assert real["study_date"] == "2024-06-01" and real["last_received_at"]
    assert real["latest_analysis"]["status"] == "queued" and real["latest_analysis"]["algorithm_version"] == "1.1.0"
    rep = real["reported_analysis"]
    assert rep["id"] == env["analysis_id"] and rep["probability"] == 0.12
    assert (rep["interval_low"], rep["interval_high"], rep["algorithm_version"]) == (0.05, 0.25, "1.0.0")
    assert rows[UID_A]["latest_analysis"] is None and rows[UID_A]["reported_analysis"] is None
    # no patient identity in the list
    assert PATIENT not in r.text and env["patient_id"] not in r.text
    assert "patient_id" not in r.text
    only = client.get("/studies?state=receiving", headers=AUTH).json()
    assert [s["study_uid"] for s in only] == [UID_A]
    assert client.get("/studies?state=bogus", headers=AUTH).status_code == 422


def test_study_detail(env):
    client = env["client"]
    r = client.get(f"/studies/{env['study_uid']}", headers=AUTH)
    assert r.status_code == 200
    d = r.json()
    assert d["state"] == "complete" and d["reason"] is None and d["first_received_at"]
    assert [(a["algorithm_version"], a["revision"], a["status"]) for a in d["analyses"]] == [
        ("1.0.0", 1, "complete"), ("1.1.0", 1, "queued")]
    assert d["analyses"][0]["has_report"] is True and d["analyses"][0]["duration_s"] == 6.0
    assert d["analyses"][1]["has_report"] is False and d["analyses"][1]["queue"] == "batch"
    [dl] = d["deliveries"]
    assert (dl["kind"], dl["status"], dl["attempts"], dl["last_error"]) == ("sr", "failed", 5, "association rejected")
    assert "report_dir" not in d["analyses"][0] and "path" not in dl
    assert env["patient_id"] not in r.text
    assert client.get("/studies/1.2.3.999", headers=AUTH).status_code == 404
    assert client.get("/studies/1.2.abc", headers=AUTH).status_code == 400


def test_deliveries(env):
    client = env["client"]
    failed = client.get("/deliveries?status=failed", headers=AUTH).json()
    assert len(failed) == 1 and failed[0]["study_uid"] == env["study_uid"]
    assert client.get("/deliveries?status=sent", headers=AUTH).json() == []
    assert len(client.get("/deliveries", headers=AUTH).json()) == 1
    assert client.get("/deliveries?status=nope", headers=AUTH).status_code == 422


def test_state_filters_accept_every_state(env):
    """Every named study state (quarantined and objects-only included) and delivery status is a
    valid filter; anything else is 422."""
    client = env["client"]
    for state in StudyState:
        r = client.get("/studies", params={"state": state.value}, headers=AUTH)
        assert r.status_code == 200, (state, r.text)
        assert all(s["state"] == state.value for s in r.json())
    assert [s["study_uid"] for s in client.get("/studies?state=receiving", headers=AUTH).json()] == [UID_A]
    for bad in ("bogus", "Quarantined", "objects_only"):
        assert client.get("/studies", params={"state": bad}, headers=AUTH).status_code == 422, bad
    for status in DeliveryStatus:
        r = client.get("/deliveries", params={"status": status.value}, headers=AUTH)
        assert r.status_code == 200, (status, r.text)
        assert all(d["status"] == status.value for d in r.json())
    assert client.get("/deliveries?status=bogus", headers=AUTH).status_code == 422


# --- reports ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt,ctype,magic", [("json", "application/json", b"{"),
                                             ("html", "text/html", b"<"), ("pdf", "application/pdf", b"%PDF")])
def test_reports_served(env, fmt, ctype, magic):
    client = env["client"]
    for url in (f"/studies/{env['study_uid']}/report.{fmt}", f"/analyses/{env['analysis_id']}/report.{fmt}"):
        r = client.get(url, headers=AUTH)
        assert r.status_code == 200, (url, r.text[:200])
        assert r.headers["content-type"].startswith(ctype)
        assert r.content.lstrip().startswith(magic)
        assert r.content == (env["report_dir"] / f"report.{fmt}").read_bytes()
        assert r.headers["cache-control"] == "no-store"
    if fmt == "json":
        assert "probability" in r.text


def test_reports_missing(env):
    client = env["client"]
    assert client.get(f"/studies/{UID_A}/report.json", headers=AUTH).status_code == 404  # no analysis
    assert client.get("/studies/1.2.3.999/report.pdf", headers=AUTH).status_code == 404
    assert client.get("/analyses/999999/report.json", headers=AUTH).status_code == 404
    queued = env["registry"].latest_analysis(env["study_uid"])
    assert queued.status == "queued"
    assert client.get(f"/analyses/{queued.id}/report.html", headers=AUTH).status_code == 404
    assert client.get(f"/studies/{env['study_uid']}/report.xml", headers=AUTH).status_code in (404, 422)
    assert client.get(f"/studies/{env['study_uid']}/report.fhir.json", headers=AUTH).status_code in (404, 422)


def test_report_outside_data_dir_never_served(env):
    client = env["client"]
    assert (env["outside"] / "r" / "report.json").is_file()
    for url in (f"/studies/{UID_B}/report.json", f"/analyses/{env['outside_analysis_id']}/report.pdf"):
        r = client.get(url, headers=AUTH)
        assert r.status_code == 404, url
    # a symlink inside the data dir pointing outside is refused too
    link = env["data_dir"] / "reports" / "link"
    link.symlink_to(env["outside"] / "r", target_is_directory=True)
    reg = env["registry"]
    c = reg.get_or_create_analysis(UID_A, "1.0.0", 1, "realtime")
    try:
        reg.update_analysis(c.id, status="complete", report_dir=str(link))
        assert client.get(f"/analyses/{c.id}/report.json", headers=AUTH).status_code == 404
        assert client.get(f"/studies/{UID_A}/report.json", headers=AUTH).status_code == 404
    finally:
        reg.update_analysis(c.id, status="failed", report_dir=None)
        link.unlink()


@pytest.mark.parametrize("path", [
    "/studies/..%2F..%2Fetc/report.json",
    "/studies/..%2F..%2F..%2F..%2Fetc%2Fpasswd/report.json",
    "/studies/../../etc/report.json",
    "/studies/%2e%2e/report.json",
    "/studies/1.2.840.abc/report.json",
    "/studies/1.2.840.10008/..%2F..%2Freport.json",
    "/studies/1.2.3%00/report.json",
    "/studies/" + "1." * 40 + "1/report.pdf",
    "/analyses/..%2F1/report.json",
])
def test_traversal_attempts(env, path):
    r = env["client"].get(path, headers=AUTH)
    assert r.status_code in (400, 404, 422), (path, r.status_code)
    assert b"root:" not in r.content and b"%PDF" not in r.content
    assert not r.headers["content-type"].startswith(("application/pdf", "text/html"))


# --- batches ---------------------------------------------------------------------------------------
@pytest.fixture
def fake_batch(env, monkeypatch):
    calls = []

    def start_reanalysis(registry, queue, *, since=None, study_uids=None, all_studies=False, reason="",
                         created_by=None):
        assert queue is env["app"].state.queue
        calls.append({"since": since, "study_uids": study_uids, "all": all_studies, "reason": reason})
        uids = study_uids or [s.study_uid for s in registry.studies()]
        b = registry.create_batch(reason, {"since": since.isoformat() if since else None,
                                           "study_uids": study_uids, "all": all_studies}, "9.9.9", len(uids),
                                  created_by=created_by)
        for uid in uids:
            a = registry.get_or_create_analysis(uid, "9.9.9", 1, "batch", batch_id=b.id)
            if uid == UID_A:
                registry.update_analysis(a.id, status="complete")
        return b

    module = types.ModuleType("followup.service.batch")
    module.start_reanalysis = start_reanalysis
    monkeypatch.setitem(sys.modules, "followup.service.batch", module)
    return calls


def test_batches(env, fake_batch):
    client = env["client"]
    assert client.post("/batches", headers=AUTH, json={"reason": "nothing chosen"}).status_code == 400
    assert client.post("/batches", headers=AUTH, json={"study_uids": [], "all": False}).status_code == 400
    assert client.post("/batches", headers=AUTH, json={"study_uids": ["../etc"]}).status_code == 400
    assert client.post("/batches", headers=AUTH, json={"all": True, "bogus": 1}).status_code == 422
    assert fake_batch == []
    r = client.post("/batches", headers=AUTH,
                    json={"study_uids": [UID_A, UID_B], "since": None, "all": False, "reason": "new model"})
    assert r.status_code == 201, r.text
    b = r.json()
    assert fake_batch == [{"since": None, "study_uids": [UID_A, UID_B], "all": False, "reason": "new model"}]
    assert b["reason"] == "new model" and b["algorithm_version"] == "9.9.9" and b["total"] == 2
    assert b["created_by"] == "service"  # the authenticated identity (FOLLOWUP_API_TOKEN's)
    assert b["progress"] == {"batch_id": b["id"], "total": 2, "done": 1, "remaining": 1,
                             "by_status": {"complete": 1, "queued": 1}}
    r = client.post("/batches", headers=AUTH, json={"since": "2024-01-01", "all": False, "reason": "since"})
    assert r.status_code == 201 and fake_batch[-1]["since"] == dt.date(2024, 1, 1)
    listed = client.get("/batches", headers=AUTH).json()
    assert [x["id"] for x in listed][-1] == b["id"] and len(listed) >= 2
    one = client.get(f"/batches/{b['id']}", headers=AUTH).json()
    assert one["progress"]["done"] == 1 and one["selector"]["study_uids"] == [UID_A, UID_B]
    assert client.get("/batches/99999", headers=AUTH).status_code == 404


def test_batch_errors_become_400(env, monkeypatch):
    def start_reanalysis(*a, **k):
        raise ValueError("no study matches")

    module = types.ModuleType("followup.service.batch")
    module.start_reanalysis = start_reanalysis
    monkeypatch.setitem(sys.modules, "followup.service.batch", module)
    r = env["client"].post("/batches", headers=AUTH, json={"all": True})
    assert r.status_code == 400 and "no study matches" in r.json()["detail"]


def test_batches_need_a_work_queue(tmp_path, fake_batch):
    settings = Settings(data_dir=tmp_path, api_token=TOKEN)
    client = TestClient(create_app(settings, Registry(settings.database_url)))  # no queue
    r = client.post("/batches", headers=AUTH, json={"all": True})
    assert r.status_code == 503 and "work queue" in r.json()["detail"]
    assert fake_batch == []


# --- spec and page ---------------------------------------------------------------------------------
def test_openapi_lists_routes(env):
    client = env["client"]
    assert client.get("/openapi.json").status_code == 401
    r = client.get("/openapi.json", headers=AUTH)
    assert r.status_code == 200
    spec = r.json()
    paths = spec["paths"]
    for p in ("/health", "/procedures", "/studies", "/studies/{study_uid}", "/studies/{study_uid}/report.{fmt}",
              "/analyses/{analysis_id}/report.{fmt}", "/deliveries", "/batches", "/batches/{batch_id}"):
        assert p in paths, p
    assert {"get", "post"} <= set(paths["/procedures"]) and {"get", "post"} <= set(paths["/batches"])
    schemas = spec["components"]["schemas"]
    for name in ("StudySummary", "StudyDetail", "BatchOut", "BatchRequest", "ProcedureOut", "Health"):
        assert name in schemas
    body = paths["/procedures"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "lesion" in body["properties"] and "$ref" not in json.dumps(body)
    assert "HTTPBearer" in json.dumps(spec["components"].get("securitySchemes", {}))
    api_paths = {r.path for r in env["app"].routes if isinstance(r, APIRoute) and r.include_in_schema}
    assert api_paths <= set(paths)


def test_page(env):
    r = env["client"].get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "sessionStorage" in page and "Authorization" in page and 'el("progress"' in page
    assert "Bearer" in page and "patients/search" in page and "report-view" in page
    # no patient data and no external assets
    for secret in (PATIENT, env["patient_id"], env["study_uid"], "ACC-REAL", TOKEN):
        assert secret not in page
    # no external assets (the one URL is SVG's XML namespace, a name, never fetched)
    assert "https://" not in page and "src=" not in page
    assert page.replace("http://www.w3.org/2000/svg", "").count("http://") == 0
    assert 'style="' not in page and " on" + "click=" not in page  # the CSP allows neither
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
