"""`followup analyze` end to end on small synthetic pairs, and its error contract."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

EXE = str(Path(sys.executable).with_name("followup"))


def analyze(pair: Path, out: Path, baseline=None, followup=None, procedure=None):
    cmd = [EXE, "analyze", "--baseline", str(baseline or pair / "baseline"),
           "--followup", str(followup or pair / "followup"),
           "--procedure", str(procedure or pair / "procedure.json"), "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True)


def load(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


ALWAYS = {"mri-npv", "insitu-invisible"}


def _check_contract(r: dict) -> None:
    for key in ("status", "reason", "days_since_procedure", "residual_probability",
                "probability_interval", "registration", "findings", "drivers", "caveats",
                "recommendations"):
        assert key in r
    codes = {c["code"] for c in r["caveats"]}
    assert codes >= ALWAYS
    npv = next(c["text"] for c in r["caveats"] if c["code"] == "mri-npv")
    assert "86%" in npv
    assert "31%" in next(c["text"] for c in r["caveats"] if c["code"] == "insitu-invisible")


def _analysed(pair: Path, out: Path):
    """``followup analyze`` of the pair succeeded: (truth, the CLI's result, report.json), the
    report holding every key of the contract."""
    truth = json.loads((pair / "truth.json").read_text())
    res = analyze(pair, out)
    assert res.returncode == 0, res.stderr
    r = load(out)
    _check_contract(r)
    return truth, res, r


def _registration_error_mm(r: dict, truth: dict) -> float:
    """Distance between the reported and the true tumour centre in the follow-up."""
    return float(np.linalg.norm(np.array(r["registration"]["tumour_center_followup_lps_mm"])
                                - np.array(truth["tumour"]["centre_followup_lps_mm"])))


def test_residual_case_end_to_end(synth_pair, tmp_path):
    truth, res, r = _analysed(synth_pair("residual", 1, "per-phase"), tmp_path)
    assert r["status"] == "complete" and r["reason"] is None
    assert r["days_since_procedure"] == truth["days_since_procedure"]
    p, (lo, hi) = r["residual_probability"], r["probability_interval"]
    assert p > r["prior_probability"] and lo <= p <= hi
    assert r["birads"]["category"] in ("4A", "4B", "4C", "5") and r["birads"]["tissue_diagnosis"]
    assert _registration_error_mm(r, truth) <= 2.0
    assert r["registration"]["quality"] == "good"
    foci = r["findings"]["suspicious_foci"]
    assert foci, "the residual nodule must be found"
    nod = truth["nodules"][0]
    d = min(np.linalg.norm(np.array(f["center_lps_mm"]) - np.array(nod["centre_followup_lps_mm"])) for f in foci)
    assert d <= max(5.0, nod["diameter_mm"] / 2 + 3)
    assert foci[0]["curve_type"] in ("plateau", "washout")
    for key in ("volume_mm3", "largest_diameter_mm", "peak_enhancement_pct", "ser", "distance_to_zone_edge_mm"):
        assert key in foci[0]
    codes = [x["code"] for x in r["recommendations"]]
    assert "peripheral-biopsy" in codes and "targeted-biopsy" in codes
    assert any(d["name"].startswith("MRI:") for d in r["drivers"])
    html = (tmp_path / "report.html").read_text()
    assert f"{100 * p:.0f}%" in html and "data:image/png;base64," in html and "86%" in html
    assert html.count("<img") >= 3  # baseline, follow-up, curves
    assert "report.html" in res.stdout
    for name in ("report.pdf", "report.fhir.json", "sr.dcm", "seg.dcm", "report-pdf.dcm"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert set(r["outputs"]) == {"sr", "seg", "pdf"}


def test_complete_case_end_to_end(synth_pair, tmp_path):
    truth, _, r = _analysed(synth_pair("complete", 3, "single-series"), tmp_path)
    assert r["status"] == "complete"
    assert r["findings"]["suspicious_foci"] == []
    assert r["residual_probability"] < 0.2
    rim = r["findings"]["rim"]
    assert rim["curve_type"] == "persistent" and rim["initial_phase"] == "slow"
    assert _registration_error_mm(r, truth) <= 2.0
    zone = r["findings"]["ablation_zone"]
    assert zone["volume_ml"] == pytest.approx(truth["ablation_zone"]["volume_ml"], rel=0.35)
    if abs(truth["ablation_zone"]["min_margin_mm"] - 10) > 3:  # clear-cut cases only
        assert zone["covers_tumour_plus_margin"] == truth["ablation_zone"]["covers_margin"]


def test_early_study_is_deferred_with_its_date(synth_pair, tmp_path):
    pair = synth_pair("early", 2, "per-phase")
    proc = json.loads((pair / "procedure.json").read_text())
    truth, res, r = _analysed(pair, tmp_path)
    assert r["status"] == "deferred"
    assert r["residual_probability"] is None and r["probability_interval"] is None
    assert r["days_since_procedure"] == truth["days_since_procedure"] < 21
    expected = (np.datetime64(proc["procedure_date"]) + np.timedelta64(21, "D")).astype(str)
    assert r["analysable_from"] == expected and expected in r["reason"]
    assert "false positive" in r["reason"]
    assert [x["code"] for x in r["recommendations"]] == ["repeat-after"]
    assert "early-timing" in {c["code"] for c in r["caveats"]}
    assert "deferred" in res.stderr.lower()


def test_record_of_another_patient_is_refused_without_a_report(synth_pair, tmp_path):
    pair = synth_pair("complete", 3, "single-series")
    proc = json.loads((pair / "procedure.json").read_text())
    proc["patient_id"] = "SOMEONE-ELSE"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(proc))
    res = analyze(pair, tmp_path / "out", procedure=other)
    assert res.returncode == 2
    assert res.stderr.startswith("error [patient-mismatch]")
    assert not (tmp_path / "out" / "report.json").exists()
    assert "SYN" not in res.stderr  # no patient identifiers in the message


def test_follow_up_without_dce_is_a_clear_error(synth_pair, tmp_path):
    pair = synth_pair("complete", 3, "single-series")
    only_one = tmp_path / "fu"
    only_one.mkdir()
    files = sorted((pair / "followup").glob("*.dcm"))
    shutil.copy(files[0], only_one / files[0].name)
    res = analyze(pair, tmp_path / "out", followup=only_one)
    assert res.returncode == 2
    assert res.stderr.startswith("error [no-dce]")
    assert "Traceback" not in res.stderr


def test_missing_baseline_phases_give_a_failed_report(synth_pair, tmp_path):
    pair = synth_pair("complete", 3, "single-series")
    base = tmp_path / "baseline"
    base.mkdir()
    for f in (pair / "baseline").glob("*.dcm"):  # keep only the pre-contrast phase
        if int(pydicom.dcmread(f, stop_before_pixels=True).TemporalPositionIdentifier) == 1:
            shutil.copy(f, base / f.name)
    res = analyze(pair, tmp_path / "out", baseline=base)
    assert res.returncode == 0
    r = load(tmp_path / "out")
    assert r["status"] == "failed" and "baseline" in r["reason"] and "no-dce" in r["reason"]
    assert r["residual_probability"] is None
    assert [x["code"] for x in r["recommendations"]] == ["radiologist-review"]
    _check_contract(r)


def test_lesion_outside_the_baseline_volume_gives_a_failed_report(synth_pair, tmp_path):
    pair = synth_pair("complete", 3, "single-series")
    proc = json.loads((pair / "procedure.json").read_text())
    proc["lesion"]["center_lps_mm"] = [400.0, -60.0, 10.0]
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps(proc))
    res = analyze(pair, tmp_path / "out", procedure=bad)
    assert res.returncode == 0
    r = load(tmp_path / "out")
    assert r["status"] == "failed" and "outside the baseline volume" in r["reason"]


def test_invalid_procedure_record_names_the_field(synth_pair, tmp_path):
    pair = synth_pair("complete", 3, "single-series")
    proc = json.loads((pair / "procedure.json").read_text())
    proc["lesion"]["histology"] = "tubular"
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps(proc))
    res = analyze(pair, tmp_path / "out", procedure=bad)
    assert res.returncode == 2 and "lesion.histology" in res.stderr
