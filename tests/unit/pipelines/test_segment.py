"""Unit tests of ``followup.pipelines.segmentation`` on hand-built ROI arrays with known ground truth.

The phantom: uniform tissue (S0 = 100) holding a non-enhancing ellipsoidal ablation zone
(semi-axes 15, 12, 10 mm, turned 30 deg about z) wrapped in a thin enhancing rim with the
benign "cryohalo" kinetics (slow, persistent); foci are spheres or sheets with their own
time-signal curves. Every voxel of a structure carries exactly its curve (no noise, no partial
volume), so volumes, kinetics and distances have known values.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from followup.pipelines.enhancement import enhancement_maps
from followup.pipelines.segmentation.driver import segment
from followup.pipelines.segmentation.foci import FOCUS_BAND_OUTSIDE_MM, find_foci, split_at_maxima, tissue_floor
from followup.pipelines.segmentation.lobes import split_lobes
from followup.pipelines.segmentation.model import Segmentation
from followup.pipelines.segmentation.rays import N_RAYS, fibonacci_sphere
from followup.pipelines.segmentation.rim import segment_rim
from followup.pipelines.segmentation.zone import segment_zone, zone_distances
from tests.unit.pipelines.zone_phantom import ROT, SEMI_AXES, ZonePhantom

TUMOUR_RADIUS = 4.0  # the mapped tumour: smallest margin = shortest semi-axis - this = 6 mm
S0 = 100.0
RIM_CURVE = (100.0, 135.0, 165.0, 185.0)  # PE 35 % (slow), +37 % later (persistent)
WASHOUT = (100.0, 250.0, 230.0, 200.0)  # PE 150 % (fast), -20 % later (washout)
PLATEAU = (100.0, 230.0, 232.0, 228.0)  # PE 130 % (fast), -0.9 % later (plateau)


class Phantom(ZonePhantom):
    """The zone phantom (zone_phantom.py) with the helpers these tests use."""

    def snap(self, lps: np.ndarray) -> np.ndarray:
        """The voxel centre nearest to an LPS point (spheres centred there are symmetric)."""
        inv = np.linalg.inv(self.affine)
        ijk = np.round(inv[:3, :3] @ lps + inv[:3, 3])
        return self.affine[:3, :3] @ ijk + self.affine[:3, 3]

    def sphere(self, centre: np.ndarray, radius: float) -> np.ndarray:
        return np.linalg.norm(self.lps - centre, axis=-1) <= radius

    def phases(self, *structures: tuple[np.ndarray, tuple[float, ...]],
                 base: float = S0) -> list[np.ndarray]:
        out = [np.full(self.shape, base, np.float32) for _ in range(4)]
        for mask, curve in structures:
            for phase, value in zip(out, curve, strict=True):
                phase[mask] = value
        return out


def _iso_phantom() -> Phantom:
    affine = np.eye(4)
    affine[:3, 3] = (-40.0, 10.0, 25.0)
    return Phantom((72, 60, 52), affine, (30, 30, 26))


@pytest.fixture(scope="module")
def iso() -> Phantom:
    return _iso_phantom()


def _true_ray_radius() -> np.ndarray:
    """The ellipsoid's radius along each of the segmentation's rays (from its centre)."""
    local = fibonacci_sphere(N_RAYS) @ ROT
    return 1.0 / np.linalg.norm(local / SEMI_AXES, axis=1)


def _maps(phases):
    return enhancement_maps(phases, s0_floor=10.0)


def _zone(ph: Phantom, phases, margin_mm: float = 5.0):
    return segment_zone(phases[0], _maps(phases), ph.affine, ph.centre, TUMOUR_RADIUS, margin_mm)


# ----------------------------------------------------------------------------- zone


def _aniso_phantom() -> Phantom:
    """0.8 x 0.8 x 1.6 mm voxels, i running to the patient's right (a flipped axis)."""
    affine = np.diag([-0.8, 0.8, 1.6, 1.0])
    affine[:3, 3] = (60.0, -30.0, 12.0)
    return Phantom((84, 76, 34), affine, (42, 38, 17))


@pytest.mark.parametrize("make", [_iso_phantom, _aniso_phantom], ids=["1mm", "anisotropic"])
def test_zone_by_rays_matches_the_ellipsoid(make):
    ph = make()
    phases = ph.phases((ph.rim(2.0), RIM_CURVE))
    zone = _zone(ph, phases)
    true_ml = 4.0 / 3.0 * np.pi * SEMI_AXES.prod() / 1000.0  # 7.54 ml
    assert zone.volume_ml == pytest.approx(true_ml, rel=0.05)
    dice = 2 * (zone.mask & ph.zone).sum() / (zone.mask.sum() + ph.zone.sum())
    assert dice > 0.95
    assert np.linalg.norm(zone.centre_lps - ph.centre) < 0.5
    # principal diameters, largest first, and the longest axis along the zone's turned x axis
    assert zone.axes_mm == pytest.approx(2 * SEMI_AXES, abs=1.5)
    assert abs(zone.axis_directions[0] @ ROT[:, 0]) > 0.98
    assert abs(zone.axis_directions[2] @ ROT[:, 2]) > 0.98
    # each ray's radius is the ellipsoid's radius in that direction; along z through 1.6 mm slices
    # this phantom's 2 mm rim (no partial volume) is one slice thick: on the grid the zone ends at
    # that slice's boundary, 0.4 mm beyond the ellipsoid, and a rim within one voxel does not show
    # its thickness (the edge goes midway in what that voxel allows, up to 0.4 mm more)
    err = zone.ray_radius_mm - _true_ray_radius()
    worst = 1.0 if make is _iso_phantom else 1.25
    assert np.abs(err).max() < worst and abs(np.median(err)) < 0.5
    assert not zone.leaked


