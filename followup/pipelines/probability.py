"""Probability of disease at the ablation site: a transparent Bayes model over published figures.

The endpoint (:data:`followup.evidence.ENDPOINT`): residual (or, in surveillance, recurrent)
invasive or in-situ disease at the ablation site (the zone and a 10 mm band around its edge) at
this examination. The rest of both breasts and the axillae are not assessed.

odds at the site = prior odds of residual disease at the site (three series averaged)
                   x size (continuous: log-odds linear in diameter, the deck's slope)
                   x odds ratios from the procedure record (:mod:`followup.record_rules`)
                   [surveillance: x negative ratio of each earlier negative follow-up, then
                    recurrence since the procedure added (ICE3, by time)]
                   x the MRI read: a negative read's ratio (Z1072 or Poplack, averaged), or the
                     most suspicious finding's one joint ratio for morphology and kinetics: a focus,
                     or non-mass enhancement at the site (one finding counted, never both)
                   x margin coverage (only without a counted finding: they measure the same thing)
                   [surveillance: x the trend against the previous follow-up]

Every choice between defensible sources is averaged (equal weights): the point probability is the
mean of the posteriors over the alternatives, each driver's factor is the change of that mean's
odds, and the Monte Carlo interval draws the alternative and then its figures (model-based: see
:mod:`followup.evidence`). Pure: numbers in, numbers out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from followup import evidence as ev, record_rules
from followup.procedure import ProcedureRecord

SITE_BAND_MM = ev.SITE_BAND_MM
CURVES = ev.CURVES
NOT_ASSESSABLE = "not assessable"


class Question(StrEnum):
    RESIDUAL = "residual"  # the first follow-up(s) after the procedure
    RECURRENCE = "recurrence"  # surveillance (>= ev.SURVEILLANCE_FROM_DAYS)


class Confidence(StrEnum):
    NORMAL = "normal"
    LOW = "low"


@dataclass(frozen=True)
class FocusEvidence:
    curve_type: str  # persistent | plateau | washout | not assessable
    largest_diameter_mm: float
    distance_to_zone_edge_mm: float  # > 0 outside the zone, < 0 inside


@dataclass(frozen=True)
class NmeEvidence:  # suspicious non-mass enhancement at or extending from the site
    curve_type: str  # persistent | plateau | washout | not assessable | none
    extent_mm: float
    distance_to_zone_edge_mm: float  # its nearest voxel: > 0 outside the zone, <= 0 touching
    distribution: str = "linear"  # focal | linear | segmental | regional


@dataclass(frozen=True)
class ImagingEvidence:
    foci: tuple[FocusEvidence, ...] = ()
    nme: tuple[NmeEvidence, ...] = ()  # suspicious non-mass enhancement
    margin_covered: bool | None = None
    reliable: bool = True  # False when the zone could not be found or trusted: record alone
    # False when registration to the baseline did not confirm that the zone found in the follow-up
    # is the treated site: the imaging ratio is weighted for the zone's identity
    # (evidence.ZONE_IDENTITY_UNCERTAIN), the margin factor is dropped, the confidence is low
    location_confirmed: bool = True


@dataclass(frozen=True)
class History:
    """What the patient's earlier follow-ups add (surveillance): how many were read negative at the
    site, and the trend against the previous one as a named odds factor (None: no change counted)."""

    earlier_negative_reads: int = 0
    trend: tuple[str, ev.OddsFactor] | None = None


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
    drivers: tuple[Driver, ...] = ()
    confidence: Confidence = Confidence.NORMAL
    counted_focus: FocusEvidence | None = None
    question: Question = Question.RESIDUAL
    interval_kind: str = ev.INTERVAL_KIND
    counted_nme: NmeEvidence | None = None  # the NME counted instead of a focus (one finding)


def _odds(p):
    return p / (1.0 - p)


def _prob(o):
    return o / (1.0 + o)


def site_foci(imaging: ImagingEvidence) -> list[FocusEvidence]:
    return [f for f in imaging.foci if f.distance_to_zone_edge_mm <= SITE_BAND_MM]


def site_nme(imaging: ImagingEvidence) -> list[NmeEvidence]:
    return [m for m in imaging.nme if m.distance_to_zone_edge_mm <= SITE_BAND_MM]


def site_findings(imaging: ImagingEvidence) -> list[FocusEvidence | NmeEvidence]:
    return [*site_foci(imaging), *site_nme(imaging)]


def question_at(days: int | None) -> Question:
    return Question.RECURRENCE if days is not None and days >= ev.SURVEILLANCE_FROM_DAYS else Question.RESIDUAL


# --- the model's figures: one row per alternative (point) or per Monte Carlo draw ----------------

@dataclass(frozen=True)
class _Params:
    prior: np.ndarray  # residual at the site, at the reference diameter
    size_slope: np.ndarray
    lr_negative: np.ndarray
    specificity: np.ndarray  # post-cryoablation specificity (Poplack): the mass's benign arm
    cancer_curves: dict[str, np.ndarray]
    benign_curves: dict[str, np.ndarray]
    small_focus: np.ndarray
    margin: np.ndarray
    identity: np.ndarray
    hazard_scale: np.ndarray
    factors: tuple[np.ndarray, ...]  # record factors, then the trend

    def _mass_times_curve(self, focus: FocusEvidence | NmeEvidence) -> np.ndarray:
        """Morphology (a positive read at the site: implied sensitivity over Poplack's false
        positives, floored at 1) times the curve's ratio given it (none when not assessable)."""
        spec = self.specificity
        sens = np.clip(1.0 - self.lr_negative * spec, *ev.MASS_SENSITIVITY_RANGE)
        lr = np.maximum(sens / (1.0 - spec), 1.0)
        if focus.curve_type in CURVES:
            lr = lr * self.cancer_curves[focus.curve_type] / self.benign_curves[focus.curve_type]
        return lr

    def lr_nme(self, nme: NmeEvidence) -> np.ndarray:
        """NME at the site: a positive read's ratio (an assumption), times its curve, floored at 1."""
        return np.maximum(self._mass_times_curve(nme), 1.0)

    def lr_focus(self, focus: FocusEvidence) -> np.ndarray:
        """One joint ratio for a suspicious focus: morphology times its curve given a mass, floored
        at 1 (morphology before kinetics); x 0.5 below 5 mm, still >= 1."""
        lr = self._mass_times_curve(focus)
        if focus.largest_diameter_mm < ev.SMALL_FOCUS_MM:
            lr = lr * self.small_focus
        return np.maximum(lr, 1.0)

    def kinetics_floored(self, focus: FocusEvidence | NmeEvidence) -> bool:
        """Whether the curve would have made the mass reassuring (the floor at 1 applies)."""
        return focus.curve_type in CURVES and bool(np.mean(self._mass_times_curve(focus)) < 1.0)


