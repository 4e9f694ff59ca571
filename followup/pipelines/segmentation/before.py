"""Suspicious foci compared with the pre-procedure MRI: enhancement that was already there.

A suspicious focus whose voxels mostly enhanced at the same place on the baseline, outside the
treated volume (:mod:`followup.pipelines.enhancement_before`), and whose curve does not wash out,
is background parenchymal enhancement the procedure did not make: it is kept in the findings,
said to be present before, and no longer suspicious (BPE enhances progressively; washout is
suspicious whatever came before, ACR BI-RADS MRI 2013). Its part that is new (enhancing now, not
before) is measured again as a focus of its own: a residual nodule grown into enhancing gland
stays suspicious on its own voxels. Nothing here makes a focus suspicious that was not.

Non-mass enhancement is judged so only where its distribution is focal or regional: a linear or
segmental (ductal) one stays suspicious whatever came before, since in-situ disease along a duct
is the usual cause of failure after cryoablation and may have been there, unrecognised, before
the procedure (clinical-evidence.md; Sabel 2004, Pfleiderer 2005, Poplack 2015).

On our generator's tuning seeds (61000-61019, 61100-61115; docs/analysis/index.md, "Enhancement
before the procedure"), the residual nodules' own voxels enhanced 0-25 % (median) on the baseline
against 65-190 % now, and the glandular blobs called masses at the edge 30-90 % on the baseline
against 55-85 % now.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from followup.pipelines.enhancement import EnhancementMaps
from followup.pipelines.enhancement_before import EnhancementBefore
from followup.pipelines.segmentation.focus import measure_focus
from followup.pipelines.segmentation.model import Focus, NmeDistribution, NmeMimic, NonMassEnhancement, Rim

# A voxel enhanced before when its baseline initial enhancement was at least this share of
# today's (assumption: the baseline's first post-contrast phase may come earlier or later than the
# follow-up's, and BPE waxes and wanes with the cycle). On the tuning seeds above, a residual
# nodule's own voxels had 0-20 % of today's (median); glandular blobs 35-110 %. 0.25 removed one
# more false alarm's focus but no false-alarm study, and lost a nodule lying in marked BPE: the
# safer 0.4 is kept ...
BEFORE_SHARE_OF_NOW = 0.4
# ... and at least this much (below it the place was fat, the cavity or noise: not enhancing tissue).
BEFORE_MIN_PE = 20.0
# A focus is "present before" when at least this share of its voxels enhanced before (assumption:
# most of it; the rest is the registration's error at its edges and the cycle's variation).
PRESENT_BEFORE_MIN_SHARE = 0.5


def enhanced_before(before: EnhancementBefore, maps: EnhancementMaps) -> np.ndarray:
    """Voxels (bool, ROI grid) that enhanced at the same place before the procedure, outside the
    treated volume."""
    pe_before = np.nan_to_num(before.pe, nan=-np.inf)
    return (pe_before >= np.maximum(BEFORE_MIN_PE, BEFORE_SHARE_OF_NOW * maps.pe)) & ~before.treated


def judge_against_before(foci: list[Focus], before: EnhancementBefore, phases: list[np.ndarray],
                         maps: EnhancementMaps, affine: np.ndarray, lps: np.ndarray, signed: np.ndarray,
                         rim: Rim, min_voxels: int) -> list[Focus]:
    """``foci`` with each suspicious focus that mostly enhanced before replaced by its new part
    (when that part, of ``min_voxels`` or more, is itself a suspicious focus) or marked present
    before and not suspicious."""
    old = enhanced_before(before, maps)
    out: list[Focus] = []
    for f in foci:
        washout = f.kinetics_reliable and f.curve_type == "washout"
        share = float(old[f.mask].mean()) if f.suspicious and not washout else 0.0
        if share < PRESENT_BEFORE_MIN_SHARE:
            out.append(f)
            continue
        new_part = _suspicious_new_part(f, old, phases, maps, affine, lps, signed, rim, min_voxels)
        if new_part is not None:
            out.append(replace(new_part, reasons=[*new_part.reasons, f"new since the pre-procedure MRI: "
                                                  f"{100 * share:.0f}% of the enhancing region around it "
                                                  "enhanced there before (background) and is left out"]))
            continue
        was = float(np.nanmedian(before.pe[f.mask]))
        out.append(replace(f, suspicious=False, present_before=True, reasons=[
            *f.reasons, f"present before the procedure: {100 * share:.0f}% of it enhanced at the same place on "
            f"the pre-procedure MRI ({was:.0f}% then, {f.initial_pe:.0f}% now): background parenchymal "
            "enhancement, not new"]))
    return out


def _suspicious_new_part(f: Focus, old: np.ndarray, phases: list[np.ndarray], maps: EnhancementMaps,
                         affine: np.ndarray, lps: np.ndarray, signed: np.ndarray, rim: Rim,
                         min_voxels: int) -> Focus | None:
    """The largest connected part of ``f`` (of ``min_voxels`` or more) that did not enhance before
    and is a suspicious focus on its own, or None."""
    labels, n = ndimage.label(f.mask & ~old, structure=np.ones((3, 3, 3)))
    if n == 0:
        return None
    sizes = ndimage.sum(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    for k in np.argsort(sizes)[::-1][:3]:
        if sizes[k] < min_voxels:
            break
        part = measure_focus(f.label, labels == k + 1, phases, maps, affine, lps, signed, rim)
        if part.suspicious:
            return part
    return None


def nme_against_before(nme: tuple[NonMassEnhancement, ...], before: EnhancementBefore,
                       maps: EnhancementMaps) -> tuple[NonMassEnhancement, ...]:
    """``nme`` with each suspicious focal or regional one that mostly enhanced before (outside the
    treated volume) and does not wash out recognised as background enhancement (suspicious first)."""
    old = enhanced_before(before, maps)
    out = []
    for m in nme:
        ductal = m.distribution in (NmeDistribution.LINEAR, NmeDistribution.SEGMENTAL)
        washout = m.kinetics_reliable and m.curve_type == "washout"
        share = float(old[m.mask].mean()) if m.suspicious and not ductal and not washout else 0.0
        if share < PRESENT_BEFORE_MIN_SHARE:
            out.append(m)
            continue
        was = float(np.nanmedian(before.pe[m.mask]))
        out.append(replace(m, suspicious=False, mimic=NmeMimic.BACKGROUND, present_before=True, reasons=(
            *m.reasons, f"present before the procedure: {100 * share:.0f}% of it enhanced at the same place on the "
            f"pre-procedure MRI ({was:.0f}% then, {m.initial_pe:.0f}% now), {m.distribution} and not washing out: "
            "background parenchymal enhancement")))
    return tuple(sorted(out, key=lambda m: (not m.suspicious, -m.extent_mm)))
