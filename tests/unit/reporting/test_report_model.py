"""The typed report (followup.reporting.model): plain JSON by construction, frozen, built once
before any rendering, so every format carries the same warnings."""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydantic
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pypdf import PdfReader

from followup.pipelines.assess import Assessment, Note, Status
from followup.pipelines.birads import categorise
from followup.pipelines.segmentation.lexicon import FindingType, Lexicon, MassShape
from followup.procedure import parse_procedure
from followup.reporting.build import build_report
from followup.reporting.model import Report
from followup.reporting.plan import NO_SEG_MULTIFRAME, OutputPlan

RECORD = {"patient_id": "P1", "procedure_date": "2024-01-15", "laterality": "L",
          "lesion": {"center_lps_mm": [10.0, -20.0, 5.0], "diameter_mm": 12, "histology": "IDC", "grade": 2,
                     "dcis_component_pct": 10, "insitu_grade": None},
          "freeze_thaw_cycles": 2, "margin_mm": 10}


def _numpy_assessment() -> Assessment:
    """An assessment whose every number is a numpy scalar or array, as the pipeline's are."""
    f32, i64, yes = np.float32, np.int64, np.bool_(True)
    focus = SimpleNamespace(
        centre_lps=np.array([1.26, 2.0, 3.0], np.float32), volume_mm3=f32(100.04), largest_diameter_mm=f32(8.0),
        thickness_mm=np.float64(4.0), peak_pe=f32(210.0), initial_pe=f32(150.0), initial_phase=np.str_("fast"),
        ser=f32("nan"), delayed_change_pct=f32(-12.0), curve_type="washout",
        distance_to_zone_edge_mm=f32(2.5), suspicious=yes, reasons=[np.str_("nodular")],
        present_before=np.bool_(False), fat_centre=np.bool_(False),
        kinetics_reliable=yes, lexicon=Lexicon(FindingType.MASS, MassShape.OVAL, None, None, "fast", "washout",
                                               ("margin: 2.0 voxels across",), {"solidity": f32(0.93)}))
    zone = SimpleNamespace(centre_lps=np.array([1.0, 2.0, 3.0]), volume_ml=f32(11.3),
                           axes_mm=np.array([30.0, 25.0, 20.0], np.float32), axis_directions=np.eye(3),
                           smallest_margin_mm=f32(2.8), covers_margin=np.bool_(False), leaked=np.bool_(False))
    rim = SimpleNamespace(thickness_mm=f32(3.0), thickness_p90_mm=f32(4.0), uniform=yes, initial_pe=f32(46.0),
                          delayed_change_pct=f32(25.6), curve_type="persistent", initial_phase="slow")
    reg = SimpleNamespace(quality="good", to_json=lambda: {
        "method": "rigid", "similarity_before": {"mutual_information": f32(0.2), "local_ncc": f32(0.5)},
        "similarity_after": {"mutual_information": f32(0.6), "local_ncc": np.float64(0.9)},
        "quality": "good", "quality_reasons": [], "followup_to_baseline_affine": np.eye(4, dtype=np.float32)})
    driver = SimpleNamespace(to_json=lambda: {"name": "MRI: focus", "odds_factor": f32(3.0),
                                              "probability_before": f32(0.1), "probability_after": f32(0.25),
                                              "source": "x", "assumption": np.bool_(False)})
    probability = SimpleNamespace(probability=np.float64(0.74), interval=(f32(0.24), f32(0.95)),
                                  prior=f32(0.1), drivers=[driver], confidence="normal", question="residual")
    return Assessment(  # type: ignore[arg-type]
        Status.COMPLETE, None, i64(40), registration=reg, tumour_center_followup=np.array([1.0, 2.0, 3.0], np.float32),
        roi=SimpleNamespace(alignments=[SimpleNamespace(to_json=lambda: {
            "phase": i64(1), "shift_mm": f32(0.7), "realigned": yes})]),
        segmentation=SimpleNamespace(zone=zone, rim=rim, foci=[focus], nme=()), probability=probability,
        birads=categorise("complete", 0.74, imaging_used=True, suspicious_at_site=True, benign_appearance=False,
                          confidence_normal=True),
        caveats=(Note("mri-npv", "text"),), recommendations=(Note("peripheral-biopsy", "text"),))


def _study() -> SimpleNamespace:
    return SimpleNamespace(
        study_uid="1.2.3", study_date=dt.date(2024, 3, 1), accession_number="A1", series_uids=["1.2.3.4"],
        series_description="DYN fatsat", instances=[],
        phases=[SimpleNamespace(time_s=np.float32(0.0), contrast=None),
                SimpleNamespace(time_s=np.float64("inf"), contrast=None)],
        ordering="TemporalPositionIdentifier", rejected_files=[],
        ignored_series=[SimpleNamespace(series_uid="1.2.3.5", description=None, reason="T2")])


