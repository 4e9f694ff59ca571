"""``followup analyze --prior DIR --prior DIR``: a 12-month follow-up read with its two earlier
follow-ups, on a synthetic surveillance series whose nodule appears at month 12; and the reports
that carry the comparison."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from followup.cli import app
from followup.reporting.model import Report
from followup.synth.surveillance import generate_surveillance

SEED = 4  # three follow-ups (1, 6, 12 months); a 4-10 mm nodule appears at month 12


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    out = tmp_path_factory.mktemp("series")
    truth = generate_surveillance(out, SEED)
    assert [tp["recurrence"] for tp in truth["time_points"]] == [False, False, True]
    return out, truth


@pytest.fixture(scope="module")
def analysed(series, tmp_path_factory):
    d, truth = series
    out = tmp_path_factory.mktemp("report")
    res = CliRunner().invoke(app, ["analyze", "--baseline", str(d / "baseline"), "--followup", str(d / "followup-3"),
                                   "--prior", str(d / "followup-1"), "--prior", str(d / "followup-2"),
                                   "--procedure", str(d / "procedure.json"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = Report.model_validate_json((out / "report.json").read_text())
    return out, report, truth, res.output


def test_two_priors_give_every_time_point_and_the_new_enhancement_trend(analysed):
    _out, report, truth, output = analysed
    lon = report.longitudinal
    assert lon is not None and "trend new-enhancement" in output
    tps = truth["time_points"]
    assert [t.study_instance_uid for t in lon.time_points] == [tp["study_uid"] for tp in tps]
    assert [t.days_since_procedure for t in lon.time_points] == [tp["days_since_procedure"] for tp in tps]
    assert [t.current for t in lon.time_points] == [False, False, True]
    for t, tp in zip(lon.time_points, tps, strict=True):
        assert t.status == "complete" and t.zone_volume_ml is not None
        assert abs(t.zone_volume_ml / tp["ablation_zone"]["volume_ml"] - 1) < 0.35
        assert len(t.zone_axes_mm) == 3 and t.rim_curve_type is not None
    assert [t.registration_to_current.mapping for t in lon.time_points] == ["direct", "direct", "self"]
    assert all(t.registration_to_current.chain_discrepancy_mm < 5 for t in lon.time_points[:2])
    assert lon.time_points[0].change_vs_previous is None
    assert lon.time_points[1].change_vs_previous.volume_ratio < 0.9  # involution from month 1 to 6
    change = lon.time_points[2].change_vs_previous
    assert change.previous_study_instance_uid == tps[1]["study_uid"]
    assert len(change.new_foci) == 1 and change.grown_foci == ()
    nodule = tps[2]["nodules"][0]
    found = change.new_foci[0]
    offset = [a - b for a, b in zip(found.center_lps_mm, nodule["centre_followup_lps_mm"], strict=True)]
    assert sum(v * v for v in offset) ** 0.5 < 5
    assert lon.trend == "new-enhancement" and "new" in lon.trend_reason
    # the comparison sentence names the baseline and both earlier follow-ups by date, and the new focus
    c = report.comparison
    assert c is not None and c.prior_study_dates == tuple(tp["study_date"] for tp in tps[:2])
    assert c.sentence.startswith(f"Compared with the pre-procedure MRI of {report.studies.baseline.study_date} "
                                 f"and the follow-ups of {tps[0]['study_date']} and {tps[1]['study_date']}: "
                                 f"ablation zone of {lon.time_points[2].zone_volume_ml:.1f} ml")
    assert f"new {found.largest_diameter_mm:.0f} mm {found.curve_type} focus at the ablation site since " \
           f"{tps[1]['study_date']}" in c.sentence


def test_the_trend_raises_the_probability_and_recommends_biopsy(analysed):
    _, report, _, _ = analysed
    driver = report.drivers[-1]
    assert driver.name.startswith("surveillance:") and driver.assumption
    assert driver.probability_after > driver.probability_before
    assert report.residual_probability == pytest.approx(driver.probability_after, abs=1e-4)
    codes = [r.code for r in report.recommendations]
    assert codes[0] == "surveillance-biopsy" and "imaging-follow-up" not in codes
    data = json.loads(report.to_json_bytes())
    assert data["longitudinal"]["trend"] == "new-enhancement"


def test_a_prior_that_is_not_an_earlier_follow_up_is_refused(series, tmp_path):
    d, _ = series
    res = CliRunner().invoke(app, ["analyze", "--baseline", str(d / "baseline"), "--followup", str(d / "followup-2"),
                                   "--prior", str(d / "followup-3"), "--procedure", str(d / "procedure.json"),
                                   "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "error [prior-date]" in res.output
    assert not (tmp_path / "r").exists()


def test_html_and_pdf_show_the_comparison_trend_plot_and_previous_image(analysed):
    out, _report, truth, _ = analysed
    html = (out / "report.html").read_text()
    assert "Comparison with earlier follow-ups" in html and "Trend: new-enhancement" in html
    for tp in truth["time_points"]:
        assert tp["study_date"] in html
    assert "Previous follow-up beside this one at the same place" in html
    assert "Surveillance trend: ablation zone volume" in html
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Subtype /Image") >= 5  # key images + the two new ones


def test_sr_carries_time_points_prior_studies_and_image_regions(analysed):
    import shutil
    import subprocess

    import highdicom as hd
    import pydicom

    out, report, truth, _ = analysed
    ds = pydicom.dcmread(out / "sr.dcm")
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    prior_uids = {tp["study_uid"] for tp in truth["time_points"][:2]}
    assert {item.StudyInstanceUID for item in ds.PertinentOtherEvidenceSequence} == prior_uids
    current_uids = {e.StudyInstanceUID for e in ds.CurrentRequestedProcedureEvidenceSequence}
    study_of = {str(r.ReferencedSOPInstanceUID): str(e.StudyInstanceUID)
                for seq in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence")
                for e in ds.get(seq, []) for s in e.ReferencedSeriesSequence for r in s.ReferencedSOPSequence}
    # one time-point group per study, each with its zone's outline on that study's own image
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(truth["time_points"])
    for g, tp in zip(groups, truth["time_points"], strict=True):
        region = g.roi
        assert region.GraphicType == "POLYLINE" and tp["study_date"] in str(g.tracking_identifier)
        image = region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        assert study_of[str(image)] == tp["study_uid"]
    assert current_uids == {truth["time_points"][2]["study_uid"]}
    # each finding's outline (zone, rim, foci): its Area inferred from a closed POLYLINE on a current image,
    # under the finding's own tracking UID
    outlines = [g for g in sr.content.get_image_measurement_groups()
                if str(g.tracking_identifier).startswith("Cornerstone3DTools@^0.1.0:PlanarFreehandROI:")]
    assert len(outlines) == 2 + len(report.findings.suspicious_foci)
    for g in outlines:
        (area,) = g.get_measurements()
        scoord = area[0].ContentSequence[0]
        assert scoord.ValueType == "SCOORD" and scoord.GraphicType == "POLYLINE"
        assert list(scoord.GraphicData[:2]) == list(scoord.GraphicData[-2:])  # closed
        assert study_of[str(scoord.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)] \
            == truth["time_points"][2]["study_uid"]
    text = str(ds)
    assert text.count("Ablation zone at a surveillance time point") >= 3 and "New enhancement" in text
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed: DICOM validity NOT checked")
    res = subprocess.run(["dciodvfy", str(out / "sr.dcm")], capture_output=True, text=True)
    assert [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")] == []


def test_fhir_has_one_observation_per_time_point(analysed):
    from fhir.resources.bundle import Bundle

    out, _, truth, _ = analysed
    bundle = json.loads((out / "report.fhir.json").read_text())
    Bundle.model_validate(bundle)
    obs = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
           and e["resource"]["code"]["coding"][0]["code"] == "ablation-zone-surveillance"]
    assert [o["effectiveDateTime"][:10] for o in obs] == [tp["study_date"] for tp in truth["time_points"]]
    assert obs[0]["derivedFrom"][0]["identifier"]["value"] == f"urn:oid:{truth['time_points'][0]['study_uid']}"
    assert "new-enhancement" in obs[-1]["note"][0]["text"]
