"""Non-mass enhancement (NME) at the ablation site: enhancement that is not a mass, at the site or
extending from the zone's edge, beyond the rim and apart from the masses the foci already are.

Why: in-situ disease usually shows as linear, segmental or clumped enhancement along ducts, not as
a nodule (clinical-evidence.md: Sabel 2004, Pfleiderer 2005, Poplack 2015: non-calcified DCIS
caused most cryoablation failures); a read that only counts nodules scores it as a negative MRI.

Steps: enhancing voxels (medium or fast initial enhancement, above the tissue floor) beyond the
rim's reach (:func:`.focus.mass_reach_mm`) and within ``NME_REACH_MM`` of the zone's edge are
grouped; a group counts when its nearest voxel lies within the site's band
(``evidence.SITE_BAND_MM``); its stretch through the rim (enhancing voxels along its axis, down to
the zone's edge) is added back; a group that is mostly a mass already found as a focus is left to
the foci. Each is described with the ACR BI-RADS lexicon (distribution, internal pattern, extent,
kinetics) and checked against three benign look-alikes: a probe or biopsy track (a thin straight
homogeneous line), a thickened stretch of the rim (hugging the zone's surface) and patchy
background parenchymal enhancement (similar patches away from the site). Thresholds are modelling
choices (docs/analysis/non-mass-enhancement.md), not published figures, unless a source is named.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.signal import find_peaks

from followup.evidence import SITE_BAND_MM
from followup.pipelines.enhancement import (
    EnhancementMaps,
    curve_is_physiological,
    curve_type_of_signal,
    initial_phase_class,
)
from followup.pipelines.segmentation.foci import tissue_floor
from followup.pipelines.segmentation.focus import (
    FOCUS_MIN_PE,
    MASS_MIN_DIAMETER_MM,
    MASS_MIN_THICKNESS_RATIO,
    core_curve,
    mass_reach_mm,
)
from followup.pipelines.segmentation.grid import voxel_lps
from followup.pipelines.segmentation.model import (
    Focus,
    NmeDistribution,
    NmeInternal,
    NmeMimic,
    NonMassEnhancement,
    Rim,
    Zone,
)
from followup.pipelines.segmentation.rays import voxel_along
from followup.pipelines.segmentation.standout import standout_cores
from followup.pipelines.segmentation.zone import zone_distances

# Enhancement counted: medium or fast initial enhancement (as the foci, clinical-evidence.md), on the
# first post-contrast map smoothed by half a voxel (noise).
NME_MIN_PE = FOCUS_MIN_PE
NME_SMOOTH_VOXELS = 0.5
# How far from the zone's edge an NME is followed (a DCIS-like stretch runs 10-40 mm along its duct)
NME_REACH_MM = 45.0
# Its stretch through the rim is followed down to this far inside the zone's edge (about a voxel).
NME_INSIDE_MM = 2.0
# ... within this radius of its long axis (at least; wider when it is wider).
NME_THROUGH_RIM_RADIUS_MM = 3.0
NME_MIN_VOLUME_MM3 = 30.0  # as a focus (noise)
NME_MIN_EXTENT_MM = 8.0  # shorter: a focus's business (foci.py), not a distribution
# Distribution from the extents along its principal axes (longest L1, then L2): linear when
# L2 <= NME_LINEAR_MAX_RATIO x L1 (a line); segmental when at least NME_FOCAL_MAX_MM long and
# L2 <= NME_SEGMENTAL_MAX_RATIO x L1 (a cone or branching along one duct system); regional when
# L2 >= NME_REGIONAL_MIN_WIDTH_MM (a geographic area); focal otherwise (a small area). ACR BI-RADS
# MRI 2013 names the distributions; these cut-offs are ours (modelling choices).
NME_LINEAR_MAX_RATIO = 0.35
NME_SEGMENTAL_MAX_RATIO = 0.65
NME_FOCAL_MAX_MM = 15.0
NME_REGIONAL_MIN_WIDTH_MM = 25.0
# Internal pattern: clumped when the enhancement along its long axis has >= 2 maxima each standing
# NME_CLUMP_PROMINENCE of the peak above the dip between them (cobblestone); clustered ring when it
# encloses >= 2 separate non-enhancing holes; heterogeneous when its voxels' enhancement varies by
# NME_HETEROGENEOUS_CV (coefficient of variation) or more; homogeneous otherwise.
NME_CLUMP_PROMINENCE = 0.2
NME_HETEROGENEOUS_CV = 0.25
# Probe / biopsy track (checked after the background: a patch like others away from the site is
# background enhancement whatever its shape): linear, homogeneous, not fast, persistent (or no delayed phase), at most
# NME_TRACK_MAX_WIDTH_MM wide and within NME_TRACK_MAX_WOBBLE_MM (RMS) of a straight line (both
# plus one voxel / half a voxel: what the grid shows of a 1-2 mm track).
NME_TRACK_MAX_WIDTH_MM = 4.0
NME_TRACK_MAX_WOBBLE_MM = 1.5
# Thickened stretch of rim: it never reaches more than NME_HUG_DEPTH_MM beyond the rim's reach and
# its depth across the edge is at most NME_HUG_MAX_RATIO of its length (it runs along the surface).
NME_HUG_DEPTH_MM = 5.0
NME_HUG_MAX_RATIO = 0.5
# Background parenchymal enhancement: at least NME_BPE_MIN_PATCHES enhancing patches at least
# NME_BPE_AWAY_MM beyond the site's band, each of a volume within NME_BPE_VOLUME_FACTOR and a mean
# enhancement within NME_BPE_PE_FACTOR of the NME's (the same tissue enhancing everywhere).
NME_BPE_MIN_PATCHES = 2
NME_BPE_AWAY_MM = 10.0
NME_BPE_VOLUME_FACTOR = 4.0
NME_BPE_PE_FACTOR = 1.5
# ... or the tissue away from the site enhances as much in NME_BPE_MIN_SHARE of its voxels or more
# (ACR BI-RADS MRI 2013 grades background enhancement by the share of fibroglandular tissue that
# enhances: minimal < 25 %, mild 25-50 %, moderate 50-75 %, marked > 75 %; from mild up) and the
# NME's mean enhancement is within NME_BPE_PE_FACTOR of that tissue's (independent simulator,
# tuning seed 60030: 40 % of the tissue at ~53 % made one 110 mm "regional" NME of the background).
NME_BPE_MIN_SHARE = 0.25
# Clustered ring: the enclosed holes are ducts' lumens, each at most this volume (a 5 mm sphere).
NME_RING_HOLE_MAX_MM3 = 65.0
# A compact (focal or regional) group whose voxels are mostly (this share) mass-shaped foci is
# those masses (foci.py), not NME.
NME_MASS_SHARE = 0.6


def find_nme(phases: list[np.ndarray], maps: EnhancementMaps, affine: np.ndarray, zone: Zone, rim: Rim,
             foci: list[Focus], distances: tuple[np.ndarray, np.ndarray] | None = None
             ) -> tuple[NonMassEnhancement, ...]:
    """Every non-mass enhancement at or extending from the site (see the module), suspicious first.
    ``distances``: :func:`.zone.zone_distances` of the zone reaching ``NME_REACH_MM`` (computed when
    None; a shorter reach shortens the search)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    if distances is None:
        distances = zone_distances(zone.mask, spacing, NME_REACH_MM)
    d_out, d_in = distances
    signed = np.where(zone.mask, -d_in, d_out)
    shell = mass_reach_mm(rim)
    pe_s = ndimage.gaussian_filter(maps.pe, NME_SMOOTH_VOXELS)
    s0 = phases[0]
    tissue = maps.valid & (s0 >= tissue_floor(s0, maps.pe_peak, maps.valid, maps.s0_ceiling))
    enhancing = tissue & (pe_s >= NME_MIN_PE)
    beyond = enhancing & (signed > shell) & (signed <= NME_REACH_MM)
    labels, n = ndimage.label(beyond, structure=np.ones((3, 3, 3)))
    if n == 0:
        return ()
    index = np.arange(1, n + 1)
    nearest = ndimage.minimum(signed, labels, index)
    sizes = ndimage.sum_labels(np.ones(labels.shape), labels, index)
    keep = index[(nearest <= SITE_BAND_MM) & (sizes * voxel_mm3 >= NME_MIN_VOLUME_MM3)]
    if len(keep) == 0:
        return ()
    lps = voxel_lps(zone.mask.shape, affine).reshape(*zone.mask.shape, 3)
    masses = np.zeros(zone.mask.shape, dtype=bool)
    for f in foci:
        if _mass_shaped(f):
            masses |= f.mask
    patches = _patches_away(enhancing, signed, pe_s, voxel_mm3)
    background = _background(enhancing, tissue, signed, pe_s)
    # a group is read whole, as before, and also as what stands out of the background enhancement
    # it holds (a clumped duct in enhancing gland: segmentation.standout), each such core reaching
    # the site's band. Not as its rest: the holes the cores leave in it are what the internal
    # pattern counts as a clustered ring (a precaution: on 120 fresh cases reading the rest instead
    # changed one residual study)
    min_voxels = max(1, int(np.ceil(NME_MIN_VOLUME_MM3 / voxel_mm3)))
    groups = []
    for lab in keep:
        group = labels == lab
        groups += [core for core in standout_cores(group, pe_s, min_voxels, NME_MIN_PE)
                   if float(signed[core].min()) <= SITE_BAND_MM]
        groups.append(group)
    out: list[NonMassEnhancement] = []
    for core in groups:
        region = _through_rim(core, enhancing & (signed > -NME_INSIDE_MM) & (signed <= shell), lps, spacing, shell)
        nme = describe_nme(len(out) + 1, region, phases, maps, affine, lps, signed, pe_s, shell, patches, foci,
                           background)
        if nme.extent_mm < NME_MIN_EXTENT_MM:
            continue
        # mostly masses found as foci, and compact itself: those masses (an elongated group stays
        # non-mass enhancement even where the foci cut it into mass-shaped lobes)
        if (region & masses).sum() >= NME_MASS_SHARE * region.sum() \
                and nme.distribution in (NmeDistribution.FOCAL, NmeDistribution.REGIONAL):
            continue
        out.append(nme)
    out.sort(key=lambda m: (not m.suspicious, -m.extent_mm))
    return tuple(out)