def test_smallest_margin_and_coverage(iso):
    phases = iso.phases((iso.rim(2.0), RIM_CURVE))
    covered = _zone(iso, phases, margin_mm=5.0)
    expected = SEMI_AXES.min() - TUMOUR_RADIUS  # 6 mm, along the shortest axis
    assert covered.smallest_margin_mm == pytest.approx(expected, abs=0.75)
    assert covered.covers_margin
    short = _zone(iso, phases, margin_mm=8.0)
    assert short.smallest_margin_mm == pytest.approx(covered.smallest_margin_mm)
    assert not short.covers_margin


def test_zone_edge_from_pre_contrast_signal_alone(iso):
    """No rim: the rays stop where the pre-contrast signal leaves the zone's own level."""
    phases = iso.phases((iso.zone, (40.0, 40.0, 40.0, 40.0)))
    zone = _zone(iso, phases)
    # the smoothed signal crosses the stop level a little before the edge: rays up to ~1 mm short
    err = zone.ray_radius_mm - _true_ray_radius()
    assert np.all(err > -1.25) and np.all(err < 0.5) and np.median(err) > -0.75
    assert zone.volume_ml == pytest.approx(4.0 / 3.0 * np.pi * SEMI_AXES.prod() / 1000.0, rel=0.12)
    assert not zone.leaked


def test_zone_grows_with_the_ellipsoid(iso):
    """A rim drawn 3 mm farther out gives a zone whose rays are ~3 mm longer everywhere."""
    phases = iso.phases((iso.rim(2.0), RIM_CURVE))
    small = _zone(iso, phases)
    wider = iso.phases((~iso.zone & (iso.beyond > 3.0) & (iso.beyond <= 5.0), RIM_CURVE))
    big = _zone(iso, wider)
    grown = big.ray_radius_mm - small.ray_radius_mm
    assert np.median(grown) == pytest.approx(3.0, abs=0.6)
    assert big.volume_ml > small.volume_ml * 1.5


def _partial_volume_sphere(radius: float, rim: float, spacing, supersample: int = 5):
    """A non-enhancing spherical cavity (S0 = 100) in non-enhancing tissue (S0 = 100), wrapped in a
    rim of ``rim`` mm with the benign kinetics (RIM_CURVE), on a coarse grid of ``spacing`` mm:
    each voxel holds each structure's share of its box (partial volume, ``supersample``^3 points)."""
    spacing = np.asarray(spacing, dtype=float)
    shape = tuple(int(np.ceil(70.0 / d)) for d in spacing)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-30.0, 12.0, 40.0)
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + affine[:3, 3] + np.array([0.7, -0.4, 1.1])
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), -1)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    shell = np.zeros(shape)
    for offset in itertools.product(offsets, repeat=3):
        r = np.linalg.norm((ijk + np.array(offset)) @ affine[:3, :3].T + affine[:3, 3] - centre, axis=-1)
        shell += (r >= radius) & (r < radius + rim)
    shell /= supersample ** 3
    phases = [(S0 * (1.0 - shell) + value * shell).astype(np.float32) for value in RIM_CURVE]
    return phases, affine, centre


@pytest.mark.parametrize("radius", [8.0, 12.0])
def test_thin_rim_through_coarse_voxels_gives_the_cavity_volume(radius):
    """A 2 mm rim through 3 x 3 x 4 mm voxels is thinner than the blur: a bump whose steepest
    ascent lies ~1 mm inside the cavity's edge (a small, involuted cavity then read 15-30 % short);
    the edge goes between that ascent and the rim's crest, the volume within 10 %."""
    phases, affine, centre = _partial_volume_sphere(radius, 2.0, (3.0, 3.0, 4.0))
    zone = segment_zone(phases[0], _maps(phases), affine, centre, TUMOUR_RADIUS, 2.0)
    true_ml = 4.0 / 3.0 * np.pi * radius ** 3 / 1000.0
    assert zone.volume_ml == pytest.approx(true_ml, rel=0.10)
    assert abs(np.median(zone.ray_radius_mm) - radius) < 0.6
    assert not zone.leaked


def _rimless_sphere(radius: float, cavity: float, around: float, spacing, supersample: int = 5):
    """A non-enhancing spherical cavity of signal ``cavity`` in non-enhancing tissue of signal
    ``around`` (no rim: it has faded), partial volume on a coarse grid (as above)."""
    spacing = np.asarray(spacing, dtype=float)
    shape = tuple(int(np.ceil(70.0 / d)) for d in spacing)
    affine = np.diag([*spacing, 1.0])
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + np.array([0.7, -0.4, 1.1])
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), -1)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    inside = np.zeros(shape)
    for offset in itertools.product(offsets, repeat=3):
        inside += np.linalg.norm((ijk + np.array(offset)) @ affine[:3, :3].T - centre, axis=-1) < radius
    inside /= supersample ** 3
    img = (cavity * inside + around * (1.0 - inside)).astype(np.float32)
    return [img] * 4, affine, centre


@pytest.mark.parametrize("around", [55.0, 210.0], ids=["in-suppressed-fat", "in-gland"])
@pytest.mark.parametrize("radius", [8.0, 12.0])
def test_rimless_cavity_through_coarse_voxels_gives_its_volume(radius, around):
    """A cavity whose rim has faded ends where its pre-contrast signal steps to the fat's or the
    gland's: at the blurred step's steepest slope, not where the signal has left the cavity's
    level by 35 % (two thirds of the way down to dark fat: 1-2 mm out, +20-50 % of the volume)."""
    phases, affine, centre = _rimless_sphere(radius, 115.0, around, (3.0, 3.0, 4.0))
    zone = segment_zone(phases[0], _maps(phases), affine, centre, TUMOUR_RADIUS, 2.0)
    true_ml = 4.0 / 3.0 * np.pi * radius ** 3 / 1000.0
    assert zone.volume_ml == pytest.approx(true_ml, rel=0.12)
    assert abs(np.median(zone.ray_radius_mm) - radius) < 0.6
    assert not zone.leaked


