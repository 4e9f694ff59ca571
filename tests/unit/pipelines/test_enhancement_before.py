"""Enhancement before the procedure: the baseline's enhancement mapped onto the follow-up grid
(``enhancement_before``) and suspicious foci judged against it (``segmentation.before``).

The zone phantom of test_segment.py, with structures whose baseline enhancement is set by hand:
glandular tissue that enhanced at the same place before is background (not suspicious, kept and
said "present before"); a nodule that did not is new; washout, or a place inside the treated
volume, is never explained away; a nodule grown into enhancing gland stays suspicious on its own.
"""

from __future__ import annotations

import numpy as np
import pytest

from followup.pipelines.enhancement_before import TREATED_SHELL_MM, EnhancementBefore, enhancement_before
from followup.pipelines.segmentation.before import BEFORE_SHARE_OF_NOW
from followup.pipelines.segmentation.driver import segment
from followup.pipelines.segmentation.model import Segmentation
from followup.volume import Volume
from tests.unit.pipelines.test_segment import PLATEAU, RIM_CURVE, TUMOUR_RADIUS, WASHOUT, _iso_phantom, _maps
from tests.unit.pipelines.zone_phantom import ROT, SEMI_AXES

GLAND = (100.0, 170.0, 182.0, 192.0)  # PE 70 % (medium), +12.9 % later: persistent, as BPE


# ----------------------------------------------------------------------------- the maps


def test_baseline_enhancement_lands_where_the_registration_maps_it():
    """A baseline sphere enhancing 60 %, seen from a follow-up grid shifted by (7, -4, 3) mm: the
    map holds 60 % at the sphere's follow-up place, 0 % elsewhere in the baseline's field, NaN
    outside it; the treated volume is the tumour's sphere + margin + shell, in follow-up space."""
    base_aff = np.diag([1.0, 1.0, 2.0, 1.0])
    base_aff[:3, 3] = (-20.0, -20.0, -20.0)
    shape_b = (40, 40, 20)
    ijk = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape_b], indexing="ij"), -1)
    lps_b = ijk @ base_aff[:3, :3].T + base_aff[:3, 3]
    sphere_b = np.array([5.0, 2.0, 0.0])
    inside = np.linalg.norm(lps_b - sphere_b, axis=-1) <= 5.0
    pre = np.full(shape_b, 200.0, np.float32)
    post = pre.copy()
    post[inside] = 320.0  # +60 %
    shift = np.array([7.0, -4.0, 3.0])
    to_baseline = np.eye(4)
    to_baseline[:3, 3] = shift  # follow-up LPS + shift = baseline LPS
    fu_aff = np.eye(4)
    fu_aff[:3, 3] = (-30.0, -30.0, -25.0)
    shape_f = (50, 50, 50)
    tumour_b = np.array([-8.0, -5.0, 0.0])
    got = enhancement_before(Volume(pre, base_aff), Volume(post, base_aff), shape_f, fu_aff, to_baseline,
                             tumour_b, 4.0, 5.0)
    ijk_f = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape_f], indexing="ij"), -1)
    lps_f = ijk_f @ fu_aff[:3, :3].T + fu_aff[:3, 3]
    centre_f = sphere_b - shift
    core = np.linalg.norm(lps_f - centre_f, axis=-1) <= 3.5
    far = np.linalg.norm(lps_f - centre_f, axis=-1) >= 7.0
    in_field = np.all(np.abs(lps_f + shift) <= 15.0, axis=-1)
    assert np.allclose(got.pe[core], 60.0, atol=0.5)
    assert np.allclose(got.pe[far & in_field], 0.0, atol=0.5)
    assert np.isnan(got.pe[np.any(np.abs(lps_f + shift) >= 25.0, axis=-1)]).all()
    d_tumour = np.linalg.norm(lps_f - (tumour_b - shift), axis=-1)
    assert np.array_equal(got.treated, d_tumour <= 4.0 + 5.0 + TREATED_SHELL_MM)


# ----------------------------------------------------------------------------- the foci


@pytest.fixture(scope="module")
def iso():
    return _iso_phantom()


