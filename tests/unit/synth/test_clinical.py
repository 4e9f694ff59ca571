"""``followup synth --variation clinical``: each clinical variation appears, with truth the images agree with."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from followup.dicom import load_dce_study
from followup.synth import SCENARIOS, generate_pair
from followup.synth.case_model import PhaseMotion
from followup.synth.cases import draw_case
from followup.synth.clinical import FULL_VOXEL_MM, MIMIC_KINDS, late_change, study_curve_type, study_s0
from followup.synth.phantom import S0, Grid, ellipsoid_distance, render_phases, shape_distance
from followup.synth.solid_geometry import equivalent_diameter


@pytest.fixture(scope="module")
def clinical_cases():
    """200 clinical draws (parameters only, nothing rendered): 50 seeds per scenario."""
    return [draw_case(sc, 80000 + s, 4, "clinical") for sc in SCENARIOS for s in range(50)]


def _curve_class(change: float) -> str:
    return "washout" if change < -0.10 else "persistent" if change > 0.10 else "plateau"


def test_clinical_draws_cover_each_variation(clinical_cases):
    scans = [(c.clinical.baseline, c.clinical.followup) for c in clinical_cases]
    flat = [s for pair in scans for s in pair]
    # fat suppression on and off, often different between the two studies
    assert sum(b.fat_sat != f.fat_sat for b, f in scans) >= 40
    assert {s.fat_sat for s in flat} == {True, False}
    assert all(s.fat_s0 >= 260 for s in flat if not s.fat_sat)
    assert all(s.fat_s0 <= 150 if s.fat_sat else s.fat_falloff == 0 for s in flat)
    # scanners: field strength, anisotropic clinical voxels, noise, dose and arrival jitter
    assert {s.field_strength_t for s in flat} == {1.5, 3.0}
    d = np.array([s.voxel_mm for s in flat])
    assert d[:, 0].min() >= FULL_VOXEL_MM[0][0] and d[:, 0].max() <= FULL_VOXEL_MM[0][1]
    assert d[:, 2].min() >= FULL_VOXEL_MM[1][0] and d[:, 2].max() <= FULL_VOXEL_MM[1][1]
    assert np.all(d[:, 2] > d[:, 0])
    assert max(s.dose_scale for s in flat) > 1.15 and min(s.dose_scale for s in flat) < 0.85
    assert max(s.arrival_s for s in flat) > 30 and min(s.arrival_s for s in flat) < 10
    # 3-6 post-contrast phases per study, sometimes a different number in the two studies
    n = [(len(c.baseline_timing.post_times_s), len(c.followup_timing.post_times_s)) for c in clinical_cases]
    assert {a for a, _ in n} == {3, 4, 5, 6} == {b for _, b in n}
    assert sum(a != b for a, b in n) >= 20
    assert all(c.followup_timing.post_times_s[-1] >= 239.9 for c in clinical_cases)
    # motion between phases in both studies, up to ~3.5 mm
    for study in ("baseline", "followup"):
        moves = [max(np.linalg.norm(m.translation_mm) for m in getattr(c, f"{study}_phase_motion"))
                 for c in clinical_cases]
        assert sum(m > 0 for m in moves) >= 80 and max(moves) > 2.5 and max(moves) <= 3.5 + 1e-9
    # findings: every mimic kind, nodule shapes, curve classes across the boundaries
    kinds = Counter(f.kind for c in clinical_cases for f in c.benign_features)
    assert all(kinds[k] >= 10 for k in MIMIC_KINDS)
    nodules = [(c, n) for c in clinical_cases for n in c.nodules]
    assert {n.shape.kind for _, n in nodules} == {"round", "lobulated", "irregular"}
    assert min(n.diameter_mm for _, n in nodules) < 4 and max(n.diameter_mm for _, n in nodules) > 13
    assert all(3.0 <= n.diameter_mm <= 15.0 for _, n in nodules)
    classes = Counter(study_curve_type(n.enhancement, c.clinical.followup, c.followup_timing) for c, n in nodules)
    assert all(classes[k] >= 5 for k in ("washout", "plateau", "persistent"))
    necrosis = Counter(study_curve_type(f.curve, c.clinical.followup, c.followup_timing)
                       for c in clinical_cases for f in c.benign_features if f.kind == "nodular-fat-necrosis")
    assert all(necrosis[k] >= 3 for k in ("washout", "plateau", "persistent"))
    assert necrosis["washout"] < necrosis["persistent"]  # a minority washes out
    benign_patches = [study_curve_type(f.curve, c.clinical.followup, c.followup_timing)
                      for c in clinical_cases for f in c.benign_features if f.kind in ("bpe-patch", "oil-cyst")]
    assert set(benign_patches) == {"persistent"}
    rims = [c for c in clinical_cases if c.rim_kind in ("thin", "thick-uneven")]
    assert min(c.rim_thickness_mm for c in rims) < 1.3 and max(c.rim_thickness_mm for c in rims) > 3.7
    assert all(c.rim_unevenness > 0 for c in rims)
    assert {c.scenario for c in clinical_cases if c.nodules} == {"residual"}


def test_clinical_draw_is_deterministic_and_builds_on_the_wide_one():
    a, b = draw_case("residual", 80007, 4, "clinical"), draw_case("residual", 80007, 4, "clinical")
    assert a.clinical == b.clinical and [n.diameter_mm for n in a.nodules] == [n.diameter_mm for n in b.nodules]
    wide = draw_case("residual", 80007, 4, "wide")
    assert np.array_equal(a.tumour.centre, wide.tumour.centre)
    assert np.array_equal(a.transform.translation, wide.transform.translation)
    assert a.variation.name == "clinical" and wide.clinical is None


def test_drawn_late_change_is_what_the_curve_shows(clinical_cases):
    """Curves are built for the study's timing, dose and arrival: the drawn class is the class."""
    for c in clinical_cases:
        for curve in [n.enhancement for n in c.nodules] + [f.curve for f in c.benign_features]:
            change = late_change(curve, c.clinical.followup, c.followup_timing)
            assert study_curve_type(curve, c.clinical.followup, c.followup_timing) == _curve_class(change)


