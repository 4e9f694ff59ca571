"""Residual-tumour probability: a transparent Bayes model over published figures.

posterior odds = prior odds (tumour size band)
                 x odds ratios from the procedure record (in-situ component, lobular, cycles)
                 x likelihood ratio of the MRI (negative, or the most suspicious focus with its
                   kinetics and size) x margin coverage.

When registration to the baseline is poor but the zone was found in the follow-up itself, the
imaging is still used: the margin factor is dropped (the mapped tumour's place is not known), the
imaging likelihood ratio is weighted for the chance that the region is not the treated site
(``(1 - q) LR + q``, ``evidence.ZONE_IDENTITY_UNCERTAIN``), the interval is widened towards every
imaging outcome by that chance, and the confidence is low.

The MRI likelihood ratios are calibrated so that a negative MRI at ACOSOG Z1072's prevalence of
residual disease gives the deck's NPV of 86 %; a positive MRI uses Poplack's specificity and the
sensitivity that calibration implies; a focus's kinetics multiply by Kuhl's likelihood ratios.
The interval is the spread of the posterior when every figure is drawn from its own uncertainty
(``followup.evidence``). Pure: numbers in, numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from followup import evidence as ev
from followup.procedure import ProcedureRecord

CURVES = ("persistent", "plateau", "washout")


@dataclass(frozen=True)
class FocusEvidence:
    curve_type: str  # persistent | plateau | washout
    largest_diameter_mm: float
    distance_to_zone_edge_mm: float  # > 0 outside the zone, < 0 inside


@dataclass(frozen=True)
class ImagingEvidence:
    foci: tuple[FocusEvidence, ...] = ()
    margin_covered: bool | None = None
    reliable: bool = True  # False when the zone could not be found or trusted: record alone
    # False when registration to the baseline did not confirm that the zone found in the follow-up
    # is the treated site: the margin factor is dropped, the imaging likelihood ratio is weighted
    # for the zone's identity (evidence.ZONE_IDENTITY_UNCERTAIN), the confidence is low
    location_confirmed: bool = True


@dataclass(frozen=True)
class Driver:
    name: str
    factor: float  # multiplier of the odds
    probability_before: float
    probability_after: float
    source: str
    assumption: bool

    def to_json(self) -> dict:
        return {"name": self.name, "odds_factor": round(self.factor, 3),
                "probability_before": round(self.probability_before, 4),
                "probability_after": round(self.probability_after, 4),
                "source": self.source, "assumption": self.assumption}


@dataclass(frozen=True)
class ProbabilityResult:
    probability: float
    interval: tuple[float, float]
    prior: float
    drivers: list[Driver] = field(default_factory=list)
    confidence: str = "normal"  # "normal" | "low"
    counted_focus: FocusEvidence | None = None


# How far outside the zone's edge a focus still counts as "at the ablation site" (mm).
SITE_BAND_MM = 10.0


def _odds(p):
    return p / (1.0 - p)


def _prob(o):
    return o / (1.0 + o)


def prior_figure(record: ProcedureRecord) -> ev.Figure:
    d = record.lesion.diameter_mm
    if d < 10:
        return ev.PRIOR_BELOW_10MM
    if d < 15:
        return ev.PRIOR_10_TO_15MM
    if d <= 20:
        return ev.PRIOR_15_TO_20MM
    return ev.PRIOR_ABOVE_20MM


def record_factors(record: ProcedureRecord) -> list[tuple[str, ev.OddsFactor]]:
    les = record.lesion
    out: list[tuple[str, ev.OddsFactor]] = []
    if les.dcis_component_pct > 25:
        out.append((f"extensive in-situ component ({les.dcis_component_pct:g}% of the biopsy)",
                    ev.OR_EXTENSIVE_DCIS))
    elif les.dcis_component_pct > 0 or les.histology in ("DCIS", "mixed") or les.insitu_grade:
        out.append(("in-situ component recorded", ev.OR_INSITU_COMPONENT))
    if les.histology == "ILC":
        out.append(("lobular histology", ev.OR_LOBULAR))
    if record.freeze_thaw_cycles < 2:
        out.append((f"{record.freeze_thaw_cycles} freeze-thaw cycle", ev.OR_SINGLE_FREEZE))
    return out


def site_foci(imaging: ImagingEvidence) -> list[FocusEvidence]:
    return [f for f in imaging.foci if f.distance_to_zone_edge_mm <= SITE_BAND_MM]


@dataclass(frozen=True)
class _Draw:
    """One set of the model's figures (the point values, or one Monte Carlo draw)."""

    prior: np.ndarray
    factors: dict[int, np.ndarray]
    npv: np.ndarray
    prevalence: np.ndarray
    specificity: np.ndarray
    kuhl_cancer: dict[str, np.ndarray]
    kuhl_benign: dict[str, np.ndarray]
    small_focus: np.ndarray
    margin: np.ndarray
    identity: np.ndarray  # probability that the zone is not the treated site

    def lr_negative(self):
        return ((1 - self.npv) / self.npv) / _odds(self.prevalence)

    def lr_positive(self):
        sens = np.clip(1.0 - self.lr_negative() * self.specificity, 0.05, 0.99)
        return sens / (1.0 - self.specificity)

    def _positive_with_kinetics(self, focus: FocusEvidence):
        return self.lr_positive() * self.kuhl_cancer[focus.curve_type] / self.kuhl_benign[focus.curve_type]

    def kinetics_floored(self, focus: FocusEvidence) -> bool:
        """Whether the focus's kinetics would have made it reassuring (ratio below 1: floored)."""
        return bool(np.all(self._positive_with_kinetics(focus) < 1.0))

    def lr_focus(self, focus: FocusEvidence):
        # benign (persistent) kinetics do not make a nodular focus reassuring: the combined ratio
        # does not fall below 1 (ev.MORPHOLOGY_OVER_KINETICS)
        lr = np.maximum(self._positive_with_kinetics(focus), 1.0)
        if focus.largest_diameter_mm < ev.SMALL_FOCUS_MM:
            lr = lr * self.small_focus
        return lr


