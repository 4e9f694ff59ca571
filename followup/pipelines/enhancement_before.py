"""What enhanced before the procedure: the baseline's initial enhancement on the follow-up's grid.

A radiologist compares every enhancing finding with the prior examinations. Fibroglandular tissue
that enhanced at the same place on the pre-procedure MRI, away from the treated tumour, is
background parenchymal enhancement (BPE), not a new lesion (ACR BI-RADS MRI 2013: a finding is
judged against the priors; BPE is bilateral glandular enhancement that waxes and wanes with the
hormonal cycle). Residual tumour after cryoablation lies where the tumour and its margin were, and
there it may have enhanced before as tumour (the tumour itself, or an extension of it the recorded
diameter left out): the treated volume, the tumour's sphere and its target margin around it, is
never called "enhancing before". Outside it, a residual nodule is enhancement that was not there.

Pure: the baseline's pre-contrast and first post-contrast volumes, the follow-up's analysis grid
and the registration's follow-up -> baseline matrix in; maps on that grid out
(:mod:`followup.pipelines.segmentation.before` judges the foci with them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from followup.pipelines.enhancement import enhancement_maps, unsuppressed_fat_ceiling
from followup.pipelines.roi import resample
from followup.volume import Volume, apply_affine

# Around the treated volume (the tumour's sphere and its target margin), this much more: the
# registration's error on converged alignments, < 2 mm (docs/analysis/index.md), and about one
# voxel of a clinical dynamic series.
TREATED_SHELL_MM = 3.0
# The pre-contrast signal below which no ratio is taken: the same share of the box's 95th
# percentile as the follow-up's maps (followup.pipelines.assess.S0_FLOOR_FRACTION).
S0_FLOOR_FRACTION = 0.25
# A follow-up voxel is imaged by the baseline when it maps within the baseline's voxel centres, or
# this little beyond them (what a resampled volume of ones read above 0.99 did before).
FOV_SLACK_VOXELS = 0.01


@dataclass(frozen=True)
class EnhancementBefore:
    """The baseline's initial enhancement (%) on the follow-up's analysis grid (NaN where the
    baseline did not image or no ratio can be taken), and where the treated volume was."""

    pe: np.ndarray
    treated: np.ndarray  # bool: within the tumour's sphere + its target margin + TREATED_SHELL_MM


def enhancement_before(pre: Volume, post: Volume, shape: tuple[int, int, int], affine: np.ndarray,
                       followup_to_baseline: np.ndarray, tumour_centre_baseline_lps: np.ndarray,
                       tumour_radius_mm: float, margin_mm: float) -> EnhancementBefore:
    """The baseline's first post-contrast enhancement over its pre-contrast signal, resampled onto
    the follow-up grid (``shape``, ``affine``) through ``followup_to_baseline`` (4 x 4, LPS mm), taken
    as the follow-up's maps take it (a floor under the pre-contrast signal, and the tissue's level
    in place of unsuppressed fat's). The treated volume: within ``tumour_radius_mm + margin_mm`` (and
    ``TREATED_SHELL_MM``) of the tumour's centre on the baseline."""
    s0 = resample(pre, shape, affine, followup_to_baseline)
    s1 = resample(post, shape, affine, followup_to_baseline)
    in_baseline = apply_affine(followup_to_baseline, apply_affine(affine, np.indices(shape).reshape(3, -1).T))
    # imaged by the baseline: within its voxel centres (linear interpolation reads no padding there)
    base_ijk = pre.world_to_voxel(in_baseline)
    inside = np.all((base_ijk >= -FOV_SLACK_VOXELS) & (base_ijk <= np.asarray(pre.shape) - 1 + FOV_SLACK_VOXELS),
                    axis=1).reshape(shape)
    floor = S0_FLOOR_FRACTION * float(np.percentile(s0[inside], 95)) if inside.any() else 1.0
    maps = enhancement_maps([s0, s1], floor)
    ceiling = unsuppressed_fat_ceiling(s0, maps.pe_peak, maps.valid & inside)
    if ceiling is not None:
        maps = enhancement_maps([s0, s1], S0_FLOOR_FRACTION * ceiling, ceiling)
    pe = np.where(inside & maps.valid, maps.pe, np.nan).astype(np.float32)
    d = np.linalg.norm(in_baseline - np.asarray(tumour_centre_baseline_lps, float), axis=1)
    treated = (d <= tumour_radius_mm + margin_mm + TREATED_SHELL_MM).reshape(shape)
    return EnhancementBefore(pe, treated)
