"""The independent simulator (benchmarks/independent_sim): each scenario's small case is read by our
loader with its phases in time order, its records parse, and its images show what its truth says
(an enhancing tumour at the baseline centre, a non-enhancing zone around the mapped centre in the
follow-up, enhancing residual nodules where the truth puts them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.independent_sim import SCENARIOS, generate_case, scenario_for
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
