"""truth.json's breast composition and background parenchymal enhancement (BPE) level.

The treated breast is sampled on a 2 mm grid through the phantom's own layers (its skin left out):
composition from the gland's share of the breast, BPE from the share of gland that enhances by
``breast_tissue.ENHANCING_MIN`` or more at the follow-up's first post-contrast phase (the clinical
draw's dose and bolus arrival included). The bands are the analysis's
(``followup.pipelines.breast_tissue``): a definition shared, not a tuned value.
"""

from __future__ import annotations

import numpy as np

from followup.pipelines.breast_tissue import ENHANCING_MIN, bpe_of, composition_of
from followup.synth import kinetics
from followup.synth.case_model import CHEST_WALL_Y, SKIN_THICKNESS, Case
from followup.synth.phantom import GlandTexture, basis_images


def tissue_truth(case: Case) -> dict:
    """truth.json's ``composition`` and ``bpe`` of the treated breast (module docstring), with
    the shares they come from."""
    v = case.variation
    rx, ry, rz = v.breast_radii_mm
    cx = case.side_sign * v.breast_centre_x_mm
    g = [np.arange(-r, r + 0.1, 2.0, dtype=np.float32) for r in (rx, ry, rz)]
    x, y, z = np.meshgrid(g[0] + cx, g[1] + CHEST_WALL_Y, g[2], indexing="ij")
    rho = np.sqrt(((x - cx) / rx) ** 2 + ((y - CHEST_WALL_Y) / ry) ** 2 + (z / rz) ** 2)
    keep = (rho < 1.0 - 2 * SKIN_THICKNESS / min(rx, ry, rz)) & (y < CHEST_WALL_Y - 3.0)
    bx, by, bz = (a[keep].reshape(-1, 1, 1) for a in (x, y, z))
    tex = GlandTexture(case.gland_seed, v.gland_texture_sigma)
    silent = {k: 0.0 for k in ("fat", "gland", "skin", "muscle", "lung", "blood", "tumour", "zone",
                             "rim", "nodule", "benign")}
    gland = basis_images(case, "baseline", bx, by, bz, 2.0, tex, {**silent, "gland": 1.0})
    fat = basis_images(case, "baseline", bx, by, bz, 2.0, tex, {**silent, "fat": 1.0})[kinetics.FAT]
    total_gland = sum(gland.values())
    g_sum = float(np.sum(total_gland))
    share = g_sum / max(g_sum + float(np.sum(fat)), 1e-6)
    t1 = case.followup_timing.post_times_s[0]
    scan = case.clinical.followup if case.clinical is not None else None
    enhancing = 0.0
    for curve, w in gland.items():
        e = curve(t1 - scan.arrival_s) * scan.dose_scale if scan is not None else curve(t1)
        if e >= ENHANCING_MIN:
            enhancing += float(np.sum(w))
    bpe_share = enhancing / max(g_sum, 1e-6)
    return {"composition": composition_of(share).value, "fibroglandular_share": round(share, 3),
            "bpe": bpe_of(bpe_share).value, "bpe_enhancing_share": round(bpe_share, 3)}
