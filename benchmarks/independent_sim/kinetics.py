"""Contrast kinetics from physics: a population arterial input function, the extended Tofts
model and the spoiled-gradient-echo (SPGR) signal equation.

A tissue is given by its pharmacokinetic parameters (Ktrans, kep, vp) and its native T1; its
signal at each phase follows from the gadolinium concentration through R1 = R10 + r1 C. The
clinical descriptors the radiologist reads (initial percent enhancement at the first
post-contrast phase, late change from the first to the last post-contrast phase) are *outputs*;
:func:`tissue_for_targets` searches the (Ktrans, kep) plane for the tissue that shows wanted
descriptors at a given protocol's phase times, so that a lesion can be drawn "fast, plateau"
and still be a physically consistent tissue.

Sources (from the literature, not from any other generator):
* AIF: Parker et al., Magn Reson Med 2006;56:993-1000 (population-averaged blood curve, times in
  minutes, concentrations in mM).
* Extended Tofts: Tofts et al., J Magn Reson Imaging 1999;10:223-32; C_t = vp C_p + Ktrans
  (C_p * exp(-kep t)).
* r1 of gadolinium chelates in plasma ~4-5 /mM/s at 1.5-3 T (Rohrer et al., Invest Radiol 2005).
* Curve types: late change < -10 % washout, within +-10 % plateau, > +10 % persistent (Kuhl 1999).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Parker 2006, Table 1 (population AIF for blood).
PARKER_A = (0.809, 0.330)  # mM min
PARKER_T = (0.17046, 0.365)  # min
PARKER_SIGMA = (0.0563, 0.132)  # min
PARKER_ALPHA, PARKER_BETA = 1.050, 0.1685  # mM, /min
PARKER_S, PARKER_TAU = 38.078, 0.483  # /min, min
HAEMATOCRIT = 0.42
R1_RELAXIVITY = 4.5  # /mM/s
DT_MIN = 1.0 / 240.0  # 0.25 s integration step
WASHOUT_BELOW, PERSISTENT_ABOVE = -10.0, 10.0  # late change, %


def parker_blood(t_min: np.ndarray) -> np.ndarray:
    """Blood gadolinium concentration (mM) at ``t_min`` minutes after injection."""
    t = np.asarray(t_min, dtype=float)
    c = np.zeros_like(t)
    for a, tn, s in zip(PARKER_A, PARKER_T, PARKER_SIGMA, strict=True):
        c += a / (s * np.sqrt(2 * np.pi)) * np.exp(-((t - tn) ** 2) / (2 * s * s))
    c += PARKER_ALPHA * np.exp(-PARKER_BETA * t) / (1 + np.exp(-PARKER_S * (t - PARKER_TAU)))
    return np.where(t >= 0, c, 0.0)


def plasma(t_min: np.ndarray) -> np.ndarray:
    return parker_blood(t_min) / (1.0 - HAEMATOCRIT)


def _convolved(kep: np.ndarray, t_end_min: float) -> tuple[np.ndarray, np.ndarray]:
    """(time grid, C_p * exp(-kep t) on it) for each kep (rows): the exchange term per unit Ktrans,
    as exp(-kep t) * cumulative sum of exp(kep u) C_p(u) du (rectangle rule on a 0.25 s grid)."""
    grid = np.arange(0.0, t_end_min + 2 * DT_MIN, DT_MIN)
    cp = plasma(grid)
    kep = np.atleast_1d(np.asarray(kep, dtype=float))[:, None]
    # shift the exponent by the grid's end so exp() stays finite for the fastest exchange
    grow = np.exp(kep * (grid[None, :] - grid[-1]))
    out = np.cumsum(grow * cp[None, :], axis=1) * DT_MIN / grow
    return grid, out


def concentration(t_s: np.ndarray, ktrans: float, kep: float, vp: float) -> np.ndarray:
    """Tissue concentration (mM) at ``t_s`` seconds after injection (extended Tofts)."""
    t_min = np.asarray(t_s, dtype=float) / 60.0
    grid, conv = _convolved(np.array([kep]), float(t_min.max()) if t_min.size else 0.0)
    ex = np.interp(t_min, grid, conv[0])
    return vp * plasma(t_min) + ktrans * ex


def spgr(m0: float | np.ndarray, t1_s: float | np.ndarray, tr_ms: float, flip_deg: float,
         conc: float | np.ndarray = 0.0) -> np.ndarray:
    """Steady-state spoiled gradient echo signal for proton density ``m0``, native T1 and
    gadolinium concentration ``conc`` (mM)."""
    r1 = 1.0 / np.asarray(t1_s, dtype=float) + R1_RELAXIVITY * np.asarray(conc, dtype=float)
    e1 = np.exp(-tr_ms / 1000.0 * r1)
    a = np.deg2rad(flip_deg)
    return np.asarray(m0 * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1), dtype=float)


def curve_type(late_change_pct: float) -> str:
    if late_change_pct < WASHOUT_BELOW:
        return "washout"
    if late_change_pct > PERSISTENT_ABOVE:
        return "persistent"
    return "plateau"


@dataclass(frozen=True)
class Tissue:
    """One tissue's kinetics at one protocol: relative enhancement per phase (0 at the pre phase)."""

    ktrans: float  # /min
    kep: float  # /min
    vp: float
    t1_s: float
    enhancement: np.ndarray  # (phases,) S/S0 - 1

    @property
    def initial_pct(self) -> float:
        return float(100 * self.enhancement[1])

    @property
    def late_change_pct(self) -> float:
        s1, sl = 1 + self.enhancement[1], 1 + self.enhancement[-1]
        return float(100 * (sl - s1) / s1)

    @property
    def curve(self) -> str:
        return curve_type(self.late_change_pct)

    def describe(self) -> dict:
        return {"ktrans_per_min": round(self.ktrans, 4), "kep_per_min": round(self.kep, 4),
                "vp": self.vp, "initial_enhancement_pct": round(self.initial_pct, 1),
                "late_change_pct": round(self.late_change_pct, 1), "curve": self.curve}