def _fat_necrosis_share(curve: str) -> float:
    return ev.FAT_NECROSIS_CURVES[curve] / sum(ev.FAT_NECROSIS_CURVES.values())


def _point_params(factors: Sequence[ev.OddsFactor]) -> _Params:
    """Every combination of the alternative sources (prior x negative read), at point values."""
    combos = list(itertools.product(ev.PRIOR_SITE_SOURCES, (0, 1)))
    n = len(combos)
    full = lambda v: np.full(n, float(v))  # noqa: E731
    lr_neg = np.array([ev.lr_negative_z1072(ev.Z1072_NPV.value, ev.Z1072_PREVALENCE.value) if k == 0
                       else ev.lr_negative_poplack(ev.POPLACK_SENSITIVITY.mean, ev.POPLACK_SPECIFICITY.mean)
                       for _, k in combos])
    return _Params(
        np.array([fig.value for fig, _ in combos]), full(ev.SIZE_LOG_ODDS_PER_MM), lr_neg,
        full(ev.POPLACK_SPECIFICITY.mean),
        {c: full(ev.KUHL_CANCERS[c]) for c in CURVES}, {c: full(_fat_necrosis_share(c)) for c in CURVES},
        full(ev.LR_SMALL_FOCUS.value), full(ev.OR_MARGIN_NOT_COVERED.value),
        full(ev.ZONE_IDENTITY_UNCERTAIN.value), full(1.0), tuple(full(f.value) for f in factors))