def _mass_shaped(f: Focus) -> bool:
    """A focus shaped as a mass (foci.py: >= 5 mm, thickness >= 0.3 x its largest diameter)."""
    return f.largest_diameter_mm >= MASS_MIN_DIAMETER_MM and \
        f.thickness_mm >= MASS_MIN_THICKNESS_RATIO * f.largest_diameter_mm


def _axes(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, rows: principal axes, longest first) of a point cloud."""
    c = pts.mean(axis=0)
    if len(pts) < 3:
        return c, np.eye(3)
    evals, evecs = np.linalg.eigh(np.cov((pts - c).T))
    return c, evecs[:, np.argsort(evals)[::-1]].T


def _through_rim(core: np.ndarray, shell_enhancing: np.ndarray, lps: np.ndarray, spacing: np.ndarray,
                 shell: float) -> np.ndarray:
    """``core`` (beyond the rim's reach) plus its stretch through the rim: the enhancing voxels of
    the rim's band within its radius of its long axis, before its near end, connected to it."""
    pts = lps[core]
    c, axes = _axes(pts)
    t = (pts - c) @ axes[0]
    perp = np.linalg.norm((pts - c) - t[:, None] * axes[0], axis=1)
    radius = max(NME_THROUGH_RIM_RADIUS_MM, float(np.percentile(perp, 90)) + float(spacing.mean()))
    cand = shell_enhancing & ~core
    if not cand.any():
        return core
    q = lps[cand]
    tq = (q - c) @ axes[0]
    pq = np.linalg.norm((q - c) - tq[:, None] * axes[0], axis=1)
    reach = 2.0 * (shell + NME_INSIDE_MM) + float(spacing.mean())
    lo_end = (tq <= t.min() + spacing.mean()) & (tq >= t.min() - reach)
    hi_end = (tq >= t.max() - spacing.mean()) & (tq <= t.max() + reach)
    taken = np.zeros(core.shape, dtype=bool)
    taken[cand] = (pq <= radius) & (lo_end | hi_end)
    joined, _ = ndimage.label(core | taken, structure=np.ones((3, 3, 3)))
    return np.isin(joined, np.unique(joined[core]))


def _patches_away(enhancing: np.ndarray, signed: np.ndarray, pe_s: np.ndarray,
                  voxel_mm3: float) -> list[tuple[float, float]]:
    """(volume mm3, mean smoothed enhancement) of each enhancing patch away from the site."""
    away = enhancing & (signed > SITE_BAND_MM + NME_BPE_AWAY_MM)
    labels, n = ndimage.label(away, structure=np.ones((3, 3, 3)))
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    vols = ndimage.sum_labels(np.ones(labels.shape), labels, index) * voxel_mm3
    means = ndimage.mean(pe_s, labels, index)
    return [(float(v), float(m)) for v, m in zip(vols, means, strict=True) if v >= NME_MIN_VOLUME_MM3]


def _background(enhancing: np.ndarray, tissue: np.ndarray, signed: np.ndarray,
                pe_s: np.ndarray) -> tuple[float, float]:
    """(share of the tissue away from the site that enhances, its mean smoothed enhancement)."""
    away = signed > SITE_BAND_MM + NME_BPE_AWAY_MM
    n_tissue = int((tissue & away).sum())
    on = enhancing & away
    if n_tissue == 0 or not on.any():
        return 0.0, 0.0
    return float(on.sum() / n_tissue), float(pe_s[on].mean())


def describe_nme(label: int, region: np.ndarray, phases: list[np.ndarray], maps: EnhancementMaps,
                 affine: np.ndarray, lps: np.ndarray, signed: np.ndarray, pe_s: np.ndarray, shell: float,
                 patches: list[tuple[float, float]], foci: list[Focus],
                 background: tuple[float, float] = (0.0, 0.0)) -> NonMassEnhancement:
    """One NME described (lexicon, extent, kinetics) and judged (look-alike, suspicious);
    ``background``: the share of the tissue away from the site that enhances and its mean level."""
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    pts = lps[region]
    c, axes = _axes(pts)
    proj = (pts - c) @ axes.T
    voxel = voxel_along(affine, axes)
    extents = np.ptp(proj, axis=0) + voxel
    length, width = float(extents[0]), float(extents[1])
    t = proj[:, 0]
    d = signed[region]
    lo_end, hi_end = t <= t.min() + 0.5 * voxel[0], t >= t.max() - 0.5 * voxel[0]
    if d[hi_end].mean() < d[lo_end].mean():  # the start is the end nearer the zone
        lo_end, hi_end, axis = hi_end, lo_end, -axes[0]
    else:
        axis = axes[0]
    start = pts[lo_end].mean(axis=0) - 0.5 * voxel[0] * axis
    end = pts[hi_end].mean(axis=0) + 0.5 * voxel[0] * axis
    s = core_curve(region, phases, maps)
    kind, pe, change = curve_type_of_signal(s)
    reliable = curve_is_physiological(s)
    distribution = _distribution(length, width)
    vals = pe_s[region]
    internal = _internal(region, t, vals, float(voxel[0]), voxel_mm3)
    wobble = float(np.sqrt(np.mean(proj[:, 1] ** 2 + proj[:, 2] ** 2)))
    mimic, why = _mimic(distribution, internal, kind, initial_phase_class(pe), width, wobble, float(voxel[1:].mean()),
                        float(d.max()), float(d.min()), length, shell,
                        float(region.sum() * voxel_mm3), float(vals.mean()), patches, background)
    suspicious, reasons = _judge(distribution, internal, kind, reliable, length, mimic, why)
    overlapping = tuple(f.label for f in foci if (f.mask & region).any())
    return NonMassEnhancement(
        label, region, distribution, internal, length, width, start.astype(float), end.astype(float),
        c.astype(float), float(region.sum() * voxel_mm3), float(d.min()), float(pe), initial_phase_class(pe),
        float(change), str(kind), bool(reliable), mimic, suspicious, tuple(reasons), overlapping)


def _distribution(length: float, width: float) -> NmeDistribution:
    ratio = width / max(length, 1e-6)
    if ratio <= NME_LINEAR_MAX_RATIO:
        return NmeDistribution.LINEAR
    if width >= NME_REGIONAL_MIN_WIDTH_MM:
        return NmeDistribution.REGIONAL
    if length >= NME_FOCAL_MAX_MM and ratio <= NME_SEGMENTAL_MAX_RATIO:
        return NmeDistribution.SEGMENTAL
    return NmeDistribution.FOCAL


def _internal(region: np.ndarray, t: np.ndarray, vals: np.ndarray, step_mm: float, voxel_mm3: float) -> NmeInternal:
    """The internal pattern (see ``NME_CLUMP_PROMINENCE``): ``t`` each voxel's position along the
    long axis, ``vals`` its smoothed enhancement, ``step_mm`` the voxel's size along the axis."""
    idx = np.nonzero(region)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
    sub = np.pad(region[box], 1)
    holes, n = ndimage.label(ndimage.binary_fill_holes(sub) & ~sub)
    sizes = ndimage.sum_labels(np.ones(holes.shape), holes, np.arange(1, n + 1)) * voxel_mm3 if n else np.zeros(0)
    if int((sizes <= NME_RING_HOLE_MAX_MM3).sum()) >= 2:
        return NmeInternal.CLUSTERED_RING
    bins = np.floor((t - t.min()) / max(step_mm, 1e-6)).astype(int)
    profile = np.full(int(bins.max()) + 1, -np.inf)
    np.maximum.at(profile, bins, vals)
    profile = np.where(np.isfinite(profile), profile, np.nan)
    if _separate_maxima(profile) >= 2:
        return NmeInternal.CLUMPED
    if float(vals.std()) >= NME_HETEROGENEOUS_CV * max(float(vals.mean()), 1e-6):
        return NmeInternal.HETEROGENEOUS
    return NmeInternal.HOMOGENEOUS


def _separate_maxima(profile: np.ndarray) -> int:
    """How many maxima of ``profile`` stand ``NME_CLUMP_PROMINENCE`` of the peak above the dips
    on either side (its ends padded with its lowest value; NaN: an empty bin, read as that too)."""
    low = float(np.nanmin(profile))
    p = np.concatenate([[low], np.where(np.isnan(profile), low, profile), [low]])
    peaks, _ = find_peaks(p, prominence=NME_CLUMP_PROMINENCE * float(p.max()))
    return len(peaks)


def _mimic(distribution: NmeDistribution, internal: NmeInternal, curve: str, phase: str, width: float,
           wobble: float, voxel_across: float, depth: float, nearest: float, length: float, shell: float,
           volume: float, mean_pe: float, patches: list[tuple[float, float]],
           background: tuple[float, float] = (0.0, 0.0)) -> tuple[NmeMimic | None, str]:
    """The benign look-alike an NME is (see the thresholds above), with why; (None, "") when none."""
    if depth <= shell + NME_HUG_DEPTH_MM and depth - nearest <= NME_HUG_MAX_RATIO * length:
        return NmeMimic.THICK_RIM, (f"hugs the zone's surface (reaches {depth:.1f} mm beyond its edge, rim's reach "
                                    f"{shell:.1f} mm): a thickened stretch of the rim")
    similar = [v for v, m in patches
               if 1.0 / NME_BPE_VOLUME_FACTOR <= v / volume <= NME_BPE_VOLUME_FACTOR
               and 1.0 / NME_BPE_PE_FACTOR <= m / max(mean_pe, 1e-6) <= NME_BPE_PE_FACTOR]
    if len(similar) >= NME_BPE_MIN_PATCHES:
        return NmeMimic.BACKGROUND, (f"{len(similar)} similar enhancing patches away from the site: background "
                                     "parenchymal enhancement")
    share, level = background
    if share >= NME_BPE_MIN_SHARE and mean_pe <= NME_BPE_PE_FACTOR * level:
        return NmeMimic.BACKGROUND, (f"{share:.0%} of the tissue away from the site enhances alike ({level:.0f}%): "
                                     "background parenchymal enhancement")
    if distribution is NmeDistribution.LINEAR and internal is NmeInternal.HOMOGENEOUS \
            and curve in ("persistent", "none") and phase != "fast" \
            and width <= NME_TRACK_MAX_WIDTH_MM + voxel_across \
            and wobble <= NME_TRACK_MAX_WOBBLE_MM + 0.5 * voxel_across:
        return NmeMimic.PROBE_TRACK, (f"thin ({width:.1f} mm) straight homogeneous line, {phase} persistent: "
                                      "a probe or biopsy track")
    return None, ""


def _judge(distribution: NmeDistribution, internal: NmeInternal, curve: str, reliable: bool, length: float,
           mimic: NmeMimic | None, why: str) -> tuple[bool, list[str]]:
    """Suspicious: a linear or segmental distribution, or a clumped / clustered-ring pattern, or a
    plateau / washout curve, when it is no benign look-alike (ACR BI-RADS MRI 2013: clumped and
    linear / segmental NME are suspicious whatever the curve, clinical-evidence.md)."""
    if mimic is not None:
        return False, ["benign look-alike: " + why]
    reasons = []
    if distribution in (NmeDistribution.LINEAR, NmeDistribution.SEGMENTAL):
        reasons.append(f"{distribution} non-mass enhancement {length:.0f} mm at or extending from the ablation "
                       "zone (ductal distribution: in-situ disease)")
    if internal in (NmeInternal.CLUMPED, NmeInternal.CLUSTERED_RING):
        reasons.append(f"{internal} internal enhancement")
    if reliable and curve in ("plateau", "washout"):
        reasons.append(f"{curve} kinetics")
    if not reasons:
        return False, [f"{distribution} {internal} non-mass enhancement with a {curve} curve: not suspicious by itself"]
    return True, reasons
