"""``followup synth --variation wide``: one seed draws widely; the standard draw is unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from followup.dicom import load_dce_study
from followup.synth import SCENARIOS, generate_pair
from followup.synth.case_model import LAYOUTS, STANDARD
from followup.synth.cases import draw_case
from followup.synth.scenario import transform_summary
from followup.synth.zone_findings import BENIGN_KINDS, WIDE_CONFOUNDERS


@pytest.fixture(scope="module")
def wide_cases():
    """200 wide draws (case parameters only, nothing rendered): 50 seeds per scenario."""
    return [draw_case(sc, 90000 + s, 4, "wide") for sc in SCENARIOS for s in range(50)]


def _spans(values, lo, hi, slack):
    values = np.asarray(values, float)
    return values.min() <= lo + slack and values.max() >= hi - slack


def test_wide_draws_cover_the_ranges(wide_cases):
    v = [c.variation for c in wide_cases]
    moves = [transform_summary(c) for c in wide_cases]
    t_norm = [m["translation_norm_mm"] for m in moves]
    rot = [m["rotation_max_axis_deg"] for m in moves]
    # bounds: <= 30 mm (norm, so every axis), <= 15 deg about any axis, <= 8 mm non-rigid
    assert max(t_norm) <= 30 + 1e-6 and max(rot) <= 15 + 1e-6
    assert max(m["nonrigid_bound_mm"] for m in moves) <= 8 + 1e-6
    # ... and covered, with every band of the benchmark populated
    assert _spans(t_norm, 0, 30, 2.0) and _spans(rot, 0, 15, 1.0)
    assert _spans([m["nonrigid_bound_mm"] for m in moves], 0, 8, 0.5)
    for lo, hi in ((0, 10), (10, 20), (20, 30)):
        assert sum(lo <= t < hi for t in t_norm) >= 30
    assert sum(r < 8 for r in rot) >= 50 and sum(r >= 8 for r in rot) >= 50
    # anatomy and acquisition
    assert _spans([x.breast_radii_mm[1] for x in v], 65, 125, 5)
    assert _spans([x.breast_radii_mm[0] for x in v], 55, 90, 4)
    assert _spans([x.gland_density for x in v], -0.6, 0.8, 0.1)
    assert _spans([x.fat_s0 for x in v], 35, 150, 10)
    assert sum(x.fat_suppression_falloff > 0 for x in v) > 40
    assert _spans([x.bias_strength for x in v], 0.04, 0.35, 0.03)
    assert _spans([x.noise_sigma for x in v], 3, 14, 1)
    assert {x.baseline.layout for x in v} == set(LAYOUTS) == {x.followup.layout for x in v}
    orientation = lambda layout: layout == "sagittal"  # noqa: E731
    assert sum(orientation(x.baseline.layout) != orientation(x.followup.layout) for x in v) >= 20
    assert _spans([x.baseline.matrix_scale for x in v], 0.8, 1.25, 0.05)
    assert _spans([x.followup.centre_offset_mm[1] for x in v], -15, 15, 2)
    assert 50 <= sum(x.followup.follows_anatomy for x in v) <= 150
    # phases 3-7, their timing
    assert {len(c.followup_timing.all_times_s) for c in wide_cases} == {3, 4, 5, 6, 7}
    assert _spans([c.followup_timing.post_times_s[0] for c in wide_cases], 50, 120, 8)
    assert sum(any(np.any(m.translation_mm) for m in c.followup_phase_motion) for c in wide_cases) > 50
    # findings
    nodules = [n.diameter_mm for c in wide_cases for n in c.nodules]
    assert min(nodules) >= 3 and max(nodules) <= 15 and _spans(nodules, 3, 15, 1.5)
    assert len({n.curve for c in wide_cases for n in c.nodules}) == len(nodules)  # own kinetics
    assert _spans([c.rim_thickness_mm for c in wide_cases if c.rim_kind == "thin"], 0.8, 3.5, 0.3)
    assert {c.confounder_kind for c in wide_cases if c.scenario == "confounder"} == set(WIDE_CONFOUNDERS)
    extras = {f.kind for c in wide_cases if c.scenario in ("complete", "residual") for f in c.benign_features}
    assert extras == set(BENIGN_KINDS)


def test_wide_draw_is_deterministic_and_separate_from_the_standard():
    a, b = draw_case("residual", 90007, 4, "wide"), draw_case("residual", 90007, 4, "wide")
    assert a.variation == b.variation and np.array_equal(a.tumour.centre, b.tumour.centre)
    assert draw_case("complete", 90007, 4, "wide").variation != a.variation
    assert draw_case("residual", 90007, 4).variation is STANDARD
    with pytest.raises(ValueError):
        draw_case("residual", 1, 4, "extreme")


def test_standard_draw_is_unchanged():
    """Pinned fields of known seeds: the standard draw must not move (tests depend on it)."""
    c = draw_case("residual", 3, 4)
    assert c.tumour.centre.tolist() == pytest.approx(
        [78.14654397932874, -68.03825361859302, 8.920979304911956], abs=1e-9)
    assert (c.laterality, c.days_since_procedure, c.gland_seed) == ("L", 32, 1145079494)
    assert [n.diameter_mm for n in c.nodules] == pytest.approx([8.495504573875522], abs=1e-12)
    assert c.nodules[0].kinetics == "washout" and c.nodules[0].curve is None
    assert c.transform.translation.tolist() == pytest.approx(
        [-1.485290094448075, -10.67956375438655, 1.6727135199863], abs=1e-9)
    assert c.followup_timing.post_times_s == pytest.approx(
        (84.86707592481054, 150.94946221825768, 217.03184851170482, 283.11423480515197))
    assert c.rim_thickness_mm == pytest.approx(2.469838066666325, abs=1e-12)
    assert c.benign_features == () and c.variation is STANDARD
    f = draw_case("confounder", 2, 4)
    assert f.confounder_kind == "benign-gland" and (f.gland_seed, f.distractors) == (1008953811, True)
    assert f.benign_focus.centre.tolist() == pytest.approx(
        [55.26132185251217, -79.97181646226954, 0.4164431906774748], abs=1e-9)


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def test_standard_pair_is_byte_identical(tmp_path):
    """Every byte of ``followup synth --scenario residual --seed 3`` as before the wide variation
    (digest over the files; pydicom's writer is part of it: a pydicom upgrade may change it).
    Digests renewed when each breast got its nipple and the truth its location and tissue keys
    (issue 24: synth/nipple.py, synth/background_enhancement.py)."""
    out = tmp_path / "r3"
    generate_pair(out, "residual", 3, "per-phase", "small")
    assert hashlib.sha256((out / "truth.json").read_bytes()).hexdigest() == \
        "1e5fd9fa7e6ed5041a45d38aaa2e798697c6457584e1d30229c8b406ce82120a"
    assert _tree_digest(out) == "f85d4d86cb93bdbad8d0cc46ec1073f1d38f1ef39cd7b44e94b8b86f26cff049"


@pytest.fixture(scope="module")
def wide_pair(tmp_path_factory):
    # seed chosen for a sagittal baseline and an axial follow-up (orientation changes between exams)
    out = tmp_path_factory.mktemp("wide") / "pair"
    seed = next(s for s in range(90000, 90100)
                if (lambda v: v.baseline.layout == "sagittal" and v.followup.layout != "sagittal")(
                    draw_case("residual", s, 4, "wide").variation))
    truth = generate_pair(out, "residual", seed, None, "small", "wide")
    return out, truth, draw_case("residual", seed, 4, "wide")


def test_wide_truth_records_every_drawn_parameter_and_the_displacement(wide_pair):
    out, truth, case = wide_pair
    assert truth == json.loads((out / "truth.json").read_text())
    disp = truth["transforms"]["displacement"]
    assert disp == transform_summary(case)
    rigid = np.array(truth["transforms"]["followup_to_baseline_rigid"])
    assert disp["translation_norm_mm"] == pytest.approx(np.linalg.norm(rigid[:3, 3]), abs=1e-3)
    axes = np.abs(truth["transforms"]["rotation_axes_deg"])
    assert disp["rotation_max_axis_deg"] == pytest.approx(np.max(axes), abs=1e-3)
    v = truth["variation"]
    for key in ("breast_radii_mm", "gland_density", "fat_s0", "fat_suppression_falloff", "bias_strength",
                "noise_sigma", "n_post", "rotation_axes_deg", "translation_mm", "nonrigid_mm",
                "phase_motion_max_mm", "gland_curve", "baseline", "followup"):
        assert key in v
    assert v["baseline"]["layout_used"] == "sagittal" and truth["layouts"]["followup"] != "sagittal"
    assert all("curve" in n for n in truth["nodules"]) and "curve" in truth["rim"]
    assert len(truth["timing"]["followup"]["post_times_s"]) == v["n_post"]


def test_wide_pair_loads(wide_pair):
    out, truth, case = wide_pair
    for study in ("baseline", "followup"):
        s = load_dce_study(out / study)
        assert len(s.phases) == case.variation.n_post + 1
        vol = s.phases[0].volume
        assert list(vol.shape) == truth["studies"][study]["dce_shape"]
        # the tumour (baseline) / the zone (follow-up) lies inside the field of view
        key = "tumour" if study == "baseline" else "ablation_zone"
        ijk = vol.world_to_voxel(np.array(truth[key][f"centre_{study}_lps_mm"]))
        assert np.all(ijk >= 0) and np.all(ijk <= np.array(vol.shape) - 1)
    sag = load_dce_study(out / "baseline").phases[0].volume.affine[:3, :3]
    ax = load_dce_study(out / "followup").phases[0].volume.affine[:3, :3]
    assert abs(sag[0, 2]) > 0 and abs(ax[2, 2]) > 0  # sagittal slices along x, axial along z