def _random_params(factors: Sequence[ev.OddsFactor], n: int, rng: np.random.Generator) -> _Params:
    beta = lambda f: rng.beta(f.a, f.b, size=n)  # noqa: E731
    loguni = lambda lo, hi: np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))  # noqa: E731
    which_prior = rng.integers(len(ev.PRIOR_SITE_SOURCES), size=n)
    priors = np.stack([beta(f) for f in ev.PRIOR_SITE_SOURCES])
    which_negative = rng.integers(2, size=n)
    spec = beta(ev.POPLACK_SPECIFICITY)
    lr_neg = np.where(which_negative == 0,
                      ev.lr_negative_z1072(beta(ev.Z1072_NPV), beta(ev.Z1072_PREVALENCE)),
                      ev.lr_negative_poplack(beta(ev.POPLACK_SENSITIVITY), spec))
    cancers = rng.dirichlet([ev.KUHL_CANCERS[c] * ev.KUHL_N_CANCERS + 0.5 for c in CURVES], size=n)
    benign = rng.dirichlet([ev.FAT_NECROSIS_CURVES[c] + 0.5 for c in CURVES], size=n)
    return _Params(
        priors[which_prior, np.arange(n)], ev.SIZE_LOG_ODDS_PER_MM * rng.uniform(*ev.SIZE_SLOPE_RANGE, size=n),
        lr_neg, spec, {c: cancers[:, k] for k, c in enumerate(CURVES)},
        {c: benign[:, k] for k, c in enumerate(CURVES)},
        loguni(ev.LR_SMALL_FOCUS.low, ev.LR_SMALL_FOCUS.high),
        loguni(ev.OR_MARGIN_NOT_COVERED.low, ev.OR_MARGIN_NOT_COVERED.high),
        beta(ev.ZONE_IDENTITY_UNCERTAIN), loguni(*ev.ICE3_HAZARD_RANGE),
        tuple(loguni(f.low, f.high) for f in factors))


# --- the model: a sequence of steps on the probability -------------------------------------------

@dataclass(frozen=True)
class _Step:
    name: str
    apply: Callable[[_Params, np.ndarray], np.ndarray]  # probability -> probability, per row
    source: str
    assumption: bool


def _times(factor: Callable[[_Params], np.ndarray]) -> Callable[[_Params, np.ndarray], np.ndarray]:
    return lambda th, p: _prob(_odds(p) * factor(th))


def _factor_at(i: int) -> Callable[[_Params], np.ndarray]:
    return lambda th: th.factors[i]


def _imaging_lr(th: _Params, imaging: ImagingEvidence) -> tuple[np.ndarray, FocusEvidence | NmeEvidence | None]:
    """The MRI read's ratio: a negative read's, or the most suspicious finding's at the site (a
    focus or an NME: one finding counted, two are never multiplied)."""
    findings = site_findings(imaging)
    lrs = [th.lr_focus(f) if isinstance(f, FocusEvidence) else th.lr_nme(f) for f in findings]
    k = int(np.argmax([float(np.mean(x)) for x in lrs])) if lrs else -1
    lr, counted = (lrs[k], findings[k]) if lrs else (th.lr_negative, None)
    if not imaging.location_confirmed:
        # the zone may not be the treated site (probability q); a wrong region's findings are taken
        # to look like those of a site without disease: LR' = (1 - q) LR + q
        lr = (1.0 - th.identity) * lr + th.identity
    return lr, counted


