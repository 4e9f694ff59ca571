"""The ablation zone found in the follow-up itself, and a poor registration that no longer
discards the imaging read (issue 11, item 2), on small synthetic pairs with their ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from followup.dicom import load_dce_study
from followup.pipelines import assess as A
from followup.pipelines.motion import realign_phases
from followup.pipelines.registration.result import RegistrationResult
from followup.pipelines.segment import fibonacci_sphere
from followup.pipelines.zone_search import SEARCH_RADIUS_POOR_MM, find_zone, fit_ellipsoid
from followup.procedure import load_procedure


def _truth(pair):
    return json.loads((pair / "truth.json").read_text())


def _studies(pair):
    return (load_dce_study(pair / "baseline", decode_phases=2), load_dce_study(pair / "followup"),
            load_procedure(pair / "procedure.json"))


def test_fit_ellipsoid_recovers_the_axes():
    dirs = fibonacci_sphere(162)
    semi = np.array([15.0, 12.0, 9.0])
    radii = 1.0 / np.linalg.norm(dirs / semi, axis=1)
    axes, misfit = fit_ellipsoid(dirs, radii)
    assert axes == pytest.approx(2 * semi, abs=1e-6) and misfit < 1e-6


@pytest.mark.parametrize("scenario,seed", [("residual", 1), ("complete", 1)])
def test_zone_found_from_a_seed_displaced_by_15_to_20_mm(synth_pair, scenario, seed):
    pair = synth_pair(scenario, seed)
    truth = _truth(pair)
    _, fu, rec = _studies(pair)
    zone_truth = np.array(truth["ablation_zone"]["centre_followup_lps_mm"])
    tumour = np.array(truth["tumour"]["centre_followup_lps_mm"])
    rng = np.random.default_rng(11)
    for _ in range(2):
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        seed_lps = tumour + u * rng.uniform(15.0, 20.0)
        roi = realign_phases([p.volume for p in fu.phases], seed_lps, A.ROI_HALF_MM)
        maps = A._maps(roi)
        search = find_zone(roi.phases[0], maps.pe_peak, maps.valid, roi.grid.affine, seed_lps[None],
                           SEARCH_RADIUS_POOR_MM, rec.lesion.diameter_mm, rec.margin_mm)
        assert search.found, search.reason
        assert np.linalg.norm(search.centre_lps - zone_truth) < 3.0
        assert search.best.leak_fraction <= 0.1 and search.best.rim_fraction > 0.5


def test_no_zone_in_uniform_tissue():
    shape, affine = (40, 40, 40), np.diag([2.0, 2.0, 2.0, 1.0])
    s0 = np.full(shape, 100.0, np.float32)
    search = find_zone(s0, np.zeros(shape, np.float32), np.ones(shape, bool), affine,
                       np.array([[40.0, 40.0, 40.0]]), 35.0, 12.0, 10.0)
    assert not search.found and "no non-enhancing ovoid" in search.reason


def _registration(truth, shift_mm, quality):
    """The true follow-up -> baseline rigid transform, its mapping of the baseline moved by
    ``shift_mm`` in follow-up space."""
    m = np.array(truth["transforms"]["followup_to_baseline_rigid"], dtype=float)
    if m.shape == (3, 4):
        m = np.vstack([m, [0, 0, 0, 1]])
    t = np.eye(4)
    t[:3, 3] = -np.asarray(shift_mm, float)  # baseline_to_followup = inv(m @ t) = T(+shift) inv(m)
    local = m @ t
    return RegistrationResult(local, local, "test", 0.5, 0.5, 0.1, 0.1 if quality == "poor" else 0.9,
                              quality, ["forced by the test"] if quality == "poor" else [])


@pytest.fixture(scope="module")
def residual_runs(tmp_path_factory):
    from followup.synth import generate_pair
    pair = tmp_path_factory.mktemp("residual-poor")
    generate_pair(pair, "residual", 1, "per-phase", "small")
    truth = _truth(pair)
    base, fu, rec = _studies(pair)
    out = {}
    for label, shift, quality in (("good", (0.0, 0.0, 0.0), "good"),
                                  ("poor", (8.0 / np.sqrt(2), -8.0 / np.sqrt(2), 0.0), "poor")):
        mp = pytest.MonkeyPatch()
        mp.setattr(A, "register", lambda *args, _s=shift, _q=quality: _registration(truth, _s, _q))
        try:
            out[label] = A.assess(base, fu, rec)
        finally:
            mp.undo()
    return truth, out


def test_poor_registration_still_reports_the_nodule_at_the_zone(residual_runs):
    truth, runs = residual_runs
    good, poor = runs["good"], runs["poor"]
    assert poor.status == "complete" and poor.registration_poor and poor.zone_found
    zone_truth = np.array(truth["ablation_zone"]["centre_followup_lps_mm"])
    assert np.linalg.norm(poor.segmentation.zone.centre_lps - zone_truth) < 3.0
    nodule = np.array(truth["nodules"][0]["centre_followup_lps_mm"])
    near = [f for f in poor.suspicious_foci if np.linalg.norm(f.centre_lps - nodule) < 5.0]
    assert near, [f.centre_lps for f in poor.suspicious_foci]
    # the probability used it: an MRI driver above 1, low confidence, a wider interval, no margin
    p = poor.probability
    mri = [d for d in p.drivers if d.name.startswith("MRI")]
    assert len(mri) == 1 and mri[0].factor > 1.0 and "identity" in mri[0].name
    assert p.counted_focus is not None
    assert p.confidence == "low"
    assert p.interval[1] - p.interval[0] > good.probability.interval[1] - good.probability.interval[0]
    assert not any("margin" in d.name for d in p.drivers)
    assert p.probability > p.prior
    codes = [c.code for c in poor.caveats]
    assert "poor-registration" in codes and "margin-not-covered" not in codes
    assert "found in the follow-up itself" in next(c.text for c in poor.caveats
                                                  if c.code == "poor-registration")
    assert any(r.code == "targeted-biopsy" for r in poor.recommendations)


def test_zone_not_found_with_poor_registration_falls_back_to_the_record(residual_runs, monkeypatch):
    """No zone in the follow-up and a poor registration: today's conservative result."""
    from followup.pipelines import zone_search as Z
    truth, runs = residual_runs
    seg = runs["poor"].segmentation
    reg = _registration(truth, (8.0, 0.0, 0.0), "poor")
    missing = Z.ZoneSearch(False, None, 0.0, np.zeros((1, 3)), 35.0, 30.0, [], "none here")
    ev = A.imaging_evidence(reg, seg, missing)
    assert not ev.reliable
    found = Z.ZoneSearch(True, seg.zone.centre_lps, 0.9, np.zeros((1, 3)), 35.0, 30.0, [])
    ev_found = A.imaging_evidence(reg, seg, found)
    assert ev_found.reliable and not ev_found.location_confirmed


