"""The PDF report, its DICOM Encapsulated PDF wrapping and the FHIR R5 bundle, on real reports.

Reports come from ``run_job`` on small synthetic pairs: a residual (complete) case, an early
(deferred) case and a failed one (the baseline pointed at an empty folder).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pypdf import PdfReader

from followup.job import load_inputs, report_images, run_job
from followup.procedure import load_procedure
from followup.reporting.encapsulated_pdf import ENCAPSULATED_PDF_STORAGE, encapsulated_pdf
from followup.reporting.fhir_report import build_fhir_bundle
from followup.reporting.html_report import render_html
from followup.reporting.pdf_report import render_pdf
from followup.reporting.report_text import person_name
from followup.synth import generate_pair


def _case(root: Path, scenario: str, *, empty_baseline: bool = False):
    pair = root / scenario
    if not pair.exists():
        generate_pair(pair, scenario, 1, "per-phase", "small")
    baseline = pair / "baseline"
    if empty_baseline:
        baseline = root / "empty"
        baseline.mkdir(exist_ok=True)
    record = load_procedure(pair / "procedure.json")
    out = run_job(pair / "followup", baseline, record, root / f"out-{scenario}-{empty_baseline}")
    images = []
    if out.report.status == "complete":
        images = report_images(out.assessment, load_inputs(pair / "followup", baseline, record))
    source = pydicom.dcmread(sorted((pair / "followup").rglob("*.dcm"))[0], stop_before_pixels=True)
    # "report": the typed report the renderers read; "json": the same as report.json gives it
    return {"report": out.report, "json": out.report.model_dump(mode="json"), "images": images,
            "source": source}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("pdf-fhir")
    c = {"complete": _case(root, "residual"), "deferred": _case(root, "early"),
         "failed": _case(root, "residual", empty_baseline=True)}
    assert [c[k]["json"]["status"] for k in ("complete", "deferred", "failed")] == ["complete", "deferred",
                                                                                    "failed"]
    for k in c:
        c[k]["pdf"] = render_pdf(c[k]["report"], c[k]["images"])
    return c


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join((page.extract_text() or "").split()) for page in reader.pages)


def _flat(s: str) -> str:
    return " ".join(s.split())


# --------------------------------------------------------------------------------------------- PDF

def test_complete_pdf_content(cases):
    c = cases["complete"]
    r, pdf = c["json"], c["pdf"]
    assert pdf.startswith(b"%PDF")
    text = _text(pdf)
    p, (lo, hi) = r["residual_probability"], r["probability_interval"]
    assert f"{100 * p:.0f}%" in text
    assert f"95% model-based interval {100 * lo:.0f}% - {100 * hi:.0f}%" in text
    assert f"BI-RADS {r['birads']['category']}" in text and r["endpoint"][:60] in text
    assert "onfidence" in text  # "Confidence: normal" or "Low confidence: ..."
    assert "86%" in text and "31%" in text
    for rec in r["recommendations"]:
        assert rec["code"] in text
    assert person_name(r["patient"]["name"]) in text and r["patient"]["id"] in text
    assert r["patient"]["name"] not in text  # the raw PN, carets and all (issue 22, F14)
    for heading in ("Recommendations", "Key images", "Findings", "Suspicious foci", "What drove the number",
                    "Caveats", "Technical details"):
        assert heading in text, heading
    assert "assumption" in text  # driver tags
    lexicon = r["findings"]["suspicious_foci"][0]["lexicon"]
    assert _flat(lexicon["phrase"]) in text  # the finding in the BI-RADS lexicon's words
    assert "decision support, not a diagnosis" in text
    n = len(PdfReader(io.BytesIO(pdf)).pages)
    assert f"page 1 of {n}" in text and f"page {n} of {n}" in text
    assert r["algorithm"]["version"] in text


@pytest.mark.parametrize("kind", ["complete", "deferred", "failed"])
def test_every_report_says_technique_comparison_and_what_is_not_assessed(cases, kind):
    """report.json, the PDF, the HTML and the FHIR DiagnosticReport carry the same three (issue 24)."""
    from html import unescape

    from followup.reporting.html_report import render_html

    c = cases[kind]
    r = c["json"]
    technique, compared, scope = r["technique"]["sentence"], r["comparison"]["sentence"], r["not_assessed"]
    assert technique.startswith("1.5 T, axial 3D T1-weighted spoiled gradient echo with fat suppression, 1 pre- and ")
    assert "Gadobutrol" in technique and "; slices " in technique
    assert compared.startswith("Compared with the pre-procedure MRI of " if kind == "complete" else
                               f"No comparison made: the analysis {'was deferred' if kind == 'deferred' else 'failed'}")
    assert scope.startswith("Not assessed by this analysis:") and "contralateral breast" in scope \
        and "axillae" in scope and "T2-weighted" in scope
    if kind == "complete":
        assert r["comparison"]["baseline_study_date"] == r["studies"]["baseline"]["study_date"]
        assert f"{r['findings']['ablation_zone']['volume_ml']:.1f} ml" in compared
    text = _text(c["pdf"])
    for sentence in (technique, compared, scope):
        assert _flat(sentence) in text, sentence
    html = unescape(render_html(c["report"], []))
    assert "<h2>Technique and comparison</h2>" in html
    for sentence in (technique, compared, scope):
        assert sentence in html, sentence
    (dr,) = _resources(build_fhir_bundle(c["report"]), "DiagnosticReport")
    notes = [n["text"] for n in dr["note"]]
    assert notes[:3] == [f"Technique: {technique}", f"Comparison: {compared}", f"Not assessed: {scope}"]


def test_complete_pdf_order_follows_html(cases):
    text = _text(cases["complete"]["pdf"])
    order = ["BI-RADS", "Probability of", "Recommendations", "Key images", "Technique and comparison", "Findings",
             "What drove the number", "Caveats", "Technical details"]
    positions = [text.index(h) for h in order]
    assert positions == sorted(positions)


def test_complete_pdf_embeds_images(cases):
    reader = PdfReader(io.BytesIO(cases["complete"]["pdf"]))
    n = sum(len(page.images) for page in reader.pages)
    assert n >= 1
    assert n == len(cases["complete"]["images"])


def test_key_images_lead_with_the_mip_then_each_finding(cases):
    """Issue 24 item 7: the MIP of the treated breast first, then a zoomed view of the zone and of
    each suspicious focus, in the HTML and the PDF alike."""
    c = cases["complete"]
    captions = [cap for cap, _ in c["images"]]
    assert captions[0].startswith("Maximum-intensity projection of the first subtraction")
    assert "the left half of the field" in captions[0]  # the synthetic pair: bilateral, left breast
    n = len(c["json"]["findings"]["suspicious_foci"])
    assert n >= 1
    names = [cap.split(":")[0] for cap in captions[1:2 + n]]
    assert names == ["Ablation zone"] + [f"Focus {k}" for k in range(1, n + 1)]
    html = render_html(c["report"], c["images"])
    assert html[html.index("<img"):].startswith('<img alt="Maximum-intensity projection')
    text = _text(c["pdf"])
    assert text.index("Maximum-intensity projection") < text.index("Focus 1: ") < text.index("Findings")


def test_deferred_and_failed_pdf_say_why(cases):
    for kind, word in (("deferred", "Deferred"), ("failed", "Analysis failed")):
        r = cases[kind]["json"]
        text = _text(cases[kind]["pdf"])
        assert word in text
        assert _flat(r["reason"]) in text
        assert "86%" in text and "31%" in text
        for rec in r["recommendations"]:
            assert rec["code"] in text
        assert "Probability of residual tumour" not in text


def test_pdf_is_deterministic_and_escapes_markup(cases):
    c = cases["complete"]
    assert render_pdf(c["report"], c["images"]) == c["pdf"]
    d = cases["deferred"]["report"]
    r = d.model_copy(update={"patient": d.patient.model_copy(update={"name": "O'NEIL^Ann <b>&amp; Co</b>"}),
                             "reason": "reason with <markup> & an unclosed <font tag"})
    text = _text(render_pdf(r, []))
    assert "O'NEIL, Ann <b>&amp; Co</b>" in text
    assert "reason with <markup> & an unclosed <font tag" in text


def test_pdf_page_renders_with_pdftoppm(cases, tmp_path):
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed: PDF rendering NOT checked")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(cases["complete"]["pdf"])
    res = subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "p")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    pngs = list(tmp_path.glob("p*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 1000
    assert pngs[0].read_bytes().startswith(b"\x89PNG")


# --------------------------------------------------------------------------- encapsulated PDF

def _dciodvfy_errors(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: DICOM validity NOT checked")
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (res.stdout + res.stderr).splitlines() if "Error" in line]


@pytest.mark.parametrize("kind", ["complete", "deferred"])
def test_encapsulated_pdf_valid_and_round_trips(cases, kind, tmp_path):
    c = cases[kind]
    src = c["source"]
    ds = encapsulated_pdf(c["pdf"], src, series_uid=pydicom.uid.generate_uid(),
                          sop_uid=pydicom.uid.generate_uid(), software_version="0.1.0")
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert _dciodvfy_errors(path) == []
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.SOPClassUID == ENCAPSULATED_PDF_STORAGE
    assert back.EncapsulatedDocument.startswith(b"%PDF")
    assert len(back.EncapsulatedDocument) % 2 == 0
    assert back.EncapsulatedDocumentLength == len(c["pdf"])
    assert back.EncapsulatedDocument[:len(c["pdf"])] == c["pdf"]
    assert back.StudyInstanceUID == src.StudyInstanceUID == c["json"]["studies"]["followup"]["study_instance_uid"]
    assert back.PatientID == src.PatientID
    assert str(back.PatientName) == str(src.PatientName)
    assert back.get("AccessionNumber", "") == src.get("AccessionNumber", "")
    assert back.Modality == "DOC" and back.SeriesNumber == 9002 and back.ConversionType == "WSD"
    assert back.MIMETypeOfEncapsulatedDocument == "application/pdf"
    code = back.ConceptNameCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("18748-4", "LN")
    assert back.SeriesInstanceUID not in src.SeriesInstanceUID


def test_encapsulated_pdf_invents_nothing(cases):
    src = pydicom.Dataset()
    src.StudyInstanceUID = cases["complete"]["source"].StudyInstanceUID
    src.PatientID = "P1"
    ds = encapsulated_pdf(b"%PDF-1.4 x", src, series_uid="1.2.3", sop_uid="1.2.3.4", software_version="1")
    for kw in ("PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyDate", "StudyTime",
               "StudyID", "ReferringPhysicianName"):
        assert kw in ds and not ds[kw].value, kw  # present (type 2) and empty: nothing invented
    assert ds.PatientID == "P1"
    assert len(ds.EncapsulatedDocument) == 10 and ds.EncapsulatedDocumentLength == 10
    with pytest.raises(ValueError):
        encapsulated_pdf(b"not a pdf", src, series_uid="1.2.3", sop_uid="1.2.3.4", software_version="1")


# ------------------------------------------------------------------------------------------- FHIR

def _resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _coded(resource: dict, code: str) -> bool:
    return any(c.get("code") == code for c in resource["code"].get("coding", []))


def test_fhir_bundle_complete(cases):
    from fhir.resources.bundle import Bundle

    c = cases["complete"]
    r = c["json"]
    bundle = build_fhir_bundle(c["report"], pdf=c["pdf"])
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls) and all(u.startswith("urn:uuid:") for u in urls)

    (patient,) = _resources(bundle, "Patient")
    assert patient["identifier"][0]["value"] == r["patient"]["id"]
    assert patient["gender"] == "female" and patient["birthDate"] == "1958-03-12"
    (study,) = _resources(bundle, "ImagingStudy")
    assert {"system": "urn:dicom:uid",
            "value": f"urn:oid:{r['studies']['followup']['study_instance_uid']}"} in study["identifier"]

    obs = _resources(bundle, "Observation")
    (prob,) = [o for o in obs if _coded(o, "residual-tumour-probability")]
    assert prob["valueQuantity"]["value"] == round(100 * r["residual_probability"], 2)
    assert prob["valueQuantity"]["code"] == "%" and prob["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    bounds = {comp["code"]["text"]: comp["valueQuantity"]["value"] for comp in prob["component"]
              if "interval" in comp["code"]["text"]}
    lo, hi = r["probability_interval"]
    assert bounds == {"95% interval lower bound": round(100 * lo, 2), "95% interval upper bound": round(100 * hi, 2)}
    notes = " ".join(n["text"] for n in prob["note"])
    assert "86%" in notes and all(d["name"] in notes for d in r["drivers"])
    foci = [o for o in obs if _coded(o, "suspicious-focus")]
    assert len(foci) == len(r["findings"]["suspicious_foci"]) >= 1
    comps = {comp["code"]["coding"][0]["code"]: comp for comp in foci[0]["component"]}
    assert comps["largest-diameter"]["valueQuantity"]["value"] == round(
        r["findings"]["suspicious_foci"][0]["largest_diameter_mm"], 1)
    assert comps["curve-type"]["valueCodeableConcept"]["coding"][0]["code"] == \
        r["findings"]["suspicious_foci"][0]["curve_type"]
    # the BI-RADS lexicon as coded components (SNOMED CT / DICOM where the word has a code)
    lexicon = r["findings"]["suspicious_foci"][0]["lexicon"]
    by_name = {comp["code"]["text"]: comp["valueCodeableConcept"] for comp in foci[0]["component"]
               if "valueCodeableConcept" in comp}
    assert by_name["Finding type (BI-RADS MRI)"]["text"].lower().startswith(lexicon["finding"])
    if lexicon["shape"]:
        assert by_name["Shape"]["coding"][0]["system"] == "http://snomed.info/sct"
    assert lexicon["phrase"] in " ".join(n["text"] for n in foci[0]["note"])
    (cover,) = [o for o in obs if _coded(o, "ablation-zone-covers-margin")]
    assert cover["valueBoolean"] == r["findings"]["ablation_zone"]["covers_tumour_plus_margin"]
    study_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ImagingStudy")
    for o in obs:
        assert o["status"] == "final" and o["derivedFrom"] == [{"reference": study_url}]
        assert o["category"][0]["coding"][0]["code"] == "imaging"

    (dr,) = _resources(bundle, "DiagnosticReport")
    assert dr["status"] == "final" and _coded(dr, "18748-4")
    assert dr["effectiveDateTime"] == r["studies"]["followup"]["study_date"]
    obs_urls = {e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"}
    assert {x["reference"] for x in dr["result"]} == obs_urls
    assert f"{100 * r['residual_probability']:.0f}%" in dr["conclusion"] and "interval" in dr["conclusion"]
    assert dr["presentedForm"][0]["contentType"] == "application/pdf"
    import base64
    assert base64.b64decode(dr["presentedForm"][0]["data"]) == c["pdf"]
    note_text = " ".join(n["text"] for n in dr["note"])
    assert all(rec["code"] in note_text for rec in r["recommendations"]) and "31%" in note_text


def test_fhir_bundle_deferred_and_failed(cases):
    for kind, status, word in (("deferred", "partial", "Deferred"), ("failed", "final", "failed")):
        r = cases[kind]["json"]
        bundle = build_fhir_bundle(cases[kind]["report"])
        assert _resources(bundle, "Observation") == []
        assert len(_resources(bundle, "Patient")) == 1 and len(_resources(bundle, "ImagingStudy")) == 1
        (dr,) = _resources(bundle, "DiagnosticReport")
        assert dr["status"] == status and "result" not in dr and "presentedForm" not in dr
        assert word in dr["conclusion"] and r["reason"] in dr["conclusion"]


def test_fhir_bundle_deterministic(cases):
    for kind in ("complete", "deferred"):
        r, pdf = cases[kind]["report"], cases[kind]["pdf"]
        assert build_fhir_bundle(r, pdf=pdf) == build_fhir_bundle(r, pdf=pdf)


def test_fhir_bundle_rejects_invalid(cases):
    import pydantic

    r = cases["deferred"]["report"].model_copy(update={"created": "not a time"})
    with pytest.raises(pydantic.ValidationError):
        build_fhir_bundle(r)