def _beyond(ph, direction: np.ndarray, gap_mm: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """A sphere whose nearest surface lies ``gap_mm`` beyond the zone's edge along ``direction``."""
    centre = ph.snap(ph.surface(direction) + direction * (gap_mm + radius))
    return ph.sphere(centre, radius), centre


def _segment(ph, structures, before_pe: np.ndarray | None, treated: np.ndarray | None = None) -> Segmentation:
    phases = ph.phases((ph.rim(2.0), RIM_CURVE), *structures)
    before = None if before_pe is None else EnhancementBefore(
        before_pe.astype(np.float32), np.zeros(ph.shape, bool) if treated is None else treated)
    return segment(phases, _maps(phases), ph.affine, ph.centre, TUMOUR_RADIUS, 5.0, before=before)


def _hit(seg: Segmentation, truth: np.ndarray):
    hits = [f for f in seg.foci if (f.mask & truth).any()]
    assert len(hits) == 1, f"{len(hits)} foci overlap the structure"
    return hits[0]


def test_gland_that_enhanced_before_is_background_and_a_new_nodule_is_not(iso):
    u = ROT[:, 0]
    gland, _ = _beyond(iso, u, 1.0, 4.5)
    nodule, _ = _beyond(iso, -u, 1.0, 3.5)
    structures = ((gland, GLAND), (nodule, PLATEAU))
    # without the baseline, both are masses at the edge: suspicious whatever their curves
    alone = _segment(iso, structures, None)
    assert _hit(alone, gland).suspicious and _hit(alone, nodule).suspicious
    before = np.zeros(iso.shape)
    before[gland] = 65.0  # the gland enhanced before (65 % then, 70 % now); the nodule did not
    seg = _segment(iso, structures, before)
    g, n = _hit(seg, gland), _hit(seg, nodule)
    assert not g.suspicious and g.present_before
    assert any("present before the procedure" in r and "65% then" in r for r in g.reasons)
    assert n.suspicious and not n.present_before
    # a little less enhancement before than the share asked for: it is new
    before[gland] = 70.0 * BEFORE_SHARE_OF_NOW - 2.0
    assert _hit(_segment(iso, structures, before), gland).suspicious


def test_washout_or_the_treated_volume_is_never_explained_away(iso):
    u = ROT[:, 0]
    washout, _ = _beyond(iso, u, 1.0, 4.0)
    before = np.zeros(iso.shape)
    before[washout] = 140.0
    assert _hit(_segment(iso, ((washout, WASHOUT),), before), washout).suspicious
    gland, _ = _beyond(iso, u, 1.0, 4.5)
    before = np.zeros(iso.shape)
    before[gland] = 65.0
    f = _hit(_segment(iso, ((gland, GLAND),), before, treated=np.ones(iso.shape, bool)), gland)
    assert f.suspicious and not f.present_before


def test_nodule_grown_into_enhancing_gland_stays_suspicious_on_its_own(iso):
    """A plateau nodule (r 3.5 mm) touching a gland sphere (r 5 mm) that enhanced before: whether
    the region is split at its maxima or its new part is measured alone, the suspicious focus is
    the nodule, centred on it, and no suspicious focus is the gland."""
    v = ROT[:, 1]
    gland, g_centre = _beyond(iso, v, 1.0, 5.0)
    n_centre = iso.snap(g_centre + np.cross(v, ROT[:, 2]) * 8.0)
    nodule = iso.sphere(n_centre, 3.5) & ~gland
    before = np.zeros(iso.shape)
    before[gland] = 65.0
    seg = _segment(iso, ((gland, GLAND), (nodule, PLATEAU)), before)
    hits = [f for f in seg.foci if f.suspicious and (f.mask & nodule).any()]
    assert len(hits) == 1
    f = hits[0]
    assert np.linalg.norm(f.centre_lps - n_centre) < 2.0
    assert (f.mask & gland).sum() <= 0.2 * f.mask.sum()
    assert not any(f.suspicious and (f.mask & gland).sum() > 0.5 * f.mask.sum() for f in seg.foci)
    assert SEMI_AXES[0] > 0  # the phantom's zone is the one test_segment describes


# ----------------------------------------------------------------------------- a ring around fat
# (segmentation.fat_centre lives beside the comparison with the baseline: both take a focus that
# morphology alone would call suspicious and find it benign on other evidence)

FAT = 400.0  # without fat suppression fat is the brightest tissue on T1


def _nonfs_maps(phases):
    from followup.pipelines.enhancement import enhancement_maps, unsuppressed_fat_ceiling

    m = enhancement_maps(phases, 10.0)
    ceiling = unsuppressed_fat_ceiling(phases[0], m.pe_peak, m.valid)
    assert ceiling is not None  # the phantom reads as a study without fat suppression
    return enhancement_maps(phases, 10.0, ceiling)


def _ring_case(ph, centre_signal: float, fat_suppressed: bool = False):
    """A ring mass (shell 4-6.5 mm about a point 4 mm beyond the zone's long axis end) of plateau
    enhancement around a non-enhancing centre of ``centre_signal``; the zone, rim and a glandular
    patch far away (so the maps find tissue against fat)."""
    u = ROT[:, 0]
    c = ph.snap(ph.surface(u) + u * (4.0 + 6.5))
    r = np.linalg.norm(ph.lps - c, axis=-1)
    shell, centre = (r > 4.0) & (r <= 6.5), r <= 4.0
    gland = ph.sphere(ph.snap(ph.surface(-u) - u * 14.0), 6.0)
    base = 50.0 if fat_suppressed else FAT
    flat = (centre_signal,) * 4
    phases = ph.phases((ph.zone, (150.0,) * 4), (ph.rim(2.0), RIM_CURVE), (shell, PLATEAU), (centre, flat),
                       (gland, GLAND), base=base)
    maps = _nonfs_maps(phases) if not fat_suppressed else _maps(phases)
    return segment(phases, maps, ph.affine, ph.centre, TUMOUR_RADIUS, 5.0), shell


def test_a_ring_around_fat_is_fat_necrosis_not_a_suspicious_mass(iso):
    seg, shell = _ring_case(iso, FAT)
    f = _hit(seg, shell)
    assert not f.suspicious and f.fat_centre
    assert any(r.startswith("fat-containing") and "fat necrosis" in r for r in f.reasons)


@pytest.mark.parametrize("centre_signal, fat_suppressed", [(150.0, False), (50.0, True)])
def test_a_ring_around_soft_tissue_or_with_fat_suppressed_stays_suspicious(iso, centre_signal, fat_suppressed):
    """A necrotic (soft-tissue) centre is no fat; with fat suppressed, fat cannot be told at all."""
    seg, shell = _ring_case(iso, centre_signal, fat_suppressed)
    f = _hit(seg, shell)
    assert f.suspicious and not f.fat_centre


# ----------------------------------------------------------------------------- non-mass enhancement


def _nme(distribution, curve: str = "persistent", suspicious: bool = True):
    from followup.pipelines.segmentation.model import NmeInternal, NonMassEnhancement

    mask = np.zeros((20, 20, 20), bool)
    mask[5:15, 5:15, 8:12] = True
    z = np.zeros(3)
    return NonMassEnhancement(1, mask, distribution, NmeInternal.CLUSTERED_RING, 30.0, 20.0, z, z, z, 400.0, 1.0,
                              70.0, "medium", 12.0, curve, True, None, suspicious, ("clustered-ring",))


@pytest.mark.parametrize("distribution, curve, background", [
    ("regional", "persistent", True), ("focal", "plateau", True),
    ("segmental", "persistent", False), ("linear", "persistent", False), ("regional", "washout", False)])
def test_only_focal_or_regional_nme_without_washout_is_background_when_there_before(distribution, curve, background):
    from followup.pipelines.enhancement import enhancement_maps
    from followup.pipelines.segmentation.before import nme_against_before
    from followup.pipelines.segmentation.model import NmeDistribution, NmeMimic

    m = _nme(NmeDistribution(distribution), curve)
    s0 = np.full(m.mask.shape, 100.0, np.float32)
    maps = enhancement_maps([s0, np.where(m.mask, 170.0, 100.0).astype(np.float32)], 10.0)
    before = EnhancementBefore(np.where(m.mask, 60.0, 0.0).astype(np.float32), np.zeros(m.mask.shape, bool))
    (got,) = nme_against_before((m,), before, maps)
    assert got.suspicious is not background and got.present_before is background
    if background:
        assert got.mimic is NmeMimic.BACKGROUND and "present before the procedure" in got.reasons[-1]
    # inside the treated volume nothing is background
    treated = EnhancementBefore(before.pe, np.ones(m.mask.shape, bool))
    assert nme_against_before((m,), treated, maps)[0].suspicious


def test_a_ductal_nme_that_enhanced_before_stays_suspicious_in_the_segmentation():
    """The clumped duct of test_nme.py, with the baseline enhancing all along it: still suspicious."""
    from tests.unit.pipelines.test_nme import CLUMP, DUCT, RIM, Phantom, _duct

    ph = Phantom()
    duct, clumps, _, _ = _duct(ph, ROT[:, 0])
    phases = ph.phases((ph.rim(2.0), RIM), (duct, DUCT), (clumps, CLUMP))
    from followup.pipelines.enhancement import enhancement_maps

    before = EnhancementBefore(np.where(duct | clumps, 120.0, 0.0).astype(np.float32), np.zeros(ph.shape, bool))
    seg = segment(phases, enhancement_maps(phases, 10.0), ph.affine, ph.centre, 4.0, 5.0, before=before)
    found = [m for m in seg.nme if (m.mask & (duct | clumps)).any()]
    assert len(found) == 1 and found[0].suspicious and not found[0].present_before