def test_poor_registration_report_in_every_format(synth_pair, tmp_path, monkeypatch):
    """The whole job with a poor registration: a complete report, low confidence, the zone found
    in the follow-up, the nodule reported, every format rendered."""
    from followup.job import run_job
    pair = synth_pair("residual", 1)
    truth = _truth(pair)
    monkeypatch.setattr(A, "register", lambda *args: _registration(truth, (0.0, 8.0, 0.0), "poor"))
    res = run_job(pair / "followup", pair / "baseline", load_procedure(pair / "procedure.json"),
                  tmp_path / "out")
    r = res.report
    assert r.status == "complete" and r.confidence == "low"
    assert r.registration.quality == "poor"
    assert r.findings.ablation_zone.found_in_followup and r.findings.suspicious_foci
    assert "poor-registration" in [c.code for c in r.caveats]
    assert "review-registration" in [c.code for c in r.recommendations]
    assert {"json", "html", "pdf", "fhir", "sr", "seg"} <= set(res.paths)
    assert "found in the follow-up itself" in (tmp_path / "out" / "report.html").read_text()


def test_leaked_zone_counts_a_focus_but_not_a_negative_read(residual_runs):
    """A zone whose edge was not found everywhere: a suspicious focus at the site is still used
    (what is seen is seen), but without one the imaging is not trusted as negative, and no margin
    is measured on an edge that was not found."""
    from dataclasses import replace

    from followup.pipelines import zone_search as Z
    _, runs = residual_runs
    good = runs["good"]
    assert good.suspicious_foci
    found = Z.ZoneSearch(True, good.segmentation.zone.centre_lps, 0.9, np.zeros((1, 3)), 15.0, 30.0, [])
    leaked = replace(good.segmentation, zone=replace(good.segmentation.zone, leaked=True))
    with_focus = A.imaging_evidence(good.registration, leaked, found)
    assert with_focus.reliable and with_focus.foci and with_focus.margin_covered is None
    without = A.imaging_evidence(good.registration, replace(leaked, foci=[]), found)
    assert not without.reliable
    closed = A.imaging_evidence(good.registration, replace(good.segmentation, foci=[]), found)
    assert closed.reliable and closed.margin_covered is not None