def test_builder_takes_numpy_values_and_round_trips_as_plain_json():
    from followup.reporting.build import patient_identity

    ds = pydicom.Dataset()
    ds.PatientID, ds.PatientName, ds.PatientSex = "P1", "DOE^JANE", "F"
    plan = OutputPlan(outputs={}, warnings=(np.str_("a warning"),))  # type: ignore[arg-type]
    report = build_report(_numpy_assessment(), parse_procedure(RECORD), _study(), None,  # type: ignore[arg-type]
                          patient_identity(ds), plan, revision=np.int64(2))  # type: ignore[arg-type]
    data = json.loads(report.model_dump_json())
    assert Report.model_validate(data) == report
    assert json.loads(json.dumps(data)) == data  # the standard library writes it as it is
    focus = data["findings"]["suspicious_foci"][0]
    assert focus["center_lps_mm"] == [1.3, 2.0, 3.0] and focus["ser"] is None and focus["suspicious"] is True
    assert type(report.findings.suspicious_foci[0].suspicious) is bool  # type: ignore[union-attr]
    assert focus["lexicon"]["shape"] == "oval" and focus["lexicon"]["margin"] is None
    assert focus["lexicon"]["figures"] == {"solidity": pytest.approx(0.93)}
    assert focus["lexicon"]["phrase"] == "Oval mass; initial fast, delayed washout"
    assert type(report.findings.rim.uniform) is bool  # type: ignore[union-attr]
    assert type(report.days_since_procedure) is int and type(report.revision) is int
    assert data["studies"]["followup"]["phase_times_s"] == [0.0, None]
    assert data["registration"]["tumour_center_followup_lps_mm"] == [1.0, 2.0, 3.0]
    assert data["findings"]["motion_correction"] == [{"phase": 1, "shift_mm": pytest.approx(0.7),
                                                      "realigned": True}]
    assert data["probability_interval"] == [0.24, 0.95] and data["warnings"] == ["a warning"]
    assert "centre" not in json.dumps(data)  # one spelling in every key
    # the technique says what the (few) headers say, nothing more; the comparison names the baseline
    assert data["technique"]["sentence"] == "with fat suppression, 1 pre- and 1 post-contrast phase"
    assert data["technique"]["field_strength_t"] is None and data["technique"]["phases_post"] == 1
    assert data["comparison"] == {
        "sentence": "No pre-procedure MRI or earlier follow-up available for comparison: ablation zone of 11.3 ml "
                    "(30 x 25 x 20 mm), not covering the tumour and its 10 mm margin everywhere (smallest margin "
                    "2.8 mm); a suspicious 8 mm focus (washout) at the ablation site.",
        "baseline_study_date": None, "prior_study_dates": []}
    assert data["not_assessed"].startswith("Not assessed by this analysis: the breast outside the ablation site")


def test_model_coerces_numpy_directly_and_is_frozen():
    report = Report.model_validate({
        "status": "deferred", "reason": "early", "days_since_procedure": np.int64(5), "analysable_from": None,
        "residual_probability": None, "probability_interval": None, "interval_level": None,
        "confidence": None, "prior_probability": np.float32(0.25), "registration": None, "findings": None,
        "drivers": [], "caveats": [{"code": "c", "text": "t"}], "recommendations": [],
        "warnings": np.array(["w"]), "patient": {"id": "P", "name": "N", "birth_date": "", "sex": ""},
        "studies": {"followup": None, "baseline": None}, "procedure": RECORD,
        "algorithm": {"name": "a", "version": "1"},
        "created": "2024-01-01T00:00:00+00:00", "revision": np.int64(1),
        "outputs": {"sr": {"file": "sr.dcm", "series_instance_uid": "1.2", "sop_instance_uid": "1.3",
                           "sop_class_uid": "1.4"}}})
    assert json.loads(report.model_dump_json())["prior_probability"] == 0.25
    with pytest.raises(pydantic.ValidationError):
        report.warnings = ("late",)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        report.warnings.append("late")  # type: ignore[attr-defined]
    with pytest.raises(pydantic.ValidationError):
        Report.model_validate({**report.model_dump(), "centre": 1})  # extra keys are refused


# ---------------------------------------------------------------- multi-frame follow-up, end to end

def _to_multiframe(src: Path, dst: Path) -> None:
    """The follow-up with each DCE series as one Legacy Converted Enhanced MR object."""
    from highdicom.legacy import LegacyConvertedEnhancedMRImage

    dst.mkdir(parents=True)
    series = collections.defaultdict(list)
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        if "DYN" in ds.SeriesDescription:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            series[ds.SeriesInstanceUID].append(ds)
        else:
            ds.save_as(dst / f.name)
    for n, (uid, slices) in enumerate(series.items()):
        mf = LegacyConvertedEnhancedMRImage(slices, series_instance_uid=uid,
                                            series_number=int(slices[0].SeriesNumber),
                                            sop_instance_uid=generate_uid(), instance_number=1)
        mf.SeriesDescription = slices[0].SeriesDescription
        mf.save_as(dst / f"mf{n}.dcm")


def _pdf_text(pdf: bytes) -> str:
    return " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(io.BytesIO(pdf)).pages)


def test_multiframe_followup_pdf_carries_the_json_warnings(synth_pair, tmp_path):
    from followup.job import run_job
    from followup.procedure import load_procedure

    pair = synth_pair("residual", 1, "per-phase")
    _to_multiframe(pair / "followup", tmp_path / "followup")
    res = run_job(tmp_path / "followup", pair / "baseline", load_procedure(pair / "procedure.json"),
                  tmp_path / "out")
    data = json.loads(res.paths["json"].read_text())
    assert data["status"] == "complete"
    assert NO_SEG_MULTIFRAME in data["warnings"] and set(data["outputs"]) == {"sr", "pdf"}
    assert "seg" not in res.paths
    pdf = res.paths["pdf"].read_bytes()
    text = _pdf_text(pdf)
    for warning in data["warnings"]:
        assert " ".join(warning.split()) in text, warning
    # the PDF sent to PACS is the same document
    assert pydicom.dcmread(res.paths["pdf_dcm"]).EncapsulatedDocument[:len(pdf)] == pdf
    assert NO_SEG_MULTIFRAME in res.paths["html"].read_text().replace("&#x27;", "'")
