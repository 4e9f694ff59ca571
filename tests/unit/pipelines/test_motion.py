"""Unit tests of ``followup.pipelines.motion.realign_phases`` on analytic volumes.

The "tissue" is a sum of Gaussian blobs defined in LPS millimetres, so a phase that moved is the
same function evaluated at moved positions (no interpolation in the inputs) and its correctly
realigned values on the pre-contrast grid are known exactly. Post-contrast phases are brighter
(contrast uptake scales the signal): the alignment is by mutual information, not differences.
"""

from __future__ import annotations

import numpy as np
import pytest

from followup.pipelines.motion import REALIGN_ABOVE_MM, realign_phases
from followup.pipelines.roi import box_indices, crop
from followup.volume import Volume

SHAPE = (80, 80, 48)
SPACING = np.array([1.2, 1.2, 2.0])
CENTRE = np.array([4.0, -3.0, 2.0])  # the lesion, LPS mm
HALF_BOX_MM = 25.0
SHIFT = np.array([2.0, -1.5, 1.2])  # |SHIFT| = 2.77 mm
TURN_DEG = 3.0
PIVOT = CENTRE + np.array([30.0, 0.0, 0.0])  # a rotation about a point 30 mm from the lesion

_rng = np.random.default_rng(5)
_BLOBS = (_rng.uniform(-45, 45, size=(60, 3)), _rng.uniform(3, 8, 60), _rng.uniform(20, 80, 60))


def tissue(lps: np.ndarray) -> np.ndarray:
    """Signal at LPS points (..., 3): a floor plus smooth blobs of several sizes."""
    out = np.full(lps.shape[:-1], 60.0)
    for c, s, a in zip(*_BLOBS, strict=True):
        out += a * np.exp(-np.sum((lps - c) ** 2, axis=-1) / (2 * s * s))
    return out.astype(np.float32)


def grid_lps(shape, affine) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def rotation_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


def _rotated_positions(lps: np.ndarray) -> np.ndarray:
    """Where the tissue now at ``lps`` sat before the patient turned by TURN_DEG about PIVOT."""
    return (lps - PIVOT) @ rotation_z(TURN_DEG) + PIVOT  # R^T (x - p) + p, row vectors


@pytest.fixture(scope="module")
def study():
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = -np.array(SHAPE) * SPACING / 2 + np.array([3.0, -2.0, 1.0])
    lps = grid_lps(SHAPE, affine)
    pre = tissue(lps)
    phases = [
        pre,
        1.5 * tissue(lps - SHIFT),  # moved by SHIFT
        1.3 * pre,  # did not move
        1.4 * tissue(lps - np.array([0.3, 0.0, 0.0])),  # moved 0.3 mm: under the threshold
        1.2 * tissue(_rotated_positions(lps)),  # turned about PIVOT
    ]
    vols = [Volume(p.astype(np.float32), affine) for p in phases]
    return vols, realign_phases(vols, CENTRE, HALF_BOX_MM)


def test_grid_is_the_pre_contrast_phase_cropped_to_the_box(study):
    vols, roi = study
    box = box_indices(vols[0], CENTRE, HALF_BOX_MM)
    expected = crop(vols[0], box)
    assert np.array_equal(roi.grid.affine, expected.affine)
    assert np.array_equal(roi.grid.data, expected.data)
    assert roi.phases[0] is roi.grid.data
    # the box covers the lesion +- HALF_BOX_MM
    lo = roi.grid.voxel_to_world(np.zeros(3))
    hi = roi.grid.voxel_to_world(np.asarray(roi.grid.shape, float) - 1)
    assert np.all(lo <= CENTRE - HALF_BOX_MM + SPACING) and np.all(hi >= CENTRE + HALF_BOX_MM - SPACING)
    assert len(roi.phases) == len(vols) == len(roi.alignments)
    for phase in roi.phases:
        assert phase.shape == roi.grid.shape and phase.dtype == np.float32
    assert [a.index for a in roi.alignments] == list(range(len(vols)))
    assert (roi.alignments[0].shift_mm, roi.alignments[0].realigned) == (0.0, False)


def test_known_shift_is_recovered_and_resampled_onto_the_pre_contrast_grid(study):
    vols, roi = study
    a = roi.alignments[1]
    assert a.realigned
    assert a.shift_mm == pytest.approx(float(np.linalg.norm(SHIFT)), abs=0.12)
    # realigned values = the moved phase's tissue where the pre-contrast grid's voxels are
    truth = 1.5 * tissue(grid_lps(roi.grid.shape, roi.grid.affine))
    # everywhere on the grid, its border included (the source crop reaches beyond the box)
    err = np.abs(roi.phases[1] - truth)
    assert err.mean() < 0.005 * truth.mean() and err.max() < 0.05 * truth.mean()
    # ... and much better than leaving the phase where it was
    box = box_indices(vols[0], CENTRE, HALF_BOX_MM)
    unaligned = np.abs(vols[1].data[box] - truth)
    assert err.mean() < 0.1 * unaligned.mean()


def test_rotation_about_another_point_gives_its_displacement_at_the_lesion(study):
    _, roi = study
    a = roi.alignments[4]
    turn = rotation_z(TURN_DEG)
    expected = float(np.linalg.norm(turn @ (CENTRE - PIVOT) + PIVOT - CENTRE))  # ~1.57 mm
    assert expected > 2 * REALIGN_ABOVE_MM
    assert a.realigned
    # the displacement at the lesion, not the matrix's translation (|t| = 1.79 mm here)
    assert a.shift_mm == pytest.approx(expected, abs=0.12)
    truth = 1.2 * tissue(grid_lps(roi.grid.shape, roi.grid.affine))
    err = np.abs(roi.phases[4] - truth)
    assert err.mean() < 0.005 * truth.mean() and err.max() < 0.05 * truth.mean()


@pytest.mark.parametrize("index, moved_mm", [(2, 0.0), (3, 0.3)])
def test_phases_that_did_not_move_are_only_cropped(study, index, moved_mm):
    vols, roi = study
    a = roi.alignments[index]
    assert not a.realigned
    assert a.shift_mm < REALIGN_ABOVE_MM
    assert a.shift_mm == pytest.approx(moved_mm, abs=0.1)
    box = box_indices(vols[0], CENTRE, HALF_BOX_MM)
    # bit for bit the phase's own voxels: no interpolation
    assert np.array_equal(roi.phases[index], vols[index].data[box])


def test_alignment_json():
    from followup.pipelines.motion import PhaseAlignment

    assert PhaseAlignment(2, 1.23456, True).to_json() == {"phase": 2, "shift_mm": 1.23,
                                                          "realigned": True}


def test_pre_contrast_alone_is_cropped():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -40.0
    vol = Volume(tissue(grid_lps((40, 40, 40), affine)), affine)
    roi = realign_phases([vol], np.zeros(3), 10.0)
    box = box_indices(vol, np.zeros(3), 10.0)
    assert len(roi.phases) == 1 and len(roi.alignments) == 1
    assert np.array_equal(roi.phases[0], vol.data[box])