@pytest.mark.parametrize("base", [S0, 0.0], ids=["uniform-tissue", "zeros"])
def test_no_edge_anywhere_gives_a_leaked_zone(base):
    """Nothing enhances and the signal never changes: no edge is found, the zone is flagged."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])  # 100 mm cube: rays reach their 45 mm limit inside
    ph = Phantom((50, 50, 50), affine, (24.5, 24.5, 24.5))
    phases = ph.phases(base=base)
    seg = segment(phases, _maps(phases), affine, ph.centre, TUMOUR_RADIUS, 10.0)
    assert seg.zone.leaked
    assert seg.rim.curve_type == "none" and not seg.rim.mask.any()
    assert seg.foci == []



FAT = 200.0  # fat's pre-contrast signal without fat suppression (the cavity's dark core 40)
GLAND_CURVE = (100.0, 160.0, 180.0, 190.0)  # PE 60 %, persistent


def _local(ph: Phantom) -> np.ndarray:
    return (ph.lps - ph.centre) @ ROT


def test_a_cavity_holding_fat_is_the_zone_up_to_its_rim(iso):
    """An ablation zone holds necrosis and fat: a dark core (S0 40, 6 mm) inside a cavity of fat's
    signal, in fat, wrapped in its enhancing rim. The pre-contrast step from the core to the
    cavity's fat is the zone's content, not its edge: every ray ends at the rim (an independent
    simulator's zones were measured 56-78 % too small when rays stopped at that step)."""
    core = iso.sphere(iso.centre, 6.0)
    phases = iso.phases((iso.zone & ~core, (FAT,) * 4), (core, (40.0,) * 4), (iso.rim(2.0), RIM_CURVE),
                        base=FAT)
    zone = _zone(iso, phases)
    err = zone.ray_radius_mm - _true_ray_radius()
    assert abs(np.median(err)) < 0.5 and np.percentile(np.abs(err), 95) < 1.0
    assert zone.volume_ml == pytest.approx(4.0 / 3.0 * np.pi * SEMI_AXES.prod() / 1000.0, rel=0.08)
    assert not zone.leaked


def test_gland_beyond_a_rimless_side_is_not_the_zone_edge(iso):
    """Half the rim has faded: on that side the dark cavity (S0 40) steps to fat, and enhancing
    gland lies 10-16 mm beyond. The rays there end at the step; the gland, far outside the rim
    the other rays end at, is not taken for the zone's rim."""
    local = _local(iso)
    gland = ~iso.zone & (iso.beyond > 10.0) & (iso.beyond <= 16.0) & (local[..., 0] > 0)
    phases = iso.phases((iso.zone, (40.0,) * 4), (iso.rim(2.0) & (local[..., 0] <= 0), RIM_CURVE),
                        (gland, GLAND_CURVE), base=FAT)
    zone = _zone(iso, phases)
    rimless_side = (fibonacci_sphere(N_RAYS) @ ROT)[:, 0] > 0.3
    err = zone.ray_radius_mm - _true_ray_radius()
    assert np.percentile(np.abs(err[rimless_side]), 95) < 1.5
    assert np.percentile(np.abs(err[~rimless_side]), 95) < 1.5



def test_a_faint_plateau_past_a_rimless_step_is_not_a_rim(iso):
    """No rim: the dark cavity (S0 40) steps to fat, and 6-20 mm beyond, the fat enhances faintly
    and evenly (15 %, background enhancement). That faint plateau is no rim (it never falls back):
    the rays end at the step, not 6 mm out (a rimless zone measured +44-65 % otherwise)."""
    faint_fat = (FAT, FAT * 1.15, FAT * 1.18, FAT * 1.2)
    plateau = ~iso.zone & (iso.beyond > 6.0) & (iso.beyond <= 20.0)
    phases = iso.phases((iso.zone, (40.0,) * 4), (plateau, faint_fat), base=FAT)
    zone = _zone(iso, phases)
    err = zone.ray_radius_mm - _true_ray_radius()
    assert abs(np.median(err)) < 1.0 and np.percentile(np.abs(err), 95) < 1.5


# ----------------------------------------------------------------------------- rim


@pytest.mark.parametrize("thickness", [2.0, 4.0])
def test_rim_thickness_and_kinetics(iso, thickness):
    rim_truth = iso.rim(thickness)
    phases = iso.phases((rim_truth, RIM_CURVE))
    maps = _maps(phases)
    zone = _zone(iso, phases)
    rim = segment_rim(phases, maps, iso.affine, zone, iso.centre)
    assert rim.thickness_mm == pytest.approx(thickness, abs=0.3)  # rays sample every 0.5 mm
    assert rim.thickness_p90_mm == pytest.approx(thickness, abs=0.5)
    assert rim.uniform
    # the rim mask is the enhancing shell (and nothing else)
    assert not (rim.mask & ~rim_truth).any()
    assert rim.mask.sum() >= 0.95 * rim_truth.sum()
    # kinetics of the mean rim curve: PE 35 % (slow), +37 % from first to last (persistent)
    assert rim.initial_pe == pytest.approx(35.0, abs=1e-3)
    assert rim.delayed_change_pct == pytest.approx(100.0 * (185 - 135) / 135, abs=1e-3)
    assert rim.curve_type == "persistent"
    assert rim.initial_phase == "slow"


def test_irregular_rim_is_not_uniform(iso):
    """Half the rim 2 mm thick, the other half 7 mm: the 90th percentile gives it away."""
    local_x = (iso.lps - iso.centre) @ ROT[:, 0]
    rim = iso.rim(2.0) | (iso.rim(7.0) & (local_x > 0))
    phases = iso.phases((rim, RIM_CURVE))
    zone = _zone(iso, phases)
    out = segment_rim(phases, _maps(phases), iso.affine, zone, iso.centre)
    assert out.thickness_p90_mm == pytest.approx(7.0, abs=0.75)
    assert not out.uniform


def test_thin_slow_rim_is_not_a_focus(iso):
    phases = iso.phases((iso.rim(2.0), RIM_CURVE))
    maps = _maps(phases)
    zone = _zone(iso, phases)
    rim = segment_rim(phases, maps, iso.affine, zone, iso.centre)
    assert find_foci(phases, maps, iso.affine, zone, rim, iso.centre) == []


# ----------------------------------------------------------------------------- foci


@pytest.fixture(scope="module")
def with_foci(iso):
    """Rim plus three enhancing structures near the zone's edge:

    * A: washout sphere (r 3 mm) whose nearest surface lies 3 mm beyond the zone's edge;
    * B: plateau sphere (r 3.5 mm) centred on the zone's surface (straddles the edge);
    * C: a 1-voxel-thick 11 x 11 mm washout sheet 3 mm beyond the zone's shortest axis.
    """
    u = ROT[:, 0]
    a_centre = iso.snap(iso.centre + u * (SEMI_AXES[0] + 3.0 + 3.0))
    a = iso.sphere(a_centre, 3.0)
    b_centre = iso.snap(iso.centre - u * SEMI_AXES[0])
    b = iso.sphere(b_centre, 3.5)
    d = iso.lps - iso.centre
    c = (np.abs(d[..., 2] - (SEMI_AXES[2] + 3.0)) < 0.5) & (np.abs(d[..., 0]) <= 5) \
        & (np.abs(d[..., 1]) <= 5)
    phases = iso.phases((iso.rim(2.0), RIM_CURVE), (a, WASHOUT), (b, PLATEAU), (c, WASHOUT))
    seg = segment(phases, _maps(phases), iso.affine, iso.centre, TUMOUR_RADIUS, 5.0)
    return seg, {"A": (a, a_centre), "B": (b, b_centre), "C": (c, None)}


def _the_focus(seg: Segmentation, truth: np.ndarray):
    hits = [f for f in seg.foci if (f.mask & truth).any()]
    assert len(hits) == 1, f"{len(hits)} foci overlap the structure"
    return hits[0]


def test_segment_finds_each_focus_once(with_foci):
    seg, truth = with_foci
    assert len(seg.foci) == 3
    for mask, _ in truth.values():
        _the_focus(seg, mask)
    # suspicious ones first, then by peak enhancement
    assert [f.suspicious for f in seg.foci] == [True, True, False]
    assert seg.foci[0].peak_pe >= seg.foci[1].peak_pe
    # the straddling focus reaches into the zone; the rim is only ever outside it
    assert (seg.zone.mask & truth["B"][0]).any()
    assert seg.rim.mask.any() and not (seg.rim.mask & seg.zone.mask).any()
    # the foci do not move the zone's edge elsewhere: still ~the ellipsoid
    assert seg.zone.volume_ml == pytest.approx(4.0 / 3.0 * np.pi * SEMI_AXES.prod() / 1000, rel=0.05)


def test_nodular_washout_focus_beyond_the_edge(with_foci, iso):
    seg, truth = with_foci
    mask, centre = truth["A"]
    f = _the_focus(seg, mask)
    assert np.array_equal(f.mask, mask)
    assert f.volume_mm3 == pytest.approx(float(mask.sum()))  # 1 mm^3 voxels
    assert np.allclose(f.centre_lps, centre, atol=1e-6)
    assert f.largest_diameter_mm == pytest.approx(7.0, abs=0.5)  # 6 mm + one voxel
    assert f.thickness_mm >= 5.0
    assert f.peak_pe == pytest.approx(150.0) and f.initial_pe == pytest.approx(150.0)
    assert f.ser == pytest.approx((250 - 100) / (200 - 100))
    assert f.delayed_change_pct == pytest.approx(-20.0)
    assert (f.curve_type, f.initial_phase) == ("washout", "fast")
    assert f.suspicious
    assert any(r.startswith("nodular") for r in f.reasons)
    assert "washout kinetics" in f.reasons
    # distance from its nearest voxel to the zone's edge: the 3 mm gap, up to the voxel grid
    true_gap = float(ndimage.distance_transform_edt(~iso.zone)[mask].min())
    assert true_gap == pytest.approx(3.0, abs=0.5)
    assert f.distance_to_zone_edge_mm == pytest.approx(true_gap, abs=1.0)
    assert 0 < f.distance_to_zone_edge_mm < FOCUS_BAND_OUTSIDE_MM


def test_nodular_focus_straddling_the_edge(with_foci):
    seg, truth = with_foci
    mask, centre = truth["B"]
    f = _the_focus(seg, mask)
    assert f.suspicious
    assert f.curve_type == "plateau" and f.initial_pe == pytest.approx(130.0)
    assert f.peak_pe == pytest.approx(132.0)  # the largest of 130, 132, 128 %
    assert f.distance_to_zone_edge_mm <= 0.0  # touches the zone or reaches into it
    assert np.linalg.norm(f.centre_lps - centre) < 0.5
    assert f.volume_mm3 == pytest.approx(float(mask.sum()), rel=0.1)


def test_thin_sheet_with_washout_is_not_suspicious(with_foci):
    """Kinetics alone do not make a finding suspicious: it must be nodular."""
    seg, truth = with_foci
    mask, _ = truth["C"]
    f = _the_focus(seg, mask)
    assert f.curve_type == "washout" and f.initial_pe == pytest.approx(150.0)
    assert f.thickness_mm < 2.0
    assert not f.suspicious
    assert not any(r.startswith("nodular") for r in f.reasons)
    assert f.distance_to_zone_edge_mm == pytest.approx(3.0, abs=1.0)


@pytest.mark.parametrize("gap, found", [(3.0, True), (13.0, False)])
def test_search_band_ends_10_mm_beyond_the_edge(iso, gap, found):
    """A washout nodule 3 mm beyond the edge is found whole; one 13 mm beyond is not, even with
    distance maps that reach that far (the band, not the maps' reach, decides)."""
    centre = iso.snap(iso.centre + ROT[:, 0] * (SEMI_AXES[0] + gap + 3.0))
    nodule = iso.sphere(centre, 3.0)
    phases = iso.phases((iso.rim(2.0), RIM_CURVE), (nodule, WASHOUT))
    maps = _maps(phases)
    zone = _zone(iso, phases)
    distances = zone_distances(zone.mask, np.ones(3), 30.0)
    assert np.isfinite(distances[0][nodule]).all()
    rim = segment_rim(phases, maps, iso.affine, zone, iso.centre, distances)
    foci = find_foci(phases, maps, iso.affine, zone, rim, iso.centre, distances)
    assert [np.array_equal(f.mask, nodule) and f.suspicious for f in foci] == ([True] if found else [])


def test_a_nodule_reaching_the_band_is_measured_whole(iso):
    """A 13 mm washout nodule whose nearest surface lies 5 mm beyond the edge runs to 18 mm: it is
    found where it reaches the 10 mm band and measured whole (cut at the band, a 5 mm slab of it
    was left: too thin for a mass, its centre 4 mm off; issue 21)."""
    centre = iso.snap(iso.centre + ROT[:, 0] * (SEMI_AXES[0] + 5.0 + 6.5))
    nodule = iso.sphere(centre, 6.5)
    phases = iso.phases((iso.rim(2.0), RIM_CURVE), (nodule, WASHOUT))
    seg = segment(phases, _maps(phases), iso.affine, iso.centre, TUMOUR_RADIUS, 5.0)
    f = _the_focus(seg, nodule)
    assert np.array_equal(f.mask, nodule) and f.suspicious
    assert f.largest_diameter_mm == pytest.approx(13.0 + 1.0, abs=1.0)  # + one voxel (largest diameter)
    assert np.linalg.norm(f.centre_lps - centre) < 0.5


def test_rays_from_the_zone_centre_measure_the_margin_around_an_offset_tumour(iso):
    """Rays start at the zone's centre; the margin is measured around the tumour, here 3 mm off
    the centre along the zone's shortest axis: the smallest margin shrinks by those 3 mm."""
    phases = iso.phases((iso.rim(2.0), RIM_CURVE))
    maps = _maps(phases)
    tumour = iso.centre + ROT[:, 2] * 3.0
    zone = segment_zone(phases[0], maps, iso.affine, tumour, TUMOUR_RADIUS, 5.0,
                        ray_origin_lps=iso.centre)
    centred = _zone(iso, phases)
    assert np.array_equal(zone.mask, centred.mask)  # the same zone: it is grown from its centre
    assert zone.smallest_margin_mm == pytest.approx(centred.smallest_margin_mm - 3.0, abs=0.75)
    assert not zone.covers_margin and centred.covers_margin
    # a tumour whose centre lies outside the zone has a negative margin
    outside = segment_zone(phases[0], maps, iso.affine, iso.centre + ROT[:, 2] * 14.0,
                           TUMOUR_RADIUS, 5.0, ray_origin_lps=iso.centre)
    assert outside.smallest_margin_mm < -TUMOUR_RADIUS + 0.5


# ----------------------------------------------------------------------------- faint rims, motion


FAINT_RIM = (100.0, 118.0, 122.0, 125.0)  # PE 18 %: a thin slow rim seen through large voxels


def test_faint_rim_ends_the_zone_where_the_cavity_reads_as_its_surroundings(iso):
    """Cavity and surroundings share one pre-contrast level and neither enhances: only a faint rim
    (PE 18 %, under the 30 % stop) marks the edge. The rays stop at it (at its half height)
    instead of running on to their limit."""
    phases = iso.phases((iso.rim(2.0), FAINT_RIM))
    zone = _zone(iso, phases)
    assert not zone.leaked
    err = zone.ray_radius_mm - _true_ray_radius()
    assert np.abs(err).max() < 1.0 and abs(np.median(err)) < 0.5
    assert zone.volume_ml == pytest.approx(4.0 / 3.0 * np.pi * SEMI_AXES.prod() / 1000.0, rel=0.08)


def test_noise_in_the_cavity_does_not_end_the_zone_early(iso):
    """Noise of a few percent enhancement inside the cavity is not a faint rim."""
    rng = np.random.default_rng(3)
    phases = [p + rng.normal(0.0, 3.0, p.shape).astype(np.float32)
              for p in iso.phases((iso.rim(2.0), RIM_CURVE))]
    zone = _zone(iso, phases)
    assert not zone.leaked
    err = zone.ray_radius_mm - _true_ray_radius()
    assert np.median(err) > -0.75 and np.percentile(err, 5) > -2.0


def _rim_strip(ph: Phantom, thickness: float) -> np.ndarray:
    """A 4 mm wide, ~20 mm long strip of the rim (thick along the radius): not compact."""
    local = (ph.lps - ph.centre) @ ROT
    return ph.rim(thickness) & (np.abs(local[..., 2]) <= 2.0) & (local[..., 1] > 0) \
        & (np.abs(local[..., 0]) <= 10.0)


@pytest.mark.parametrize("curve, nodular", [(PLATEAU, True), ((100.0, 180.0, 200.0, 215.0), False)])
def test_fast_stretch_on_a_thick_rim_is_a_lesion_of_its_own(iso, curve, nodular):
    """On a 4 mm rim (PE 35 %), a stretch as thick as the rim is nodular only when it enhances fast
    and far above the rim (plateau, PE 130 %: a lesion on the rim), not when medium (PE 80 %)."""
    strip = _rim_strip(iso, 4.0)
    phases = iso.phases((iso.rim(4.0), RIM_CURVE), (strip, curve))
    seg = segment(phases, _maps(phases), iso.affine, iso.centre, TUMOUR_RADIUS, 5.0)
    f = _the_focus(seg, strip)
    assert f.thickness_mm < 1.5 * seg.rim.thickness_mm  # not thicker than the rim
    assert f.suspicious is nodular
    assert any("a lesion of its own" in r for r in f.reasons) is nodular


@pytest.mark.parametrize("curve, suspicious", [((100.0, 170.0, 120.0, 175.0), False),
                                               ((100.0, 230.0, 150.0, 240.0), True)])
def test_curve_that_dips_and_recovers_is_not_assessed(iso, curve, suspicious):
    """A nodule whose mean curve falls and rises again (phases misaligned at an edge): its curve
    type is not assessable; medium enhancement then does not make it suspicious, fast still does."""
    centre = iso.snap(iso.centre + ROT[:, 0] * (SEMI_AXES[0] + 3.0 + 3.0))
    nodule = iso.sphere(centre, 3.0)
    phases = iso.phases((iso.rim(2.0), RIM_CURVE), (nodule, curve))
    seg = segment(phases, _maps(phases), iso.affine, iso.centre, TUMOUR_RADIUS, 5.0)
    f = _the_focus(seg, nodule)
    assert not f.kinetics_reliable
    assert any("not assessable" in r for r in f.reasons)
    assert f.suspicious is suspicious


PERSISTENT_MASS = (100.0, 170.0, 200.0, 215.0)  # PE 70 % (medium), +26 % later (persistent)


@pytest.mark.parametrize("rim_mm, radius, offset, suspicious", [
    (2.0, 3.5, 0.0, True),  # a 7 mm mass straddling the zone's edge: suspicious whatever its curve
    (2.0, 3.5, 5.0 + 3.5, False),  # a 7 mm mass 5 mm beyond the edge, 3 mm off the rim: needs a suspicious curve
    (4.0, 3.5, 4.0 + 3.5, True),  # a 7 mm mass on the outer surface of a 4 mm rim: at the zone's edge
    (4.0, 3.5, 8.0 + 3.5, False),  # ... and 4 mm off that rim: not
])
def test_a_mass_at_the_edge_is_suspicious_whatever_its_curve(iso, rim_mm, radius, offset, suspicious):
    """Morphology before kinetics (ACR BI-RADS MRI): a nodular mass of 5 mm or more at or inside
    the zone's edge with a persistent curve is suspicious (it was not on the old code). The zone a
    reader sees includes its rim: a mass on the rim's outer surface is at the edge (issue 21: masses
    on a 3-4 mm rim, 2-4 mm outside the cavity, were left as "other enhancement")."""
    centre = iso.snap(iso.centre + ROT[:, 0] * (SEMI_AXES[0] + offset))
    nodule = iso.sphere(centre, radius)
    phases = iso.phases((iso.rim(rim_mm), RIM_CURVE), (nodule, PERSISTENT_MASS))
    seg = segment(phases, _maps(phases), iso.affine, iso.centre, TUMOUR_RADIUS, 5.0)
    f = _the_focus(seg, nodule)
    assert f.curve_type == "persistent" and f.initial_phase == "medium"
    assert f.suspicious is suspicious
    assert any("whatever its curve" in r for r in f.reasons) is suspicious


# ----------------------------------------------------------------------------- touching foci

BRIDGE = (100.0, 160.0, 170.0, 180.0)  # PE 60 %: enhancing gland between two nodules
FAINTER_WASHOUT = (100.0, 190.0, 180.0, 165.0)  # PE 90 % (fast), washout


def _two_nodules_on_a_bridge(iso: Phantom):
    """A washout nodule (r 4 mm, PE 150 %) straddling the zone's edge, and a fainter one (r 3 mm,
    PE 90 %) 4 mm beyond it along the edge; a 60 % gland bridge joins them into one region."""
    u, v = ROT[:, 0], ROT[:, 1]
    big_c = iso.snap(iso.centre + u * SEMI_AXES[0])
    small_c = iso.snap(big_c + v * 11.0)
    big, small = iso.sphere(big_c, 4.0), iso.sphere(small_c, 3.0)
    t = np.clip((iso.lps - big_c) @ (small_c - big_c) / np.sum((small_c - big_c) ** 2), 0.0, 1.0)
    axis = big_c + t[..., None] * (small_c - big_c)
    bridge = (np.linalg.norm(iso.lps - axis, axis=-1) <= 1.5) & ~big & ~small
    phases = iso.phases((iso.rim(2.0), RIM_CURVE), (bridge, BRIDGE), (big, WASHOUT),
                        (small, FAINTER_WASHOUT))
    return phases, (big, big_c), (small, small_c), bridge


def test_touching_nodules_are_two_foci(iso):
    """Two nodules joined by enhancing tissue are one connected region; each has its own
    enhancement maximum, so each is reported as a focus centred on itself (one focus centred
    between them would lose the second nodule)."""
    phases, (big, big_c), (small, small_c), bridge = _two_nodules_on_a_bridge(iso)
    maps = _maps(phases)
    candidate = ndimage.gaussian_filter(maps.pe, 0.5) >= 50.0
    assert ndimage.label(candidate & (big | small | bridge))[1] == 1  # one connected region
    seg = segment(phases, maps, iso.affine, iso.centre, TUMOUR_RADIUS, 5.0)
    suspicious = [f for f in seg.foci if f.suspicious]
    assert len(suspicious) == 2
    for mask, centre in ((big, big_c), (small, small_c)):
        f = _the_focus(seg, mask)
        assert f.suspicious and f.curve_type == "washout"
        assert np.linalg.norm(f.centre_lps - centre) < 1.0
        assert not (f.mask & (big | small) & ~mask).any()  # neither takes the other's voxels


def test_split_keeps_a_noisy_nodule_whole():
    """Noise in one nodule's enhancement makes small bumps, not separate maxima: it stays one."""
    rng = np.random.default_rng(7)
    grid = np.stack(np.meshgrid(*[np.arange(24.0)] * 3, indexing="ij"), -1)
    nodule = np.linalg.norm(grid - 11.5, axis=-1) <= 6.0
    pe = np.where(nodule, 150.0, 0.0) + rng.normal(0.0, 15.0, nodule.shape)
    pe_s = ndimage.gaussian_filter(pe, 0.5)
    region = nodule & (pe_s >= 50.0)
    assert [p.sum() for p in split_at_maxima(region, pe_s, np.ones(3), 30)] == [region.sum()]


def test_split_divides_every_voxel_once():
    """Two peaks joined by a plateau: two parts, disjoint, that together are the region."""
    pe = np.zeros((30, 10, 10))
    pe[2:9, 2:8, 2:8] = 200.0
    pe[9:21, 4:6, 4:6] = 80.0
    pe[21:28, 2:8, 2:8] = 120.0
    region = pe >= 50.0
    parts = split_at_maxima(region, pe, np.array([1.0, 1.0, 1.0]), 30)
    assert len(parts) == 2
    assert not (parts[0] & parts[1]).any() and np.array_equal(parts[0] | parts[1], region)
    assert parts[0][5, 5, 5] and parts[1][24, 5, 5]
    # a weaker second peak (90 over a 80 plateau: under 15 % of its peak above the dip) stays joined
    pe[21:28, 2:8, 2:8] = 90.0
    assert len(split_at_maxima(pe >= 50.0, pe, np.ones(3), 30)) == 1


def _coarse_blob(centres_radii, shape=(16, 16, 12), spacing=(2.5, 2.5, 3.5), pe_value=200.0):
    """Spheres ``(centre, radius)`` of ``pe_value`` enhancement, or ``(centre, radius, pe)`` of
    their own (the brightest wins where they overlap), drawn with partial volume (8^3 subsamples
    per voxel) on a coarse grid: (enhancement, affine)."""
    affine = np.diag([*spacing, 1.0])
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    total = np.zeros(shape)
    ijk = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), -1)
    for di in sub:
        for dj in sub:
            for dk in sub:
                p = (ijk + np.array([di, dj, dk])) * spacing
                value = np.zeros(shape)
                for c, r, *own in centres_radii:
                    inside = np.linalg.norm(p - c, axis=-1) <= r
                    value = np.where(inside, np.maximum(value, own[0] if own else pe_value), value)
                total += value
    return total / 512.0, affine


