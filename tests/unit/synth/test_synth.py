"""The synthetic study generator: truth contract, bounds, determinism and DICOM validity."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from followup.procedure import load_procedure
from followup.synth import SCENARIOS, generate_pair
from followup.synth.cases import draw_case
from followup.synth.generate import SIZE_SPECS, dce_grid
from followup.synth.kinetics import RIM_BENIGN, RIM_EARLY, TUMOUR_CURVES, curve_type
from followup.synth.zone_findings import radial_extent


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_drawn_cases_respect_the_specification(scenario):
    """Pure draws (no rendering): 60 seeds per scenario against the issue's bounds."""
    for seed in range(60):
        case = draw_case(scenario, seed, n_post=4)
        tf = case.transform
        angle = np.degrees(np.arccos(np.clip((np.trace(tf.rotation) - 1) / 2, -1, 1)))
        assert angle <= 8.0 + 1e-6
        assert np.linalg.norm(tf.translation) <= 15.0 + 1e-6
        assert tf.displacement.bound_mm <= 5.0 + 1e-6
        for m in case.followup_phase_motion:
            assert np.linalg.norm(m.translation_mm) < 2.0
        post = case.followup_timing.post_times_s
        assert 60 <= post[0] <= 90 and all(60 <= b - a <= 90 for a, b in itertools.pairwise(post))
        days = case.days_since_procedure
        if scenario == "early":
            assert 7 <= days <= 20 and case.rim_kind == "early-hyperaemic"
        else:
            assert days >= 21
        if scenario == "residual":
            assert 1 <= len(case.nodules) <= 2
            for nod in case.nodules:
                assert 3 <= nod.diameter_mm <= 12
                d = nod.centre - case.zone.centre
                reach = radial_extent(case.zone, d / np.linalg.norm(d))
                # the nodule's centre lies on the zone's edge, within its own radius
                assert abs(np.linalg.norm(d) - reach) <= nod.diameter_mm / 2
                assert curve_type(TUMOUR_CURVES[nod.kinetics], post[0], post[-1]) in ("washout", "plateau")
        else:
            assert case.nodules == ()
        if scenario == "confounder":
            assert case.confounder_kind in ("thick-rim", "benign-gland")
            if case.confounder_kind == "thick-rim":
                assert 4 <= case.rim_thickness_mm <= 6
            else:
                assert case.benign_focus is not None
        if scenario == "complete":
            assert case.rim_thickness_mm <= 2.5
            assert curve_type(RIM_BENIGN, post[0], post[-1]) == "persistent"
    assert curve_type(RIM_EARLY, 75, 300) == "persistent"


def test_zone_usually_covers_tumour_plus_margin():
    from followup.synth.zone_findings import radial_margin_mm

    covers = [radial_margin_mm(c.zone, c.tumour) >= 10 for c in
              (draw_case("complete", s, 4) for s in range(100))]
    assert 0.6 < np.mean(covers) < 0.98  # "usually", not always: the margin check must matter


def test_pair_layout_and_truth(synth_pair):
    out = synth_pair("residual", 1, "per-phase")
    truth = json.loads((out / "truth.json").read_text())
    proc = load_procedure(out / "procedure.json")
    assert proc.lesion.center_lps_mm == pytest.approx(truth["tumour"]["centre_baseline_lps_mm"], abs=0.01)
    assert proc.laterality == truth["laterality"]
    days = (np.datetime64(truth["studies"]["followup"]["study_date"])
            - np.datetime64(proc.procedure_date.isoformat())).astype(int)
    assert days == truth["days_since_procedure"]
    assert truth["residual"] is True and truth["peripheral_biopsy_indicated"] is True
    for study in ("baseline", "followup"):
        files = sorted((out / study).glob("*.dcm"))
        n_dce = SIZE_SPECS["small"].slices * (SIZE_SPECS["small"].n_post + 1)
        assert len(files) >= n_dce
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert ds.SOPClassUID == pydicom.uid.MRImageStorage
        assert ds.StudyInstanceUID == truth["studies"][study]["study_uid"]
        assert files[0].stem == ds.SOPInstanceUID  # flat folder named by UID: order says nothing


def test_generation_is_deterministic(tmp_path, synth_pair):
    first = synth_pair("confounder", 2, "single-series")
    again = tmp_path / "again"
    generate_pair(again, "confounder", 2, "single-series", "small")
    assert (first / "truth.json").read_text() == (again / "truth.json").read_text()
    assert (first / "procedure.json").read_text() == (again / "procedure.json").read_text()
    name = sorted(p.name for p in (first / "followup").glob("*.dcm"))[17]
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(first / "followup" / name) == digest(again / "followup" / name)


def test_full_size_grid_matches_the_specification():
    case = draw_case("complete", 0, SIZE_SPECS["full"].n_post)
    for vendor in ("per-phase", "sagittal"):
        grid = dce_grid(vendor, "full", case)
        assert grid.shape == (448, 448, 160)
    assert SIZE_SPECS["full"].n_post == 5


def _one_file_per_series(folder):
    seen = {}
    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        seen.setdefault(ds.SeriesInstanceUID, (f, ds))
    return list(seen.values())


@pytest.mark.parametrize("vendor", ["per-phase", "single-series", "sagittal"])
def test_files_pass_dciodvfy(synth_pair, vendor):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: DICOM validity NOT checked")
    out = synth_pair("residual", 1, vendor)
    for study in ("baseline", "followup"):
        for path, ds in _one_file_per_series(out / study):
            res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
            errors = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]
            if vendor == "sagittal":
                # GE-style TriggerTime without cardiac triggering: real scanners write it too.
                errors = [e for e in errors if "<TriggerTime>" not in e]
            assert errors == [], f"{ds.SeriesDescription}: {errors}"


def test_distractor_series_are_written(synth_pair):
    seed = next(s for s in range(20) if draw_case("complete", s, 4).distractors)
    out = synth_pair("complete", seed, "per-phase")
    kinds = {s["kind"]: s for s in json.loads((out / "truth.json").read_text())
             ["studies"]["followup"]["series"]}
    assert {"localizer", "t2", "dce"} <= set(kinds)
    assert kinds["localizer"]["files"] == 3
    # the localizer's three planes have three orientations
    orients = {tuple(pydicom.dcmread(f, stop_before_pixels=True).ImageOrientationPatient)
               for f in (out / "followup").glob("*.dcm")
               if pydicom.dcmread(f, stop_before_pixels=True).SeriesDescription == "3-plane loc"}
    assert len(orients) == 3
