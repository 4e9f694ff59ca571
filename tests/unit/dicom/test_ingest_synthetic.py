"""Ingestion of the synthetic pairs: every vendor layout, geometry checked against truth.json.

A truth point (LPS mm) mapped through the reconstructed affine must land on the lesion it names.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from followup.dicom import load_dce_study
from followup.synth.generate import SIZE_SPECS

VENDORS = ["per-phase", "single-series", "sagittal"]


def _pe_at(study, lps, radius_mm=1.5, phase=1):
    """Mean percent enhancement (first post-contrast vs pre) in a small ball around a point."""
    pre, post = study.phases[0].volume, study.phases[phase].volume
    ijk = pre.world_to_voxel(np.asarray(lps, float))
    sp = pre.spacing
    r = np.ceil(radius_mm / sp).astype(int)
    lo = np.maximum(np.round(ijk).astype(int) - r, 0)
    hi = np.minimum(np.round(ijk).astype(int) + r + 1, pre.shape)
    ii, jj, kk = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij")
    d = np.sqrt((((np.stack([ii, jj, kk], -1) - ijk) * sp) ** 2).sum(-1))
    sel = d <= max(radius_mm, sp.max() / 2)
    s0 = pre.data[ii, jj, kk][sel]
    s1 = post.data[ii, jj, kk][sel]
    return float(np.mean(100.0 * (s1 - s0) / np.maximum(s0, 1.0)))


@pytest.mark.parametrize("vendor", VENDORS)
def test_phases_and_geometry_match_truth(synth_pair, vendor):
    out = synth_pair("residual", 1, vendor)
    truth = json.loads((out / "truth.json").read_text())
    n_phases = SIZE_SPECS["small"].n_post + 1
    for name in ("baseline", "followup"):
        study = load_dce_study(out / name)
        t = truth["studies"][name]
        assert study.study_uid == t["study_uid"]
        assert len(study.phases) == n_phases
        # phase order and timing: times relative to the pre-contrast phase match the generator
        expected = np.array(t["phase_times_after_injection_s"])
        got = np.array([p.time_s for p in study.phases])
        assert np.allclose(got, expected - expected[0], atol=0.01)
        vol = study.phases[0].volume
        assert vol.shape == tuple(t["dce_shape"])
        assert np.allclose(vol.affine, np.array(t["dce_affine_lps"]), atol=1e-4)
        for p in study.phases:
            assert np.allclose(p.volume.affine, vol.affine, atol=1e-6)
        if vendor == "sagittal":
            assert study.laterality == truth["laterality"]

    baseline = load_dce_study(out / "baseline")
    followup = load_dce_study(out / "followup")
    # The baseline tumour enhances fast (> 100 % at the first post-contrast phase).
    assert _pe_at(baseline, truth["tumour"]["centre_baseline_lps_mm"]) > 100
    # The follow-up: the ablation zone's centre does not enhance; the first nodule does, fast.
    assert abs(_pe_at(followup, truth["ablation_zone"]["centre_followup_lps_mm"], 3.0)) < 15
    nodule = truth["nodules"][0]
    assert _pe_at(followup, nodule["centre_followup_lps_mm"], 0.25 * nodule["diameter_mm"]) > 80
    # and the baseline tumour centre, mapped to follow-up space, is inside the non-enhancing zone
    assert abs(_pe_at(followup, truth["tumour"]["centre_followup_lps_mm"], 2.0)) < 25


def test_pre_contrast_is_the_unenhanced_phase(synth_pair):
    """Single-series layout carries contrast attributes on every instance (as Philips/GE do):
    the pre-contrast phase must still be the earliest, whose signal in the heart is lowest."""
    out = synth_pair("complete", 3, "single-series")
    study = load_dce_study(out / "followup")
    assert study.ordering in ("TemporalPositionIdentifier", "TemporalPositionIndex")
    heart = study.phases[0].volume.world_to_voxel(np.array([15.0, 60.0, -10.0]))
    i, j, k = np.round(heart).astype(int)
    means = [float(p.volume.data[i - 2:i + 3, j - 2:j + 3, k - 1:k + 2].mean()) for p in study.phases]
    assert means[0] == min(means)


def test_rescale_slope_is_applied(synth_pair):
    """The single-series layout stores values / 1.5 with RescaleSlope 1.5: tissue means agree
    with the per-phase layout of the same case."""
    a = load_dce_study(synth_pair("complete", 3, "single-series") / "baseline")
    b = load_dce_study(synth_pair("complete", 3, "per-phase") / "baseline")
    ma, mb = float(a.phases[0].volume.data.mean()), float(b.phases[0].volume.data.mean())
    assert ma == pytest.approx(mb, rel=0.02)


def test_distractors_are_ignored_with_reasons(synth_pair):
    from followup.synth.cases import draw_case

    seed = next(s for s in range(20) if draw_case("complete", s, 4).distractors)
    study = load_dce_study(synth_pair("complete", seed, "per-phase") / "followup")
    reasons = {s.description: s.reason for s in study.ignored_series}
    assert "3-plane loc" in reasons and "Ax T2 TSE" in reasons
    assert all(r for r in reasons.values())
    assert len(study.phases) == SIZE_SPECS["small"].n_post + 1