def _lobe_centres(lobes, pe, affine):
    out = []
    for lobe in lobes:
        solid = lobe & (pe >= 0.5 * pe[lobe].max())
        out.append(affine[:3, :3] @ np.argwhere(solid).mean(axis=0) + affine[:3, 3])
    return out


def test_touching_nodules_without_a_dip_are_two_lobes():
    """A 14 mm and an 8 mm nodule that touch, equally enhancing, through 2.5 x 2.5 x 3.5 mm voxels
    and a blur of half a voxel: the dip between them is too shallow to part them by enhancement,
    but the union is lobulated: two lobes, each centred on its nodule."""
    big, small = np.array([16.0, 20.0, 20.0]), np.array([16.0 + 11.0, 20.0, 20.0])
    pe, affine = _coarse_blob([(big, 7.0), (small, 4.0)])
    pe = ndimage.gaussian_filter(pe, 0.5)  # the acquisition's blur
    pe_s = ndimage.gaussian_filter(pe, 0.5)  # find_foci's smoothing
    focus = pe_s >= 50.0
    assert len(split_at_maxima(focus, pe_s, np.diag(affine)[:3], 1)) == 1  # no second maximum
    lobes = split_lobes(focus, pe, affine)
    assert len(lobes) == 2
    assert not (lobes[0] & lobes[1]).any() and np.array_equal(lobes[0] | lobes[1], focus)
    found = sorted(_lobe_centres(lobes, pe, affine), key=lambda c: c[0])
    assert np.linalg.norm(found[0] - big) < 1.0 and np.linalg.norm(found[1] - small) < 1.0