def _point_draw(record_fs: list[ev.OddsFactor], prior: ev.Figure) -> _Draw:
    a = lambda v: np.array([v], dtype=float)  # noqa: E731
    return _Draw(a(prior.value), {i: a(f.value) for i, f in enumerate(record_fs)},
                 a(ev.MRI_NPV.value), a(ev.CALIBRATION_PREVALENCE.value),
                 a(ev.MRI_SPECIFICITY.value),
                 {c: a(ev.KUHL_CANCERS[c]) for c in CURVES}, {c: a(ev.KUHL_BENIGN[c]) for c in CURVES},
                 a(ev.LR_SMALL_FOCUS.value), a(ev.OR_MARGIN_NOT_COVERED.value),
                 a(ev.ZONE_IDENTITY_UNCERTAIN.value))


def _random_draw(record_fs: list[ev.OddsFactor], prior: ev.Figure, n: int,
                 rng: np.random.Generator) -> _Draw:
    beta = lambda f: rng.beta(f.a, f.b, size=n)  # noqa: E731
    loguni = lambda f: np.exp(rng.uniform(np.log(f.low), np.log(f.high), size=n))  # noqa: E731
    cancers = rng.dirichlet([ev.KUHL_CANCERS[c] * ev.KUHL_N_CANCERS + 0.5 for c in CURVES], size=n)
    benign = rng.dirichlet([ev.KUHL_BENIGN[c] * ev.KUHL_N_BENIGN + 0.5 for c in CURVES], size=n)
    return _Draw(beta(prior), {i: loguni(f) for i, f in enumerate(record_fs)},
                 beta(ev.MRI_NPV), beta(ev.CALIBRATION_PREVALENCE), beta(ev.MRI_SPECIFICITY),
                 {c: cancers[:, k] for k, c in enumerate(CURVES)},
                 {c: benign[:, k] for k, c in enumerate(CURVES)},
                 loguni(ev.LR_SMALL_FOCUS), loguni(ev.OR_MARGIN_NOT_COVERED),
                 beta(ev.ZONE_IDENTITY_UNCERTAIN))


def _imaging_lr(d: _Draw, imaging: ImagingEvidence) -> tuple[np.ndarray, FocusEvidence | None]:
    foci = site_foci(imaging)
    if not foci:
        lr, counted = d.lr_negative(), None
    else:
        lrs = [d.lr_focus(f) for f in foci]
        k = int(np.argmax([float(np.median(lr)) for lr in lrs]))
        lr, counted = lrs[k], foci[k]
    if not imaging.location_confirmed:
        # the zone may not be the treated site (probability q): a wrong region's findings are
        # taken to look like those of a site without residual disease, so
        # P(obs | residual) / P(obs | none) = ((1 - q) LR P(obs|none) + q P(obs|none)) / P(obs|none)
        lr = (1.0 - d.identity) * lr + d.identity
    return lr, counted


def _margin_counts(imaging: ImagingEvidence) -> bool:
    """The margin factor applies only where registration confirmed the mapped tumour's place."""
    return imaging.margin_covered is False and imaging.location_confirmed


def _posterior(d: _Draw, imaging: ImagingEvidence, n_factors: int) -> np.ndarray:
    odds = _odds(d.prior)
    for i in range(n_factors):
        odds = odds * d.factors[i]
    lr, _ = _imaging_lr(d, imaging)
    odds = odds * lr
    if _margin_counts(imaging):
        odds = odds * d.margin
    return _prob(odds)


