"""DICOM SR (TID 1500) and SEG written by `followup analyze`: validity, structure, round trip."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from followup.job import run_job
from followup.procedure import load_procedure


def run_analysis(baseline: Path, followup: Path, procedure: Path, out: Path):
    return run_job(followup, baseline, load_procedure(procedure), out)


def _json(res) -> dict:
    """The report as report.json gives it."""
    return res.report.model_dump(mode="json")


@pytest.fixture(scope="module")
def results(synth_pair, tmp_path_factory):
    out = {}
    pair = synth_pair("residual", 1, "per-phase")
    out["complete"] = (pair, run_analysis(pair / "baseline", pair / "followup", pair / "procedure.json",
                                          tmp_path_factory.mktemp("complete")))
    early = synth_pair("early", 2, "per-phase")
    out["deferred"] = (early, run_analysis(early / "baseline", early / "followup", early / "procedure.json",
                                           tmp_path_factory.mktemp("deferred")))
    empty = tmp_path_factory.mktemp("empty-baseline")
    out["failed"] = (pair, run_analysis(empty, pair / "followup", pair / "procedure.json",
                                        tmp_path_factory.mktemp("failed")))
    return out


def _dciodvfy_errors(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: DICOM validity NOT checked")
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("kind", ["complete", "deferred", "failed"])
def test_objects_pass_dciodvfy(results, kind):
    _, res = results[kind]
    names = ["sr"] + (["seg"] if kind == "complete" else [])
    assert set(names) <= set(_json(res)["outputs"])
    for name in names:
        assert _dciodvfy_errors(res.paths[name]) == [], name


def test_sr_tree_prints_with_dsrdump(results):
    if shutil.which("dsrdump") is None:
        pytest.skip("dsrdump (Debian package dcmtk) is not installed: SR tree NOT checked")
    _, res = results["complete"]
    out = subprocess.run(["dsrdump", str(res.paths["sr"])], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for text in ("Comprehensive 3D SR", "Imaging Measurement Report", "Probability of cancer",
                 "Magnetic resonance imaging of breast", "Cryoablation zone", "Referenced Segment",
                 "Qualitative Evaluations", "Recommendation", "Device Observer Name"):
        assert text in out.stdout, text


def test_sr_belongs_to_the_followup_study_and_references_its_images(results):
    pair, res = results["complete"]
    sr = pydicom.dcmread(res.paths["sr"])
    src = pydicom.dcmread(sorted((pair / "followup").glob("*.dcm"))[0], stop_before_pixels=True)
    assert sr.StudyInstanceUID == src.StudyInstanceUID
    assert sr.PatientID == src.PatientID and sr.PatientName == src.PatientName
    assert sr.SeriesInstanceUID not in {src.SeriesInstanceUID}
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    referenced = {item.ReferencedSOPInstanceUID
                  for study in sr.CurrentRequestedProcedureEvidenceSequence
                  for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    dce = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in (pair / "followup").glob("*.dcm")
           if "DYN" in pydicom.dcmread(f, stop_before_pixels=True).SeriesDescription}
    assert dce <= referenced
    assert pydicom.dcmread(res.paths["seg"]).SOPInstanceUID in referenced


def _num(group, meaning):
    for m in group.get_measurements():
        if m.name.meaning == meaning:
            return m.value
    raise KeyError(meaning)


def test_sr_round_trip_recovers_the_report(results):
    _, res = results["complete"]
    r = _json(res)
    sr = hd.sr.srread(res.paths["sr"])
    groups = sr.content.get_image_measurement_groups()
    vol_groups = sr.content.get_volumetric_roi_measurement_groups()
    assessment = next(g for g in groups if g.tracking_identifier == "Residual tumour assessment")
    assert _num(assessment, "Probability of cancer") == pytest.approx(100 * r["residual_probability"], abs=1e-9)
    lo, hi = r["probability_interval"]
    bound = "Residual tumour probability, 95% interval {} bound"
    assert _num(assessment, bound.format("lower")) == pytest.approx(100 * lo, abs=1e-9)
    assert _num(assessment, bound.format("upper")) == pytest.approx(100 * hi, abs=1e-9)
    zone = next(g for g in vol_groups if g.tracking_identifier == "Ablation zone")
    z = r["findings"]["ablation_zone"]
    assert _num(zone, "Volume") == pytest.approx(z["volume_ml"], abs=1e-9)
    assert _num(zone, "Smallest ablative margin around the mapped tumour") == pytest.approx(z["smallest_margin_mm"])
    assert zone.finding_sites[0].laterality.meaning == {"L": "Left", "R": "Right"}[r["procedure"]["laterality"]]
    foci = [g for g in vol_groups if g.tracking_identifier.startswith("Suspicious focus")]
    assert len(foci) == len(r["findings"]["suspicious_foci"]) >= 1
    f0 = r["findings"]["suspicious_foci"][0]
    assert _num(foci[0], "Long axis") == pytest.approx(f0["largest_diameter_mm"])
    assert _num(foci[0], "Peak percent enhancement") == pytest.approx(f0["peak_enhancement_pct"])
    curve = [e for e in foci[0].get_qualitative_evaluations() if e.name.meaning.startswith("Kinetic curve type")]
    assert curve[0].value.meaning.lower().startswith(f0["curve_type"])
    assert foci[0].referenced_segment is not None
    # the BI-RADS lexicon, coded: every descriptor report.json gives, and none it leaves out
    lexicon = f0["lexicon"]
    coded = {e.name.meaning: e.value.meaning for e in foci[0].get_qualitative_evaluations()}
    assert coded["Finding type (BI-RADS MRI)"] == {"mass": "Mass", "focus": "Focus (enhancing, < 5 mm)"}[
        lexicon["finding"]]
    assert coded["Initial phase enhancement (BI-RADS MRI)"].lower() == lexicon["initial_phase"]
    for key, name in (("shape", "Shape"), ("margin", "Margins"),
                      ("internal_enhancement", "Internal enhancement (BI-RADS MRI)")):
        if lexicon[key] is None:
            assert name not in coded
        else:
            assert lexicon[key].split()[0] in coded[name].lower(), (key, coded[name])
    assert lexicon["phrase"].lower().startswith(lexicon["shape"] or lexicon["finding"])
    # text items: status, caveats, recommendations, exactly
    ds = pydicom.dcmread(res.paths["sr"])
    container = next(i for i in ds.ContentSequence if i.ValueType == "CONTAINER"
                     and i.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations")
    texts = [(i.ConceptNameCodeSequence[0].CodeMeaning, i.TextValue) for i in container.ContentSequence
             if i.ValueType == "TEXT"]
    recs = [t for m, t in texts if m == "Recommendation"]
    assert recs == [f"[{x['code']}] {x['text']}" for x in r["recommendations"]]
    assert [t for m, t in texts if m == "Caveat"] == [c["text"] for c in r["caveats"]]
    # technique (DCM 121065), comparison (DCM 111424), not assessed (private): issue 24
    coded = {(i.ConceptNameCodeSequence[0].CodingSchemeDesignator, i.ConceptNameCodeSequence[0].CodeValue):
             i.TextValue for i in container.ContentSequence if i.ValueType == "TEXT"}
    assert coded[("DCM", "121065")] == r["technique"]["sentence"] and "1.5 T, axial 3D" in r["technique"]["sentence"]
    assert coded[("DCM", "111424")] == r["comparison"]["sentence"]
    assert coded[("99FOLLOWUP", "FU090")] == r["not_assessed"]


def test_seg_overlaps_the_analysis_masks_exactly(results):
    pair, res = results["complete"]
    a = res.assessment
    seg = hd.seg.segread(res.paths["seg"])
    labels = {d.segment_number: d.segment_label for d in seg.SegmentSequence}
    assert labels[1] == "Ablation zone" and labels[2] == "Enhancing rim"
    assert sum(lbl.startswith("Suspicious focus") for lbl in labels.values()) == len(a.suspicious_foci)
    roi = a.roi
    from followup.dicom import load_dce_study
    from followup.reporting.seg import roi_offset, segment_specs
    fu = load_dce_study(pair / "followup")
    pre = fu.phases[0]
    i0, j0, k0 = roi_offset(pre.volume, roi.grid)
    ni, nj, nk = roi.grid.shape
    uids = pre.sop_instance_uids[k0:k0 + nk]
    specs = segment_specs(a, pair and json.loads((pair / "procedure.json").read_text())["lesion"]["diameter_mm"] / 2,
                          json.loads((pair / "procedure.json").read_text())["margin_mm"])
    got = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids,
                                            segment_numbers=[s.number for s in specs],
                                            assert_missing_frames_are_empty=True)
    for n, spec in enumerate(specs):
        full = np.zeros((nk, pre.volume.shape[1], pre.volume.shape[0]), bool)
        full[:, j0:j0 + nj, i0:i0 + ni] = np.transpose(spec.mask, (2, 1, 0))
        assert np.array_equal(got[..., n].astype(bool), full), spec.label
    assert seg.FrameOfReferenceUID == pydicom.dcmread(fu.source_paths[0], stop_before_pixels=True).FrameOfReferenceUID


def test_deferred_sr_says_why(results):
    _, res = results["deferred"]
    assert "seg" not in _json(res)["outputs"]
    ds = pydicom.dcmread(res.paths["sr"])
    container = next(i for i in ds.ContentSequence if i.ValueType == "CONTAINER"
                     and i.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations")
    status = next(i.TextValue for i in container.ContentSequence if i.ValueType == "TEXT"
                  and i.ConceptNameCodeSequence[0].CodeMeaning == "Analysis status")
    assert status.startswith("deferred:") and "21 days" in status
    texts = {i.ConceptNameCodeSequence[0].CodeValue: i.TextValue for i in container.ContentSequence
             if i.ValueType == "TEXT"}
    r = _json(res)
    assert texts["121065"] == r["technique"]["sentence"] and r["technique"]["phases_post"] >= 1
    assert texts["111424"] == r["comparison"]["sentence"]
    assert texts["111424"].startswith("No comparison made: the analysis was deferred")
    assert texts["FU090"] == r["not_assessed"]
    sr = hd.sr.srread(res.paths["sr"])
    # no measurement group: a group without image coordinates stops OHIF's SR display; the status
    # and the BI-RADS category are coded in the report's Qualitative Evaluations instead
    assert sr.content.get_image_measurement_groups() == []
    coded = {i.ConceptNameCodeSequence[0].CodeMeaning: i.ConceptCodeSequence[0]
             for i in container.ContentSequence if i.ValueType == "CODE"}
    assert coded["Analysis status"].CodeMeaning.startswith("Deferred")
    # BI-RADS 0 (incomplete), coded: DCM 111005 "Assessment Category", SNOMED CT 397138000
    birads = next(i for i in container.ContentSequence if i.ValueType == "CODE"
                  and i.ConceptNameCodeSequence[0].CodeValue == "111005")
    assert birads.ConceptNameCodeSequence[0].CodingSchemeDesignator == "DCM"
    assert (birads.ConceptCodeSequence[0].CodeValue, birads.ConceptCodeSequence[0].CodingSchemeDesignator) == \
        ("397138000", "SCT")


def test_objects_are_idempotent(results, tmp_path):
    pair, res = results["complete"]
    again = run_analysis(pair / "baseline", pair / "followup", pair / "procedure.json", tmp_path)
    for name in ("sr", "seg"):
        for uid in ("sop_instance_uid", "series_instance_uid"):
            assert _json(again)["outputs"][name][uid] == _json(res)["outputs"][name][uid]