def enhancement_of(ktrans: float, kep: float, vp: float, t1_s: float, post_times_s: np.ndarray,
                   tr_ms: float, flip_deg: float) -> Tissue:
    c = concentration(post_times_s, ktrans, kep, vp)
    s0 = spgr(1.0, t1_s, tr_ms, flip_deg)
    e = spgr(1.0, t1_s, tr_ms, flip_deg, c) / s0 - 1.0
    return Tissue(ktrans, kep, vp, t1_s, np.concatenate([[0.0], e]))


def blood(t1_s: float, post_times_s: np.ndarray, tr_ms: float, flip_deg: float) -> Tissue:
    """A vessel: the blood concentration itself (vp = 1 of blood, no leakage term)."""
    c = parker_blood(np.asarray(post_times_s, float) / 60.0)
    s0 = spgr(1.0, t1_s, tr_ms, flip_deg)
    e = spgr(1.0, t1_s, tr_ms, flip_deg, c) / s0 - 1.0
    return Tissue(0.0, 0.0, 1.0, t1_s, np.concatenate([[0.0], e]))


def tissue_for_targets(initial_pct: float, late_pct: float, t1_s: float, post_times_s: np.ndarray,
                       tr_ms: float, flip_deg: float, vp: float = 0.02) -> Tissue:
    """The tissue (Ktrans, kep) whose initial enhancement and late change at these phase times come
    closest to the targets: a coarse grid over the physiological plane, then a finer one around
    the best cell. Targets that no tissue reaches give the nearest reachable tissue, the initial
    enhancement kept closer than the late change; the returned :class:`Tissue` says what was
    reached."""
    post = np.asarray(post_times_s, dtype=float)
    s0 = spgr(1.0, t1_s, tr_ms, flip_deg)

    def search(ktr: np.ndarray, kep: np.ndarray) -> tuple[float, float]:
        grid, conv = _convolved(kep, float(post.max()) / 60.0)
        ex = np.stack([np.interp(post / 60.0, grid, row) for row in conv])  # (kep, phases)
        c = vp * plasma(post / 60.0)[None, None, :] + ktr[:, None, None] * ex[None, :, :]
        e = spgr(1.0, t1_s, tr_ms, flip_deg, c) / s0  # (ktr, kep, phases) = S / S0
        init = 100 * (e[..., 0] - 1)
        late = 100 * (e[..., -1] - e[..., 0]) / e[..., 0]
        # the initial enhancement first (slow/medium/fast is what a tissue is), then the late change:
        # 10 % of the initial weighs as much as 8 points of late change (a short protocol cannot show
        # a large late rise; it then shows less of it rather than a faster tissue)
        cost = ((init - initial_pct) / (0.1 * max(initial_pct, 15.0))) ** 2 + ((late - late_pct) / 8.0) ** 2
        i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
        return float(ktr[i]), float(kep[j])

    k1, k2 = search(np.logspace(-3.3, 0.8, 56), np.logspace(-2.5, 1.0, 48))
    k1, k2 = search(k1 * np.logspace(-0.12, 0.12, 17), k2 * np.logspace(-0.12, 0.12, 17))
    return enhancement_of(k1, k2, vp, t1_s, post, tr_ms, flip_deg)
