"""Background parenchymal enhancement (BPE) of the clinical variation, and the truth's breast
composition and BPE level.

Standard and wide draws enhance all gland with one curve (the wide draw's amplitude varies).
A clinical draw instead draws a BPE level (minimal, mild, moderate or marked, one in four) and the
share of gland that enhances inside that level's band (``SHARES``): the enhancing gland is where a
smooth random field of its own (body frame, seeded from the case's gland seed) lies above the
quantile that leaves that share, and enhances on the first post-contrast phase by ``INITIAL``
(effective, persistent); the rest of the gland barely enhances (``QUIET``).

The truth (:func:`tissue_truth`) samples the treated breast on a 2 mm grid through the phantom's
own layers: composition from the gland's share of the breast (skin left out), BPE from the share of
gland that enhances by ``breast_tissue.ENHANCING_MIN`` or more at the follow-up's first
post-contrast phase; the cut-offs are the analysis's (``followup.pipelines.breast_tissue``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from followup.pipelines.breast_tissue import ENHANCING_MIN, bpe_of, composition_of
from followup.synth import kinetics
from followup.synth.case_model import CHEST_WALL_Y, SKIN_THICKNESS, Case

LEVELS = ("minimal", "mild", "moderate", "marked")
SHARES = {"minimal": (0.03, 0.2), "mild": (0.3, 0.45), "moderate": (0.55, 0.7), "marked": (0.8, 0.97)}
INITIAL = (0.35, 0.7)  # effective enhancement of enhancing gland on the first post-contrast phase
QUIET = kinetics.Curve(0.06, 300.0)  # the rest of the gland: a few per cent


@dataclass(frozen=True)
class BackgroundDraw:
    level: str  # the drawn level (the truth measures the share again)
    share: float  # of gland enhancing
    curve: kinetics.Curve  # enhancing gland


def draw_background(rng: np.random.Generator, scan, timing) -> BackgroundDraw:
    """A clinical draw's BPE (``scan``/``timing``: the follow-up's, see clinical.curve_with)."""
    from followup.synth.clinical import curve_with  # clinical imports this module

    level = LEVELS[int(rng.integers(len(LEVELS)))]
    share = float(rng.uniform(*SHARES[level]))
    curve = curve_with(float(rng.uniform(*INITIAL)), float(rng.uniform(0.12, 0.35)),
                       float(rng.uniform(120.0, 300.0)), scan, timing)
    return BackgroundDraw(level, share, curve)


@lru_cache(maxsize=4)
def _field(seed: int) -> np.ndarray:
    from followup.synth.phantom import GLAND_BOX_SHAPE

    rng = np.random.default_rng([seed, 24])
    f = ndimage.gaussian_filter(rng.standard_normal(GLAND_BOX_SHAPE).astype(np.float32), 2.5)
    return (f - f.mean()) / f.std()


def enhancing_fraction(case: Case, tex, bx, by, bz) -> np.ndarray:
    """Where the gland enhances (0-1, a one-unit ramp of the field across the quantile)."""
    assert case.clinical is not None and case.clinical.background is not None
    field = _field(case.gland_seed)
    cut = float(np.quantile(field, 1.0 - case.clinical.background.share))
    f = tex.sample(field, bx, by, bz)
    return np.clip((f - cut) / 0.35 + 0.5, 0.0, 1.0).astype(np.float32)


def gland_layers(case: Case, f_gland: np.ndarray, s0, tex, bx, by, bz) -> list:
    """The gland's layers (bottom first): one, with the variation's curve, unless the clinical draw
    has a BPE draw: then quiet gland under enhancing gland (fractions set so that the painter's
    composition gives each its share of ``f_gland``)."""
    draw = case.clinical.background if case.clinical is not None else None
    if draw is None:
        return [(f_gland, s0, case.variation.gland_curve)]
    m = enhancing_fraction(case, tex, bx, by, bz)
    top = f_gland * m
    with np.errstate(divide="ignore", invalid="ignore"):
        under = np.where(top < 0.999, f_gland * (1.0 - m) / (1.0 - top), 0.0).astype(np.float32)
    return [(under, s0, QUIET), (top, s0, draw.curve)]


def tissue_truth(case: Case) -> dict:
    """truth.json's ``composition`` and ``bpe`` of the treated breast (module docstring), with
    the shares they come from."""
    from followup.synth.phantom import GlandTexture, basis_images

    v = case.variation
    rx, ry, rz = v.breast_radii_mm
    cx = case.side_sign * v.breast_centre_x_mm
    g = [np.arange(-r, r + 0.1, 2.0, dtype=np.float32) for r in (rx, ry, rz)]
    x, y, z = np.meshgrid(g[0] + cx, g[1] + CHEST_WALL_Y, g[2], indexing="ij")
    rho = np.sqrt(((x - cx) / rx) ** 2 + ((y - CHEST_WALL_Y) / ry) ** 2 + (z / rz) ** 2)
    keep = (rho < 1.0 - 2 * SKIN_THICKNESS / min(rx, ry, rz)) & (y < CHEST_WALL_Y - 3.0)
    bx, by, bz = (a[keep].reshape(-1, 1, 1) for a in (x, y, z))
    tex = GlandTexture(case.gland_seed, v.gland_texture_sigma)
    ones = {k: 0.0 for k in ("fat", "gland", "skin", "muscle", "lung", "blood", "tumour", "zone",
                             "rim", "nodule", "benign")}
    gland = basis_images(case, "baseline", bx, by, bz, 2.0, tex, {**ones, "gland": 1.0})
    fat = basis_images(case, "baseline", bx, by, bz, 2.0, tex, {**ones, "fat": 1.0})[kinetics.FAT]
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
