"""Enhancement curves of the synthetic DCE-MRI: relative enhancement E(t) per tissue.

Signal S(t) = S0 * (1 + E(t)); t in seconds after contrast injection (E = 0 before it).
E(t) = A * (1 - exp(-t / tau)) * exp(-kappa * t): uptake with time constant tau, washout rate kappa.

The parameters are chosen so that the semi-quantitative read-out of a 60-90 s first post-contrast
phase and a ~5-6 min last phase lands in the classes used clinically (clinical-evidence.md,
"DCE-MRI conventions"): initial phase slow < 50 %, medium 50-100 %, fast > 100 %; delayed phase
washout < -10 %, plateau within +-10 %, persistent > +10 % (BI-RADS / Kuhl 1999).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    amplitude: float
    tau_s: float
    kappa_per_s: float = 0.0

    def __call__(self, t_s: float | np.ndarray) -> float | np.ndarray:
        t = np.maximum(np.asarray(t_s, dtype=float), 0.0)
        e = self.amplitude * (1.0 - np.exp(-t / self.tau_s)) * np.exp(-self.kappa_per_s * t)
        return float(e) if np.ndim(e) == 0 else e


# Tumour and residual nodules: fast initial uptake (PE > 100 %) then washout or plateau.
TUMOUR_WASHOUT = Curve(2.6, 35.0, 2.5e-3)
TUMOUR_PLATEAU = Curve(2.6, 20.0, 3.0e-4)
# Benign post-ablation rim ("cryohalo"): slow (PE < 50 %) and persistent.
RIM_BENIGN = Curve(1.2, 250.0)
# Early (< 3 weeks) hyperaemic rim: faster, stronger, still persistent: the false-positive trap.
RIM_EARLY = Curve(1.6, 90.0)
# Background parenchymal enhancement of fibroglandular tissue: slow persistent.
GLAND = Curve(0.35, 300.0)
# Benign enhancing gland patch (confounder): medium, persistent.
GLAND_BENIGN_FOCUS = Curve(1.4, 150.0)
FAT = Curve(0.05, 200.0)
SKIN = Curve(0.4, 150.0)
MUSCLE = Curve(0.6, 120.0)
BLOOD_POOL = Curve(3.0, 15.0, 1.5e-3)
NONE = Curve(0.0, 1.0)

TUMOUR_CURVES = {"washout": TUMOUR_WASHOUT, "plateau": TUMOUR_PLATEAU}


def curve_type(curve: Curve, t_early_s: float, t_late_s: float) -> str:
    """BI-RADS delayed-phase class of a curve sampled at the early and last post-contrast times."""
    s_early = 1.0 + curve(t_early_s)
    s_late = 1.0 + curve(t_late_s)
    change = (s_late - s_early) / s_early
    if change < -0.10:
        return "washout"
    if change > 0.10:
        return "persistent"
    return "plateau"
