"""A nodule or a duct that stands out of the background enhancement it touches
(``followup.pipelines.segmentation.standout``): on hand-built enhancement maps, and through the whole
segmentation on the zone phantom (a slab of enhancing gland touching the zone, a nodule in it)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from followup.pipelines.enhancement import enhancement_maps
from followup.pipelines.segmentation.driver import segment
from followup.pipelines.segmentation.standout import STANDOUT_MIN_RATIO, split_standout, standout_cores
from tests.unit.pipelines.zone_phantom import ROT, SEMI_AXES, ZonePhantom

GLAND_PE = 65.0


def _ball(shape, centre, radius):
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), -1)
    return np.linalg.norm(idx - np.asarray(centre, float), axis=-1) <= radius


def _slab_with(nodules, shape=(70, 24, 24)):
    """A 60 x 12 x 12 voxel slab of gland at GLAND_PE with balls of (centre, radius, pe) in it."""
    region = np.zeros(shape, dtype=bool)
    region[5:65, 6:18, 6:18] = True
    pe = np.where(region, GLAND_PE, 0.0)
    for centre, radius, value in nodules:
        ball = _ball(shape, centre, radius)
        pe[ball] = value
        region |= ball
    return region, pe


def test_a_bright_nodule_in_gland_is_a_core_of_its_own():
    ball = ((20, 12, 12), 4.0, 200.0)
    region, pe = _slab_with([ball])
    cores = standout_cores(region, pe, min_voxels=5, floor_pe=50.0)
    assert len(cores) == 1
    truth = _ball(region.shape, *ball[:2])
    # cut half-way between the gland and the peak: exactly the ball (its voxels are all at 200 %)
    assert np.array_equal(cores[0], truth)
    parts = split_standout(region, pe, 5, 50.0)
    assert len(parts) == 2 and np.array_equal(parts[0], truth)
    # the rest: the gland less the ball's one-voxel shell (its partial-volume edge)
    near = ndimage.binary_dilation(truth, structure=np.ones((3, 3, 3)))
    assert np.array_equal(parts[1], region & ~near)


def test_each_core_is_cut_at_its_own_level():
    """A fainter nodule is measured at half-way to its own peak, not at the brighter one's level."""
    bright, faint = ((15, 12, 12), 4.0, 260.0), ((45, 12, 12), 3.0, 150.0)
    region, pe = _slab_with([bright, faint])
    # the faint nodule has a halo at 120 % (above its own half level, 107.5 %, below the bright one's, 162.5 %)
    halo = _ball(region.shape, faint[0], 4.0) & ~_ball(region.shape, *faint[:2])
    pe[halo] = 120.0
    cores = standout_cores(region, pe, min_voxels=5, floor_pe=50.0)
    assert len(cores) == 2
    assert np.array_equal(cores[0], _ball(region.shape, *bright[:2]))
    assert np.array_equal(cores[1], _ball(region.shape, faint[0], 4.0))


@pytest.mark.parametrize("peak, stands_out", [(STANDOUT_MIN_RATIO * GLAND_PE + 1, True),
                                              (STANDOUT_MIN_RATIO * GLAND_PE - 1, False)])
def test_only_enhancement_twice_the_gland_stands_out(peak, stands_out):
    region, pe = _slab_with([((30, 12, 12), 4.0, peak)])
    assert bool(standout_cores(region, pe, 5, 50.0)) is stands_out


def test_a_nodule_with_a_little_gland_around_it_is_left_whole():
    """Cores that are most of the region: a nodule, for the focus's own measurement and lobes."""
    shape = (24, 24, 24)
    region = _ball(shape, (12, 12, 12), 6.0)
    core = _ball(shape, (12, 12, 12), 5.0)
    pe = np.where(core, 200.0, np.where(region, GLAND_PE, 0.0))
    assert standout_cores(region, pe, 5, 50.0) == []
    assert len(split_standout(region, pe, 5, 50.0)) == 1


# ----------------------------------------------------------------------------- the whole segmentation

RIM = (100.0, 135.0, 165.0, 185.0)  # slow, persistent: the benign rim
GLAND = (100.0, 165.0, 185.0, 200.0)  # 65 %, +21 % later (persistent): background enhancement
NODULE = (100.0, 300.0, 302.0, 295.0)  # 200 %, plateau


@pytest.fixture(scope="module")
def phantom() -> ZonePhantom:
    affine = np.eye(4)
    affine[:3, 3] = (-40.0, 10.0, 25.0)
    return ZonePhantom((80, 60, 52), affine, (30, 30, 26))


def _gland_and_nodule(ph: ZonePhantom, with_nodule: bool):
    """A 40 x 20 mm sheet of gland, 3 mm thick, 3 mm beyond the zone's edge (1 mm beyond its rim),
    and a 9 mm nodule in it reaching the rim."""
    u, w = ROT[:, 0], ROT[:, 2]
    d = ph.lps - ph.centre
    along, up = d @ u, d @ w
    across = d @ ROT[:, 1]
    top = SEMI_AXES[2] + 3.0
    gland = (np.abs(along) <= 20) & (np.abs(across) <= 10) & (up >= top) & (up < top + 3) & ~ph.zone
    structures = [(ph.rim(2.0), RIM), (gland, GLAND)]
    centre = ph.centre + w * (SEMI_AXES[2] + 2.0 + 4.5)
    nodule = np.linalg.norm(ph.lps - centre, axis=-1) <= 4.5
    if with_nodule:
        structures.append((nodule, NODULE))
    phases = [np.full(ph.shape, 100.0, np.float32) for _ in range(4)]
    for mask, curve in structures:
        for p, v in zip(phases, curve, strict=True):
            p[mask] = v
    maps = enhancement_maps(phases, s0_floor=10.0)
    return segment(phases, maps, ph.affine, ph.centre, 4.0, 5.0), nodule, centre


def test_a_nodule_in_gland_touching_the_zone_is_a_suspicious_focus(phantom):
    seg, _, centre = _gland_and_nodule(phantom, with_nodule=True)
    suspicious = [f for f in seg.foci if f.suspicious]
    assert len(suspicious) == 1
    f = suspicious[0]
    assert np.linalg.norm(f.centre_lps - centre) < 1.0
    assert f.largest_diameter_mm == pytest.approx(10.0, abs=1.5)  # 9 mm + a voxel
    assert f.curve_type == "plateau"


def test_the_gland_alone_gives_no_suspicious_focus(phantom):
    seg, _, _ = _gland_and_nodule(phantom, with_nodule=False)
    assert not any(f.suspicious for f in seg.foci)