@pytest.mark.parametrize("small_pe", [200.0, 140.0], ids=["as-bright", "dimmer"])
def test_a_nodule_pressed_against_a_larger_one_is_a_lobe(small_pe):
    """A 6.5 mm nodule overlapping a 13 mm one by 0.5 mm (no neck between them: the depth of the
    union rises all the way from the small one into the large one), as bright as it or enhancing
    at 70 % of it (through the voxels and the blur, its centre then lies below half the focus's
    peak): two lobes, each within 1.5 mm of its nodule's centre."""
    big, small = np.array([16.0, 20.0, 20.0]), np.array([16.0 + 9.25, 20.0, 20.0])
    pe, affine = _coarse_blob([(big, 6.5, 200.0), (small, 3.25, small_pe)])
    pe = ndimage.gaussian_filter(pe, 0.5)
    focus = ndimage.gaussian_filter(pe, 0.5) >= 50.0
    lobes = split_lobes(focus, pe, affine)
    assert len(lobes) == 2
    assert not (lobes[0] & lobes[1]).any() and np.array_equal(lobes[0] | lobes[1], focus)
    found = sorted(_lobe_centres(lobes, pe, affine), key=lambda c: c[0])
    assert np.linalg.norm(found[0] - big) < 1.5 and np.linalg.norm(found[1] - small) < 1.5


