"""What a breast radiologist reads, in every format, on a DCIS-like synthetic case (issue 24):
non-mass enhancement with its distribution, internal pattern, clock face and distance from the
nipple; BI-RADS 4 with peripheral and targeted biopsy; composition and background enhancement; the
comparison, technique and not-assessed statements; the MIP and zoomed key images; the SR's coded
lexicon and location (dciodvfy clean) and the FHIR Observations."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import highdicom as hd
import pytest
from pypdf import PdfReader

from followup.job import run_job
from followup.procedure import load_procedure


@pytest.fixture(scope="module")
def dcis(synth_pair, tmp_path_factory):
    pair = synth_pair("dcis-nme", 1, "per-phase")
    out = tmp_path_factory.mktemp("dcis-report")
    res = run_job(pair / "followup", pair / "baseline", load_procedure(pair / "procedure.json"), out)
    truth = json.loads((pair / "truth.json").read_text())
    return res, res.report.model_dump(mode="json"), truth


def _flat(s: str) -> str:
    return " ".join(s.split())


def test_report_json_carries_the_nme_its_location_and_the_breast(dcis):
    _, r, truth = dcis
    assert r["status"] == "complete"
    assert r["birads"]["category"] in ("4A", "4B", "4C", "5")
    codes = {x["code"] for x in r["recommendations"]}
    assert {"peripheral-biopsy", "targeted-biopsy"} <= codes
    # one finding counted once: the NME or the mass in it, never both; an NME counted says that its
    # weight is an assumption (caveat and driver)
    finding = [d for d in r["drivers"] if d["name"].startswith("MRI: ")]
    assert len(finding) == 1
    counted_nme = "non-mass" in finding[0]["name"]
    assert ("nme-ratio-assumed" in {c["code"] for c in r["caveats"]}) == counted_nme
    assert finding[0]["assumption"]
    nme = [m for m in r["findings"]["non_mass_enhancement"] if m["suspicious"]]
    assert len(nme) == 1
    m, t = nme[0], truth["nme"][0]
    assert m["distribution"] in ("linear", "segmental") and m["internal_enhancement"] == "clumped"
    assert abs(m["extent_mm"] - t["extent_mm"]) <= 10.0
    # the nipple found where the generator put it, and the NME located from it
    nipple, true_nipple = r["breast"]["nipple_lps_mm"], truth["nipple_lps_mm"]["followup"]
    assert sum((a - b) ** 2 for a, b in zip(nipple, true_nipple, strict=True)) ** 0.5 < 5.0
    assert m["start_location"]["laterality"] == {"R": "right", "L": "left"}[r["procedure"]["laterality"]]
    assert m["location"]["distance_from_nipple_mm"] > 0
    zone = r["findings"]["ablation_zone"]["location"]
    true_zone = truth["zone_location"]
    assert zone["clock_hour"] is None or min(abs(zone["clock_hour"] - true_zone["clock_hour"]) % 12,
                                             12 - abs(zone["clock_hour"] - true_zone["clock_hour"]) % 12) <= 1
    assert abs(zone["distance_from_nipple_mm"] - true_zone["distance_from_nipple_mm"]) < 5.0
    treated = [b for b in r["breast"]["tissue"] if b["treated"]]
    assert len(treated) == 1 and treated[0]["bpe"] in ("minimal", "mild", "moderate", "marked")
    assert "non-mass enhancement" in r["comparison"]["sentence"]
    assert r["technique"]["sentence"] and r["not_assessed"].startswith("Not assessed")


def test_html_and_pdf_show_what_a_radiologist_reads(dcis):
    res, r, _ = dcis
    html = res.paths["html"].read_text()
    text = " ".join(" ".join((p.extract_text() or "").split())
                    for p in PdfReader(io.BytesIO(res.paths["pdf"].read_bytes())).pages)
    m = next(m for m in r["findings"]["non_mass_enhancement"] if m["suspicious"])
    for page in (_flat(html), text):
        assert "Non-mass enhancement" in page
        assert m["phrase"] in page
        assert m["start_location"]["clock_face"] in page.replace("&#x27;", "'")
        assert f"BI-RADS {r['birads']['category']}" in page
        for heading in ("Breast composition", "Background parenchymal enhancement", "Technique", "Comparison",
                        "Not assessed"):
            assert heading in page, heading
    assert "Maximum-intensity projection" in html and "Non-mass enhancement 1:" in html
    assert html.index("Maximum-intensity projection") < html.index("Non-mass enhancement 1:")


def test_sr_codes_the_nme_and_the_locations_and_passes_dciodvfy(dcis):
    res, r, _ = dcis
    sr = hd.sr.srread(res.paths["sr"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    nme = [g for g in groups if g.tracking_identifier.startswith("Non-mass enhancement")]
    assert len(nme) == 1
    coded = {e.name.meaning: e.value.meaning for e in nme[0].get_qualitative_evaluations()}
    m = next(m for m in r["findings"]["non_mass_enhancement"] if m["suspicious"])
    assert coded["Non-mass enhancement distribution (BI-RADS MRI)"].lower() == m["distribution"]
    assert coded["Depth"].lower().startswith(m["location"]["depth"])
    site = nme[0].finding_sites[0]
    assert site.laterality.meaning.lower() == m["location"]["laterality"]
    assert site.topographical_modifier is not None
    distances = [x.value for x in nme[0].get_measurements() if x.name.meaning == "Distance from nipple"]
    assert distances == [pytest.approx(m["location"]["distance_from_nipple_mm"])]
    zone = next(g for g in groups if g.tracking_identifier == "Ablation zone")
    hour = r["findings"]["ablation_zone"]["location"]["clock_hour"]
    if hour is not None:
        assert zone.finding_sites[0].topographical_modifier.meaning == f"{hour} o'clock position"
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed: DICOM validity NOT checked")
    for name in ("sr", "seg"):
        out = subprocess.run(["dciodvfy", str(res.paths[name])], capture_output=True, text=True)
        assert [x for x in (out.stdout + out.stderr).splitlines() if x.startswith("Error")] == [], name


def test_fhir_has_the_nme_and_the_breast_observations(dcis):
    res, r, _ = dcis
    bundle = json.loads(res.paths["fhir"].read_text())
    obs = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    nme = [o for o in obs if o["code"]["coding"][0]["display"] == "Non-mass enhancement at the ablation site"]
    assert len(nme) == 1
    names = {c["code"]["text"] for c in nme[0]["component"]}
    assert {"Non-mass enhancement distribution (BI-RADS MRI)", "Clockface or region", "Distance from nipple"} <= names
    comp = [o for o in obs if o["code"]["text"] == "Breast composition"]
    treated = next(t for t in r["breast"]["tissue"] if t["treated"])
    assert len(comp) == 1 and comp[0]["component"][0]["valueCodeableConcept"]["text"].lower().startswith(treated["bpe"])
