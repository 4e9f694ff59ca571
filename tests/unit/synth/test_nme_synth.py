"""Synthetic non-mass enhancement (followup.synth.nme): the dcis-nme scenario's truth and pixels
agree, its draws keep to their ranges, and the clinical draw's look-alikes are in the truth."""

from __future__ import annotations

import numpy as np
import pytest

from followup.synth import kinetics
from followup.synth.cases import draw_case
from followup.synth.nme import DCIS_LENGTH_MM, MIMIC_KINDS, nipple, nme_truth
from followup.synth.pair_truth import biopsy_indicated
from followup.synth.phantom import Grid, ellipsoid_distance, render_phases
from followup.synth.zone_findings import radial_extent


def _to_fu(case):
    return lambda p: case.transform.invert_points(np.asarray(p, float))[0]


def test_dcis_draws_start_at_the_zone_edge_and_run_towards_the_nipple():
    for seed in range(30):
        case = draw_case("dcis-nme", seed, n_post=3)
        (n,) = case.nme
        assert n.kind == "dcis" and n.malignant and n.internal == "clumped"
        assert n.distribution in ("linear", "segmental")
        d = n.start - case.zone.centre
        assert abs(np.linalg.norm(d) - radial_extent(case.zone, d / np.linalg.norm(d))) < 1e-6
        length = float(np.linalg.norm(n.end - n.start))
        assert DCIS_LENGTH_MM[0] * 0.8 <= length <= DCIS_LENGTH_MM[1]
        to_nipple = nipple(case) - n.start
        assert np.dot(n.end - n.start, to_nipple) / (length * np.linalg.norm(to_nipple)) > 0.6
        post = case.followup_timing.post_times_s
        assert 0.7 <= n.curve(post[0]) <= 1.9  # medium or fast initial enhancement, as drawn
        assert kinetics.curve_type(n.curve, post[0], post[-1]) == \
            ("washout" if n.late_change < -0.1 else "persistent" if n.late_change > 0.1 else "plateau")
        assert biopsy_indicated(case)
    assert draw_case("complete", 1, n_post=3).nme == ()  # the other scenarios draw none


def test_dcis_nme_truth_and_pixels_agree():
    case = draw_case("dcis-nme", 4, n_post=3)
    to_fu = _to_fu(case)
    post = case.followup_timing.post_times_s
    (t,) = nme_truth(case, to_fu, lambda c: kinetics.curve_type(c, post[0], post[-1]))
    assert t["kind"] == "dcis" and t["malignant"] and t["curve"] in ("persistent", "plateau", "washout")
    start, end = np.array(t["start_lps_mm"]), np.array(t["end_lps_mm"])
    assert t["extent_mm"] == pytest.approx(np.linalg.norm(end - start), abs=0.05)
    # render the follow-up on a 1 mm grid around the duct (follow-up frame), no noise, no motion
    lo = np.minimum(start, end) - 8.0
    shape = tuple(int(v) for v in np.ceil(np.abs(end - start) + 16.0))
    affine = np.eye(4)
    affine[:3, 3] = lo
    grid = Grid(shape, affine)
    still = tuple(type(case.followup_phase_motion[0])(np.zeros(3), np.zeros(3)) for _ in range(2))
    pre, first = render_phases(case, "followup", grid, (-30.0, post[0]), still, np.random.default_rng(0),
                               noise_sigma=0.0, bias_strength=0.0)
    pe = 100.0 * (first - pre) / np.maximum(pre, 1.0)
    ijk = lambda p: tuple(np.round(p - lo).astype(int))  # noqa: E731
    along = [pe[ijk(start + (end - start) * f)] for f in np.linspace(0.15, 0.85, 8)]
    assert np.median(along) >= 50.0, along  # the duct enhances (medium or fast) along the truth's extent
    beyond = end + (end - start) / np.linalg.norm(end - start) * 6.0
    assert pe[ijk(beyond)] < 30.0  # 6 mm past its end: background
    # its start lies on the zone's edge (body frame)
    (n,) = case.nme
    assert abs(float(ellipsoid_distance(case.zone, *n.start.astype(np.float32)))) < 0.5


def test_clinical_cases_carry_nme_look_alikes_in_their_truth():
    kinds = []
    for seed in range(60000, 60030):
        case = draw_case("complete", seed, n_post=3, variation="clinical")
        post = case.followup_timing.post_times_s
        for t in nme_truth(case, _to_fu(case), lambda c, p=post: kinetics.curve_type(c, p[0], p[-1])):
            assert not t["malignant"] and t["kind"] in MIMIC_KINDS
            assert t["extent_mm"] > 0 and len(t["start_lps_mm"]) == 3
            kinds.append(t["kind"])
    assert set(kinds) == set(MIMIC_KINDS)  # each look-alike among 30 cases