def residual_probability(record: ProcedureRecord, imaging: ImagingEvidence,
                         seed: int = 0, extra: Sequence[tuple[str, ev.OddsFactor]] = ()) -> ProbabilityResult:
    """``extra``: further named odds factors of the imaging, applied last (drivers and interval),
    e.g. a change against the previous follow-up (:mod:`followup.pipelines.longitudinal`)."""
    prior = prior_figure(record)
    rec_factors = record_factors(record)
    fs = [f for _, f in rec_factors]
    point = _point_draw(fs, prior)
    rng = np.random.default_rng(seed)
    draws = _random_draw(fs + [f for _, f in extra], prior, ev.INTERVAL_DRAWS, rng)
    tail = (1 - ev.INTERVAL_LEVEL) / 2 * 100

    drivers: list[Driver] = []
    p = float(prior.value)
    drivers.append(Driver(f"prior: tumour {record.lesion.diameter_mm:g} mm", _odds(p), 0.5, p,
                          prior.source, prior.assumption))

    def step(name: str, factor: float, source: str, assumption: bool) -> None:
        nonlocal p
        after = _prob(_odds(p) * factor)
        drivers.append(Driver(name, factor, p, after, source, assumption))
        p = after

    for name, f in rec_factors:
        step(name, f.value, f.source, f.assumption)

    if not imaging.reliable:
        # Imaging cannot be trusted: the number rests on the record alone and the interval spans
        # every imaging outcome, from a negative MRI to the most suspicious focus.
        lo, hi = _record_only_span(draws, fs, tail)
        return ProbabilityResult(p, (lo, hi), float(prior.value), drivers, "low", None)

    lr, counted = _imaging_lr(point, imaging)
    unconfirmed = "" if imaging.location_confirmed else \
        " (zone found in the follow-up, registration poor: weighted for the zone's identity)"
    identity_src = "" if imaging.location_confirmed else "; " + ev.ZONE_IDENTITY_UNCERTAIN.source
    if counted is None:
        step("MRI: no suspicious enhancement at the ablation site" + unconfirmed, float(lr[0]),
             f"calibrated to NPV {ev.MRI_NPV_INVASIVE:.0%} at Z1072 prevalence "
             f"{ev.CALIBRATION_PREVALENCE.value:.0%}" + identity_src, not imaging.location_confirmed)
    else:
        floored = point.kinetics_floored(counted)
        step(f"MRI: {counted.curve_type} focus {counted.largest_diameter_mm:.1f} mm at the zone edge"
             + unconfirmed,
             float(lr[0]), f"positive MRI (Poplack 2015 specificity, NPV calibration) x {ev.KUHL_SOURCE}"
             + ("; " + ev.MORPHOLOGY_OVER_KINETICS if floored else "")
             + ("; small focus" if counted.largest_diameter_mm < ev.SMALL_FOCUS_MM else "") + identity_src,
             floored or counted.largest_diameter_mm < ev.SMALL_FOCUS_MM or not imaging.location_confirmed)
    if _margin_counts(imaging):
        f = ev.OR_MARGIN_NOT_COVERED
        step("ablation zone does not cover tumour + margin", f.value, f.source, f.assumption)
    for name, f in extra:
        step(name, f.value, f.source, f.assumption)

    post = _posterior(draws, imaging, len(fs) + len(extra))
    lo, hi = float(np.percentile(post, tail)), float(np.percentile(post, 100 - tail))
    lo, hi = min(lo, p), max(hi, p)
    if not imaging.location_confirmed:
        # widen by the zone's identity: where the zone is not the site, the imaging says nothing
        # and the site's truth spans every imaging outcome (as for untrusted imaging)
        site_lo, site_hi = _record_only_span(draws, fs, tail)
        q_hi = float(np.percentile(draws.identity, 100 - tail))
        lo = min(lo, (1 - q_hi) * lo + q_hi * site_lo)
        hi = max(hi, (1 - q_hi) * hi + q_hi * site_hi)
    return ProbabilityResult(p, (lo, hi), float(prior.value), drivers,
                             "normal" if imaging.location_confirmed else "low", counted)


def _record_only_span(draws: _Draw, fs: list, tail: float) -> tuple[float, float]:
    """The interval when the imaging is not used: from a negative MRI to the most suspicious
    focus, on the record's prior."""
    prior_only = _prob(_odds(draws.prior) * np.prod([draws.factors[i] for i in range(len(fs))], axis=0)) \
        if fs else draws.prior
    worst = FocusEvidence("washout", 10.0, 0.0)
    neg = _prob(_odds(prior_only) * draws.lr_negative())
    pos = _prob(_odds(prior_only) * draws.lr_focus(worst))
    return float(np.percentile(neg, tail)), float(np.percentile(pos, 100 - tail))