@pytest.mark.parametrize("blob", ["sphere", "ellipsoid"])
def test_one_nodule_is_one_lobe(blob):
    """A single 14 mm nodule, or an ovoid 20 x 9 x 9 mm one (a ridge, not two lobes), stays whole
    (blurred as in the test above)."""
    if blob == "sphere":
        pe, affine = _coarse_blob([(np.array([20.0, 20.0, 20.0]), 7.0)])
    else:  # an ovoid as a chain of overlapping spheres whose radii follow the ellipse
        xs = np.linspace(-10.0, 10.0, 21)
        pe, affine = _coarse_blob([(np.array([20.0 + x, 20.0, 20.0]), 4.5 * np.sqrt(max(1 - (x / 10.0) ** 2, 0.01)))
                                   for x in xs])
    pe = ndimage.gaussian_filter(pe, 0.5)
    focus = ndimage.gaussian_filter(pe, 0.5) >= 50.0
    assert [lobe.sum() for lobe in split_lobes(focus, pe, affine)] == [focus.sum()]


# ----------------------------------------------------------------------------- fat suppression

def _tissues(fat_s0: float, gland_s0: float, lesion_s0: float):
    """A block of fat (no uptake), gland (60 %) and a lesion (150 %), as pre-contrast signal,
    peak enhancement and validity."""
    s0 = np.full((20, 20, 20), fat_s0, np.float32)
    pe = np.zeros_like(s0)
    s0[:, :8], pe[:, :8] = gland_s0, 60.0
    s0[8:12, 10:14, 8:12], pe[8:12, 10:14, 8:12] = lesion_s0, 150.0
    return s0, pe, np.ones(s0.shape, bool)


