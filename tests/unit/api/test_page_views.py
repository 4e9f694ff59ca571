"""The page's views: patients searched in the registry, a patient's timeline, an analysis's report
view and files, key images with caching, the reanalysis review and its stored "reviewed" marks.

A real registry (SQLite in tmp) and the real application (TestClient); report directories written
as the job writes them (report.json, report.html with inlined PNGs, a DICOM file), small."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from followup.api import create_app, patient_ref
from followup.api.models import ChangeSide
from followup.api.review import compare
from followup.config import Settings
from followup.procedure import parse_procedure
from followup.service.registry import Registry
from followup.service.store import Store
from followup.service.users import add_user

TOKEN = "views-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MR = "1.2.840.10008.5.1.4.1.1.4"
PATIENTS = {  # patient ID -> (name as DICOM PN, birth date DA, studies: (uid, date, accession, role))
    "P-100": ("Doe^Jane^Q", "19580312", [("1.2.3.100.1", dt.date(2025, 1, 5), "ACC-100-B", "baseline"),
                                         ("1.2.3.100.3", dt.date(2025, 9, 1), "ACC-100-F2", "followup"),
                                         ("1.2.3.100.2", dt.date(2025, 3, 1), "ACC-100-F1", "followup")]),
    "P-200": ("Smith^Anna", "19610101", [("1.2.3.200.1", dt.date(2024, 6, 1), "ACC-200-F", "followup")]),
    "P_300": ("O'Brien^Mary", "", [("1.2.3.300.1", dt.date(2023, 2, 2), "X%Y", "followup")]),
}
PROCEDURE = {"patient_id": "P-100", "procedure_date": "2025-01-20", "laterality": "L",
             "lesion": {"center_lps_mm": [10.0, -20.0, 5.0], "diameter_mm": 12, "histology": "IDC", "grade": 2,
                        "dcis_component_pct": 0, "insitu_grade": None},
             "freeze_thaw_cycles": 2, "margin_mm": 10}


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buf, format="PNG")
    return buf.getvalue()


def write_report(directory: Path, *, probability: float | None, recs: tuple[str, ...], trend: str | None = None,
                 revision: int = 1) -> Path:
    """A report directory as the job leaves it, small: JSON, HTML with two inlined images, an SR file."""
    directory.mkdir(parents=True)
    report = {"status": "complete" if probability is not None else "failed", "residual_probability": probability,
              "recommendations": [{"code": c, "text": f"text of {c}"} for c in recs], "days_since_procedure": 42,
              "algorithm": {"name": "followup-residual", "version": "1.0.0"}, "revision": revision,
              "created": "2025-03-02T10:11:12+00:00",
              "outputs": {"sr": {"file": "sr.dcm", "series_instance_uid": "1.2", "sop_instance_uid": "1.2.1",
                                 "sop_class_uid": "1.2.840.10008.5.1.4.1.1.88.34"}},
              "supersedes": {"revision": revision - 1} if revision > 1 else None}
    if trend is not None:
        report["longitudinal"] = {"trend": trend}
    (directory / "report.json").write_text(json.dumps(report))
    imgs = "".join(f'<figure><img alt="{cap}" src="data:image/png;base64,{base64.b64encode(_png(c)).decode()}">'
                   f"<figcaption>{cap}</figcaption></figure>"
                   for cap, c in (("Baseline &amp; tumour", (200, 0, 0)), ("Follow-up", (0, 200, 0))))
    (directory / "report.html").write_text(
        "<!DOCTYPE html><html><head><style>body{color:#123}h1{font-size:22px}</style>"
        "<script>alert(1)</script></head><body><h1>Follow-up breast MRI</h1>"
        f'<div class="p">42% <span style="font-size:16px">(interval)</span></div>'
        f'<p onclick="alert(2)">x &lt;b&gt;</p><div class="imgs">{imgs}</div></body></html>')
    (directory / "sr.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    (directory / "notes.txt").write_text("not a report file")
    return directory


@pytest.fixture
def env(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(data_dir=data, api_token=TOKEN)
    reg = Registry(settings.database_url)
    store = Store(data)
    for pid, (name, birth, studies) in PATIENTS.items():
        for uid, day, acc, role in studies:
            reg.record_instance(study_uid=uid, series_uid=uid + ".9", sop_uid=uid + ".9.1", sop_class_uid=MR,
                                path=str(tmp_path / "missing.dcm"), size=1, patient_id=pid, study_date=day,
                                modality="MR", accession_number=acc, calling_ae="PACS")
            reg.set_study(uid, state=role if role == "baseline" else "complete", role=role, patient_name=name,
                          patient_birth_date=birth)
    reg.add_procedure(parse_procedure(PROCEDURE))
    ids = {}
    for uid, p, recs, rev in (("1.2.3.100.2", 0.08, ("imaging-follow-up",), 1),
                              ("1.2.3.100.3", 0.12, ("imaging-follow-up",), 1)):
        a = reg.get_or_create_analysis(uid, "1.0.0", rev, "realtime")
        out = write_report(store.report_dir(uid, "1.0.0", rev), probability=p, recs=recs)
        reg.update_analysis(a.id, status="complete", probability=p, interval_low=p / 2, interval_high=p * 2,
                            report_dir=str(out), finished_at=dt.datetime(2025, 3, 2, 10, 0))
        ids[uid] = a.id
    app = create_app(settings, reg)
    return {"client": TestClient(app), "registry": reg, "store": store, "ids": ids, "data": data}


def _search(client: TestClient, q: str) -> list[dict]:
    r = client.post("/patients/search", json={"q": q}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


# --- patients ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("q", "expected"), [
    ("", ["P-100", "P-200", "P_300"]),  # most recently imaged first
    ("jane", ["P-100"]), ("DOE JANE", ["P-100"]), ("doe^jane", ["P-100"]), ("Doe, Jane", ["P-100"]),
    ("p-2", ["P-200"]), ("acc-100-f1", ["P-100"]), ("acc", ["P-100", "P-200"]),
    ("o'brien", ["P_300"]), ("%", ["P_300"]), ("_", ["P_300"]), ("x%y", ["P_300"]), ("nobody", []),  # literal % _
    ("jane smith", []),  # every word must match one patient
])
def test_search_runs_in_the_registry(env, q, expected):
    assert [p["patient_id"] for p in _search(env["client"], q)] == expected


def test_patient_list_fields(env):
    (p,) = _search(env["client"], "jane")
    assert p["name"] == "Doe, Jane Q" and p["birth_date"] == "1958-03-12" and p["n_studies"] == 3
    assert p["patient_ref"] == patient_ref("P-100") and p["last_study_date"] == "2025-09-01"
    assert p["latest_probability"] == 0.12 and p["latest_probability_date"] == "2025-09-01"
    assert p["accession_numbers"] == ["ACC-100-B", "ACC-100-F1", "ACC-100-F2"]
    assert env["client"].get("/patients", headers=AUTH).json()[0]["patient_id"] == "P-100"


def test_search_request_is_bounded(env):
    client = env["client"]
    assert client.post("/patients/search", json={"q": "x" * 201}, headers=AUTH).status_code == 422
    assert client.post("/patients/search", json={"q": "x", "extra": 1}, headers=AUTH).status_code == 422
    assert client.get("/patients/search?q=jane", headers=AUTH).status_code in (404, 405)  # never in a URL


def test_names_are_indexed_from_the_stored_headers(tmp_path):
    from followup.testing.instances import encode, mr

    data = tmp_path / "d"
    data.mkdir()
    reg = Registry(f"sqlite:///{data}/r.db")
    ds = mr(patient="P-HDR")
    ds.PatientName, ds.PatientBirthDate = "Header^Helen", "19700102"
    path = data / "one.dcm"
    path.write_bytes(encode(ds))
    reg.record_instance(study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
                        sop_uid=str(ds.SOPInstanceUID), sop_class_uid=MR, path=str(path), size=1,
                        patient_id="P-HDR", study_date=None, modality="MR", accession_number="", calling_ae="X")
    client = TestClient(create_app(Settings(data_dir=data, api_token=TOKEN), reg))
    (p,) = _search(client, "helen")
    assert (p["name"], p["birth_date"], p["patient_id"]) == ("Header, Helen", "1970-01-02", "P-HDR")
    assert reg.studies_to_index() == []  # read once


def test_patient_detail(env):
    client = env["client"]
    r = client.get(f"/patients/{patient_ref('P-100')}", headers=AUTH)
    assert r.status_code == 200
    p = r.json()
    assert p["name"] == "Doe, Jane Q" and p["birth_date"] == "1958-03-12"
    assert [s["study_date"] for s in p["studies"]] == ["2025-01-05", "2025-03-01", "2025-09-01"]  # date order
    assert [s["role"] for s in p["studies"]] == ["baseline", "followup", "followup"]
    assert p["procedures"][0]["procedure_date"] == "2025-01-20" and p["procedures"][0]["lesion"]["diameter_mm"] == 12
    fu = p["studies"][1]
    assert fu["reported"]["probability"] == 0.08 and fu["state"] == "complete" and fu["days_since_procedure"] == 42
    assert fu["recommendations"] == ["text of imaging-follow-up"]
    assert [k["caption"] for k in fu["key_images"]] == ["Baseline & tumour", "Follow-up"]
    assert fu["key_images"][0]["url"] == f"analyses/{env['ids']['1.2.3.100.2']}/key-images/0.png"
    assert p["studies"][0]["key_images"] == [] and p["studies"][0]["reported"] is None
    for ref in ("0" * 12, "nothex", patient_ref("P-100").upper()):
        assert client.get(f"/patients/{ref}", headers=AUTH).status_code == 404


def test_patient_detail_carries_the_newest_longitudinal_comparison(env):
    client, reg, store = env["client"], env["registry"], env["store"]
    assert client.get(f"/patients/{patient_ref('P-100')}", headers=AUTH).json()["longitudinal"] is None
    uid = "1.2.3.100.3"
    a = reg.get_or_create_analysis(uid, "1.0.0", 2, "realtime")
    out = write_report(store.report_dir(uid, "1.0.0", 2), probability=0.3, recs=("targeted-biopsy",),
                       trend="growing", revision=2)
    report = json.loads((out / "report.json").read_text())
    report["longitudinal"] = {"trend": "growing", "trend_reason": "zone grew", "time_points": [
        {"study_date": "2025-03-01", "months_since_procedure": 1.3, "zone_volume_ml": 20.5, "rim_thickness_mm": 1.5,
         "suspicious_foci": [], "current": False},
        {"study_date": "2025-09-01", "months_since_procedure": 7.4, "zone_volume_ml": 26.0, "rim_thickness_mm": None,
         "suspicious_foci": [{"largest_diameter_mm": 6}], "current": True}]}
    (out / "report.json").write_text(json.dumps(report))
    reg.update_analysis(a.id, status="complete", probability=0.3, report_dir=str(out))
    p = client.get(f"/patients/{patient_ref('P-100')}", headers=AUTH).json()
    lg = p["longitudinal"]
    assert lg["trend"] == "growing" and lg["trend_reason"] == "zone grew"
    assert [(t["study_date"], t["zone_volume_ml"], t["suspicious_foci"], t["current"]) for t in lg["time_points"]] == [
        ("2025-03-01", 20.5, 0, False), ("2025-09-01", 26.0, 1, True)]
    assert p["studies"][2]["trend"] == "growing"


def test_identifiers_never_logged(env, caplog):
    caplog.set_level(logging.DEBUG)
    client = env["client"]
    _search(client, "jane")
    client.get(f"/patients/{patient_ref('P-100')}", headers=AUTH)
    for secret in ("Doe", "Jane", "P-100", "ACC-100"):
        assert secret not in caplog.text


# --- an analysis: report view, files, key images -------------------------------------------------------
def test_analysis_view_files_and_revisions(env):
    client, reg = env["client"], env["registry"]
    uid = "1.2.3.100.2"
    first = env["ids"][uid]
    second = reg.get_or_create_analysis(uid, "1.1.0", 1, "batch")
    out = write_report(env["store"].report_dir(uid, "1.1.0", 1), probability=0.3, recs=("peripheral-biopsy",))
    reg.update_analysis(second.id, status="complete", probability=0.3, report_dir=str(out))
    v = client.get(f"/analyses/{second.id}", headers=AUTH).json()
    assert v["analysis"]["algorithm_version"] == "1.1.0" and v["analysis"]["revision"] == 1
    assert v["algorithm_name"] == "followup-residual" and v["report_created"].startswith("2025-03-02")
    assert v["patient_name"] == "Doe, Jane Q" and v["study_date"] == "2025-03-01"
    assert [x["id"] for x in v["revisions"]] == [second.id, first]  # newest first, the earlier one listed
    names = {f["name"] for f in v["files"]}
    assert names == {"report.json", "report.html", "sr.dcm"}  # not notes.txt
    r = client.get(f"/analyses/{second.id}/files/sr.dcm", headers=AUTH)
    assert r.status_code == 200 and r.content[128:132] == b"DICM"
    assert r.headers["content-type"] == "application/dicom" and "attachment" in r.headers["content-disposition"]
    for bad in ("notes.txt", "..%2Freport.json", "missing.dcm", "%2Fetc%2Fpasswd"):
        assert client.get(f"/analyses/{second.id}/files/{bad}", headers=AUTH).status_code == 404, bad
    assert client.get("/analyses/999999", headers=AUTH).status_code == 404


def test_analysis_view_links_the_study_in_the_viewer_only_when_configured(env):
    """FOLLOWUP_VIEWER_URL's {study_uid} becomes the study's UID; nothing else of the patient goes
    in the URL; without the setting there is no link (and the page shows none)."""
    aid = env["ids"]["1.2.3.100.2"]
    assert env["client"].get(f"/analyses/{aid}", headers=AUTH).json()["viewer_url"] is None
    template = "http://localhost:8042/ohif/viewer?StudyInstanceUIDs={study_uid}"
    settings = Settings(data_dir=env["data"], api_token=TOKEN, viewer_url=template)
    client = TestClient(create_app(settings, env["registry"]))
    url = client.get(f"/analyses/{aid}", headers=AUTH).json()["viewer_url"]
    assert url == "http://localhost:8042/ohif/viewer?StudyInstanceUIDs=1.2.3.100.2"
    for identifier in ("P-100", "Doe", "Jane", "ACC-100", "1958", patient_ref("P-100")):
        assert identifier not in url
    page = client.get("/").text
    assert "Open the study in the image viewer" in page and 'rel: "noopener noreferrer"' in page


@pytest.mark.parametrize("template", ["http://viewer/?study=", "ftp://viewer/{study_uid}",
                                      "javascript:alert({study_uid})", "http://viewer/{study_uid}/{patient_id}"])
def test_a_viewer_template_without_its_placeholder_or_not_http_is_refused(tmp_path, template):
    with pytest.raises(ValueError, match="FOLLOWUP_VIEWER_URL"):
        Settings(data_dir=tmp_path, viewer_url=template)


def test_report_view_has_no_script_and_no_inline_style(env):
    aid = env["ids"]["1.2.3.100.2"]
    v = env["client"].get(f"/analyses/{aid}/report-view", headers=AUTH).json()
    assert "body{color:#123}" in v["css"]
    body = v["body"]
    assert "<h1>Follow-up breast MRI</h1>" in body and 'data-style="font-size:16px"' in body
    assert "<script" not in body and "alert" not in body and not re.search(r"\sstyle=", body) and "onclick" not in body
    assert "x &lt;b&gt;" in body and "<style" not in body and "<html" not in body


def test_key_images_cached_with_the_token_rule(env):
    client = env["client"]
    aid = env["ids"]["1.2.3.100.2"]
    url = f"/analyses/{aid}/key-images/1.png"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    r = client.get(url, headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).getpixel((0, 0)) == (0, 200, 0)
    assert r.headers["cache-control"] == "private, max-age=86400, immutable" and r.headers["etag"]
    again = client.get(url, headers={**AUTH, "If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get(url, headers={**AUTH, "If-None-Match": '"other"'}).status_code == 200
    assert client.get(f"/analyses/{aid}/key-images/2.png", headers=AUTH).status_code == 404


def test_page_icon_answers(env):
    for path in ("/favicon.ico", "/favicon.svg"):
        r = env["client"].get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml") and b"<svg" in r.content


# --- reanalysis review ---------------------------------------------------------------------------------
def side(p: float | None, recs: tuple[str, ...] = ("imaging-follow-up",), trend: str | None = None,
         status: str = "complete") -> ChangeSide:
    return ChangeSide(analysis_id=1, algorithm_version="1", revision=1, status=status, probability=p,
                      recommendations=list(recs), trend=trend)


@pytest.mark.parametrize(("old", "new", "why"), [
    (side(0.10), side(0.20), ["probability 10 % → 20 % (+10 points)"]),  # exactly 10 points: listed
    (side(0.30), side(0.20), ["probability 30 % → 20 % (-10 points)"]),
    (side(0.10), side(0.199), []),
    (side(0.10), side(0.12, ("peripheral-biopsy",)), ["recommendation imaging-follow-up → peripheral-biopsy"]),
    (side(0.10, trend="involuting"), side(0.10, trend="growing"), ["trend involuting → growing"]),
    (side(0.10), side(0.10, trend="stable"), ["trend none → stable"]),
    (side(0.10), side(None, (), status="failed"),
     ["status complete → failed", "probability 10 % → none", "recommendation imaging-follow-up → none"]),
    (side(0.10), side(0.10), []),
])
def test_compare(old, new, why):
    assert compare(old, new) == why


def test_batch_changes_and_review_marks(env):
    client, reg, store = env["client"], env["registry"], env["store"]
    batch = reg.create_batch("algorithm 1.1", {"all": True}, "1.1.0", 3)
    made = {}
    for uid, p, recs in (("1.2.3.100.2", 0.25, ("peripheral-biopsy",)),  # moved 17 points and recommendation
                         ("1.2.3.100.3", 0.13, ("imaging-follow-up",)),  # moved 1 point: not listed
                         ("1.2.3.200.1", 0.5, ("imaging-follow-up",))):  # nothing earlier to compare with
        a = reg.get_or_create_analysis(uid, "1.1.0", 1, "batch", batch.id)
        out = write_report(store.report_dir(uid, "1.1.0", 1), probability=p, recs=recs)
        reg.update_analysis(a.id, status="complete", probability=p, report_dir=str(out))
        made[uid] = a.id
    queued = reg.create_batch("queued", {"all": True}, "1.1.0", 1)
    reg.get_or_create_analysis("1.2.3.100.3", "1.1.0", 2, "batch", queued.id)
    v = client.get(f"/batches/{batch.id}/changes", headers=AUTH).json()
    assert (v["unchanged"], v["first_analyses"], v["unfinished"], v["threshold_points"]) == (1, 1, 0, 10.0)
    (c,) = v["changes"]
    assert c["study_uid"] == "1.2.3.100.2" and c["patient_name"] == "Doe, Jane Q" and c["study_date"] == "2025-03-01"
    assert c["old"]["analysis_id"] == env["ids"]["1.2.3.100.2"] and c["new"]["analysis_id"] == made["1.2.3.100.2"]
    assert c["reasons"] == ["probability 8 % → 25 % (+17 points)",
                            "recommendation imaging-follow-up → peripheral-biopsy"]
    assert c["review"] is None
    assert client.get(f"/batches/{queued.id}/changes", headers=AUTH).json()["unfinished"] == 1
    url = f"/batches/{batch.id}/changes/{made['1.2.3.100.2']}/review"
    assert client.post(url, json={"reviewer": 5}, headers=AUTH).status_code == 422
    # the mark records the authenticated user (here FOLLOWUP_API_TOKEN's "service"), not a sent name
    r = client.post(url, json={"reviewer": "  Dr   Who "}, headers=AUTH)
    assert r.status_code == 200 and r.json()["reviewed_by"] == "service"
    again = client.post(url, json={}, headers=AUTH)  # the same user again: the mark as it is
    assert again.status_code == 200 and again.json()["reviewed_at"] == r.json()["reviewed_at"]
    other = add_user(reg, "Dr Who", "reviewer")
    conflict = client.post(url, headers={"Authorization": f"Bearer {other}"})  # someone else: 409, the first stands
    assert conflict.status_code == 409 and "service" in conflict.json()["detail"]
    mark = client.get(f"/batches/{batch.id}/changes", headers=AUTH).json()["changes"][0]["review"]
    assert mark["reviewed_by"] == "service"
    assert reg.reviews([made["1.2.3.100.2"]])[made["1.2.3.100.2"]].reviewed_by == "service"  # stored
    other = f"/batches/{queued.id}/changes/{made['1.2.3.100.2']}/review"  # not an analysis of that batch
    assert client.post(other, json={}, headers=AUTH).status_code == 404
    assert client.get("/batches/999/changes", headers=AUTH).status_code == 404
