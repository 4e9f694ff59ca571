"""Non-mass enhancement at the ablation site (``followup.pipelines.segmentation.nme``) on hand-built
ROI arrays: 1 mm voxels, uniform tissue (S0 = 100) holding a non-enhancing ellipsoidal zone
(semi-axes 15, 12, 10 mm, turned 30 deg about z) wrapped in a thin slow rim; each structure carries
exactly its time-signal curve (no noise, no partial volume), so extents and kinetics are known."""

from __future__ import annotations

import numpy as np
import pytest

from followup.pipelines.enhancement import enhancement_maps
from followup.pipelines.segmentation.driver import segment
from followup.pipelines.segmentation.model import NmeDistribution, NmeInternal, NmeMimic, Segmentation
from tests.unit.pipelines.zone_phantom import ROT, ZonePhantom

RIM = (100.0, 135.0, 165.0, 185.0)  # slow (35 %), persistent
DUCT = (100.0, 175.0, 178.0, 176.0)  # medium (75 %), plateau: the duct between its clumps
CLUMP = (100.0, 240.0, 238.0, 232.0)  # fast (140 %), plateau: the clumps along it
TRACK = (100.0, 165.0, 185.0, 200.0)  # medium (65 %), persistent: a probe track's granulation tissue
PATCH = (100.0, 160.0, 175.0, 185.0)  # medium (60 %), persistent: background enhancement
DUCT_MM = 20.0


class Phantom(ZonePhantom):
    """The zone phantom (zone_phantom.py) on a 96 x 80 x 64 grid of 1 mm voxels."""

    def __init__(self) -> None:
        affine = np.eye(4)
        affine[:3, 3] = (-40.0, -30.0, 20.0)
        super().__init__((96, 80, 64), affine, (40.0, 40.0, 30.0))

    def segment_dist(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance to the segment a-b, position along it 0..1) of every voxel."""
        ab = b - a
        t = np.clip((self.lps - a) @ ab / (ab @ ab), 0.0, 1.0)
        return np.linalg.norm(self.lps - a - t[..., None] * ab, axis=-1), t

    def phases(self, *structures) -> list[np.ndarray]:
        out = [np.full(self.shape, 100.0, np.float32) for _ in range(4)]
        for mask, curve in structures:
            for phase, value in zip(out, curve, strict=True):
                phase[mask] = value
        return out

    def segment(self, *structures) -> Segmentation:
        phases = self.phases(*structures)
        return segment(phases, enhancement_maps(phases, s0_floor=10.0), self.affine, self.centre, 4.0, 5.0)


@pytest.fixture(scope="module")
def ph() -> Phantom:
    return Phantom()


def _duct(ph: Phantom, direction: np.ndarray, length: float = DUCT_MM):
    """A 1.5 mm-radius duct from the zone's surface outwards, with 2 mm-radius clumps every 6 mm."""
    a = ph.surface(direction)
    b = a + direction * length
    dist, _ = ph.segment_dist(a, b)
    duct = (dist <= 1.5) & ~ph.zone
    clumps = np.zeros(ph.shape, dtype=bool)
    for s in np.arange(3.0, length - 1.0, 6.0):
        clumps |= np.linalg.norm(ph.lps - (a + direction * s), axis=-1) <= 2.0
    return duct & ~clumps, clumps & ~ph.zone, a, b


def test_a_linear_clumped_duct_from_the_zone_edge_is_suspicious_nme(ph):
    u = ROT[:, 0]
    duct, clumps, a, b = _duct(ph, u)
    seg = ph.segment((ph.rim(2.0), RIM), (duct, DUCT), (clumps, CLUMP))
    found = [m for m in seg.nme if (m.mask & (duct | clumps)).any()]
    assert len(found) == 1
    m = found[0]
    assert m.distribution is NmeDistribution.LINEAR
    assert m.internal is NmeInternal.CLUMPED
    assert abs(m.extent_mm - DUCT_MM) <= 3.0, m.extent_mm
    assert m.suspicious and m.mimic is None
    assert np.linalg.norm(m.start_lps - a) <= 4.0 and np.linalg.norm(m.end_lps - b) <= 4.0
    assert m.distance_to_zone_edge_mm <= 2.0
    assert m.initial_phase in ("medium", "fast") and m.curve_type == "plateau"


def test_a_thin_rim_alone_gives_no_nme(ph):
    assert ph.segment((ph.rim(2.0), RIM)).nme == ()


def test_a_probe_track_towards_the_skin_is_not_suspicious(ph):
    u = np.array([0.1, -1.0, 0.05])
    u /= np.linalg.norm(u)
    a = ph.surface(u)
    dist, _ = ph.segment_dist(a, a + u * 25.0)
    track = (dist <= 1.5) & ~ph.zone  # a 3 mm track
    seg = ph.segment((ph.rim(2.0), RIM), (track, TRACK))
    assert seg.nme, "the track is described"
    assert not any(m.suspicious for m in seg.nme)
    assert any(m.mimic is NmeMimic.PROBE_TRACK for m in seg.nme)


