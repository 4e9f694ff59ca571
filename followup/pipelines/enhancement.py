"""Semi-quantitative DCE-MRI maps: percent enhancement, SER and BI-RADS curve type per voxel.

Conventions (../shared/clinical-evidence.md, "DCE-MRI conventions"):
* PE = 100 * (S1 - S0) / S0 at the first post-contrast phase (S0 pre-contrast, S1 first post);
  initial phase slow < 50 %, medium 50-100 %, fast > 100 %.
* Delayed phase, from the first post-contrast to the last phase: washout < -10 %,
  plateau within +-10 %, persistent > +10 % (BI-RADS; Kuhl et al., Radiology 1999).
* SER = (S1 - S0) / (S2 - S0) with S2 the last phase (I-SPY / UCSF functional tumour volume);
  bands <= 0.9, 0.9-1.0, 1.0-1.3, 1.3-1.75, > 1.75 (higher = washout-like).
Pure numpy: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

SLOW_BELOW_PE = 50.0
FAST_ABOVE_PE = 100.0
DELAYED_CHANGE_PCT = 10.0
SER_BANDS = (0.9, 1.0, 1.3, 1.75)

CURVE_PERSISTENT, CURVE_PLATEAU, CURVE_WASHOUT = 1, 2, 3
CURVE_NAMES = {0: "none", CURVE_PERSISTENT: "persistent", CURVE_PLATEAU: "plateau",
               CURVE_WASHOUT: "washout"}


@dataclass(frozen=True)
class EnhancementMaps:
    pe: np.ndarray  # percent enhancement at the first post-contrast phase
    pe_peak: np.ndarray  # largest percent enhancement over the post-contrast phases
    delayed_change: np.ndarray  # percent change from the first post-contrast to the last phase
    ser: np.ndarray  # signal enhancement ratio (NaN where S2 - S0 is ~0)
    curve: np.ndarray  # uint8: 0 none, 1 persistent, 2 plateau, 3 washout
    valid: np.ndarray  # bool: S0 high enough for a ratio to mean something
    # the largest pre-contrast signal a ratio is taken against (None: the voxel's own, see
    # ``unsuppressed_fat_ceiling``)
    s0_ceiling: float | None = None


# Without fat suppression, fat is the brightest tissue on T1 (about twice the gland at 1.5-3 T)
# and a voxel that is partly fat has a pre-contrast signal far above the tissue's: its enhancement
# ratio is diluted by fat that does not enhance (a 5 mm nodule a third of a 3 mm voxel reads ~45 %
# instead of ~85 %), so small lesions fall below the enhancement thresholds only because fat was not
# suppressed. Radiologists read such studies on subtraction images, where fat is gone whatever its
# signal. The ratio's denominator is therefore capped at the enhancing tissue's own pre-contrast
# signal (its median) when, and only when, the non-enhancing voxels (fat, the cavity) are brighter
# than the enhancing ones: with fat suppressed nothing changes. Tested on our generator's
# follow-ups without fat suppression (tuning seeds 70000+).
FAT_MAX_PE = 15.0  # a voxel enhancing less than this is fat or the cavity (for the fat test)
ENHANCING_MIN_PE = 50.0  # ... and one enhancing at least this much is tissue (medium/fast uptake)
FAT_TEST_MIN_VOXELS = 50  # the test needs this many voxels on each side


def unsuppressed_fat_ceiling(s0: np.ndarray, pe_peak: np.ndarray, valid: np.ndarray) -> float | None:
    """The enhancing tissue's median pre-contrast signal when fat is not suppressed (the flat voxels
    are brighter than the enhancing ones), else None."""
    enhancing = valid & (pe_peak >= ENHANCING_MIN_PE)
    flat = valid & (pe_peak < FAT_MAX_PE)
    if enhancing.sum() < FAT_TEST_MIN_VOXELS or flat.sum() < FAT_TEST_MIN_VOXELS:
        return None
    tissue = float(np.median(s0[enhancing]))
    return tissue if float(np.median(s0[flat])) > tissue else None


def as_tissue_curve(signal: np.ndarray, s0_ceiling: float | None) -> np.ndarray:
    """A mean signal curve with its pre-contrast level capped at ``s0_ceiling``: the enhancement
    (signal minus pre-contrast) kept, the fat that does not enhance taken out of the baseline."""
    s = np.asarray(signal, dtype=float)
    if s0_ceiling is None or s[0] <= s0_ceiling:
        return s
    return s - s[0] + s0_ceiling


def enhancement_maps(phases: list[np.ndarray], s0_floor: float,
                     s0_ceiling: float | None = None) -> EnhancementMaps:
    """Maps from aligned phases (phases[0] pre-contrast, then the post-contrast phases in time).

    ``s0_floor``: pre-contrast signal below which ratios are noise (air, suppressed fat);
    ``s0_ceiling``: the largest pre-contrast signal a ratio is taken against (unsuppressed fat, see
    ``unsuppressed_fat_ceiling``; None: no cap).
    """
    if len(phases) < 2:
        raise ValueError("enhancement needs a pre-contrast and at least one post-contrast phase")
    s0 = phases[0].astype(np.float32)
    s1 = phases[1].astype(np.float32)
    s2 = phases[-1].astype(np.float32)
    valid = s0 >= s0_floor
    denom = np.maximum(s0, s0_floor)
    if s0_ceiling is not None:
        denom = np.minimum(denom, max(s0_ceiling, s0_floor))
    pe = 100.0 * (s1 - s0) / denom
    pe_peak = np.max(np.stack([100.0 * (p.astype(np.float32) - s0) / denom for p in phases[1:]]), axis=0)
    # the first post-contrast signal as tissue would give it (unchanged without a ceiling)
    s1_tissue = s1 if s0_ceiling is None else s1 - s0 + denom
    delayed = 100.0 * (s2 - s1) / np.maximum(s1_tissue, s0_floor)
    late = s2 - s0
    with np.errstate(divide="ignore", invalid="ignore"):
        ser = np.where(np.abs(late) > 1e-3 * denom, (s1 - s0) / late, np.nan)
    curve = np.zeros(s0.shape, dtype=np.uint8)
    if len(phases) >= 3:
        curve[delayed > DELAYED_CHANGE_PCT] = CURVE_PERSISTENT
        curve[np.abs(delayed) <= DELAYED_CHANGE_PCT] = CURVE_PLATEAU
        curve[delayed < -DELAYED_CHANGE_PCT] = CURVE_WASHOUT
    curve[~valid] = 0
    return EnhancementMaps(pe.astype(np.float32), pe_peak.astype(np.float32),
                           delayed.astype(np.float32), ser.astype(np.float32), curve, valid, s0_ceiling)


class CurveType(StrEnum):
    """The BI-RADS delayed-phase curve (``none``: no delayed phase)."""

    NONE = "none"
    PERSISTENT = "persistent"
    PLATEAU = "plateau"
    WASHOUT = "washout"


def curve_type_of_signal(signal: np.ndarray) -> tuple[CurveType, float, float]:
    """Curve type of a mean time-signal curve (pre, post1, ..., postN).

    Returns (type, initial PE %, delayed change %)."""
    s = np.asarray(signal, dtype=float)
    pe = 100.0 * (s[1] - s[0]) / max(s[0], 1e-6)
    change = 100.0 * (s[-1] - s[1]) / max(s[1], 1e-6)
    if len(s) < 3:
        return CurveType.NONE, pe, 0.0
    if change < -DELAYED_CHANGE_PCT:
        kind = CurveType.WASHOUT
    elif change > DELAYED_CHANGE_PCT:
        kind = CurveType.PERSISTENT
    else:
        kind = CurveType.PLATEAU
    return kind, pe, change


# A mean curve whose post-contrast signal falls and then rises again by more than this share of
# its enhancement is not a perfusion curve (uptake, then plateau, washout or further uptake): it
# is misalignment between phases at an edge, and its curve type means nothing (a modelling
# choice; the BI-RADS curve types assume a monotone delayed phase).
ZIGZAG_FRACTION = 0.15


def curve_is_physiological(signal: np.ndarray) -> bool:
    """False when the post-contrast signal dips and recovers by more than ``ZIGZAG_FRACTION`` of
    the enhancement (down-up between phases): motion, not kinetics."""
    s = np.asarray(signal, dtype=float)
    post = s[1:]
    if len(post) < 3:
        return True
    enhancement = max(float(post.max() - s[0]), 1e-6)
    t = ZIGZAG_FRACTION * enhancement
    dips = (post[:j].max() - post[j] > t and post[j + 1:].max() - post[j] > t for j in range(1, len(post) - 1))
    return not any(dips)


def initial_phase_class(pe: float) -> str:
    if pe < SLOW_BELOW_PE:
        return "slow"
    if pe > FAST_ABOVE_PE:
        return "fast"
    return "medium"


def ser_band(ser: float) -> str:
    if not np.isfinite(ser):
        return "undefined"
    b = SER_BANDS
    if ser <= b[0]:
        return "<=0.9"
    if ser <= b[1]:
        return "0.9-1.0"
    if ser <= b[2]:
        return "1.0-1.3"
    if ser <= b[3]:
        return "1.3-1.75"
    return ">1.75"