def test_tissue_floor_keeps_the_lesions_when_fat_is_bright():
    """Without fat suppression fat is the brightest tissue on T1: the floor (0.6 x the 95th
    percentile, fat's) dropped the gland and the lesion; it is taken over the enhancing voxels."""
    s0, pe, valid = _tissues(fat_s0=1000.0, gland_s0=520.0, lesion_s0=450.0)
    floor = tissue_floor(s0, pe, valid)
    assert floor <= 450.0 and 0.6 * float(np.percentile(s0, 95)) > 450.0  # the old floor dropped it


def test_tissue_floor_unchanged_with_fat_suppressed():
    s0, pe, valid = _tissues(fat_s0=80.0, gland_s0=800.0, lesion_s0=700.0)
    assert tissue_floor(s0, pe, valid) == pytest.approx(0.6 * float(np.percentile(s0, 95)))


def test_a_thickened_stretch_of_rim_at_the_edge_is_not_a_mass(iso):
    """A 4 mm thick, ~20 mm long stretch of rim with a persistent curve is not a mass (thinner than
    0.3 x its length): the morphology gate leaves it to the kinetic rule (not suspicious)."""
    strip = _rim_strip(iso, 4.0)
    phases = iso.phases((iso.rim(1.5), RIM_CURVE), (strip, PERSISTENT_MASS))
    seg = segment(phases, _maps(phases), iso.affine, iso.centre, TUMOUR_RADIUS, 5.0)
    hits = [f for f in seg.foci if (f.mask & strip).any()]
    assert hits and all(f.thickness_mm < 0.3 * f.largest_diameter_mm for f in hits)
    assert not any(f.suspicious for f in hits)