def _render_point(case, point_fu: np.ndarray, study: str = "followup") -> np.ndarray:
    """The noise-free, motion-free signal of each phase at one follow-up scanner point (a 3^3 grid
    of 0.4 mm voxels around it, as the generator renders a study)."""
    aff = np.diag([0.4, 0.4, 0.4, 1.0])
    aff[:3, 3] = np.asarray(point_fu) - 0.4
    scan = case.clinical.scan(study)
    timing = case.followup_timing
    still = tuple(PhaseMotion(np.zeros(3), np.zeros(3)) for _ in timing.all_times_s)
    imgs = render_phases(case, study, Grid((3, 3, 3), aff), timing.all_times_s, still,
                         np.random.default_rng(0), s0=study_s0(scan, S0), noise_sigma=0.0,
                         bias_strength=0.0, dose_scale=scan.dose_scale, arrival_s=scan.arrival_s)
    return np.array([img[1, 1, 1] for img in imgs])


def _solids(case):
    """(kind, curve, follow-up centre) of every solid object large enough to have a pure centre."""
    to_fu = lambda p: case.transform.invert_points(p)[0]  # noqa: E731
    out = [("residual-nodule", n.enhancement, to_fu(n.centre)) for n in case.nodules
           if equivalent_diameter(n.shape) >= 5]
    out += [(f.kind, f.curve, to_fu(f.centre)) for f in case.benign_features
            if f.kind == "nodular-fat-necrosis" and equivalent_diameter(f.shape) >= 5]
    return out


def test_rendered_curve_class_matches_truth(clinical_cases):
    """The signal the generator renders at each nodule / nodular fat necrosis rises, plateaus or
    washes out as its truth says (first to last post-contrast phase, BI-RADS thresholds)."""
    checked: Counter[str] = Counter()
    for c in clinical_cases[50:110]:  # residual and early seeds
        for kind, curve, centre in _solids(c):
            truth_change = late_change(curve, c.clinical.followup, c.followup_timing)
            if abs(abs(truth_change) - 0.10) < 0.01:
                continue  # on the boundary: rounding decides
            s = _render_point(c, centre)
            measured = (s[-1] - s[1]) / s[1]
            assert measured == pytest.approx(truth_change, abs=0.01), (c.seed, kind)
            assert _curve_class(measured) == study_curve_type(curve, c.clinical.followup, c.followup_timing)
            checked[_curve_class(measured)] += 1
    assert all(checked[k] >= 2 for k in ("washout", "plateau", "persistent")), checked


def test_fat_is_bright_without_fat_suppression_and_dark_with_it(clinical_cases):
    """Pre-contrast: an oil cyst's fat centre against a solid nodule's centre."""
    seen = set()
    for c in clinical_cases:
        cysts = [f for f in c.benign_features if f.kind == "oil-cyst" and f.radius_mm - f.wall_mm >= 2]
        solids = _solids(c)
        scan = c.clinical.followup
        if not cysts or not solids:  # (the point render applies no falloff: fat_s0 <= 150)
            continue
        fat = _render_point(c, c.transform.invert_points(cysts[0].centre)[0])[0]
        solid = _render_point(c, solids[0][2])[0]
        if scan.fat_sat:
            assert fat < 0.7 * solid, c.seed
        else:
            assert fat > 1.5 * solid, c.seed
        seen.add(scan.fat_sat)
    assert seen == {True, False}