def test_a_bpe_patch_far_from_the_site_is_not_reported(ph):
    u = ROT[:, 0]
    centre = ph.surface(u) + u * 22.0  # 22 mm beyond the edge: outside the 10 mm band
    patch = np.linalg.norm((ph.lps - centre) / np.array([6.0, 3.0, 3.0]), axis=-1) <= 1.0
    seg = ph.segment((ph.rim(2.0), RIM), (patch, PATCH))
    assert seg.nme == ()


def test_patchy_background_enhancement_at_the_site_is_a_benign_look_alike(ph):
    u = ROT[:, 0]

    def patch(c):  # 18 x 4 x 4 mm along u
        local = (ph.lps - c) @ ROT
        return np.linalg.norm(local / np.array([9.0, 2.0, 2.0]), axis=-1) <= 1.0

    near = patch(ph.surface(u) + u * 10.0)
    far = [patch(ph.centre + np.array(off)) for off in ((0, 30, 20), (0, -30, -20), (25, 30, -20))]
    assert all(abs(f.sum() - near.sum()) <= 0.2 * near.sum() for f in far)  # whole, inside the grid
    alone = ph.segment((ph.rim(2.0), RIM), (near, PATCH))
    seg = ph.segment((ph.rim(2.0), RIM), (near, PATCH), *[(f, PATCH) for f in far])
    at_site = [m for m in seg.nme if (m.mask & near).any()]
    assert len(at_site) == 1
    assert at_site[0].mimic is NmeMimic.BACKGROUND and not at_site[0].suspicious
    # alone, the same straight homogeneous line reads as a track: benign either way
    assert [m.mimic for m in alone.nme] == [NmeMimic.PROBE_TRACK]


def test_a_thickened_stretch_of_rim_is_not_suspicious(ph):
    # a 4 mm-thick, medium-enhancing stretch of an otherwise 2 mm rim, 20 mm along the surface
    u = ROT[:, 1]
    a = ph.surface(u)
    stretch = ~ph.zone & (ph.beyond <= 5.0) & (np.linalg.norm(ph.lps - a, axis=-1) <= 10.0)
    seg = ph.segment((ph.rim(2.0), RIM), (stretch, TRACK))
    assert not any(m.suspicious for m in seg.nme)
    assert [m.mimic for m in seg.nme] == [NmeMimic.THICK_RIM]


def test_nme_within_background_enhancement_is_a_benign_look_alike(ph):
    # half the tissue beyond 20 mm from the zone enhances as the patch at the site does
    u = ROT[:, 0]
    local = (ph.lps - (ph.surface(u) + u * 10.0)) @ ROT
    near = np.linalg.norm(local / np.array([9.0, 2.0, 2.0]), axis=-1) <= 1.0
    ijk = np.round(ph.lps - ph.affine[:3, 3]).astype(int)
    background = (ijk[..., 2] // 5 % 2 == 0) & (ph.beyond > 20.0)  # 5 mm slabs, one in two
    seg = ph.segment((ph.rim(2.0), RIM), (background, PATCH), (near, PATCH))
    at_site = [m for m in seg.nme if (m.mask & near).any()]
    assert len(at_site) == 1
    assert at_site[0].mimic is NmeMimic.BACKGROUND and not at_site[0].suspicious
    assert "of the tissue away from the site enhances alike" in at_site[0].reasons[0]


def test_a_clumped_duct_in_enhancing_gland_stands_out_of_it(ph):
    """A duct whose clumps enhance far above the gland it runs through (segmentation.standout):
    without the standout rule the duct and the gland are one group (here a slab-shaped focus, left
    to the foci, and no NME at all); with it, the duct is suspicious NME of its own."""
    u = ROT[:, 0]
    duct, clumps, _, _ = _duct(ph, u)
    local = (ph.lps - (ph.surface(u) + u * 12.0)) @ ROT
    gland = (np.abs(local[..., 0]) <= 9.0) & (np.abs(local[..., 1]) <= 12.0) & (np.abs(local[..., 2]) <= 4.0) \
        & ~ph.zone & (ph.beyond > 4.0)
    far = [np.linalg.norm((ph.lps - ph.centre - np.array(off)) / np.array([9.0, 8.0, 4.0]), axis=-1) <= 1.0
           for off in ((0, 30, 20), (0, -30, -20), (25, 30, -20))]
    bright_duct = (100.0, 280.0, 278.0, 270.0)  # 180 %, plateau: about three times the gland's 60 %
    seg = ph.segment((ph.rim(2.0), RIM), (gland, PATCH), *[(f, PATCH) for f in far],
                     (duct | clumps, bright_duct))
    found = [m for m in seg.nme if m.suspicious and (m.mask & (duct | clumps)).any()]
    assert len(found) == 1, [(m.distribution, m.mimic, m.reasons) for m in seg.nme]
    m = found[0]
    assert m.distribution is NmeDistribution.LINEAR
    assert abs(m.extent_mm - DUCT_MM) <= 4.0, m.extent_mm
    assert not (m.mask & gland & ~(duct | clumps)).sum() > 0.2 * m.mask.sum()  # the duct, not the gland
    # the gland itself is still background enhancement, not a finding
    assert not any(x.suspicious for x in seg.nme if (x.mask & gland & ~(duct | clumps)).sum() > 100)