def test_mass_core_keeps_the_bulge_not_the_rim_it_sits_on():
    """A 2 mm sheet of rim with a 9 mm nodule bulging from it, one region: the ball of the mass's
    5 mm sweeps the nodule and none of the sheet beyond it."""
    from followup.pipelines.segmentation.lobes import mass_core

    z, y, x = np.mgrid[:40, :40, :20].astype(float)
    sheet = (np.abs(z - 10) <= 1) & (np.abs(x - 10) <= 8)
    ball = (z - 14) ** 2 + (y - 20) ** 2 + (x - 10) ** 2 <= 4.5 ** 2
    core = mass_core(sheet | ball, np.eye(4), 5.0)
    assert core is not None
    assert (core & ball).sum() >= 0.75 * ball.sum()  # the opening rounds a voxel ball's corners
    far_sheet = sheet & (np.abs(y - 20) > 8)
    assert not (core & far_sheet).any()
    assert mass_core(sheet, np.eye(4), 5.0) is None  # a sheet alone holds no ball of 5 mm


def test_half_peak_thickness_follows_the_nodule_between_voxel_steps():
    """A 7 mm nodule seen through 2.2 x 2.2 x 3.5 mm voxels (enhancement blurred over the voxel):
    counted in voxels it is ~2 mm thick, under a nodule's 3 mm; at half its peak it is ~its size."""
    from followup.pipelines.segmentation.lobes import half_peak_thickness

    spacing = np.array([2.2, 2.2, 3.5])
    fine = 0.1
    n = (np.array([22.0, 22.0, 28.0]) / fine).astype(int)
    x, y, z = np.meshgrid(*[np.arange(k, dtype=np.float32) * fine for k in n], indexing="ij")
    # centred on a voxel corner: it spreads over 2 x 2 x 2 voxels
    nodule = ((x - 11.0) ** 2 + (y - 11.0) ** 2 + (z - 14.0) ** 2 <= 3.5 ** 2).astype(np.float32)
    # average the fine object over each coarse voxel (partial volume)
    step = (spacing / fine).round().astype(int)
    shape = n // step
    coarse = nodule[:shape[0] * step[0], :shape[1] * step[1], :shape[2] * step[2]].reshape(
        shape[0], step[0], shape[1], step[1], shape[2], step[2]).mean(axis=(1, 3, 5))
    pe = 150.0 * coarse
    m = pe >= 50.0
    affine = np.diag([*spacing, 1.0])
    edt = 2.0 * float(ndimage.distance_transform_edt(np.pad(m, 1), sampling=spacing).max()) - spacing.min()
    assert edt < 3.0
    assert 4.5 <= half_peak_thickness(m, pe, affine) <= 8.0