def test_straddling_truth_matches_the_rendered_geometry(clinical_cases):
    """Straddling per truth <=> the solid as rendered (phantom's distance functions on a 0.5 mm
    grid) has voxels both inside and outside the zone's surface."""
    n = 0
    for c in clinical_cases:
        for nod in c.nodules:
            truth_straddles = 0.0 < _fraction_inside(c, nod) < 1.0
            r = nod.shape.radius_mm * (1 + float(np.sum(nod.shape.amplitudes))) + 1
            ax = np.arange(-r, r, 0.5, dtype=np.float32)
            x, y, z = np.meshgrid(ax + nod.centre[0], ax + nod.centre[1], ax + nod.centre[2], indexing="ij")
            inside_solid = shape_distance(nod.shape, nod.centre, x, y, z) < 0
            d_zone = ellipsoid_distance(c.zone, x, y, z)[inside_solid]
            rendered = bool(np.any(d_zone < -0.5) and np.any(d_zone > 0.5))
            if rendered:
                assert truth_straddles, c.seed
            if not truth_straddles:
                assert not (np.any(d_zone < -0.5) and np.any(d_zone > 0.5))
            n += rendered
    assert n >= 20


def _fraction_inside(case, nod) -> float:
    from followup.synth.solid_geometry import volume_points, zone_signed_distance

    return float(np.mean(zone_signed_distance(case.zone, volume_points(nod.shape, nod.centre)) < 0))


@pytest.fixture(scope="module")
def clinical_pair(tmp_path_factory):
    """Seed 80039 (residual): baseline fat-suppressed at 3 T, follow-up without at 1.5 T, 3 and 5
    post-contrast phases, an oil cyst and a nodule >= 8 mm in the follow-up."""
    out = tmp_path_factory.mktemp("clinical") / "pair"
    truth = generate_pair(out, "residual", 80039, None, "small", "clinical")
    return out, truth


def test_clinical_pair_truth_and_dicom(clinical_pair):
    out, truth = clinical_pair
    assert truth == json.loads((out / "truth.json").read_text())
    assert truth["fat_sat"] == {"baseline": True, "followup": False}
    for study in ("baseline", "followup"):
        sc = truth["scanners"][study]
        s = load_dce_study(out / study)
        assert len(s.phases) == sc["n_post"] + 1
        vol = s.phases[0].volume
        assert np.allclose(vol.spacing, sc["voxel_mm"], atol=1e-3)
        assert vol.spacing[2] > 1.2 * vol.spacing[0]  # anisotropic
        ds = pydicom.dcmread(next((out / study).glob("*.dcm")), stop_before_pixels=True)
        assert float(ds.MagneticFieldStrength) == sc["field_strength_t"]
        assert (ds.ScanOptions == "FS") == sc["fat_sat"]
        assert ("FS" in ds.SeriesDescription) == sc["fat_sat"]
    assert truth["scanners"]["baseline"]["field_strength_t"] != truth["scanners"]["followup"]["field_strength_t"]
    kinds = {o["kind"] for o in truth["objects"]}
    assert "residual-nodule" in kinds and "oil-cyst" in kinds
    for o in truth["objects"]:
        assert {"kind", "malignant", "centre_followup_lps_mm", "diameter_mm", "curve_type"} <= set(o)
        assert o["malignant"] == (o["kind"] == "residual-nodule")
    for rec in truth["nodules"]:
        assert {"shape", "straddles_zone_edge", "touches_rim", "curve_type", "late_change"} <= set(rec)
    assert {"thickness_mm", "unevenness", "curve_type"} <= set(truth["rim"])


def test_clinical_pair_fat_is_bright_in_the_non_fat_suppressed_follow_up(clinical_pair):
    out, truth = clinical_pair
    pre = load_dce_study(out / "followup").phases[0].volume
    cyst = next(o for o in truth["objects"] if o["kind"] == "oil-cyst")
    nodule = max((o for o in truth["objects"] if o["kind"] == "residual-nodule"), key=lambda o: o["diameter_mm"])

    def at(p) -> float:
        i, j, k = np.round(pre.world_to_voxel(np.array(p))).astype(int)
        return float(pre.data[i, j, k])

    assert at(cyst["centre_followup_lps_mm"]) > 1.5 * at(nodule["centre_followup_lps_mm"])


def test_standard_and_wide_seeds_are_untouched_by_the_clinical_variation():
    """Same seed, other variation: the clinical layer never changes what the others draw."""
    assert draw_case("residual", 3, 4).clinical is None
    assert draw_case("residual", 3, 4, "wide").variation.name == "wide"


def test_cli_draws_the_clinical_mix(tmp_path: Path):
    from typer.testing import CliRunner

    from followup.cli import app

    res = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "c"), "--scenario", "confounder",
                                   "--seed", "80001", "--variation", "clinical"])
    assert res.exit_code == 0, res.output
    truth = json.loads((tmp_path / "c" / "truth.json").read_text())
    assert truth["objects"] and not any(o["malignant"] for o in truth["objects"])
