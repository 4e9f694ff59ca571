"""The independent simulator (benchmarks/independent_sim): each scenario's small case is read by our
loader with its phases in time order, its records parse, and its images show what its truth says
(an enhancing tumour at the baseline centre, a non-enhancing zone around the mapped centre in the
follow-up, enhancing residual nodules where the truth puts them, an enhancing nipple at the breast's
apex, non-mass enhancement that is new at its recorded ends); a surveillance series' zone volume
shrinks and its rim's uptake fades in the written pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.independent_sim import SCENARIOS, generate_case, generate_series, scenario_for
from benchmarks.independent_sim.nipple import clock_face, location
from followup.dicom import load_dce_study
from followup.procedure import load_procedure

ORDERING = {"per-phase": "AcquisitionTime", "single-series": "TemporalPositionIdentifier",
            "trigger-series": "TriggerTime"}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("independent-sim")
    return {sc: (root / sc, generate_case(root / sc, 20 + i, sc, small=True)) for i, sc in enumerate(SCENARIOS)}


def _ball(vol, centre: np.ndarray, radius_mm: float) -> np.ndarray:
    """Mask of the voxels of ``vol`` within ``radius_mm`` of ``centre`` (LPS)."""
    idx = np.indices(vol.shape).reshape(3, -1).T
    d = np.linalg.norm(vol.voxel_to_world(idx) - centre, axis=1).reshape(vol.shape)
    return d <= radius_mm


def _enhancement(study, mask: np.ndarray) -> float:
    s0 = float(study.phases[0].volume.data[mask].mean())
    s1 = float(study.phases[1].volume.data[mask].mean())
    return 100.0 * (s1 - s0) / s0


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_case_is_read_in_order_and_matches_its_truth(cases, scenario):
    folder, truth = cases[scenario]
    on_disk = json.loads((folder / "truth.json").read_text())
    assert on_disk["simulator"] == "independent" and on_disk["scenario"] == scenario
    assert on_disk["residual"] == (scenario in ("residual", "dcis-nme"))
    assert bool(on_disk["nodules"]) == (scenario == "residual")
    assert any(n["malignant"] for n in on_disk["nme"]) == (scenario == "dcis-nme")

    base = load_dce_study(folder / "baseline")
    fu = load_dce_study(folder / "followup")
    assert base.patient_id == fu.patient_id and base.study_uid != fu.study_uid
    for tag, study in (("baseline", base), ("followup", fu)):
        expected = truth["studies"][tag]
        assert len(study.phases) == 1 + len(expected["protocol"]["post_times_s"])
        assert study.ordering == ORDERING[expected["protocol"]["layout"]]
        times = [p.time_s for p in study.phases]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert np.allclose(times, expected["phase_times_s"], atol=0.5)

    record = load_procedure(folder / "procedure.json")
    assert record.patient_id == base.patient_id and record.margin_mm == 10
    assert fu.study_date is not None
    days = (fu.study_date - record.procedure_date).days
    assert days == truth["days_since_procedure"]
    assert (days < 21) == (scenario == "early")

    # the tumour: inside the baseline volume, and enhancing there
    centre_b = np.array(record.lesion.center_lps_mm)
    assert np.allclose(centre_b, truth["tumour"]["centre_baseline_lps_mm"], atol=0.01)
    vol_b = base.phases[0].volume
    ijk = vol_b.world_to_voxel(centre_b[None])[0]
    assert np.all(ijk >= 0) and np.all(ijk <= np.array(vol_b.shape) - 1)
    # (a rim-enhancing tumour enhances less at its centre: the brightest tenth of its ball)
    ball = _ball(vol_b, centre_b, truth["tumour"]["volume_equivalent_diameter_mm"] / 2)
    s0, s1 = base.phases[0].volume.data[ball], base.phases[1].volume.data[ball]
    assert np.percentile(s1 - s0, 90) > 0.6 * s0.mean()

    # the follow-up: a non-enhancing zone around the mapped centre (nodules left out), enhancing nodules
    vol_f = fu.phases[0].volume
    centre_f = np.array(truth["tumour"]["centre_followup_lps_mm"])
    core = _ball(vol_f, centre_f, 4.0)
    for n in truth["nodules"] + (truth["confounder"] or {}).get("mimics", []):
        core &= ~_ball(vol_f, np.array(n["centre_followup_lps_mm"]), n["largest_diameter_mm"] / 2 + 2.0)
    assert core.sum() >= 5
    assert _enhancement(fu, core) < 12
    # each nodule enhances where the truth puts it: its brightest uptake well above the zone's and
    # the noise (partial volume with fat dilutes its percent enhancement, not its uptake)
    uptake = fu.phases[1].volume.data - vol_f.data
    floor = max(6 * truth["studies"]["followup"]["noise_sd"], 2 * np.percentile(uptake[core], 95))
    for n in truth["nodules"]:
        if n["diameter_mm"] >= 5:
            assert uptake[_ball(vol_f, np.array(n["centre_followup_lps_mm"]), 2.5)].max() > floor


def test_seed_alone_decides_the_case(tmp_path, cases):
    folder, truth = cases["complete"]
    again = generate_case(tmp_path / "again", truth["seed"], "complete", small=True)
    first = json.loads((folder / "truth.json").read_text())
    assert json.loads((tmp_path / "again" / "truth.json").read_text()) == first
    assert np.array_equal(again["_volumes"]["followup"][0], truth["_volumes"]["followup"][0])
    drawn = [scenario_for(s) for s in range(96000, 96200)]
    assert set(drawn) == set(SCENARIOS)
    assert 0.3 < drawn.count("residual") / len(drawn) < 0.5


def _uptake(study) -> np.ndarray:
    return study.phases[1].volume.data.astype(float) - study.phases[0].volume.data.astype(float)


def test_clock_face_convention():
    # viewer facing the patient: 12 superior (+z), 3 towards the patient's left (+x), 9 towards the right
    nipple = np.array([50.0, -80.0, 10.0])
    for offset, hour in (((0, 5, 20), 12), ((20, 0, 0), 3), ((0, 0, -20), 6), ((-20, 3, 0), 9),
                         ((10, 0, 17.32), 1), ((-10, 0, 17.32), 11), ((17.32, 0, -10), 4)):
        assert clock_face(nipple + np.array(offset, float), nipple) == hour
    loc = location(nipple + np.array([-30.0, 40.0, 0.0]), nipple, "R")
    assert loc == {"laterality": "R", "clock_face": 9, "distance_from_nipple_mm": 50.0}


@pytest.mark.parametrize("scenario", ["complete", "dcis-nme"])
def test_nipple_is_bright_at_the_breast_apex(cases, scenario):
    folder, truth = cases[scenario]
    loc = truth["tumour_location"]
    assert loc["laterality"] == truth["breast"]["laterality"] and 1 <= loc["clock_face"] <= 12
    assert loc["distance_from_nipple_mm"] == pytest.approx(np.linalg.norm(
        np.subtract(truth["tumour"]["centre_baseline_lps_mm"], truth["nipple_lps_mm"]["baseline"])), abs=0.1)
    checked = 0
    for tag in ("baseline", "followup"):
        if not truth["nipple_in_fov"][tag]:
            continue
        study = load_dce_study(folder / tag)
        vol = study.phases[0].volume
        nipple = np.array(truth["nipple_lps_mm"][tag])
        noise = truth["studies"][tag]["noise_sd"]
        up = _uptake(study)
        near = _ball(vol, nipple, 3.0)
        assert up[near].max() > 10 * noise  # it enhances: at least 30 % over its own pre-contrast signal
        assert (up[near] / np.maximum(vol.data[near], 1.0)).max() > 0.3
        # the apex: the most anterior (-y) enhanced body voxel lies on the nipple
        body = study.phases[1].volume.data > 8 * noise
        idx = np.argwhere(body)
        world = vol.voxel_to_world(idx)
        tip = world[np.argmin(world[:, 1])]
        assert np.linalg.norm(tip - nipple) < 13.0  # (the nipple protrudes 4-10 mm)
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("scenario", ["dcis-nme", "confounder"])
def test_nme_truth_lies_on_new_enhancement(cases, scenario):
    folder, truth = cases[scenario]
    keys = {"kind", "malignant", "distribution", "internal", "start_lps_mm", "end_lps_mm", "extent_mm", "curve"}
    assert all(set(n) == keys for n in truth["nme"])
    if scenario == "dcis-nme":
        assert [n["kind"] for n in truth["nme"]] == ["dcis"] and truth["nme"][0]["malignant"]
        assert truth["nme"][0]["distribution"] in ("linear", "segmental")
        assert 8.0 <= truth["nme"][0]["extent_mm"] <= 50.0
    assert truth["nme"] or scenario == "confounder"
    base, fu = load_dce_study(folder / "baseline"), load_dce_study(folder / "followup")
    up_b, up_f = _uptake(base), _uptake(fu)
    noise = truth["studies"]["followup"]["noise_sd"]
    reach = 2.0 + truth["motion_between_phases_mm"]  # later phases may have moved (truth: the pre phase's frame)
    zone = truth["_site"].zone
    for n, det in zip(truth["nme"], truth["nme_details"], strict=True):
        assert n["malignant"] == (n["kind"] == "dcis")
        span = np.linalg.norm(np.subtract(n["end_lps_mm"], n["start_lps_mm"]))
        assert span <= n["extent_mm"] + 4.0
        for end in ("start", "end"):
            p_f = np.array(n[f"{end}_lps_mm"])
            p_b = np.array(det[f"{end}_baseline_lps_mm"])
            new = up_f[_ball(fu.phases[0].volume, p_f, reach)].max()
            in_b = _ball(base.phases[0].volume, p_b, reach)
            old = up_b[in_b].max() if in_b.any() else 0.0  # (a probe track may leave the baseline's view)
            assert new > 6 * noise, (n["kind"], end, new)
            # (a baseline with marked background enhancement takes up a good part of it there too)
            assert new > (1.5 if n["malignant"] else 1.1) * old, (n["kind"], end, new, old)
        if n["kind"] in ("dcis", "probe-track"):  # they start at the zone's edge
            d, _ = zone.distance_dir(np.array(det["start_baseline_lps_mm"])[None])
            assert -1.0 <= d[0] <= 2.0


def test_series_zone_involutes_and_rim_fades(tmp_path):
    truth = generate_series(tmp_path, 9, small=True, months=(1, 6, 24))
    tps = truth["time_points"]
    assert [tp["label"] for tp in tps] == ["m01", "m06", "m24"]
    vols = [tp["ablation_zone"]["volume_ml"] for tp in tps]
    assert vols[0] > vols[1] > vols[2] > 0
    assert [tp["rim"]["present"] for tp in tps] == [True, True, False]
    assert [tp["recurrence"] for tp in tps] == [False, False, True] and tps[2]["recurrence_size_mm"] > 5
    record = load_procedure(tmp_path / "procedure.json")
    base = load_dce_study(tmp_path / "baseline")
    contrast = []
    for tp, exam in zip(tps, truth["_exams"], strict=True):
        study = load_dce_study(tmp_path / tp["label"])
        assert study.patient_id == base.patient_id == record.patient_id
        assert study.study_date is not None
        assert (study.study_date - record.procedure_date).days == tp["days_since_procedure"]
        vol = study.phases[0].volume
        idx = np.indices(vol.shape).reshape(3, -1).T
        d, _ = exam["site"].zone.distance_dir(exam["repos"].to_tissue(vol.voxel_to_world(idx)))
        d = d.reshape(vol.shape)
        up, pre = _uptake(study), vol.data.astype(float)

        def rel(mask: np.ndarray, up=up, pre=pre) -> float:
            return float(up[mask].mean() / pre[mask].mean())

        # the rim's uptake against the tissue 6-12 mm out
        contrast.append(rel((d >= 0) & (d <= 2.5)) - rel((d >= 6) & (d <= 12)))
        if tp["recurrence"]:
            c = np.array(tp["recurrence_centre_followup_lps_mm"])
            assert up[_ball(vol, c, 2.5)].max() > 8 * tp["study"]["noise_sd"]
    assert contrast[0] > contrast[1] > contrast[2] - 0.02
    assert contrast[0] > 0.1 and contrast[2] < 0.05