@dataclass(frozen=True)
class _Model:
    record: ProcedureRecord
    imaging: ImagingEvidence
    days: int | None
    history: History
    factors: tuple[tuple[str, ev.OddsFactor], ...]  # record factors then the trend

    @property
    def question(self) -> Question:
        return question_at(self.days)

    def steps(self, use_imaging: bool) -> list[_Step]:
        rec, im = self.record, self.imaging
        d = rec.lesion.diameter_mm
        n_rec = len(self.factors) - (1 if self.history.trend is not None else 0)
        out = [_Step(f"prior: residual disease at the site after cryoablation ({len(ev.PRIOR_SITE_SOURCES)} "
                     "series averaged)", lambda th, p: th.prior,
                     "; ".join(f.source for f in ev.PRIOR_SITE_SOURCES), True),
               _Step(f"tumour {d:g} mm (reference {ev.PRIOR_REFERENCE_DIAMETER_MM:g} mm)",
                     _times(lambda th: np.exp(th.size_slope * (d - ev.PRIOR_REFERENCE_DIAMETER_MM))),
                     ev.SIZE_SOURCE, True)]
        for i, (name, f) in enumerate(self.factors[:n_rec]):
            out.append(_Step(name, _times(_factor_at(i)), f.source, f.assumption))
        if self.question is Question.RECURRENCE:
            k = self.history.earlier_negative_reads
            if k:
                out.append(_Step(f"{k} earlier follow-up(s) without suspicious enhancement at the site",
                                 _times(lambda th: th.lr_negative ** k),
                                 "negative read: " + " or ".join(ev.NEGATIVE_READ_SOURCES), False))
            months = (self.days or 0) / ev.DAYS_PER_MONTH
            recurrence = np.vectorize(ev.recurrence_by)
            out.append(_Step(f"recurrence since the procedure ({months:.0f} months)",
                             lambda th, p: 1.0 - (1.0 - p) * (1.0 - recurrence(months, th.hazard_scale)),
                             ev.ICE3_SOURCE + " (ipsilateral breast, an upper bound for the site)", False))
        if not use_imaging:
            return out
        point = _point_params(())  # the counted focus and its floor do not depend on the record
        _, counted = _imaging_lr(point, im)
        where = "" if im.location_confirmed else \
            " (zone found in the follow-up, registration poor: weighted for the zone's identity)"
        identity_src = "" if im.location_confirmed else "; " + ev.ZONE_IDENTITY_UNCERTAIN.source
        if counted is None:
            out.append(_Step("MRI: no suspicious enhancement at the ablation site" + where,
                             _times(lambda th: _imaging_lr(th, im)[0]),
                             "negative read: " + " or ".join(ev.NEGATIVE_READ_SOURCES) + identity_src,
                             not im.location_confirmed))
        else:
            curve = counted.curve_type if counted.curve_type in CURVES else "curve not assessable"
            small = isinstance(counted, FocusEvidence) and counted.largest_diameter_mm < ev.SMALL_FOCUS_MM
            what, morphology = (
                (f"{counted.distribution} non-mass enhancement {counted.extent_mm:.0f} mm", ev.NME_AS_POSITIVE_READ)
                if isinstance(counted, NmeEvidence) else
                (f"{'focus' if small else 'mass'} {counted.largest_diameter_mm:.1f} mm", "morphology: Poplack 2015 "
                 "specificity 15/17 with the negative read's implied sensitivity"))
            out.append(_Step(
                f"MRI: {what} at the site, {curve}" + where, _times(lambda th: _imaging_lr(th, im)[0]),
                morphology + "; " + ev.KINETICS_SOURCE
                + ("; " + ev.MORPHOLOGY_OVER_KINETICS if point.kinetics_floored(counted) else "")
                + ("; " + ev.LR_SMALL_FOCUS.source if small else "") + identity_src, True))
        if im.margin_covered is False and im.location_confirmed and counted is None:
            f = ev.OR_MARGIN_NOT_COVERED
            out.append(_Step("ablation zone does not cover tumour + margin", _times(lambda th: th.margin),
                             f.source, f.assumption))
        if self.history.trend is not None:
            name, f = self.history.trend
            out.append(_Step(name, _times(lambda th: th.factors[-1]), f.source, f.assumption))
        return out

    @staticmethod
    def run(steps: Sequence[_Step], th: _Params) -> list[np.ndarray]:
        """The probability after each of ``steps``, per row of ``th``."""
        p = np.zeros_like(th.prior)
        out = []
        for s in steps:
            p = s.apply(th, p)
            out.append(p)
        return out


