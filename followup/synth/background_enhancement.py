"""Background parenchymal enhancement (BPE) of the clinical variation.

Standard and wide draws enhance all gland with one curve (the wide draw's amplitude varies).
A clinical draw instead draws a BPE level (minimal, mild, moderate or marked, one in four) and the
share of gland that enhances inside that level's band (``SHARES``): the enhancing gland is where a
smooth random field of its own (body frame, seeded from the case's gland seed) lies above the
quantile that leaves that share, and enhances on the first post-contrast phase by ``INITIAL``
(effective, persistent); the rest of the gland barely enhances (``QUIET``).
The truth's composition and BPE level: :mod:`followup.synth.tissue_truth`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from followup.synth import kinetics
from followup.synth.case_model import Case

LEVELS = ("minimal", "mild", "moderate", "marked")
SHARES = {"minimal": (0.03, 0.2), "mild": (0.3, 0.45), "moderate": (0.55, 0.7), "marked": (0.8, 0.97)}
INITIAL = (0.35, 0.7)  # effective enhancement of enhancing gland on the first post-contrast phase
QUIET = kinetics.Curve(0.06, 300.0)  # the rest of the gland: a few per cent


@dataclass(frozen=True)
class BackgroundDraw:
    level: str  # the drawn level (the truth measures the share again)
    share: float  # of gland enhancing
    curve: kinetics.Curve  # enhancing gland


def draw_background(rng: np.random.Generator,
                    make_curve: Callable[[float, float, float], kinetics.Curve]) -> BackgroundDraw:
    """A clinical draw's BPE. ``make_curve(initial, late_change, tau_s)``: the curve with that
    effective first-phase enhancement and late change in the follow-up (clinical.curve_with)."""
    level = LEVELS[int(rng.integers(len(LEVELS)))]
    share = float(rng.uniform(*SHARES[level]))
    curve = make_curve(float(rng.uniform(*INITIAL)), float(rng.uniform(0.12, 0.35)),
                       float(rng.uniform(120.0, 300.0)))
    return BackgroundDraw(level, share, curve)


@lru_cache(maxsize=4)
def _field(seed: int, shape: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng([seed, 24])
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 2.5)
    return (f - f.mean()) / f.std()


def enhancing_fraction(case: Case, tex, bx, by, bz) -> np.ndarray:
    """Where the gland enhances (0-1, a one-unit ramp of the field across the quantile)."""
    assert case.clinical is not None and case.clinical.background is not None
    field = _field(case.gland_seed, tex.layout.shape)
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