def residual_probability(record: ProcedureRecord, imaging: ImagingEvidence, days: int | None = None, *,
                         history: History = History(), seed: int = 0) -> ProbabilityResult:
    """The probability of disease at the site (see the module), its drivers and its interval.

    ``days``: since the procedure (None: the residual question); from
    ``evidence.SURVEILLANCE_FROM_DAYS`` the question is recurrence and ``history`` counts."""
    factors = tuple(record_rules.odds_factors(record)) + ((history.trend,) if history.trend else ())
    model = _Model(record, imaging, days, history, factors)
    fs = [f for _, f in factors]
    point = _point_params(fs)
    draws = _random_params(fs, ev.INTERVAL_DRAWS, np.random.default_rng(seed))
    tail = (1 - ev.INTERVAL_LEVEL) / 2 * 100

    use_imaging = imaging.reliable
    steps = model.steps(use_imaging)
    record_steps = model.steps(False)
    means = [float(np.mean(p)) for p in model.run(steps, point)]
    drivers: list[Driver] = []
    before = 0.5
    for s, after in zip(steps, means, strict=True):
        factor = _odds(after) / _odds(before)  # the first step from even odds: the prior's odds
        drivers.append(Driver(s.name, float(factor), before, after, s.source, s.assumption))
        before = after
    prior = means[1]  # the site's prior for this tumour size, before the record's factors
    p = means[-1]
    _, counted = _imaging_lr(point, imaging) if use_imaging else (None, None)

    if use_imaging:
        post = model.run(steps, draws)[-1]
        lo, hi = float(np.percentile(post, tail)), float(np.percentile(post, 100 - tail))
        if not imaging.location_confirmed:
            # widen by the zone's identity: where the zone is not the site, the site's truth spans
            # every imaging outcome
            site_lo, site_hi = _record_only_span(record_steps, draws, tail)
            q_hi = float(np.percentile(draws.identity, 100 - tail))
            lo = min(lo, (1 - q_hi) * lo + q_hi * site_lo)
            hi = max(hi, (1 - q_hi) * hi + q_hi * site_hi)
    else:
        # imaging not used: the number rests on the record and the interval spans every imaging
        # outcome, from a negative read to the most suspicious mass
        lo, hi = _record_only_span(record_steps, draws, tail)
    lo, hi = min(lo, p), max(hi, p)
    heavy = any(d.assumption and max(d.factor, 1 / d.factor) >= ev.HEAVY_ASSUMPTION_FACTOR
                for d in drivers[1:])
    low = not use_imaging or not imaging.location_confirmed or heavy
    return ProbabilityResult(p, (lo, hi), prior, tuple(drivers), Confidence.LOW if low else Confidence.NORMAL,
                             counted if isinstance(counted, FocusEvidence) else None, model.question,
                             counted_nme=counted if isinstance(counted, NmeEvidence) else None)


def _record_only_span(record_steps: Sequence[_Step], draws: _Params, tail: float) -> tuple[float, float]:
    """From a negative read to the most suspicious mass (washout, 10 mm), on the record's prior."""
    base = _Model.run(record_steps, draws)[-1]
    worst = FocusEvidence("washout", 10.0, 0.0)
    neg = _prob(_odds(base) * draws.lr_negative)
    pos = _prob(_odds(base) * draws.lr_focus(worst))
    return float(np.percentile(neg, tail)), float(np.percentile(pos, 100 - tail))


__all__ = ["CURVES", "NOT_ASSESSABLE", "SITE_BAND_MM", "Confidence", "Driver", "FocusEvidence", "History",
           "ImagingEvidence", "NmeEvidence", "ProbabilityResult", "Question", "question_at", "residual_probability",
           "site_findings", "site_foci", "site_nme"]
